package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store/storetest"
)

func TestRedis(t *testing.T) {
	url := authtest.Redis(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		r, err := store.OpenRedis(t.Context(), url, t.Name()+":", store.Options{})
		if err != nil {
			t.Fatalf("OpenRedis() = %v, want nil", err)
		}
		return r
	})
}

// TestRedisKeys checks that every key lies under the prefix and that keys
// expire a little after their record, never before.
func TestRedisKeys(t *testing.T) {
	ctx := t.Context()
	url := authtest.Redis(t)
	s, err := store.OpenRedis(ctx, url, "p1:", store.Options{})
	if err != nil {
		t.Fatalf("OpenRedis() = %v, want nil", err)
	}
	defer s.Close()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()

	now := time.Now()
	exp := now.Add(time.Hour)
	rt := store.RefreshToken{ID: "rt-1", FamilyID: "fam-1", ExpiresAt: exp}
	steps := []error{
		s.CreateCode(ctx, store.Code{ID: "code-1", ExpiresAt: exp}),
		s.CreateRefresh(ctx, rt),
		s.Revoke(ctx, "jti-1", exp),
		s.PutKey(ctx, store.Key{ID: "k1", CreatedAt: now}),
		s.PutLoginSession(ctx, store.LoginSession{ID: "ls-1", ExpiresAt: exp}),
		s.PutAuthRequest(ctx, store.AuthRequest{ID: "ar-1", ExpiresAt: exp}),
	}
	_, err = s.RecordFailure(ctx, "user:alice", now, time.Hour)
	steps = append(steps, err)
	_, err = s.RotateRefresh(ctx, rt.ID, store.RefreshToken{ID: "rt-2", FamilyID: "fam-1", ExpiresAt: exp}, now)
	steps = append(steps, err)
	_, err = s.RotateRefresh(ctx, rt.ID, store.RefreshToken{ID: "rt-3", FamilyID: "fam-1", ExpiresAt: exp}, now)
	if !errors.Is(err, store.ErrReused) {
		steps = append(steps, fmt.Errorf("second rotation = %v, want ErrReused", err))
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d = %v, want nil", i, err)
		}
	}

	all, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"p1:code:code-1": true, "p1:refresh:rt-1": true, "p1:refresh:rt-2": true,
		"p1:family:fam-1": true, "p1:revoked:jti-1": true, "p1:revoked:fam-1": true, "p1:keys": true,
		"p1:login:ls-1": true, "p1:authreq:ar-1": true, "p1:throttle:user:alice": true}
	for _, k := range all {
		if !want[k] {
			t.Errorf("unexpected key %q in Redis", k)
		}
		delete(want, k)
	}
	for k := range want {
		t.Errorf("key %q missing in Redis", k)
	}

	for _, k := range all {
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if k == "p1:keys" {
			if ttl >= 0 {
				t.Errorf("PTTL(%s) = %v, want no expiry", k, ttl)
			}
			continue
		}
		// Never before the record's expiry, at most a couple of minutes after.
		if until := time.Until(exp); ttl < until || ttl > until+2*time.Minute {
			t.Errorf("PTTL(%s) = %v, want between %v and %v", k, ttl, until, until+2*time.Minute)
		}
	}
}

func TestOpenRedisErrors(t *testing.T) {
	url := authtest.Redis(t)
	addr := strings.TrimPrefix(strings.TrimSuffix(url, "/0"), "redis://")
	closed := fmt.Sprintf("127.0.0.1:%d", authtest.FreePort(t))
	tests := []struct {
		name, url, want string
	}{
		{"nobody listening", "redis://u:hunter2@" + closed + "/0", `ping "redis://u:xxxxx@` + closed + `/0"`},
		{"password the server does not want", "redis://u:hunter2@" + addr + "/0", `ping "redis://u:xxxxx@` + addr + `/0"`},
		{"bad scheme", "http://u:hunter2@" + addr, `unsupported scheme "http"`},
		{"bad database", "redis://u:hunter2@" + addr + "/x", `"redis://u:xxxxx@` + addr + `/x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := store.OpenRedis(t.Context(), tt.url, "", store.Options{})
			if err == nil {
				s.Close()
				t.Fatalf("OpenRedis(%s) = nil error, want one containing %q", tt.name, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("OpenRedis(%s) = %q, want it to contain %q", tt.name, err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("OpenRedis(%s) = %q, leaks the password", tt.name, err)
			}
		})
	}
}

func TestOpenRedisConfig(t *testing.T) {
	ctx := t.Context()
	url := authtest.Redis(t)
	s, err := store.Open(ctx, store.Config{Type: "redis", URL: url}, store.Options{})
	if err != nil {
		t.Fatalf("Open(redis) = %v, want nil", err)
	}
	defer s.Close()
	if _, ok := s.(*store.Redis); !ok {
		t.Fatalf("Open(redis) = %T, want *store.Redis", s)
	}
	// The default prefix is used.
	if err := s.PutKey(ctx, store.Key{ID: "k1"}); err != nil {
		t.Fatal(err)
	}
	opts, _ := redis.ParseURL(url)
	c := redis.NewClient(opts)
	defer c.Close()
	if n, err := c.Exists(ctx, store.DefaultKeyPrefix+"keys").Result(); err != nil || n != 1 {
		t.Errorf("EXISTS %skeys = %d, %v, want 1", store.DefaultKeyPrefix, n, err)
	}
}
