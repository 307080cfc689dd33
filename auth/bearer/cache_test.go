package bearer_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/bearer"
)

// introspected sets an active answer for tok at op expiring at exp.
func introspected(op *fakeOP, tok string, exp time.Time) {
	op.setToken(tok, map[string]any{"active": true, "sub": "user-1", "aud": []string{apiAudience}, "exp": float64(exp.Unix())})
}

// TestCacheHit: a verified token is not introspected again, yet each call
// checks its own audiences; failures are not cached.
func TestCacheHit(t *testing.T) {
	clk := newClock()
	op := newFakeOP(t)
	v := newVerifier(t, op.URL(), op.srv.Client(), clk, nil)
	introspected(op, "tok-a", clk.Now().Add(time.Hour))

	for i := range 3 {
		if _, err := v.VerifyBearer(t.Context(), "tok-a", []string{apiAudience}); err != nil {
			t.Fatalf("VerifyBearer(tok-a) #%d = %v", i, err)
		}
	}
	if got := op.count("/introspect"); got != 1 {
		t.Errorf("introspection requests for 3 uses = %d, want 1", got)
	}
	// Cached, but not for this route's audiences.
	if _, err := v.VerifyBearer(t.Context(), "tok-a", []string{"https://other.example.com"}); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("VerifyBearer(tok-a, other audience) = %v, want ErrInvalidToken", err)
	}
	if got := op.count("/introspect"); got != 1 {
		t.Errorf("introspection requests after an audience mismatch = %d, want 1", got)
	}

	// Refused tokens are asked about every time (no negative caching).
	for range 2 {
		if _, err := v.VerifyBearer(t.Context(), "tok-unknown", []string{apiAudience}); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("VerifyBearer(unknown) = %v, want ErrInvalidToken", err)
		}
	}
	if got := op.count("/introspect"); got != 3 {
		t.Errorf("introspection requests after 2 refusals = %d, want 3", got)
	}
	// ... so a token the issuer starts accepting works at once.
	introspected(op, "tok-unknown", clk.Now().Add(time.Hour))
	if _, err := v.VerifyBearer(t.Context(), "tok-unknown", []string{apiAudience}); err != nil {
		t.Errorf("VerifyBearer(now known) = %v, want nil", err)
	}
}

// TestCacheExpiry: an entry lives until the token's exp or CacheTTL,
// whichever is first, on the injected clock.
func TestCacheExpiry(t *testing.T) {
	tests := []struct {
		name     string
		tokenTTL time.Duration
		cacheTTL time.Duration
		hitUntil time.Duration // still cached just before this
	}{
		{"exp before CacheTTL", 10 * time.Second, 30 * time.Second, 10 * time.Second},
		{"CacheTTL before exp", time.Hour, 30 * time.Second, 30 * time.Second},
		{"short CacheTTL", time.Hour, 2 * time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			op := newFakeOP(t)
			v := newVerifier(t, op.URL(), op.srv.Client(), clk, func(o *bearer.Options) { o.CacheTTL = tt.cacheTTL })
			introspected(op, "tok", clk.Now().Add(tt.tokenTTL))
			verify := func(wantCalls int, wantOK bool) {
				t.Helper()
				_, err := v.VerifyBearer(t.Context(), "tok", []string{apiAudience})
				if (err == nil) != wantOK {
					t.Errorf("VerifyBearer at %s = %v, want ok=%v", clk.Now().Sub(t0), err, wantOK)
				}
				if got := op.count("/introspect"); got != wantCalls {
					t.Errorf("introspection requests at %s = %d, want %d", clk.Now().Sub(t0), got, wantCalls)
				}
			}
			verify(1, true)
			clk.Advance(tt.hitUntil - time.Second)
			verify(1, true)
			clk.Advance(time.Second)
			// Expired from the cache: asked again; the issuer's answer
			// (same exp) then decides.
			verify(2, tt.tokenTTL > tt.hitUntil)
		})
	}
}

// TestCacheJWTExpiry: a cached JWT stops working at its exp (plus leeway,
// as when it is verified afresh), although entries may live 5 minutes.
func TestCacheJWTExpiry(t *testing.T) {
	clk := newClock()
	rs := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey()}
	op := newFakeOP(t, rs)
	v := newVerifier(t, op.URL(), op.srv.Client(), clk, nil)
	raw := rs.sign(t, with(op.claims(clk), "exp", clk.Now().Add(time.Minute).Unix()))
	if _, err := v.VerifyBearer(t.Context(), raw, auds); err != nil {
		t.Fatalf("VerifyBearer(fresh) = %v", err)
	}
	clk.Advance(time.Minute + 20*time.Second) // past exp, within leeway
	if _, err := v.VerifyBearer(t.Context(), raw, auds); err != nil {
		t.Errorf("VerifyBearer(20s after exp) = %v, want nil (leeway 30s)", err)
	}
	clk.Advance(11 * time.Second)
	if _, err := v.VerifyBearer(t.Context(), raw, auds); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("VerifyBearer(31s after exp) = %v, want ErrInvalidToken", err)
	}
}

// TestCacheBounded: a full cache evicts; it never grows past CacheSize, so
// some of three tokens in a cache of two are asked about again.
func TestCacheBounded(t *testing.T) {
	clk := newClock()
	op := newFakeOP(t)
	v := newVerifier(t, op.URL(), op.srv.Client(), clk, func(o *bearer.Options) { o.CacheSize = 2 })
	toks := []string{"tok-1", "tok-2", "tok-3"}
	for _, tok := range toks {
		introspected(op, tok, clk.Now().Add(time.Hour))
	}
	for range 2 {
		for _, tok := range toks {
			if _, err := v.VerifyBearer(t.Context(), tok, []string{apiAudience}); err != nil {
				t.Fatalf("VerifyBearer(%s) = %v", tok, err)
			}
		}
	}
	if got := op.count("/introspect"); got < 4 || got > 6 {
		t.Errorf("introspection requests for 3 tokens twice in a cache of 2 = %d, want 4..6", got)
	}

	// Off: every use is a request.
	op2 := newFakeOP(t)
	off := newVerifier(t, op2.URL(), op2.srv.Client(), clk, func(o *bearer.Options) { o.CacheSize = -1 })
	introspected(op2, "tok", clk.Now().Add(time.Hour))
	for range 3 {
		if _, err := off.VerifyBearer(t.Context(), "tok", []string{apiAudience}); err != nil {
			t.Fatal(err)
		}
	}
	if got := op2.count("/introspect"); got != 3 {
		t.Errorf("introspection requests with the cache off = %d, want 3", got)
	}
}

// TestConcurrentVerify: many goroutines verifying the same and different
// tokens at once (run with -race), with a roomy cache and with one that
// keeps evicting. Concurrent misses for one token are merged: whether a
// caller waits for the first or finds its result in the cache, the issuer
// is asked once.
func TestConcurrentVerify(t *testing.T) {
	for _, size := range []int{0, 3} {
		t.Run(fmt.Sprintf("CacheSize=%d", size), func(t *testing.T) {
			clk := newClock()
			rs := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey()}
			op := newFakeOP(t, rs)
			v := newVerifier(t, op.URL(), op.srv.Client(), clk, func(o *bearer.Options) { o.CacheSize = size })
			introspected(op, "shared", clk.Now().Add(time.Hour))
			var jwts []string
			for i := range 4 {
				jwts = append(jwts, rs.sign(t, with(op.claims(clk), "sub", fmt.Sprintf("user-%d", i))))
			}
			for i := range 20 {
				introspected(op, fmt.Sprintf("own-%d", i), clk.Now().Add(time.Hour))
			}

			var wg sync.WaitGroup
			errs := make(chan error, 100)
			for i := range 20 {
				wg.Go(func() {
					for _, tok := range []string{"shared", fmt.Sprintf("own-%d", i), jwts[i%len(jwts)], "shared"} {
						id, err := v.VerifyBearer(t.Context(), tok, []string{apiAudience})
						if err != nil {
							errs <- fmt.Errorf("VerifyBearer(%d) = %w", i, err)
							continue
						}
						id.User = "changed" // each caller owns its copy
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if size == 0 {
				if got := op.count("/introspect"); got != 21 {
					t.Errorf("introspection requests = %d, want 21 (shared once, 20 own)", got)
				}
			}
		})
	}
}
