package issuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
)

// Fixed test credentials. Secrets are long enough for Validate.
const (
	testPassword   = "correct horse battery staple"
	appSecret      = "app-secret-0123456789-0123456789-abcdef"
	otherSecret    = "other-secret-0123456789-0123456789-abcdef"
	appRedirect    = "https://app.example.com/callback"
	nativeRedirect = "http://127.0.0.1/cb"
)

// Keys are generated once per test binary: RSA generation under -race is
// slow, and every test would otherwise pay for it in New.
var testKeys = sync.OnceValue(func() map[string]store.Key {
	m := map[string]store.Key{}
	for _, alg := range []string{"RS256", "ES256"} {
		k, err := generateKey(alg, time.Time{})
		if err != nil {
			panic(err)
		}
		m[alg] = k
	}
	return m
})

var testHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// env is one issuer behind a real HTTP server whose URL is the issuer URL.
type env struct {
	t     *testing.T
	iss   *Issuer
	srv   *httptest.Server
	st    store.Store
	clock *authtest.Clock
	cfg   Config
}

// testConfig is valid as is, so a test changes one field.
func testConfig() Config {
	return Config{
		Users: []UserConfig{
			{Username: "alice", Email: "alice@example.com", Name: "Alice A", Groups: []string{"admins", "dev"}, PasswordHash: testHash()},
			{Username: "bob", Email: "bob@example.com", PasswordHash: testHash()},
		},
		Clients: []ClientConfig{
			{ID: "app", Secret: appSecret, RedirectURIs: []string{appRedirect},
				PostLogoutRedirectURIs: []string{"https://app.example.com/bye"},
				Grants:                 []string{GrantAuthorizationCode, GrantRefreshToken}},
			{ID: "other", Secret: otherSecret, RedirectURIs: []string{"https://other.example.com/cb"},
				Grants: []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials},
				Scopes: []string{"openid", "email", "profile", "offline_access", "api.read"}},
			{ID: "native", Public: true, RedirectURIs: []string{nativeRedirect}},
		},
	}
}

// newEnv starts an issuer with a memory store; mutate edits the config.
func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	clk := authtest.NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	st := store.NewMemory(store.Options{Now: clk.Now})
	t.Cleanup(func() { st.Close() })
	return newEnvWith(t, cfg, st, clk)
}

func newEnvWith(t *testing.T, cfg Config, st store.Store, clk *authtest.Clock) *env {
	t.Helper()
	return newEnvOpts(t, cfg, st, clk, Options{})
}

// newEnvOpts is newEnvWith with opts' Logger and Metrics; PublicURL, Store
// and Now are the env's.
func newEnvOpts(t *testing.T, cfg Config, st store.Store, clk *authtest.Clock, opts Options) *env {
	t.Helper()
	var h http.Handler = http.NotFoundHandler()
	var mu sync.RWMutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.RLock()
		hh := h
		mu.RUnlock()
		hh.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg.URL = srv.URL
	alg := cfg.Keys.withDefaults().Algorithm
	ks, err := st.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) == 0 {
		k := testKeys()[alg]
		k.CreatedAt = clk.Now()
		if err := st.PutKey(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	pub, _ := url.Parse("https://portcullis.example.com")
	opts.PublicURL, opts.Store, opts.Now = pub, st, clk.Now
	iss, err := New(t.Context(), cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(iss.Close)
	mu.Lock()
	h = iss.Handler()
	mu.Unlock()
	return &env{t: t, iss: iss, srv: srv, st: st, clock: clk, cfg: cfg}
}

// browser returns a cookie-jar client that stops at any redirect leaving
// the issuer (the client's redirect_uri is not a real server).
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	host := e.srv.Listener.Addr().String()
	return &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != host {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

// ctx makes go-oidc and x/oauth2 use c.
func ctxWith(ctx context.Context, c *http.Client) context.Context {
	return oidc.ClientContext(ctx, c)
}

func (e *env) provider() *oidc.Provider {
	e.t.Helper()
	p, err := oidc.NewProvider(e.t.Context(), e.srv.URL)
	if err != nil {
		e.t.Fatalf("oidc.NewProvider: %v", err)
	}
	return p
}

func (e *env) oauth2Config(clientID, secret, redirect string, scopes ...string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: secret, RedirectURL: redirect, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + pathAuthorize, TokenURL: e.srv.URL + pathToken},
	}
}

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

// hiddenFields parses the hidden inputs of an issuer form.
func hiddenFields(t *testing.T, body string) url.Values {
	t.Helper()
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], m[2])
	}
	if v.Get("req") == "" || v.Get("csrf") == "" {
		t.Fatalf("form lacks hidden req/csrf fields:\n%s", body)
	}
	return v
}

func readBody(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// get GETs u with the browser and returns the final response's body.
func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return res, readBody(t, res)
}

// submitLogin posts credentials to the login page in res/body.
func submitLogin(t *testing.T, c *http.Client, res *http.Response, body, user, pass string) (*http.Response, string) {
	t.Helper()
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `name="password"`) {
		t.Fatalf("expected the login page, got %d:\n%s", res.StatusCode, body)
	}
	form := hiddenFields(t, body)
	form.Set("username", user)
	form.Set("password", pass)
	action := res.Request.URL.ResolveReference(&url.URL{Path: res.Request.URL.Path})
	r2, err := c.PostForm(action.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	return r2, readBody(t, r2)
}

// redirectParams returns the query (or fragment) parameters of a redirect
// to the client, failing unless res is one to prefix.
func redirectParams(t *testing.T, res *http.Response, prefix string) url.Values {
	t.Helper()
	if res.StatusCode != http.StatusFound && res.StatusCode != http.StatusSeeOther {
		t.Fatalf("status = %d, want a redirect to %s", res.StatusCode, prefix)
	}
	loc := res.Header.Get("Location")
	if !strings.HasPrefix(loc, prefix) {
		t.Fatalf("Location = %q, want prefix %q", loc, prefix)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if u.Fragment != "" {
		v, err := url.ParseQuery(u.Fragment)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return u.Query()
}

// authorizeCode signs user in through the form and returns the code.
func (e *env) authorizeCode(c *http.Client, oc *oauth2.Config, verifier, user string, opts ...oauth2.AuthCodeOption) string {
	t := e.t
	t.Helper()
	opts = append(opts, oauth2.S256ChallengeOption(verifier))
	res, body := get(t, c, oc.AuthCodeURL("st-1", opts...))
	if strings.Contains(body, `name="password"`) {
		res, _ = submitLogin(t, c, res, body, user, testPassword)
	}
	v := redirectParams(t, res, oc.RedirectURL)
	if v.Get("state") != "st-1" || v.Get("code") == "" || v.Get("error") != "" {
		t.Fatalf("redirect params = %v, want code and state st-1", v)
	}
	if v.Get("iss") != e.srv.URL {
		t.Errorf("iss param = %q, want %q", v.Get("iss"), e.srv.URL)
	}
	return v.Get("code")
}

// postForm posts a back-channel form, with Basic auth when id is set.
func (e *env) postForm(path, id, secret string, form url.Values) (*http.Response, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	body := readBody(e.t, res)
	m := map[string]any{}
	if body != "" {
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			e.t.Fatalf("%s: body %q is not JSON: %v", path, body, err)
		}
	}
	return res, m
}

// wantOAuthError asserts an RFC 6749 §5.2 error.
func wantOAuthError(t *testing.T, res *http.Response, body map[string]any, status int, code string) {
	t.Helper()
	if res.StatusCode != status || body["error"] != code {
		t.Fatalf("got %d %v, want %d error=%s", res.StatusCode, body, status, code)
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", res.Header.Get("Cache-Control"))
	}
}

// active asks the introspection endpoint (as client app) about tok.
func (e *env) active(tok string) bool {
	e.t.Helper()
	res, m := e.postForm(pathIntrospect, "app", appSecret, url.Values{"token": {tok}})
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("introspect: %d %v", res.StatusCode, m)
	}
	if m["active"] == false && len(m) != 1 {
		e.t.Errorf("inactive introspection = %v, want only active:false", m)
	}
	return m["active"] == true
}

func throttleAt(failures int, first, last time.Time) store.Throttle {
	return store.Throttle{Failures: failures, First: first, Last: last}
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

// decodeClaims reads a JWT's payload without verifying it (the tests that
// care verify separately).
func decodeClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
