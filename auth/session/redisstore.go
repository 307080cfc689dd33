package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/sessions"
	"github.com/redis/go-redis/v9"
)

// ErrUnavailable is wrapped by Load, Save and Check errors when the redis
// store cannot be reached. Such a request is not signed in (fail closed),
// but the cause is ours, not the browser's.
var ErrUnavailable = errors.New("session: store unavailable")

// redisStore keeps session data in redis. The cookie holds only a random
// 32-byte id, sealed like a cookie session; the record lives under
// prefix+hex(sha256(id)), so neither a redis dump nor the key names reveal
// a usable cookie. The record itself is sealed too (with the key name as
// securecookie name, so records cannot be swapped between ids).
type redisStore struct {
	client *redis.Client
	prefix string
	keys   *keyring
	opts   sessions.Options
}

func newRedisStore(rawURL, prefix string, keys *keyring, opts sessions.Options) (*redisStore, error) {
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("session: store.url %q: %w", redactURL(rawURL), err)
	}
	return &redisStore{client: redis.NewClient(ro), prefix: prefix, keys: keys, opts: opts}, nil
}

func (s *redisStore) options() sessions.Options { return s.opts }

func (s *redisStore) key(id []byte) string {
	sum := sha256.Sum256(id)
	return s.prefix + hex.EncodeToString(sum[:])
}

func (s *redisStore) ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Close closes the redis client.
func (s *redisStore) Close() error { return s.client.Close() }

// Get returns the request's session, without per-request caching.
func (s *redisStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return s.New(r, name)
}

// New looks up the record named by r's session cookie. Without a cookie it
// returns a new session and no error; a bad cookie or a missing record
// gives a new session and the reason; a redis failure wraps ErrUnavailable.
func (s *redisStore) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	*sess.Options = s.opts
	sess.IsNew = true
	id, key, val, err := s.fetch(r, name)
	if errors.Is(err, errNoCookie) {
		return sess, nil
	}
	if err != nil {
		return sess, err
	}
	b, err := s.keys.open(key, val)
	if err != nil {
		return sess, fmt.Errorf("session record: %w", err)
	}
	sess.ID = base64.RawURLEncoding.EncodeToString(id)
	sess.Values[dataKey{}] = b
	sess.IsNew = false
	return sess, nil
}

// fetch opens the id in r's session cookie and reads its record from
// redis, on every call: a record deleted at sign-out is gone at once. It
// returns the id, the record's key (the name the record is sealed for) and
// the sealed record; errNoCookie when there is no session cookie.
func (s *redisStore) fetch(r *http.Request, name string) (id []byte, key, record string, err error) {
	var jar requestCookies
	jar.scan(r, name)
	if !jar.hasBase {
		return nil, "", "", errNoCookie
	}
	id, err = s.keys.open(name, jar.base)
	if err != nil {
		return nil, "", "", err
	}
	if len(id) != 32 {
		return nil, "", "", errors.New("malformed session id")
	}
	key = s.key(id)
	record, err = s.client.Get(r.Context(), key).Result()
	if errors.Is(err, redis.Nil) {
		return nil, "", "", errors.New("no session record (signed out or expired)")
	}
	if err != nil {
		return nil, "", "", fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return id, key, record, nil
}

// sealed fills v with the request's record, fetched from redis afresh, and
// the key it is sealed for.
func (s *redisStore) sealed(r *http.Request, name string, v *sealedValue) error {
	_, key, record, err := s.fetch(r, name)
	if err != nil {
		return err
	}
	v.name, v.n, v.parts[0] = key, 1, record
	return nil
}

// Save stores the record with a TTL of Options.MaxAge and sets the id
// cookie; a new id is made when sess.ID is empty. MaxAge < 0 deletes the
// record and expires the cookies. Chunk cookies of a cookie-store session
// (before a switch of store type) are expired either way.
func (s *redisStore) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	name := sess.Name()
	if sess.Options.MaxAge < 0 {
		setCookie(w, name, "", sess.Options)
		expireChunks(w, r, name, 0, sess.Options)
		if sess.ID == "" {
			return nil
		}
		id, err := base64.RawURLEncoding.DecodeString(sess.ID)
		if err != nil {
			return fmt.Errorf("session: clear: malformed id")
		}
		if err := s.client.Del(r.Context(), s.key(id)).Err(); err != nil {
			return fmt.Errorf("%w: delete: %v", ErrUnavailable, err)
		}
		return nil
	}
	b, ok := sess.Values[dataKey{}].([]byte)
	if !ok {
		return errors.New("session: save: no session data")
	}
	if sess.Options.MaxAge == 0 {
		return errors.New("session: save: no lifetime")
	}
	var id []byte
	if sess.ID != "" {
		var err error
		if id, err = base64.RawURLEncoding.DecodeString(sess.ID); err != nil || len(id) != 32 {
			return fmt.Errorf("session: save: malformed id")
		}
	} else {
		id = make([]byte, 32)
		rand.Read(id) // never fails (Go ≥ 1.24 crashes the program instead)
		sess.ID = base64.RawURLEncoding.EncodeToString(id)
	}
	key := s.key(id)
	record, err := s.keys.seal(key, b)
	if err != nil {
		return err
	}
	cookie, err := s.keys.seal(name, id)
	if err != nil {
		return err
	}
	ttl := time.Duration(sess.Options.MaxAge) * time.Second
	if err := s.client.Set(r.Context(), key, record, ttl).Err(); err != nil {
		return fmt.Errorf("%w: save: %v", ErrUnavailable, err)
	}
	setCookie(w, name, cookie, sess.Options)
	expireChunks(w, r, name, 0, sess.Options)
	return nil
}

var _ sessions.Store = (*redisStore)(nil)
