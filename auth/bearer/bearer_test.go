package bearer_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/bearer"
)

// TestNew: options are checked without I/O, every problem at once.
func TestNew(t *testing.T) {
	tests := []struct {
		name string
		opts bearer.Options
		want []string // substrings of the error; none means valid
	}{
		{"minimal", bearer.Options{IssuerURL: "https://id.example.com"}, nil},
		{"with path and algorithms", bearer.Options{IssuerURL: "https://id.example.com/realms/x", Algorithms: []string{"ES256", "EdDSA"}, Leeway: 2 * time.Minute}, nil},
		{"missing issuer", bearer.Options{}, []string{"IssuerURL is required"}},
		{"issuer not http", bearer.Options{IssuerURL: "ftp://id.example.com"}, []string{`IssuerURL: "ftp://id.example.com"`}},
		{"issuer relative", bearer.Options{IssuerURL: "id.example.com"}, []string{"IssuerURL"}},
		{"issuer with query", bearer.Options{IssuerURL: "https://id.example.com/?x=1"}, []string{"without query"}},
		{"everything wrong", bearer.Options{IssuerURL: "", Algorithms: []string{"none", "HS256", "RS256"}, Leeway: time.Hour, CacheTTL: -time.Second},
			[]string{"IssuerURL is required", `Algorithms: "none"`, `Algorithms: "HS256"`, "Leeway: 1h0m0s", "CacheTTL: -1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := bearer.New(tt.opts)
			if len(tt.want) == 0 {
				if err != nil || v == nil {
					t.Fatalf("New(%s) = %v, %v; want a verifier", tt.name, v, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New(%s) = nil error, want %q", tt.name, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New(%s) = %q, want it to mention %q", tt.name, err, w)
				}
			}
			if strings.Contains(err.Error(), `"RS256"`) {
				t.Errorf("New(%s) = %q: RS256 is allowed", tt.name, err)
			}
		})
	}
}

// TestBeforeDiscover: nothing is accepted until discovery worked, and the
// error says the issuer is to blame.
func TestBeforeDiscover(t *testing.T) {
	clk := newClock()
	rs := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey()}
	op := newFakeOP(t, rs)
	v, err := bearer.New(bearer.Options{IssuerURL: op.URL(), HTTPClient: op.srv.Client(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	raw := rs.sign(t, op.claims(clk))
	_, err = v.VerifyBearer(t.Context(), raw, auds)
	if !errors.Is(err, auth.ErrInvalidToken) || !errors.Is(err, bearer.ErrUnavailable) {
		t.Errorf("VerifyBearer before Discover = %v, want ErrInvalidToken and ErrUnavailable", err)
	}
	if v.Algorithms() != nil {
		t.Errorf("Algorithms() before Discover = %v, want nil", v.Algorithms())
	}
	if err := v.Discover(t.Context()); err != nil {
		t.Fatalf("Discover = %v", err)
	}
	if _, err := v.VerifyBearer(t.Context(), raw, auds); err != nil {
		t.Errorf("VerifyBearer after Discover = %v", err)
	}
}

// TestDiscover: what discovery must offer, and how the algorithms are chosen.
func TestDiscover(t *testing.T) {
	tests := []struct {
		name     string
		meta     map[string]any // changes to the fake issuer's document
		opts     func(*bearer.Options)
		wantErr  string
		wantAlgs []string
	}{
		{"default", nil, nil, "", []string{"RS256", "ES256"}},
		{"none and HS256 advertised", map[string]any{"id_token_signing_alg_values_supported": []string{"none", "HS256", "PS256"}}, nil, "", []string{"PS256"}},
		{"access token algorithms too", map[string]any{"access_token_signing_alg_values_supported": []string{"EdDSA"}}, nil, "", []string{"RS256", "ES256", "EdDSA"}},
		{"nothing advertised", map[string]any{"id_token_signing_alg_values_supported": nil}, nil, "", []string{"RS256"}},
		{"only HS256 advertised", map[string]any{"id_token_signing_alg_values_supported": []string{"HS256"}}, nil, "", []string{"RS256"}},
		{"configured algorithms win", nil, func(o *bearer.Options) { o.Algorithms = []string{"ES384"} }, "", []string{"ES384"}},
		{"issuer mismatch", map[string]any{"issuer": "https://evil.example.com"}, nil, "did not match", nil},
		{"no jwks_uri", map[string]any{"jwks_uri": nil}, nil, "jwks_uri is missing", nil},
		{"bad introspection endpoint", map[string]any{"introspection_endpoint": "javascript:alert(1)"}, nil, "introspection_endpoint", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := newFakeOP(t)
			for k, v := range tt.meta {
				op.setMeta(k, v)
			}
			opts := bearer.Options{IssuerURL: op.URL(), HTTPClient: op.srv.Client()}
			if tt.opts != nil {
				tt.opts(&opts)
			}
			v, err := bearer.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			err = v.Discover(t.Context())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Discover(%s) = %v, want %q", tt.name, err, tt.wantErr)
				}
				if v.Algorithms() != nil {
					t.Errorf("Algorithms() after a failed Discover = %v, want nil", v.Algorithms())
				}
				return
			}
			if err != nil {
				t.Fatalf("Discover(%s) = %v", tt.name, err)
			}
			if got := v.Algorithms(); !slices.Equal(got, tt.wantAlgs) {
				t.Errorf("Algorithms() = %v, want %v", got, tt.wantAlgs)
			}
		})
	}
}

// TestDiscoverAgain: a failed rediscovery keeps the working one.
func TestDiscoverAgain(t *testing.T) {
	clk := newClock()
	rs := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey()}
	op := newFakeOP(t, rs)
	v := newVerifier(t, op.URL(), op.srv.Client(), clk, nil)
	op.setMeta("jwks_uri", nil)
	if err := v.Discover(t.Context()); err == nil {
		t.Fatal("Discover without jwks_uri = nil, want an error")
	}
	if _, err := v.VerifyBearer(t.Context(), rs.sign(t, op.claims(clk)), auds); err != nil {
		t.Errorf("VerifyBearer after a failed rediscovery = %v, want nil", err)
	}
}

// TestDefaultClaims: without Options.Claims, the usual claims are mapped
// and the subject stands in for a missing user name.
func TestDefaultClaims(t *testing.T) {
	clk := newClock()
	rs := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey()}
	op := newFakeOP(t, rs)
	v := newVerifier(t, op.URL(), op.srv.Client(), clk, nil)
	id, err := v.VerifyBearer(t.Context(), rs.sign(t, with(op.claims(clk), "name", "Alice A", "email_verified", true)), auds)
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "alice" || id.Name != "Alice A" || !id.EmailVerified || !id.InGroup("dev") {
		t.Errorf("identity = %+v, want alice, Alice A, email verified, in dev", *id)
	}
	id, err = v.VerifyBearer(t.Context(), rs.sign(t, with(op.claims(clk), "preferred_username", nil, "groups", "solo")), auds)
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "user-1" || !slices.Equal(id.Groups, []string{"solo"}) {
		t.Errorf("identity = %+v, want user = sub, groups [solo]", *id)
	}
}
