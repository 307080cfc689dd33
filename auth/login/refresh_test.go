package login

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/session"
)

// signIn completes a sign-in and returns the browser and the loaded session.
func (e *env) signIn() (*browser, *session.Data) {
	e.t.Helper()
	b := newBrowser(e.t)
	resp, body := b.get(e.start(b, "/dest/"))
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("callback = %d %s, want 302", resp.StatusCode, body)
	}
	return b, e.load(b)
}

func (e *env) load(b *browser) *session.Data {
	e.t.Helper()
	req := httptest.NewRequest("GET", e.front.URL+"/", nil)
	for _, c := range b.jar.Cookies(e.public) {
		req.AddCookie(c)
	}
	d, err := e.sessions.Load(req)
	if err != nil {
		e.t.Fatalf("Load: %v", err)
	}
	return d
}

func TestRefresh(t *testing.T) {
	t.Run("new id token", func(t *testing.T) {
		e := newEnv(t, nil)
		_, d := e.signIn()
		before := *d
		e.clock.Advance(5 * time.Minute)
		e.op.set(func(op *testOP) {
			op.mutateID = func(c map[string]any) { c["email"] = "alice@new.example.com" }
		})
		got, err := e.client.Refresh(t.Context(), d)
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if got.AccessToken == before.AccessToken || got.RefreshToken == before.RefreshToken || got.IDToken == before.IDToken {
			t.Errorf("Refresh did not replace the tokens")
		}
		if got.Identity.Email != "alice@new.example.com" {
			t.Errorf("Refresh Identity.Email = %q, want the new ID token's", got.Identity.Email)
		}
		if !got.Identity.Expiry.Equal(before.Identity.Expiry) || !got.ExpiresAt.Equal(before.ExpiresAt) || !got.CreatedAt.Equal(before.CreatedAt) {
			t.Errorf("Refresh changed session times: %v/%v/%v, want %v/%v/%v",
				got.Identity.Expiry, got.CreatedAt, got.ExpiresAt, before.Identity.Expiry, before.CreatedAt, before.ExpiresAt)
		}
		if want := e.clock.Now().Add(10 * time.Minute); !got.AccessExpiry.Equal(want) {
			t.Errorf("AccessExpiry = %v, want %v", got.AccessExpiry, want)
		}
		if got.Identity.AccessToken.Reveal() != got.AccessToken {
			t.Errorf("Identity.AccessToken not updated")
		}
		if d.AccessToken != before.AccessToken || d.Identity.Email != before.Identity.Email {
			t.Errorf("Refresh modified its input")
		}
		// Within the grace window the old token gets the same answer, with no
		// second request to the OP (which would revoke a rotated grant).
		again, err := e.client.Refresh(t.Context(), d)
		if err != nil || again.AccessToken != got.AccessToken || again.RefreshToken != got.RefreshToken {
			t.Errorf("Refresh with the old token within the grace window = %v, want the first result", err)
		}
		// After it, the rotated-out refresh token is dead at the OP.
		e.clock.Advance(refreshGrace + time.Second)
		if _, err := e.client.Refresh(t.Context(), d); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("Refresh with rotated-out token = %v, want ErrUnauthenticated", err)
		}
		if _, err := e.client.Refresh(t.Context(), got); err != nil {
			t.Errorf("Refresh with the new token: %v", err)
		}
	})
	t.Run("parallel refreshes share one grant", func(t *testing.T) {
		e := newEnv(t, nil)
		_, d := e.signIn()
		e.op.set(func(op *testOP) { op.tokenRequests = 0 })
		const n = 8
		results := make(chan *session.Data, n)
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				r, err := e.client.Refresh(t.Context(), d)
				results <- r
				errs <- err
			})
		}
		wg.Wait()
		close(results)
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("parallel Refresh: %v", err)
			}
		}
		var first string
		for r := range results {
			if r == nil {
				continue
			}
			if first == "" {
				first = r.AccessToken
			}
			if r.AccessToken != first {
				t.Errorf("parallel Refresh results differ")
			}
		}
		e.op.mu.Lock()
		defer e.op.mu.Unlock()
		if e.op.tokenRequests != 1 {
			t.Errorf("OP saw %d refresh requests, want 1", e.op.tokenRequests)
		}
	})
	t.Run("no id token keeps claims", func(t *testing.T) {
		e := newEnv(t, nil)
		_, d := e.signIn()
		e.op.set(func(op *testOP) { op.noRefreshID = true })
		got, err := e.client.Refresh(t.Context(), d)
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if got.IDToken != d.IDToken || !reflect.DeepEqual(got.Identity.Groups, d.Identity.Groups) || got.Identity.User != d.Identity.User {
			t.Errorf("Refresh without id_token changed the identity: %+v, want %+v", got.Identity, d.Identity)
		}
		if got.AccessToken == d.AccessToken {
			t.Errorf("Refresh did not replace the access token")
		}
	})
	failures := []struct {
		name  string
		setup func(e *env, d *session.Data)
	}{
		{"no refresh token", func(e *env, d *session.Data) { d.RefreshToken = "" }},
		{"refused", func(e *env, d *session.Data) { d.RefreshToken = "unknown" }},
		{"other subject", func(e *env, d *session.Data) {
			e.op.set(func(op *testOP) { op.mutateID = func(c map[string]any) { c["sub"] = "mallory" } })
		}},
		{"bad signature", func(e *env, d *session.Data) { e.op.set(func(op *testOP) { op.sign = signWrongKey }) }},
		{"expired id token", func(e *env, d *session.Data) {
			e.op.set(func(op *testOP) {
				op.mutateID = func(c map[string]any) { c["exp"] = op.now().Add(-time.Second).Unix() }
			})
		}},
		{"wrong aud", func(e *env, d *session.Data) {
			e.op.set(func(op *testOP) { op.mutateID = func(c map[string]any) { c["aud"] = "someone" } })
		}},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			_, d := e.signIn()
			tt.setup(e, d)
			got, err := e.client.Refresh(t.Context(), d)
			if !errors.Is(err, auth.ErrUnauthenticated) || got != nil {
				t.Errorf("Refresh = %v, %v; want nil, ErrUnauthenticated", got, err)
			}
		})
	}
	t.Run("issuer down is not ErrUnauthenticated", func(t *testing.T) {
		e := newEnv(t, nil)
		_, d := e.signIn()
		e.op.set(func(op *testOP) { op.tokenDown = true })
		if _, err := e.client.Refresh(t.Context(), d); err == nil || errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("Refresh with the issuer down = %v, want a temporary error", err)
		}
	})
}

func TestSignOut(t *testing.T) {
	tests := []struct {
		name       string
		endSession bool
		endIssuer  bool
		method     string
		rd         string
		wantLoc    func(e *env, d *session.Data) string
	}{
		{
			name: "no end_session_endpoint", method: "GET", rd: "/dest/bye",
			wantLoc: func(e *env, _ *session.Data) string { return e.front.URL + "/dest/bye" },
		},
		{
			name: "no end_session_endpoint, evil rd", method: "POST", rd: "https://evil.com/",
			wantLoc: func(e *env, _ *session.Data) string { return e.front.URL + "/" },
		},
		{
			name: "allowed host rd", method: "GET", rd: "https://app.example.com/x",
			wantLoc: func(e *env, _ *session.Data) string { return "https://app.example.com/x" },
		},
		{
			name: "end_session_endpoint", method: "GET", rd: "/ignored", endSession: true,
			wantLoc: func(e *env, d *session.Data) string {
				q := url.Values{
					"x":                        {"1"},
					"id_token_hint":            {d.IDToken},
					"client_id":                {testClientID},
					"post_logout_redirect_uri": {e.front.URL + "/"},
				}
				return e.op.issuer + "/end_session?" + q.Encode()
			},
		},
		{
			name: "built-in issuer", method: "POST", rd: "/dest/bye", endSession: true, endIssuer: true,
			wantLoc: func(e *env, _ *session.Data) string { return e.front.URL + "/dest/bye" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			e := newEnv(t, func(c *Config, o *Options) {
				if tt.endIssuer {
					o.EndIssuerSession = func(w http.ResponseWriter, r *http.Request) {
						called = true
						http.SetCookie(w, &http.Cookie{Name: "_portcullis_issuer", MaxAge: -1})
					}
				}
			})
			e.op.set(func(op *testOP) { op.endSession = tt.endSession })
			if err := e.client.Discover(t.Context()); err != nil {
				t.Fatal(err)
			}
			b, d := e.signIn()
			var resp *http.Response
			var err error
			u := e.front.URL + PathSignOut + "?rd=" + url.QueryEscape(tt.rd)
			if tt.method == "POST" {
				resp, err = b.c.Post(e.front.URL+PathSignOut, "application/x-www-form-urlencoded",
					strings.NewReader(url.Values{"rd": {tt.rd}}.Encode()))
			} else {
				resp, err = b.c.Get(u)
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("sign-out = %d, want 302", resp.StatusCode)
			}
			if got, want := resp.Header.Get("Location"), tt.wantLoc(e, d); got != want {
				t.Errorf("sign-out Location = %q, want %q", got, want)
			}
			if called != tt.endIssuer {
				t.Errorf("EndIssuerSession called = %t, want %t", called, tt.endIssuer)
			}
			req := httptest.NewRequest("GET", "/", nil)
			for _, c := range b.jar.Cookies(e.public) {
				req.AddCookie(c)
			}
			if _, err := e.sessions.Load(req); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("Load after sign-out = %v, want ErrNoSession", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings, each must appear; nil means valid
	}{
		{"zero is builtin", Config{}, nil},
		{"builtin explicit", Config{Issuer: "builtin"}, nil},
		{"https issuer", Config{Issuer: "https://id.example.com/realms/x", ClientID: "c"}, nil},
		{"http loopback", Config{Issuer: "http://127.0.0.1:5556/dex", ClientID: "c"}, nil},
		{"http localhost", Config{Issuer: "http://localhost:8080", ClientID: "c"}, nil},
		{"http ipv6 loopback", Config{Issuer: "http://[::1]:8080", ClientID: "c"}, nil},
		{"scopes with openid", Config{Scopes: []string{"openid", "groups"}}, nil},
		{"http remote", Config{Issuer: "http://id.example.com", ClientID: "c"}, []string{`issuer: "http://id.example.com": http is only allowed`}},
		{"not a url", Config{Issuer: "foo", ClientID: "c"}, []string{`issuer: "foo": want builtin or an https URL`}},
		{"query", Config{Issuer: "https://id.example.com/?a=b", ClientID: "c"}, []string{"issuer:", "query"}},
		{"userinfo", Config{Issuer: "https://u:p@id.example.com", ClientID: "c"}, []string{"issuer:", "userinfo"}},
		{"url needs client_id", Config{Issuer: "https://id.example.com"}, []string{"client_id:", "required when issuer is a URL"}},
		{"both secrets", Config{ClientSecret: "x", ClientSecretFile: "/f"}, []string{`client_secret_file: "/f": set either`}},
		{"no openid", Config{Scopes: []string{"email"}}, []string{`scopes: ["email"]: must include "openid"`}},
		{"bad scope", Config{Scopes: []string{"openid", "a b", ""}}, []string{`scopes[1]: "a b"`, `scopes[2]: ""`}},
		{"bad claim", Config{Claims: ClaimsConfig{Groups: ".groups"}}, []string{`claims.groups: ".groups"`}},
		{
			"every problem at once",
			Config{Issuer: "ftp://x", ClientSecret: "x", ClientSecretFile: "/f", Scopes: []string{"email"}},
			[]string{"issuer:", "client_id:", "client_secret_file:", "scopes:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "login") {
				t.Errorf("Validate() = %q: keys must be relative to the login section", err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	e := newEnv(t, nil)
	pub, _ := url.Parse("https://portcullis.example.com")
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("secret file trimmed", func(t *testing.T) {
		c, err := New(Config{Issuer: "https://id.example.com", ClientID: "c", ClientSecretFile: secretFile},
			Options{PublicURL: pub, Sessions: e.sessions})
		if err != nil {
			t.Fatal(err)
		}
		if c.clientSecret.Reveal() != "from-file" {
			t.Errorf("client secret from file = %q, want %q", c.clientSecret.Reveal(), "from-file")
		}
		if c.httpClient == nil || c.httpClient == http.DefaultClient || c.httpClient.Timeout == 0 {
			t.Errorf("default HTTP client = %+v, want a private client with a timeout", c.httpClient)
		}
	})
	t.Run("builtin defaults", func(t *testing.T) {
		c, err := New(Config{}, Options{PublicURL: pub, Sessions: e.sessions, IssuerURL: "https://portcullis.example.com/oauth2/issuer"})
		if err != nil {
			t.Fatal(err)
		}
		if c.issuer != "https://portcullis.example.com/oauth2/issuer" || c.clientID != DefaultBuiltinClientID {
			t.Errorf("builtin: issuer %q client %q", c.issuer, c.clientID)
		}
		if !reflect.DeepEqual(c.scopes, []string{"openid", "email", "profile"}) {
			t.Errorf("default scopes = %v", c.scopes)
		}
	})
	errCases := []struct {
		name string
		cfg  Config
		opts Options
		want string
	}{
		{"invalid config", Config{Issuer: "foo"}, Options{PublicURL: pub, Sessions: e.sessions}, `login: issuer: "foo"`},
		{"no public url", Config{}, Options{Sessions: e.sessions, IssuerURL: "https://x"}, "PublicURL"},
		{"relative public url", Config{}, Options{PublicURL: &url.URL{Path: "/x"}, Sessions: e.sessions, IssuerURL: "https://x"}, "PublicURL"},
		{"no sessions", Config{}, Options{PublicURL: pub, IssuerURL: "https://x"}, "Sessions"},
		{"builtin without issuer url", Config{}, Options{PublicURL: pub, Sessions: e.sessions}, "IssuerURL"},
		{"missing secret file", Config{ClientSecretFile: filepath.Join(dir, "nope")}, Options{PublicURL: pub, Sessions: e.sessions, IssuerURL: "https://x"}, "client_secret_file"},
	}
	for _, tt := range errCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	t.Run("discovery issuer mismatch", func(t *testing.T) {
		c, err := New(Config{Issuer: e.op.issuer + "/other", ClientID: "c"}, Options{PublicURL: pub, Sessions: e.sessions, HTTPClient: e.op.srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Discover(t.Context()); err == nil || c.Ready() {
			t.Errorf("Discover at a wrong issuer path = %v, ready %t; want an error", err, c.Ready())
		}
	})
}

func TestIdentityFromClaims(t *testing.T) {
	c := &Client{claims: ClaimsConfig{}.withDefaults()}
	custom := &Client{claims: ClaimsConfig{User: "email", Email: "mail", Groups: "realm_access.roles"}.withDefaults()}
	tests := []struct {
		name   string
		c      *Client
		claims map[string]any
		want   auth.Identity
	}{
		{
			"full", c,
			map[string]any{"iss": "https://i", "sub": "s1", "preferred_username": "alice", "email": "a@x", "email_verified": true,
				"groups": []any{"g1", "g2", 3, ""}, "name": "Alice"},
			auth.Identity{Issuer: "https://i", Subject: "s1", User: "alice", Email: "a@x", EmailVerified: true,
				Groups: []string{"g1", "g2"}, PreferredUsername: "alice", Name: "Alice"},
		},
		{
			"user falls back to sub; groups string; email_verified string", c,
			map[string]any{"sub": "s2", "groups": "solo", "email_verified": "true"},
			auth.Identity{Subject: "s2", User: "s2", Groups: []string{"solo"}, EmailVerified: true},
		},
		{
			"wrong types ignored", c,
			map[string]any{"sub": "s3", "preferred_username": 5, "email": []any{"x"}, "groups": map[string]any{"a": 1}},
			auth.Identity{Subject: "s3", User: "s3"},
		},
		{
			"custom and nested claims", custom,
			map[string]any{"sub": "s4", "email": "u@x", "mail": "m@x", "realm_access": map[string]any{"roles": []any{"r1"}}},
			auth.Identity{Subject: "s4", User: "u@x", Email: "m@x", Groups: []string{"r1"}},
		},
		{
			"exact name wins over path", &Client{claims: ClaimsConfig{Groups: "a.b"}.withDefaults()},
			map[string]any{"sub": "s5", "a.b": "flat", "a": map[string]any{"b": "nested"}},
			auth.Identity{Subject: "s5", User: "s5", Groups: []string{"flat"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.IdentityFromClaims(tt.claims); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("IdentityFromClaims(%v) = %+v, want %+v", tt.claims, got, tt.want)
			}
		})
	}
}
