package issuer

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

// verifyN calls VerifyAccessToken n times and returns the last result.
func verifyN(t *testing.T, i *Issuer, tok string, n int) (*AccessToken, error) {
	t.Helper()
	var at *AccessToken
	var err error
	for range n {
		at, err = i.VerifyAccessToken(t.Context(), tok)
	}
	return at, err
}

// TestVerifyCacheKeepsEveryCheck verifies the same tokens repeatedly (the
// second call on is served from the verified-token cache) and checks that
// whatever can change between requests still takes effect on the very
// next one: revocation of the token and of its family, expiry, removal of
// the client or the user. Tampered copies never pass.
func TestVerifyCacheKeepsEveryCheck(t *testing.T) {
	e := newEnv(t, nil)
	userToken := func() (at, rt string) {
		t.Helper()
		code, verifier := e.codeFor("openid", "email", "offline_access")
		_, tok := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
		return tok["access_token"].(string), tok["refresh_token"].(string)
	}
	serviceToken := func() string {
		t.Helper()
		_, tok := e.postForm(pathToken, "other", otherSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"api.read"}})
		return tok["access_token"].(string)
	}
	read := func(tok string) (AccessToken, error) {
		var got AccessToken
		err := e.iss.ReadAccessToken(t.Context(), tok, func(at AccessToken) error { got = at; return nil })
		return got, err
	}
	mustPass := func(what, tok string) {
		t.Helper()
		at, err := verifyN(t, e.iss, tok, 3)
		if err != nil {
			t.Fatalf("VerifyAccessToken(%s) = %v, want it accepted", what, err)
		}
		rd, err := read(tok)
		if err != nil {
			t.Fatalf("ReadAccessToken(%s) = %v, want it accepted", what, err)
		}
		if rd.Subject != at.Subject || rd.ClientID != at.ClientID || !rd.Expiry.Equal(at.Expiry) ||
			!slices.Equal(rd.Audience, at.Audience) || len(rd.Claims) != len(at.Claims) || rd.Claims["jti"] != at.Claims["jti"] {
			t.Errorf("ReadAccessToken(%s) = %+v, want what VerifyAccessToken gives: %+v", what, rd, at)
		}
	}
	mustFail := func(what, tok string) {
		t.Helper()
		if _, err := e.iss.VerifyAccessToken(t.Context(), tok); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("VerifyAccessToken(%s) = %v, want ErrInvalidToken on the very next call", what, err)
		}
		if _, err := read(tok); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("ReadAccessToken(%s) = %v, want ErrInvalidToken on the very next call", what, err)
		}
	}

	t.Run("results are private copies", func(t *testing.T) {
		at, _ := userToken()
		for range 2 {
			got, err := e.iss.VerifyAccessToken(t.Context(), at)
			if err != nil {
				t.Fatal(err)
			}
			got.Claims["email"] = "mallory@example.com"
			got.Claims["sub"] = "mallory"
			got.Audience[0] = "https://evil.example.com"
		}
		got, err := e.iss.VerifyAccessToken(t.Context(), at)
		if err != nil {
			t.Fatal(err)
		}
		if got.Claims["email"] != "alice@example.com" || got.Claims["sub"] != "alice" || slices.Contains(got.Audience, "https://evil.example.com") {
			t.Errorf("VerifyAccessToken after callers changed earlier results = %v %v, want the token's own claims", got.Claims, got.Audience)
		}
	})

	t.Run("tampered copies never pass", func(t *testing.T) {
		at := serviceToken()
		mustPass("a good token", at)
		before := e.iss.verified.len()
		for _, pos := range []int{0, len(at) / 2, len(at) - 2} {
			b := []byte(at)
			if b[pos] == 'A' {
				b[pos] = 'B'
			} else {
				b[pos] = 'A'
			}
			mustFail(fmt.Sprintf("token changed at byte %d", pos), string(b))
		}
		if n := e.iss.verified.len(); n != before {
			t.Errorf("cache entries after tampered tokens = %d, want %d (only verified tokens are cached)", n, before)
		}
	})

	t.Run("revoking the token", func(t *testing.T) {
		at := serviceToken()
		mustPass("a client_credentials token", at)
		e.postForm(pathRevoke, "other", otherSecret, url.Values{"token": {at}})
		mustFail("a revoked token", at)
	})

	t.Run("revoking the family", func(t *testing.T) {
		at, rt := userToken()
		mustPass("a user's token", at)
		e.postForm(pathRevoke, "app", appSecret, url.Values{"token": {rt}})
		mustFail("an access token of a revoked refresh family", at)
	})

	t.Run("expiry", func(t *testing.T) {
		at := serviceToken()
		exp := time.Unix(int64(decodeClaims(t, at)["exp"].(float64)), 0)
		e.clock.Advance(exp.Sub(e.clock.Now()) - time.Second)
		mustPass("a token one second before exp", at)
		e.clock.Advance(time.Second)
		mustFail("a token at exp", at)
	})

	t.Run("client or user removed by a reload", func(t *testing.T) {
		svc := serviceToken()
		at, _ := userToken()
		mustPass("a client_credentials token", svc)
		mustPass("a user's token", at)
		cfg := e.cfg
		cfg.Clients = slices.DeleteFunc(slices.Clone(cfg.Clients), func(c ClientConfig) bool { return c.ID == "other" })
		cfg.Users = slices.DeleteFunc(slices.Clone(cfg.Users), func(u UserConfig) bool { return u.Username == "alice" })
		if err := e.iss.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		mustFail("a token of a removed client", svc)
		mustFail("a token of a removed user", at)
	})
}

// TestVerifyCacheRevocationOnStores runs the revocation check against
// every issuer store, since it is the one lookup every bearer request
// makes: a token revoked through one Issuer is refused on the next call
// of another Issuer sharing the store (another replica), although both
// had it cached.
func TestVerifyCacheRevocationOnStores(t *testing.T) {
	redisURL := authtest.Redis(t)
	stores := []struct {
		name string
		open func(t *testing.T, now func() time.Time) (store.Store, error)
	}{
		{"memory", func(t *testing.T, now func() time.Time) (store.Store, error) {
			return store.NewMemory(store.Options{Now: now}), nil
		}},
		{"bolt", func(t *testing.T, now func() time.Time) (store.Store, error) {
			return store.OpenBolt(filepath.Join(t.TempDir(), "issuer.db"), store.Options{Now: now})
		}},
		{"redis", func(t *testing.T, now func() time.Time) (store.Store, error) {
			return store.OpenRedis(t.Context(), redisURL, t.Name()+":", store.Options{Now: now})
		}},
	}
	for _, tt := range stores {
		t.Run(tt.name, func(t *testing.T) {
			clk := authtest.NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
			st, err := tt.open(t, clk.Now)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			a := newEnvWith(t, testConfig(), st, clk)
			pub, _ := url.Parse("https://portcullis.example.com")
			b, err := New(t.Context(), a.cfg, Options{PublicURL: pub, Store: st, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			_, tok := a.postForm(pathToken, "other", otherSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"api.read"}})
			at := tok["access_token"].(string)
			for _, iss := range []*Issuer{a.iss, b} {
				if _, err := verifyN(t, iss, at, 2); err != nil {
					t.Fatalf("VerifyAccessToken = %v, want it accepted", err)
				}
			}
			a.postForm(pathRevoke, "other", otherSecret, url.Values{"token": {at}})
			for i, iss := range []*Issuer{a.iss, b} {
				if _, err := iss.VerifyAccessToken(t.Context(), at); !errors.Is(err, auth.ErrInvalidToken) {
					t.Errorf("replica %d: VerifyAccessToken(revoked) = %v, want ErrInvalidToken", i, err)
				}
			}
		})
	}
}

func TestVerifiedCacheBounds(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	key := func(i int) string { return fmt.Sprint("token-", i) }
	c := newVerifiedCache(4, time.Minute)
	for i := range 50 {
		c.put(key(i), verified{expires: now.Add(time.Hour)}, now)
		if c.len() > 4 {
			t.Fatalf("len() after %d puts = %d, want at most 4", i+1, c.len())
		}
	}
	tests := []struct {
		name    string
		expires time.Duration // token exp after now
		at      time.Duration
		hit     bool
	}{
		{"fresh", time.Hour, 0, true},
		{"max age", time.Hour, time.Minute, false},
		{"just before exp", 10 * time.Second, 10*time.Second - 1, true},
		{"at exp", 10 * time.Second, 10 * time.Second, false},
		{"expired is not stored", -time.Second, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newVerifiedCache(4, time.Minute)
			c.put(key(1), verified{expires: now.Add(tt.expires)}, now)
			if _, ok := c.get(key(1), now.Add(tt.at)); ok != tt.hit {
				t.Errorf("get(at now+%s) hit = %v, want %v", tt.at, ok, tt.hit)
			}
		})
	}
}

// BenchmarkVerifyAccessToken measures the bearer check of the built-in
// issuer's tokens: uncached (RS256 signature and claims decoded every
// time) and cached, where what remains is hashing the token, the time
// checks and the revocation lookups in each store (jti and refresh
// family: a user's token from the code flow).
func BenchmarkVerifyAccessToken(b *testing.B) {
	redisURL := authtest.Redis(b)
	stores := []struct {
		name string
		open func(b *testing.B, now func() time.Time) (store.Store, error)
	}{
		{"memory", func(b *testing.B, now func() time.Time) (store.Store, error) {
			return store.NewMemory(store.Options{Now: now}), nil
		}},
		{"bolt", func(b *testing.B, now func() time.Time) (store.Store, error) {
			return store.OpenBolt(filepath.Join(b.TempDir(), "issuer.db"), store.Options{Now: now})
		}},
		{"redis", func(b *testing.B, now func() time.Time) (store.Store, error) {
			return store.OpenRedis(b.Context(), redisURL, b.Name()+":", store.Options{Now: now})
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			clk := authtest.NewClock(time.Now())
			s, err := st.open(b, clk.Now)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			k := testKeys()["RS256"]
			k.CreatedAt = clk.Now()
			if err := s.PutKey(b.Context(), k); err != nil {
				b.Fatal(err)
			}
			pub, _ := url.Parse("https://portcullis.example.com")
			cfg := testConfig()
			cfg.URL = "https://portcullis.example.com/oauth2/issuer"
			iss, err := New(b.Context(), cfg, Options{PublicURL: pub, Store: s, Now: clk.Now})
			if err != nil {
				b.Fatal(err)
			}
			defer iss.Close()
			st := iss.state.Load()
			raw, _, err := iss.mintAccess(b.Context(), st, grantInfo{
				client: st.clients["app"], subject: "alice", user: &cfg.Users[0],
				scopes: []string{"openid", "email", "profile", "groups"}, authTime: clk.Now(), familyID: "family-1",
			})
			if err != nil {
				b.Fatal(err)
			}
			for _, mode := range []string{"uncached", "cached"} {
				b.Run(mode, func(b *testing.B) {
					if mode == "uncached" {
						iss.verified = newVerifiedCache(1, 0) // stores nothing
					} else {
						iss.verified = newVerifiedCache(verifiedMaxEntries, verifiedMaxAge)
					}
					b.ReportAllocs()
					for b.Loop() {
						if _, err := iss.VerifyAccessToken(b.Context(), raw); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// Removing a signing key from the store (an emergency) ends its tokens once
// the key list is re-read, cached or not.
func TestVerifyCacheHonoursKeyRemoval(t *testing.T) {
	e := newEnv(t, nil)
	_, tok := e.postForm(pathToken, "other", otherSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"api.read"}})
	at := tok["access_token"].(string)
	if _, err := e.iss.VerifyAccessToken(t.Context(), at); err != nil {
		t.Fatalf("fresh token refused: %v", err)
	}
	keys, _ := e.st.ListKeys(t.Context())
	for _, k := range keys {
		e.st.DeleteKey(t.Context(), k.ID)
	}
	e.clock.Advance(11 * time.Second)
	e.iss.keys.mu.Lock()
	err := e.iss.keys.load(t.Context(), e.clock.Now())
	e.iss.keys.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.iss.VerifyAccessToken(t.Context(), at); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("token of a removed key = %v, want ErrInvalidToken", err)
	}
}
