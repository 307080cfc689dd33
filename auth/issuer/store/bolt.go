package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names, one per record kind. Every record is JSON; every bucket
// but keys holds records with an "expires_at" field, which the sweep reads.
const (
	bucketCodes     = "codes"
	bucketRefresh   = "refresh_tokens"
	bucketFamilies  = "refresh_families" // family id -> boltExpiry{latest ExpiresAt of its members}
	bucketRevoked   = "revocations"      // id -> boltExpiry{end of the revocation}
	bucketKeys      = "keys"
	bucketLogins    = "login_sessions"
	bucketAuthReqs  = "auth_requests"
	bucketThrottles = "throttles"
)

// sweptBuckets are the buckets whose records expire.
func sweptBuckets() []string {
	return []string{bucketCodes, bucketRefresh, bucketFamilies, bucketRevoked,
		bucketLogins, bucketAuthReqs, bucketThrottles}
}

// boltOpenTimeout bounds the wait for the file lock another process holds.
const boltOpenTimeout = 5 * time.Second

// Bolt is a Store in one bbolt file: one process at a time, and a restart
// keeps signing keys, refresh tokens and revocations. Every compound step
// runs in a single write transaction, which bbolt serialises.
type Bolt struct {
	db      *bolt.DB
	sweeper *sweeper
	// sweepFrom is where the next sweep of each bucket resumes; only the
	// sweep goroutine touches it.
	sweepFrom map[string][]byte
}

// boltExpiry is the stored form of families and revocations, and what the
// sweep decodes from every record.
type boltExpiry struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// boltThrottle is the stored form of a throttle counter; ExpiresAt (First
// plus the window of the last RecordFailure) is only for sweeping.
type boltThrottle struct {
	Throttle
	ExpiresAt time.Time `json:"expires_at"`
}

// OpenBolt opens or creates the bbolt file at path (mode 0600). The
// directory must exist. A file another process holds open is an error after
// a few seconds.
func OpenBolt(path string, opts Options) (*Bolt, error) {
	t := time.NewTicker(sweepInterval)
	b, err := openBolt(path, opts, t.C, t.Stop)
	if err != nil {
		t.Stop()
		return nil, err
	}
	return b, nil
}

// openBolt lets tests drive the sweep with their own tick channel.
func openBolt(path string, opts Options, tick <-chan time.Time, stopTick func()) (*Bolt, error) {
	if path == "" {
		return nil, errors.New("store: bolt: empty path")
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("store: bolt: open %q: directory %q does not exist", path, dir)
	case err != nil:
		return nil, fmt.Errorf("store: bolt: open %q: %w", path, err)
	case !st.IsDir():
		return nil, fmt.Errorf("store: bolt: open %q: %q is not a directory", path, dir)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltOpenTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: bolt: open %q: file is locked, is another process using it? (%w)", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: bolt: open %q: %w", path, err)
	}
	log := opts.logger()
	if err := restrictMode(path, log); err != nil {
		db.Close()
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range append(sweptBuckets(), bucketKeys) {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: bolt: open %q: %w", path, err)
	}
	b := &Bolt{db: db, sweepFrom: make(map[string][]byte)}
	b.sweeper = startSweeper(tick, stopTick, opts.now(), func(now time.Time) error {
		return b.sweep(now, sweepBatch)
	}, log)
	return b, nil
}

// restrictMode makes an existing file readable by its owner only: it holds
// private signing keys.
func restrictMode(path string, log *slog.Logger) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("store: bolt: stat %q: %w", path, err)
	}
	if st.Mode().Perm()&0o077 == 0 {
		return nil
	}
	log.Warn("store: bolt file was readable by others; setting mode 0600", "path", path, "mode", st.Mode().Perm().String())
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("store: bolt: chmod %q: %w", path, err)
	}
	return nil
}

// get decodes the record id of bucket name into v; false if absent.
func get(tx *bolt.Tx, name, id string, v any) (bool, error) {
	data := tx.Bucket([]byte(name)).Get([]byte(id))
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("store: bolt: decode %s record: %w", name, err)
	}
	return true, nil
}

func put(tx *bolt.Tx, name, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: bolt: encode %s record: %w", name, err)
	}
	if err := tx.Bucket([]byte(name)).Put([]byte(id), data); err != nil {
		return fmt.Errorf("store: bolt: write %s record: %w", name, err)
	}
	return nil
}

func del(tx *bolt.Tx, name, id string) error {
	if err := tx.Bucket([]byte(name)).Delete([]byte(id)); err != nil {
		return fmt.Errorf("store: bolt: delete %s record: %w", name, err)
	}
	return nil
}

func exists(tx *bolt.Tx, name, id string) bool {
	return tx.Bucket([]byte(name)).Get([]byte(id)) != nil
}

// CreateCode implements Store.
func (b *Bolt) CreateCode(_ context.Context, c Code) error {
	if c.ID == "" {
		return errEmptyID
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		if exists(tx, bucketCodes, c.ID) {
			return ErrAlreadyExists
		}
		return put(tx, bucketCodes, c.ID, c)
	})
}

// GetCode implements Store.
func (b *Bolt) GetCode(_ context.Context, id string, now time.Time) (Code, error) {
	var c Code
	err := b.db.View(func(tx *bolt.Tx) error {
		ok, err := get(tx, bucketCodes, id, &c)
		if err != nil {
			return err
		}
		if !ok || !live(c.ExpiresAt, now) {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return Code{}, err
	}
	return c, nil
}

// RedeemCode implements Store.
func (b *Bolt) RedeemCode(_ context.Context, id string, now time.Time) (Code, error) {
	var c Code
	err := b.db.Update(func(tx *bolt.Tx) error {
		ok, err := get(tx, bucketCodes, id, &c)
		if err != nil {
			return err
		}
		if !ok || !live(c.ExpiresAt, now) {
			return ErrNotFound
		}
		if c.Used {
			return ErrReused // nothing to write: the rollback is harmless
		}
		c.Used = true
		return put(tx, bucketCodes, id, c)
	})
	switch {
	case errors.Is(err, ErrReused):
		return c, err
	case err != nil:
		return Code{}, err
	}
	return c, nil
}

// CreateRefresh implements Store.
func (b *Bolt) CreateRefresh(_ context.Context, t RefreshToken) error {
	if t.ID == "" {
		return errEmptyID
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		if exists(tx, bucketRefresh, t.ID) {
			return ErrAlreadyExists
		}
		if err := put(tx, bucketRefresh, t.ID, t); err != nil {
			return err
		}
		return extendFamily(tx, t.FamilyID, t.ExpiresAt)
	})
}

// extendFamily records that family lives at least until exp.
func extendFamily(tx *bolt.Tx, family string, exp time.Time) error {
	var f boltExpiry
	if _, err := get(tx, bucketFamilies, family, &f); err != nil {
		return err
	}
	if !exp.After(f.ExpiresAt) {
		return nil
	}
	return put(tx, bucketFamilies, family, boltExpiry{ExpiresAt: exp})
}

// GetRefresh implements Store.
func (b *Bolt) GetRefresh(_ context.Context, id string, now time.Time) (RefreshToken, error) {
	var t RefreshToken
	err := b.db.View(func(tx *bolt.Tx) error {
		ok, err := get(tx, bucketRefresh, id, &t)
		if err != nil {
			return err
		}
		if !ok || !live(t.ExpiresAt, now) {
			return ErrNotFound
		}
		revoked, err := isRevoked(tx, t.FamilyID, now)
		if err != nil {
			return err
		}
		if revoked {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return RefreshToken{}, err
	}
	return t, nil
}

// RotateRefresh implements Store. On success it returns the old token, now
// marked used. A used token is ErrReused even when its family is revoked
// already, so that all racing callers but one see ErrReused.
func (b *Bolt) RotateRefresh(_ context.Context, oldID string, next RefreshToken, now time.Time) (RefreshToken, error) {
	if next.ID == "" {
		return RefreshToken{}, errEmptyID
	}
	var old RefreshToken
	reused := false
	err := b.db.Update(func(tx *bolt.Tx) error {
		ok, err := get(tx, bucketRefresh, oldID, &old)
		if err != nil {
			return err
		}
		if !ok || !live(old.ExpiresAt, now) {
			return ErrNotFound
		}
		if next.FamilyID != old.FamilyID {
			return errFamilyMismatch
		}
		if old.Used {
			// Committed, unlike the other refusals: the revocation must stick.
			reused = true
			var f boltExpiry
			if _, err := get(tx, bucketFamilies, old.FamilyID, &f); err != nil {
				return err
			}
			return revoke(tx, old.FamilyID, laterOf(f.ExpiresAt, old.ExpiresAt))
		}
		revoked, err := isRevoked(tx, old.FamilyID, now)
		if err != nil {
			return err
		}
		if revoked {
			return ErrNotFound
		}
		if exists(tx, bucketRefresh, next.ID) {
			return ErrAlreadyExists
		}
		old.Used = true
		if err := put(tx, bucketRefresh, oldID, old); err != nil {
			return err
		}
		next.Used = false
		if err := put(tx, bucketRefresh, next.ID, next); err != nil {
			return err
		}
		return extendFamily(tx, next.FamilyID, next.ExpiresAt)
	})
	switch {
	case err != nil:
		return RefreshToken{}, err
	case reused:
		return old, ErrReused
	}
	return old, nil
}

// Revoke implements Store. A revocation is never shortened: revoking an id
// again with an earlier expiresAt keeps the later one.
func (b *Bolt) Revoke(_ context.Context, id string, expiresAt time.Time) error {
	if id == "" {
		return errEmptyID
	}
	return b.db.Update(func(tx *bolt.Tx) error { return revoke(tx, id, expiresAt) })
}

func revoke(tx *bolt.Tx, id string, until time.Time) error {
	var r boltExpiry
	if _, err := get(tx, bucketRevoked, id, &r); err != nil {
		return err
	}
	if !until.After(r.ExpiresAt) {
		return nil
	}
	return put(tx, bucketRevoked, id, boltExpiry{ExpiresAt: until})
}

// IsRevoked implements Store.
func (b *Bolt) IsRevoked(_ context.Context, id string, now time.Time) (bool, error) {
	var revoked bool
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		revoked, err = isRevoked(tx, id, now)
		return err
	})
	return revoked, err
}

func isRevoked(tx *bolt.Tx, id string, now time.Time) (bool, error) {
	var r boltExpiry
	ok, err := get(tx, bucketRevoked, id, &r)
	return ok && live(r.ExpiresAt, now), err
}

// PutKey implements Store.
func (b *Bolt) PutKey(_ context.Context, k Key) error {
	if k.ID == "" {
		return errEmptyID
	}
	return b.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketKeys, k.ID, k) })
}

// ListKeys implements Store.
func (b *Bolt) ListKeys(_ context.Context) ([]Key, error) {
	keys := []Key{}
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketKeys)).ForEach(func(_, v []byte) error {
			var k Key
			if err := json.Unmarshal(v, &k); err != nil {
				return fmt.Errorf("store: bolt: decode keys record: %w", err)
			}
			keys = append(keys, k)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sortKeys(keys)
	return keys, nil
}

// DeleteKey implements Store.
func (b *Bolt) DeleteKey(_ context.Context, id string) error {
	return b.deleteRecord(bucketKeys, id)
}

func (b *Bolt) deleteRecord(name, id string) error {
	if id == "" {
		return nil // bbolt refuses empty keys; there is nothing to delete
	}
	return b.db.Update(func(tx *bolt.Tx) error { return del(tx, name, id) })
}

// PutLoginSession implements Store.
func (b *Bolt) PutLoginSession(_ context.Context, s LoginSession) error {
	if s.ID == "" {
		return errEmptyID
	}
	return b.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketLogins, s.ID, s) })
}

// GetLoginSession implements Store.
func (b *Bolt) GetLoginSession(_ context.Context, id string, now time.Time) (LoginSession, error) {
	var s LoginSession
	if err := b.getLive(bucketLogins, id, now, &s, &s.ExpiresAt); err != nil {
		return LoginSession{}, err
	}
	return s, nil
}

// getLive decodes a record into v and checks the expiry v decoded into exp.
func (b *Bolt) getLive(name, id string, now time.Time, v any, exp *time.Time) error {
	return b.db.View(func(tx *bolt.Tx) error {
		ok, err := get(tx, name, id, v)
		if err != nil {
			return err
		}
		if !ok || !live(*exp, now) {
			return ErrNotFound
		}
		return nil
	})
}

// DeleteLoginSession implements Store.
func (b *Bolt) DeleteLoginSession(_ context.Context, id string) error {
	return b.deleteRecord(bucketLogins, id)
}

// PutAuthRequest implements Store.
func (b *Bolt) PutAuthRequest(_ context.Context, r AuthRequest) error {
	if r.ID == "" {
		return errEmptyID
	}
	return b.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketAuthReqs, r.ID, r) })
}

// GetAuthRequest implements Store.
func (b *Bolt) GetAuthRequest(_ context.Context, id string, now time.Time) (AuthRequest, error) {
	var r AuthRequest
	if err := b.getLive(bucketAuthReqs, id, now, &r, &r.ExpiresAt); err != nil {
		return AuthRequest{}, err
	}
	return r, nil
}

// DeleteAuthRequest implements Store.
func (b *Bolt) DeleteAuthRequest(_ context.Context, id string) error {
	return b.deleteRecord(bucketAuthReqs, id)
}

// RecordFailure implements Store.
func (b *Bolt) RecordFailure(_ context.Context, key string, now time.Time, window time.Duration) (Throttle, error) {
	if key == "" {
		return Throttle{}, errEmptyID
	}
	var t Throttle
	err := b.db.Update(func(tx *bolt.Tx) error {
		var cur boltThrottle
		if _, err := get(tx, bucketThrottles, key, &cur); err != nil {
			return err
		}
		t = nextThrottle(cur.Throttle, now, window)
		return put(tx, bucketThrottles, key, boltThrottle{Throttle: t, ExpiresAt: t.First.Add(window)})
	})
	if err != nil {
		return Throttle{}, err
	}
	return t, nil
}

// GetThrottle implements Store.
func (b *Bolt) GetThrottle(_ context.Context, key string, now time.Time, window time.Duration) (Throttle, error) {
	var cur boltThrottle
	err := b.db.View(func(tx *bolt.Tx) error {
		_, err := get(tx, bucketThrottles, key, &cur)
		return err
	})
	if err != nil {
		return Throttle{}, err
	}
	return liveThrottle(cur.Throttle, now, window), nil
}

// ClearThrottle implements Store.
func (b *Bolt) ClearThrottle(_ context.Context, key string) error {
	return b.deleteRecord(bucketThrottles, key)
}

// Close stops the background sweep and closes the file; it is safe to call
// more than once.
func (b *Bolt) Close() error {
	b.sweeper.close()
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("store: bolt: close: %w", err)
	}
	return nil
}

// sweep deletes records that expired by now, examining at most limit
// records of each bucket in one write transaction. Each bucket's scan
// resumes where the previous sweep stopped, wrapping around at the end.
func (b *Bolt) sweep(now time.Time, limit int) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		for _, name := range sweptBuckets() {
			bk := tx.Bucket([]byte(name))
			c := bk.Cursor()
			var expired [][]byte
			k, v := c.First()
			if from := b.sweepFrom[name]; from != nil {
				k, v = c.Seek(from)
			}
			n := 0
			for ; k != nil && n < limit; k, v = c.Next() {
				n++
				var e boltExpiry
				if err := json.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("store: bolt: decode %s record: %w", name, err)
				}
				if !live(e.ExpiresAt, now) {
					expired = append(expired, bytes.Clone(k))
				}
			}
			// Resume at the first unexamined key, or start over.
			b.sweepFrom[name] = bytes.Clone(k)
			for _, k := range expired {
				if err := bk.Delete(k); err != nil {
					return fmt.Errorf("store: bolt: delete %s record: %w", name, err)
				}
			}
		}
		return nil
	})
}

var _ Store = (*Bolt)(nil)
