package bearer_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/bearer"
)

// TestIntrospection: opaque tokens are sent to the issuer's introspection
// endpoint and its answer decides.
func TestIntrospection(t *testing.T) {
	clk := newClock()
	op := newFakeOP(t)
	v := newVerifier(t, op.URL(), op.srv.Client(), clk, func(o *bearer.Options) { o.CacheSize = -1 })
	now := clk.Now()
	exp := float64(now.Add(time.Hour).Unix())
	good := map[string]any{
		"active": true, "sub": "user-1", "aud": []string{apiAudience}, "exp": exp, "iss": op.URL(),
		"client_id": "some-app", "username": "alice", "preferred_username": "alice", "email": "alice@example.com",
		"token_type": "Bearer",
	}
	tests := []struct {
		name   string
		answer map[string]any // nil: the issuer does not know the token
		reason string         // "" means accepted
		sub    string
	}{
		{"active", good, "", "user-1"},
		{"aud as a string", with(good, "aud", apiAudience), "", "user-1"},
		{"no iss", with(good, "iss", nil), "", "user-1"},
		{"no sub, username", with(good, "sub", nil), "", "alice"},
		{"no aud, our client", with(good, "aud", nil, "client_id", clientID), "", "user-1"},
		{"unknown", nil, "not active", ""},
		{"inactive", map[string]any{"active": false}, "not active", ""},
		{"inactive with claims", with(good, "active", false), "not active", ""},
		{"active as a string", with(good, "active", "true"), "not active", ""},
		{"expired", with(good, "exp", float64(now.Add(-time.Second).Unix())), "expired", ""},
		{"expires now", with(good, "exp", float64(now.Unix())), "expired", ""},
		{"no exp", with(good, "exp", nil), "no numeric exp", ""},
		{"exp as a string", with(good, "exp", "2000000000"), "no numeric exp", ""},
		{"nbf in the future", with(good, "nbf", float64(now.Add(time.Hour).Unix())), "not valid before", ""},
		{"wrong aud", with(good, "aud", []string{"https://elsewhere.example.com"}), "contains none of", ""},
		{"empty aud", with(good, "aud", []string{}), "aud is empty", ""},
		{"aud of numbers", with(good, "aud", []any{1, 2}), "not a list of strings", ""},
		{"no aud, other client", with(good, "aud", nil), "not ours", ""},
		{"no aud, no client", with(good, "aud", nil, "client_id", nil), "not ours", ""},
		{"wrong iss", with(good, "iss", "https://evil.example.com"), "iss", ""},
		{"no subject", with(good, "sub", nil, "username", nil), "neither sub nor username", ""},
		{"refresh token (token_type)", with(good, "token_type", "refresh_token"), "refresh token", ""},
		{"refresh token (Hydra)", with(good, "token_use", "refresh_token"), "refresh token", ""},
		{"refresh token (Keycloak)", with(good, "typ", "Refresh"), "refresh token", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "opaque-" + strings.ReplaceAll(tt.name, " ", "_")
			raw = strings.NewReplacer("(", "", ")", "", ",", "").Replace(raw)
			if tt.answer != nil {
				op.setToken(raw, tt.answer)
			}
			id, err := v.VerifyBearer(t.Context(), raw, []string{clientID, apiAudience})
			if tt.reason != "" {
				if !errors.Is(err, auth.ErrInvalidToken) || !strings.Contains(err.Error(), tt.reason) {
					t.Fatalf("VerifyBearer(%s) = %v, want ErrInvalidToken with %q", tt.name, err, tt.reason)
				}
				if errors.Is(err, bearer.ErrUnavailable) {
					t.Errorf("VerifyBearer(%s) = %v: blames the issuer, want the token", tt.name, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyBearer(%s) = %v, want nil", tt.name, err)
			}
			if id.Subject != tt.sub || id.Issuer != op.URL() || id.User != "alice" || id.Email != "alice@example.com" ||
				!id.Expiry.Equal(now.Add(time.Hour)) || id.AccessToken.Reveal() != raw || id.Method != auth.MethodBearer {
				t.Errorf("VerifyBearer(%s) = %+v, want sub %q, iss %q, alice, exp in 1h", tt.name, *id, tt.sub, op.URL())
			}
		})
	}

	// What went over the wire: the token, the hint, Basic client auth
	// (checked by the fake issuer, which answers 401 otherwise).
	op.mu.Lock()
	form := op.introspected
	op.mu.Unlock()
	if form.Get("token_type_hint") != "access_token" || !strings.HasPrefix(form.Get("token"), "opaque-") || form.Has("client_secret") {
		t.Errorf("introspection form = %v, want token, token_type_hint=access_token and no client_secret", form)
	}
}

// TestIntrospectionUnavailable: when the issuer cannot answer, the token is
// refused, the error says the issuer is to blame, and neither the error
// nor the log holds the token or the client secret.
func TestIntrospectionUnavailable(t *testing.T) {
	clk := newClock()
	op := newFakeOP(t)
	var logs bytes.Buffer
	raw := "opaque-token-that-must-not-leak"
	op.setToken(raw, map[string]any{"active": true, "sub": "u", "aud": apiAudience, "exp": float64(clk.Now().Add(time.Hour).Unix())})

	tests := []struct {
		name   string
		mutate func(*bearer.Options)
		setup  func()
		reason string
		unavai bool
	}{
		{"issuer answers 500", nil, func() { op.setStatus(http.StatusInternalServerError) }, "500", true},
		{"wrong client secret", func(o *bearer.Options) { o.ClientSecret = "wrong-secret" }, func() { op.setStatus(0) }, "401", true},
		{"no client secret", func(o *bearer.Options) { o.ClientSecret = "" }, func() { op.setStatus(0) }, "no client credentials", false},
		{"issuer down", nil, func() { op.setStatus(0) }, "introspection request", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			v := newVerifier(t, op.URL(), op.srv.Client(), clk, func(o *bearer.Options) {
				o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
				if tt.mutate != nil {
					tt.mutate(o)
				}
			})
			if tt.name == "issuer down" {
				op.srv.Close()
			}
			_, err := v.VerifyBearer(t.Context(), raw, []string{apiAudience})
			if !errors.Is(err, auth.ErrInvalidToken) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("VerifyBearer = %v, want ErrInvalidToken with %q", err, tt.reason)
			}
			if got := errors.Is(err, bearer.ErrUnavailable); got != tt.unavai {
				t.Errorf("errors.Is(%v, ErrUnavailable) = %v, want %v", err, got, tt.unavai)
			}
			for _, secret := range []string{raw, clientSecret, "wrong-secret"} {
				if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
					t.Errorf("a secret leaked: error %q, log %q", err, logs.String())
				}
			}
		})
	}
	if !strings.Contains(logs.String(), "introspection") {
		t.Errorf("log = %q, want a warning about introspection", logs.String())
	}
}

// TestNoIntrospectionEndpoint: without one, an opaque token is simply invalid.
func TestNoIntrospectionEndpoint(t *testing.T) {
	clk := newClock()
	op := newFakeOP(t)
	op.setMeta("introspection_endpoint", nil)
	v := newVerifier(t, op.URL(), op.srv.Client(), clk, nil)
	_, err := v.VerifyBearer(t.Context(), "opaque", []string{apiAudience})
	if !errors.Is(err, auth.ErrInvalidToken) || !strings.Contains(err.Error(), "no introspection endpoint") {
		t.Errorf("VerifyBearer(opaque) = %v, want ErrInvalidToken: no introspection endpoint", err)
	}
	if got := op.count("/introspect"); got != 0 {
		t.Errorf("introspection requests = %d, want 0", got)
	}
}
