package bearer_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/bearer"
)

var auds = []string{clientID, apiAudience}

// TestVerifyBearerJWT checks a well-formed JWT of the external issuer and
// the Identity made of it.
func TestVerifyBearerJWT(t *testing.T) {
	clk := newClock()
	rs := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey()}
	op := newFakeOP(t, rs)
	v := newVerifier(t, op.URL(), op.srv.Client(), clk, nil)

	raw := rs.sign(t, op.claims(clk))
	id, err := v.VerifyBearer(t.Context(), raw, auds)
	if err != nil {
		t.Fatalf("VerifyBearer(good) = %v, want nil", err)
	}
	want := auth.Identity{
		Issuer: op.URL(), Subject: "user-1", User: "alice", Email: "alice@example.com",
		PreferredUsername: "alice", Groups: []string{"admins", "dev"},
		Expiry: clk.Now().Add(10 * time.Minute), Method: auth.MethodBearer,
	}
	if id.Issuer != want.Issuer || id.Subject != want.Subject || id.User != want.User || id.Email != want.Email ||
		id.PreferredUsername != want.PreferredUsername || !slices.Equal(id.Groups, want.Groups) ||
		!id.Expiry.Equal(want.Expiry) || id.Method != want.Method {
		t.Errorf("VerifyBearer(good) = %+v, want %+v", *id, want)
	}
	if id.AccessToken.Reveal() != raw {
		t.Errorf("VerifyBearer(good).AccessToken is not the token")
	}
	if id.IDToken != "" {
		t.Errorf("VerifyBearer(good).IDToken = %v, want empty", id.IDToken)
	}

	// The returned identity is the caller's: changing it changes no later answer.
	id.User = "mallory"
	id2, err := v.VerifyBearer(t.Context(), raw, auds)
	if err != nil || id2.User != "alice" {
		t.Errorf("VerifyBearer(good) again = %v, %v; want alice, nil", id2, err)
	}
}

// TestVerifyBearerBadJWT: every bad token is ErrInvalidToken, with a reason
// that tells the cases apart in the log.
func TestVerifyBearerBadJWT(t *testing.T) {
	clk := newClock()
	rs := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey()}
	es := signingKey{kid: "es1", alg: jose.ES256, priv: newEC(t)}
	unpublished := signingKey{kid: "rs-unknown", alg: jose.RS256, priv: rsaKey2()}
	sameKidOtherKey := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey2()}
	op := newFakeOP(t, rs, es)
	// The issuer publishes an ES256 key, but we accept RS256 only.
	v := newVerifier(t, op.URL(), op.srv.Client(), clk, func(o *bearer.Options) { o.Algorithms = []string{"RS256"} })
	now := clk.Now()
	good := op.claims(clk)

	pubDER, err := x509.MarshalPKIXPublicKey(rsaKey().Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	tamper := func(raw string) string {
		parts := strings.Split(raw, ".")
		sig := []byte(parts[2])
		i := len(sig) / 2
		if sig[i] == 'A' {
			sig[i] = 'B'
		} else {
			sig[i] = 'A'
		}
		return parts[0] + "." + parts[1] + "." + string(sig)
	}
	swapPayload := func(raw string, claims map[string]any) string {
		other := rs.sign(t, claims)
		p, o := strings.Split(raw, "."), strings.Split(other, ".")
		return p[0] + "." + o[1] + "." + p[2]
	}

	tests := []struct {
		name   string
		raw    string
		auds   []string
		reason string
	}{
		{"empty", "", auds, "empty"},
		{"not b64token", "abc def", auds, "b64token"},
		{"quote", `abc"def`, auds, "b64token"},
		{"too long", strings.Repeat("a", 20000), auds, "bytes long"},
		{"garbage jwt", "a.b.c", auds, "malformed"},
		{"alg none", unsigned(map[string]any{"alg": "none", "kid": "rs1"}, good), auds, "malformed"},
		{"alg none with signature", unsigned(map[string]any{"alg": "none"}, good) + "AAAA", auds, "malformed"},
		{"HS256 with the public key as secret", signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: pubPEM}, good), auds, "unexpected signature algorithm"},
		{"HS256 with the client secret", signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: []byte(clientSecret)}, good), auds, "unexpected signature algorithm"},
		{"published ES256 key, alg not allowed", es.sign(t, good), auds, "unexpected signature algorithm"},
		{"unknown kid", unpublished.sign(t, good), auds, "verify"},
		{"known kid, other key", sameKidOtherKey.sign(t, good), auds, "verify"},
		{"bad signature", tamper(rs.sign(t, good)), auds, "verify"},
		{"payload swapped", swapPayload(rs.sign(t, good), with(good, "sub", "admin")), auds, "verify"},
		{"expired", rs.sign(t, with(good, "exp", now.Add(-time.Hour).Unix())), auds, "expired"},
		{"expired beyond leeway", rs.sign(t, with(good, "exp", now.Add(-31*time.Second).Unix())), auds, "expired"},
		{"exp missing", rs.sign(t, with(good, "exp", nil)), auds, "exp is missing"},
		{"exp zero", rs.sign(t, with(good, "exp", 0)), auds, "expired"},
		{"nbf in the future", rs.sign(t, with(good, "nbf", now.Add(time.Minute).Unix())), auds, "not valid before"},
		{"nbf far in the future", rs.sign(t, with(good, "nbf", now.Add(time.Hour).Unix())), auds, "nbf"},
		{"nbf beyond leeway", rs.sign(t, with(good, "nbf", now.Add(31*time.Second).Unix())), auds, "not valid before"},
		{"wrong iss", rs.sign(t, with(good, "iss", "https://evil.example.com")), auds, "different provider"},
		{"iss with trailing slash", rs.sign(t, with(good, "iss", op.URL()+"/")), auds, "different provider"},
		{"iss missing", rs.sign(t, with(good, "iss", nil)), auds, "different provider"},
		{"wrong aud", rs.sign(t, with(good, "aud", "https://elsewhere.example.com")), auds, "contains none of"},
		{"aud list without ours", rs.sign(t, with(good, "aud", []string{"a", "b"})), auds, "contains none of"},
		{"aud missing", rs.sign(t, with(good, "aud", nil)), auds, "aud is missing"},
		{"good token, route accepts other audiences", rs.sign(t, good), []string{"https://other-api.example.com"}, "contains none of"},
		{"good token, no audiences", rs.sign(t, good), nil, "no audience"},
		{"sub missing", rs.sign(t, with(good, "sub", nil)), auds, "sub is missing"},
		{"logout token", rs.sign(t, with(good, "events", map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}})), auds, "logout token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.VerifyBearer(t.Context(), tt.raw, tt.auds)
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("VerifyBearer(%s) = %v, %v; want ErrInvalidToken", tt.name, id, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("VerifyBearer(%s) = %q, want a reason containing %q", tt.name, err, tt.reason)
			}
			if tt.raw != "" && len(tt.raw) > 20 && strings.Contains(err.Error(), tt.raw) {
				t.Errorf("VerifyBearer(%s): the error contains the token", tt.name)
			}
			if errors.Is(err, bearer.ErrUnavailable) {
				t.Errorf("VerifyBearer(%s) = %v: blames the issuer, want the token", tt.name, err)
			}
		})
	}
}

// TestVerifyBearerLeeway: exp and nbf tolerate Options.Leeway, no more.
func TestVerifyBearerLeeway(t *testing.T) {
	clk := newClock()
	rs := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey()}
	op := newFakeOP(t, rs)
	now := clk.Now()
	tests := []struct {
		name   string
		leeway time.Duration
		claims map[string]any
		ok     bool
	}{
		{"exp 10s ago, default leeway", 0, with(op.claims(clk), "exp", now.Add(-10*time.Second).Unix()), true},
		{"exp 29s ago, default leeway", 0, with(op.claims(clk), "exp", now.Add(-29*time.Second).Unix()), true},
		{"exp 10s ago, no leeway", -1, with(op.claims(clk), "exp", now.Add(-10*time.Second).Unix()), false},
		{"exp 10s ago, 5s leeway", 5 * time.Second, with(op.claims(clk), "exp", now.Add(-10*time.Second).Unix()), false},
		{"nbf in 10s, default leeway", 0, with(op.claims(clk), "nbf", now.Add(10*time.Second).Unix()), true},
		{"nbf in 10s, no leeway", -1, with(op.claims(clk), "nbf", now.Add(10*time.Second).Unix()), false},
		{"nbf in 110s, 2m leeway", 2 * time.Minute, with(op.claims(clk), "nbf", now.Add(110*time.Second).Unix()), true},
		{"nbf in 130s, 2m leeway", 2 * time.Minute, with(op.claims(clk), "nbf", now.Add(130*time.Second).Unix()), false},
		{"exp 110s ago, 2m leeway", 2 * time.Minute, with(op.claims(clk), "exp", now.Add(-110*time.Second).Unix()), true},
		{"nbf now, no leeway", -1, with(op.claims(clk), "nbf", now.Unix()), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, op.URL(), op.srv.Client(), clk, func(o *bearer.Options) { o.Leeway = tt.leeway })
			_, err := v.VerifyBearer(t.Context(), rs.sign(t, tt.claims), auds)
			if (err == nil) != tt.ok {
				t.Errorf("VerifyBearer(%s) = %v, want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
}

// TestJWKSRefetchThrottled: go-oidc refetches the key set whenever a
// signature fails; forged tokens must not turn into one JWKS request each,
// yet a new key is picked up once the interval has passed.
func TestJWKSRefetchThrottled(t *testing.T) {
	clk := newClock()
	rs := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey()}
	forged := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey2()}
	op := newFakeOP(t, rs)
	v := newVerifier(t, op.URL(), op.srv.Client(), clk, func(o *bearer.Options) { o.CacheSize = -1 })

	if _, err := v.VerifyBearer(t.Context(), rs.sign(t, op.claims(clk)), auds); err != nil {
		t.Fatalf("VerifyBearer(good) = %v", err)
	}
	if got := op.count("/keys"); got != 1 {
		t.Fatalf("JWKS requests after the first token = %d, want 1", got)
	}
	for range 20 {
		if _, err := v.VerifyBearer(t.Context(), forged.sign(t, op.claims(clk)), auds); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("VerifyBearer(forged) = %v, want ErrInvalidToken", err)
		}
	}
	if got := op.count("/keys"); got != 1 {
		t.Errorf("JWKS requests after 20 forged tokens within 5s = %d, want 1", got)
	}

	// The issuer rotates to a key whose kid we have not seen: within the
	// interval it is refused, after it the key set is fetched again.
	rotated := signingKey{kid: "rs2", alg: jose.RS256, priv: rsaKey2()}
	op.setKeys(rs, rotated)
	tok := rotated.sign(t, op.claims(clk))
	if _, err := v.VerifyBearer(t.Context(), tok, auds); err == nil {
		t.Errorf("VerifyBearer(new kid) within 5s of a fetch = nil, want an error")
	}
	if got := op.count("/keys"); got != 1 {
		t.Errorf("JWKS requests after a new kid within 5s = %d, want 1", got)
	}
	clk.Advance(5 * time.Second)
	if err := verifySoon(t, v, tok, auds); err != nil {
		t.Errorf("VerifyBearer(new kid) 5s later = %v, want nil", err)
	}
	if got := op.count("/keys"); got != 2 {
		t.Errorf("JWKS requests after the rotation = %d, want 2", got)
	}
	// The old key still verifies without another fetch.
	if _, err := v.VerifyBearer(t.Context(), rs.sign(t, op.claims(clk)), auds); err != nil {
		t.Errorf("VerifyBearer(old kid) = %v, want nil", err)
	}
	if got := op.count("/keys"); got != 2 {
		t.Errorf("JWKS requests after an old-kid token = %d, want 2", got)
	}
}

// verifySoon verifies a token whose key the verifier has to fetch.
// go-oidc's RemoteKeySet hands the result of a fetch that has just finished
// to callers arriving before its goroutine has cleared it, so the first
// attempt may see the previous (refused) fetch; the retry needs no sleep:
// the stale result is gone as soon as that goroutine has run.
func verifySoon(t *testing.T, v *bearer.Verifier, raw string, audiences []string) error {
	t.Helper()
	var err error
	for range 1000 {
		if _, err = v.VerifyBearer(t.Context(), raw, audiences); err == nil {
			return nil
		}
		runtime.Gosched()
	}
	return err
}
