package issuer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// usersFileCheckEvery bounds how often users_file's modification time is
// looked at; edits show up within this long without a reload.
const usersFileCheckEvery = 3 * time.Second

// userDir resolves usernames against issuer.users and issuer.users_file.
type userDir struct {
	static map[string]*UserConfig
	file   string
	now    func() time.Time
	log    *slog.Logger

	mu        sync.Mutex
	fromFile  map[string]*UserConfig
	modTime   time.Time
	size      int64
	checkedAt time.Time
}

func newUserDir(users []UserConfig, file string, now func() time.Time, log *slog.Logger) (*userDir, error) {
	d := &userDir{static: map[string]*UserConfig{}, file: file, now: now, log: log}
	for n := range users {
		u := users[n]
		d.static[u.Username] = &u
	}
	if file != "" {
		if err := d.readFile(); err != nil {
			return nil, err
		}
		d.checkedAt = now()
	}
	return d, nil
}

// readFile parses users_file; d.mu is held (or d is not shared yet).
func (d *userDir) readFile() error {
	fi, err := os.Stat(d.file)
	if err != nil {
		return fmt.Errorf("issuer: users_file: %w", err)
	}
	b, err := os.ReadFile(d.file)
	if err != nil {
		return fmt.Errorf("issuer: users_file: %w", err)
	}
	var list []UserConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&list); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("issuer: users_file: %q: %w", d.file, err)
	}
	if err := errors.Join(validateUsers("users_file", list)...); err != nil {
		return fmt.Errorf("issuer: users_file: %q: %w", d.file, err)
	}
	m := make(map[string]*UserConfig, len(list))
	for n := range list {
		u := list[n]
		if _, dup := d.static[u.Username]; dup {
			return fmt.Errorf("issuer: users_file: %q: users_file[%d].username: %q: also in users", d.file, n, u.Username)
		}
		m[u.Username] = &u
	}
	d.fromFile, d.modTime, d.size = m, fi.ModTime(), fi.Size()
	return nil
}

// refresh re-reads users_file when it changed; a broken file is logged and
// the previous users stay.
func (d *userDir) refresh(ctx context.Context) {
	if d.file == "" {
		return
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if now.Sub(d.checkedAt) < usersFileCheckEvery && !now.Before(d.checkedAt) {
		return
	}
	d.checkedAt = now
	fi, err := os.Stat(d.file)
	if err != nil {
		d.log.ErrorContext(ctx, "issuer: users_file unreadable; keeping the users loaded before", "err", err)
		return
	}
	if fi.ModTime().Equal(d.modTime) && fi.Size() == d.size {
		return
	}
	if err := d.readFile(); err != nil {
		d.log.ErrorContext(ctx, "issuer: users_file invalid; keeping the users loaded before", "err", err)
		return
	}
	d.log.InfoContext(ctx, "issuer: users_file reloaded", "users", len(d.fromFile))
}

// lookup finds a user by exact username.
func (d *userDir) lookup(ctx context.Context, name string) (*UserConfig, bool) {
	if u, ok := d.static[name]; ok {
		return u, true
	}
	if d.file == "" {
		return nil, false
	}
	d.refresh(ctx)
	d.mu.Lock()
	defer d.mu.Unlock()
	u, ok := d.fromFile[name]
	return u, ok
}

// fileUsers returns the users currently loaded from users_file.
func (d *userDir) fileUsers() []UserConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]UserConfig, 0, len(d.fromFile))
	for _, u := range d.fromFile {
		out = append(out, *u)
	}
	return out
}
