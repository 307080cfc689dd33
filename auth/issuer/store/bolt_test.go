package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store/storetest"
)

func TestBolt(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		b, err := store.OpenBolt(filepath.Join(t.TempDir(), "issuer.db"), store.Options{})
		if err != nil {
			t.Fatalf("OpenBolt() = %v, want nil", err)
		}
		return b
	})
}

// TestBoltReopen proves what a restart keeps: keys, refresh tokens (with
// their used mark) and revocations.
func TestBoltReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "issuer.db")
	base := time.Now().UTC().Truncate(time.Second).Add(time.Hour)
	b, err := store.OpenBolt(path, store.Options{})
	if err != nil {
		t.Fatalf("OpenBolt() = %v, want nil", err)
	}
	key := store.Key{ID: "k1", Algorithm: "RS256", Private: []byte("pkcs8"), CreatedAt: base}
	rt1 := store.RefreshToken{ID: "rt-1", FamilyID: "fam-1", Subject: "alice", ExpiresAt: base.Add(time.Hour)}
	rt2 := store.RefreshToken{ID: "rt-2", FamilyID: "fam-1", Subject: "alice", ExpiresAt: base.Add(2 * time.Hour)}
	steps := []error{
		b.PutKey(ctx, key),
		b.CreateRefresh(ctx, rt1),
		b.Revoke(ctx, "jti-1", base.Add(time.Hour)),
	}
	_, err = b.RotateRefresh(ctx, rt1.ID, rt2, base)
	steps = append(steps, err)
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d = %v, want nil", i, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}

	b, err = store.OpenBolt(path, store.Options{})
	if err != nil {
		t.Fatalf("OpenBolt(again) = %v, want nil", err)
	}
	defer b.Close()
	keys, err := b.ListKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != "k1" || string(keys[0].Private) != "pkcs8" {
		t.Errorf("ListKeys() after reopen = %+v, %v, want [k1]", keys, err)
	}
	if got, err := b.GetRefresh(ctx, rt1.ID, base); err != nil || !got.Used {
		t.Errorf("GetRefresh(rt-1) after reopen = %+v, %v, want it used", got, err)
	}
	if got, err := b.GetRefresh(ctx, rt2.ID, base); err != nil || got.Used || got.Subject != "alice" {
		t.Errorf("GetRefresh(rt-2) after reopen = %+v, %v, want it unused", got, err)
	}
	if revoked, err := b.IsRevoked(ctx, "jti-1", base); err != nil || !revoked {
		t.Errorf("IsRevoked(jti-1) after reopen = %v, %v, want true, nil", revoked, err)
	}
	// Reuse detection survives too, and revokes the family to its latest expiry.
	if _, err := b.RotateRefresh(ctx, rt1.ID, store.RefreshToken{ID: "rt-3", FamilyID: "fam-1"}, base); !errors.Is(err, store.ErrReused) {
		t.Errorf("RotateRefresh(rt-1) after reopen = %v, want ErrReused", err)
	}
	if revoked, err := b.IsRevoked(ctx, "fam-1", rt2.ExpiresAt.Add(-time.Second)); err != nil || !revoked {
		t.Errorf("IsRevoked(fam-1) = %v, %v, want true, nil", revoked, err)
	}
}

func TestBoltFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "issuer.db")
	b, err := store.OpenBolt(path, store.Options{})
	if err != nil {
		t.Fatalf("OpenBolt() = %v, want nil", err)
	}
	b.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("mode of new file = %v, want 0600", got)
	}
	// An existing file others can read is tightened.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err = store.OpenBolt(path, store.Options{})
	if err != nil {
		t.Fatalf("OpenBolt(0644 file) = %v, want nil", err)
	}
	b.Close()
	if st, err = os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode after reopening a 0644 file = %v (%v), want 0600", st.Mode().Perm(), err)
	}
}

func TestBoltOpenErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing directory", filepath.Join(dir, "nope", "issuer.db"), `directory "` + filepath.Join(dir, "nope") + `" does not exist`},
		{"parent is a file", filepath.Join(file, "issuer.db"), "is not a directory"},
		{"not a bolt file", file, "store: bolt: open"},
		{"empty", "", "empty path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := store.OpenBolt(tt.path, store.Options{})
			if err == nil {
				b.Close()
				t.Fatalf("OpenBolt(%q) = nil error, want one containing %q", tt.path, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("OpenBolt(%q) = %q, want it to contain %q", tt.path, err, tt.want)
			}
		})
	}
}

func TestOpenBoltConfig(t *testing.T) {
	s, err := store.Open(t.Context(), store.Config{Type: "bolt", Path: filepath.Join(t.TempDir(), "i.db")}, store.Options{})
	if err != nil {
		t.Fatalf("Open(bolt) = %v, want nil", err)
	}
	defer s.Close()
	if _, ok := s.(*store.Bolt); !ok {
		t.Errorf("Open(bolt) = %T, want *store.Bolt", s)
	}
	s2, err := store.Open(t.Context(), store.Config{Type: "bolt", Path: filepath.Join(t.TempDir(), "no", "i.db")}, store.Options{})
	if err == nil || s2 != nil {
		t.Errorf("Open(bolt, missing dir) = %v, %v, want nil store and an error", s2, err)
	}
}
