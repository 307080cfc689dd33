package bearer_test

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/bearer"
	"github.com/portcullis-proxy/portcullis/auth/issuer"
)

// TestBuiltinIssuerAsExternal uses the built-in issuer as the external
// OpenID provider: its client_credentials and password access tokens
// (RFC 9068, aud = the client's audience) and its ID tokens (aud = the
// client id) are accepted for the right audiences only; its refresh tokens,
// opaque and active at introspection, are never accepted.
func TestBuiltinIssuerAsExternal(t *testing.T) {
	clk := newClock()
	op := newRealOP(t, clk, nil)
	var mapped []map[string]any
	v := newVerifier(t, op.srv.URL, op.srv.Client(), clk, func(o *bearer.Options) {
		// Stands in for login.Client.IdentityFromClaims with claims.user: email.
		o.Claims = func(c map[string]any) auth.Identity {
			mapped = append(mapped, c)
			email, _ := c["email"].(string)
			return auth.Identity{User: email, Email: email, Issuer: "ignored", Subject: "ignored"}
		}
	})
	if got := v.Algorithms(); !slices.Equal(got, []string{"RS256"}) {
		t.Errorf("Algorithms() = %v, want [RS256]", got)
	}

	cc := op.token(t, "script", "script-secret-0123456789-0123456789", url.Values{"grant_type": {"client_credentials"}, "scope": {"api.read"}})
	pw := op.token(t, clientID, clientSecret, url.Values{"grant_type": {"password"}, "username": {"alice"},
		"password": {testPassword}, "scope": {"openid email profile groups offline_access"}})
	ccAT, _ := cc["access_token"].(string)
	pwAT, _ := pw["access_token"].(string)
	pwID, _ := pw["id_token"].(string)
	pwRT, _ := pw["refresh_token"].(string)
	if ccAT == "" || pwAT == "" || pwID == "" || pwRT == "" {
		t.Fatalf("token endpoint answers lack tokens: %v %v", cc, pw)
	}

	tests := []struct {
		name      string
		raw       string
		audiences []string
		wantSub   string
		wantUser  string
		reason    string // "" means accepted
	}{
		{"client_credentials access token", ccAT, []string{clientID, apiAudience}, "script", "", ""},
		{"client_credentials access token, other route", ccAT, []string{clientID, "https://other.example.com"}, "", "", "contains none of"},
		{"password access token", pwAT, []string{clientID, apiAudience}, "alice", "alice@example.com", ""},
		{"ID token for our client", pwID, []string{clientID}, "alice", "alice@example.com", ""},
		{"ID token, route without our client id", pwID, []string{apiAudience}, "", "", "contains none of"},
		{"refresh token", pwRT, []string{clientID, apiAudience}, "", "", "refresh token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.VerifyBearer(t.Context(), tt.raw, tt.audiences)
			if tt.reason != "" {
				if !errors.Is(err, auth.ErrInvalidToken) || !strings.Contains(err.Error(), tt.reason) {
					t.Fatalf("VerifyBearer(%s) = %v, want ErrInvalidToken with %q", tt.name, err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyBearer(%s) = %v, want nil", tt.name, err)
			}
			if id.Issuer != op.srv.URL || id.Subject != tt.wantSub || id.User != tt.wantUser && tt.wantUser != "" {
				t.Errorf("VerifyBearer(%s) = iss %q sub %q user %q, want %q %q %q", tt.name, id.Issuer, id.Subject, id.User, op.srv.URL, tt.wantSub, tt.wantUser)
			}
			if tt.wantUser == "" && id.User != tt.wantSub {
				t.Errorf("VerifyBearer(%s).User = %q, want the subject %q when the mapping finds no user", tt.name, id.User, tt.wantSub)
			}
			if id.Method != auth.MethodBearer || id.AccessToken.Reveal() != tt.raw {
				t.Errorf("VerifyBearer(%s): Method %q, AccessToken set %v", tt.name, id.Method, id.AccessToken.Reveal() == tt.raw)
			}
			if id.Expiry.Before(clk.Now()) || id.Expiry.After(clk.Now().Add(time.Hour)) {
				t.Errorf("VerifyBearer(%s).Expiry = %v, want exp within the hour", tt.name, id.Expiry)
			}
		})
	}
	if len(mapped) == 0 || mapped[0]["iss"] != op.srv.URL {
		t.Errorf("Claims was called with %v, want the token's claims", mapped)
	}
	if got := op.count("/introspect"); got != 1 {
		t.Errorf("introspection requests = %d, want 1 (only the opaque refresh token)", got)
	}
}

// TestBuiltinIssuerKeyRotation: after the issuer rotates its signing key,
// a token with the new kid makes the verifier fetch the JWKS again, once.
func TestBuiltinIssuerKeyRotation(t *testing.T) {
	clk := newClock()
	op := newRealOP(t, clk, func(c *issuer.Config) {
		c.Keys = issuer.KeysConfig{Algorithm: "ES256", RotateEvery: time.Hour}
	})
	v := newVerifier(t, op.srv.URL, op.srv.Client(), clk, nil)
	if got := v.Algorithms(); !slices.Equal(got, []string{"ES256"}) {
		t.Errorf("Algorithms() = %v, want [ES256]", got)
	}
	cc := func() string {
		t.Helper()
		ans := op.token(t, "script", "script-secret-0123456789-0123456789", url.Values{"grant_type": {"client_credentials"}})
		s, _ := ans["access_token"].(string)
		return s
	}
	first := cc()
	if _, err := v.VerifyBearer(t.Context(), first, []string{apiAudience}); err != nil {
		t.Fatalf("VerifyBearer(first key) = %v", err)
	}
	if got := op.count("/keys"); got != 1 {
		t.Fatalf("JWKS requests = %d, want 1", got)
	}

	clk.Advance(2 * time.Hour) // past rotate_every: the next token gets a new kid
	second := cc()
	if kid(t, first) == kid(t, second) {
		t.Fatalf("the issuer did not rotate: both tokens have kid %q", kid(t, first))
	}
	if err := verifySoon(t, v, second, []string{apiAudience}); err != nil {
		t.Fatalf("VerifyBearer(rotated key) = %v, want nil", err)
	}
	if got := op.count("/keys"); got != 2 {
		t.Errorf("JWKS requests after rotation = %d, want 2", got)
	}
	third := cc()
	if _, err := v.VerifyBearer(t.Context(), third, []string{apiAudience}); err != nil {
		t.Fatalf("VerifyBearer(another token, new key) = %v", err)
	}
	if got := op.count("/keys"); got != 2 {
		t.Errorf("JWKS requests after a second token with the new key = %d, want 2", got)
	}
}

// kid returns the kid of a compact JWS header.
func kid(t *testing.T, raw string) string {
	t.Helper()
	h, err := decodeSegment(strings.SplitN(raw, ".", 2)[0])
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	k, _ := h["kid"].(string)
	return k
}
