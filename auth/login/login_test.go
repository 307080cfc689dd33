package login

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/session"
)

// env is one relying party in front of one test OP, served by a real
// server that also has a /dest page reporting the session it sees.
type env struct {
	t        *testing.T
	op       *testOP
	clock    *authtest.Clock
	client   *Client
	sessions *session.Manager
	front    *httptest.Server
	public   *url.URL
	logs     *authtest.Buffer
}

// newEnv starts a test OP and a front server; mutate may change the config
// and options before New (defaults are valid).
func newEnv(t *testing.T, mutate func(*Config, *Options)) *env {
	t.Helper()
	clk := authtest.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	op := newTestOP(t, clk.Now)
	e := &env{t: t, op: op, clock: clk, logs: &authtest.Buffer{}}
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	sm, err := session.New(session.Config{Secrets: []auth.Secret{auth.Secret(secret)}}, session.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.sessions = sm
	mux := http.NewServeMux()
	e.front = httptest.NewServer(mux)
	t.Cleanup(e.front.Close)
	e.public, _ = url.Parse(e.front.URL)

	cfg := Config{
		Issuer:       op.issuer,
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
	}
	opts := Options{
		PublicURL:    e.public,
		Sessions:     sm,
		HTTPClient:   op.srv.Client(),
		AllowedHosts: []string{"app.example.com"},
		Logger:       slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:          clk.Now,
		// Most tests look at every token; TestSessionKeepsOnlyNeededTokens
		// covers the default of keeping less.
		KeepAccessToken: true,
		KeepIDToken:     true,
	}
	if mutate != nil {
		mutate(&cfg, &opts)
	}
	c, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := c.Discover(t.Context()); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	e.client = c
	c.Mount(mux)
	mux.HandleFunc("GET /dest/", func(w http.ResponseWriter, r *http.Request) {
		d, err := sm.Load(r)
		if err != nil {
			http.Error(w, "no session: "+err.Error(), http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "user=%s email=%s groups=%s path=%s", d.Identity.User, d.Identity.Email,
			strings.Join(d.Identity.Groups, ","), r.URL.Path)
	})
	return e
}

// browser is a cookie-jar client that does not follow redirects, so each
// hop can be inspected.
type browser struct {
	t   *testing.T
	jar *cookiejar.Jar
	c   *http.Client
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, jar: jar, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// get fetches u and returns the response with its body read.
func (b *browser) get(u string) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Get(u)
	if err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// start begins a sign-in for rd and returns the callback URL the OP sends
// the browser back to.
func (e *env) start(b *browser, rd string) string {
	e.t.Helper()
	resp, body := b.get(e.front.URL + PathStart + "?rd=" + url.QueryEscape(rd))
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("GET /oauth2/start = %d, want 302; body %s", resp.StatusCode, body)
	}
	authz := resp.Header.Get("Location")
	if !strings.HasPrefix(authz, e.op.issuer+"/authorize?") {
		e.t.Fatalf("start redirected to %q, want the OP's authorize endpoint", authz)
	}
	resp, body = b.get(authz)
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("GET authorize = %d, want 302; body %s", resp.StatusCode, body)
	}
	cb := resp.Header.Get("Location")
	if !strings.HasPrefix(cb, e.front.URL+PathCallback+"?") {
		e.t.Fatalf("authorize redirected to %q, want our callback", cb)
	}
	return cb
}

func sessionCookiesSet(resp *http.Response, base string) []string {
	var out []string
	for _, c := range resp.Cookies() {
		if (c.Name == base || strings.HasPrefix(c.Name, base+"_")) && !strings.HasPrefix(c.Name, base+"_login_") && c.MaxAge >= 0 && c.Value != "" {
			out = append(out, c.Name)
		}
	}
	return out
}

func pendingCookies(b *browser, u *url.URL) []string {
	cu := *u
	cu.Path = "/oauth2/callback"
	var out []string
	for _, c := range b.jar.Cookies(&cu) {
		if strings.HasPrefix(c.Name, "_portcullis_login_") {
			out = append(out, c.Name)
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	e := newEnv(t, nil)
	b := newBrowser(t)
	// Let the client follow the whole chain, as a browser would.
	follow := &http.Client{Jar: b.jar}
	resp, err := follow.Get(e.front.URL + PathStart + "?rd=" + url.QueryEscape("/dest/page?q=1"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("round trip ended with %d %s, want 200", resp.StatusCode, body)
	}
	if want := "user=alice email=alice@example.com groups=admins,staff path=/dest/page"; string(body) != want {
		t.Errorf("destination saw %q, want %q", body, want)
	}
	if got := resp.Request.URL.String(); got != e.front.URL+"/dest/page?q=1" {
		t.Errorf("final URL = %q, want %q", got, e.front.URL+"/dest/page?q=1")
	}
	e.op.mu.Lock()
	pkce := e.op.pkceChecked
	e.op.mu.Unlock()
	if pkce != 1 {
		t.Errorf("OP verified PKCE %d times, want 1", pkce)
	}
	if p := pendingCookies(b, e.public); len(p) != 0 {
		t.Errorf("pending cookies left after callback: %v", p)
	}

	// The saved session carries tokens and timestamps.
	req := httptest.NewRequest("GET", "/", nil)
	for _, c := range b.jar.Cookies(e.public) {
		req.AddCookie(c)
	}
	d, err := e.sessions.Load(req)
	if err != nil {
		t.Fatalf("Load after sign-in: %v", err)
	}
	if d.IDToken == "" || d.AccessToken == "" || d.RefreshToken == "" {
		t.Errorf("session tokens missing: id=%t access=%t refresh=%t", d.IDToken != "", d.AccessToken != "", d.RefreshToken != "")
	}
	if want := e.clock.Now().Add(600 * time.Second); !d.AccessExpiry.Equal(want) {
		t.Errorf("AccessExpiry = %v, want %v", d.AccessExpiry, want)
	}
	if want := e.clock.Now().Add(e.sessions.Lifetime()); !d.Identity.Expiry.Equal(want) || !d.ExpiresAt.Equal(want) {
		t.Errorf("Identity.Expiry = %v, ExpiresAt = %v, want %v", d.Identity.Expiry, d.ExpiresAt, want)
	}
	if d.Identity.Issuer != e.op.issuer || d.Identity.Subject != "user-123" || !d.Identity.EmailVerified || d.Identity.Name != "Alice Example" {
		t.Errorf("Identity = %+v, want iss %s, sub user-123, email_verified, name", d.Identity, e.op.issuer)
	}
	if strings.Contains(e.logs.String(), d.IDToken) || strings.Contains(e.logs.String(), d.RefreshToken) {
		t.Errorf("logs contain a token:\n%s", e.logs.String())
	}
}

func TestStartCookieAndRedirect(t *testing.T) {
	e := newEnv(t, nil)
	b := newBrowser(t)
	resp, _ := b.get(e.front.URL + PathStart + "?rd=%2F%2Fevil.com")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start = %d, want 302", resp.StatusCode)
	}
	var pc *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, "_portcullis_login_") {
			pc = c
		}
	}
	if pc == nil {
		t.Fatal("start set no pending cookie")
	}
	if !pc.HttpOnly || pc.SameSite != http.SameSiteLaxMode || pc.Path != "/" || pc.MaxAge != 600 || pc.Secure {
		t.Errorf("pending cookie = %+v, want HttpOnly, SameSite=Lax, Path=/, Max-Age=600, not Secure on http", pc)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	if got := q.Get("redirect_uri"); got != e.front.URL+"/oauth2/callback" {
		t.Errorf("redirect_uri = %q, want %q", got, e.front.URL+"/oauth2/callback")
	}
	if got := q.Get("scope"); got != "openid email profile" {
		t.Errorf("scope = %q, want %q", got, "openid email profile")
	}
	state := q.Get("state")
	id, ok := stateID(state)
	if !ok || pc.Name != "_portcullis_login_"+id {
		t.Errorf("state %q does not name cookie %q", state, pc.Name)
	}
	if _, secret, _ := strings.Cut(state, "."); len(secret) < 26 {
		t.Errorf("state secret part is %d chars, want >= 26 (128 bits)", len(secret))
	}
	if strings.Contains(resp.Header.Get("Location"), "evil") {
		t.Errorf("authorize URL mentions the refused rd: %s", resp.Header.Get("Location"))
	}
	// The refused rd became "/": finish and look where we land.
	cb := func() string {
		r, _ := b.get(resp.Header.Get("Location"))
		return r.Header.Get("Location")
	}()
	r2, _ := b.get(cb)
	if got := r2.Header.Get("Location"); got != e.front.URL+"/" {
		t.Errorf("callback redirected to %q, want %q", got, e.front.URL+"/")
	}
}

func TestPendingCookieSecure(t *testing.T) {
	e := newEnv(t, nil)
	sm, err := session.New(session.Config{Secrets: []auth.Secret{auth.Secret(base64.StdEncoding.EncodeToString(make([]byte, 32)))}},
		session.Options{Secure: true, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := url.Parse("https://portcullis.example.com")
	c, err := New(Config{Issuer: e.op.issuer, ClientID: testClientID}, Options{PublicURL: pub, Sessions: sm, HTTPClient: e.op.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Discover(t.Context()); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	c.Redirect(w, httptest.NewRequest("GET", "http://attacker.example/oauth2/start", nil), "/x")
	res := w.Result()
	if len(res.Cookies()) != 1 || !res.Cookies()[0].Secure {
		t.Errorf("pending cookies %v, want one Secure cookie", res.Cookies())
	}
	loc, _ := url.Parse(res.Header.Get("Location"))
	if got := loc.Query().Get("redirect_uri"); got != "https://portcullis.example.com/oauth2/callback" {
		t.Errorf("redirect_uri = %q, want it built from PublicURL, not Host", got)
	}
}

func TestTwoTabs(t *testing.T) {
	e := newEnv(t, nil)
	b := newBrowser(t)
	cbA := e.start(b, "/dest/a")
	cbB := e.start(b, "/dest/b")
	if n := len(pendingCookies(b, e.public)); n != 2 {
		t.Fatalf("%d pending cookies, want 2", n)
	}
	for _, tc := range []struct{ cb, want string }{{cbB, "/dest/b"}, {cbA, "/dest/a"}} {
		resp, body := b.get(tc.cb)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != e.front.URL+tc.want {
			t.Errorf("callback = %d to %q (%s), want 302 to %q", resp.StatusCode, resp.Header.Get("Location"), body, e.front.URL+tc.want)
		}
	}
	if p := pendingCookies(b, e.public); len(p) != 0 {
		t.Errorf("pending cookies left: %v", p)
	}
}

func TestPendingCookieLimit(t *testing.T) {
	e := newEnv(t, nil)
	b := newBrowser(t)
	var first string
	for i := range maxPending + 1 {
		resp, _ := b.get(e.front.URL + PathStart + "?rd=/dest/" + fmt.Sprint(i))
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("start %d = %d, want 302", i, resp.StatusCode)
		}
		if i == 0 {
			first = resp.Cookies()[0].Name
		}
		e.clock.Advance(time.Second) // creation order must be visible
	}
	got := pendingCookies(b, e.public)
	if len(got) != maxPending {
		t.Errorf("%d pending cookies after %d starts, want %d: %v", len(got), maxPending+1, maxPending, got)
	}
	for _, n := range got {
		if n == first {
			t.Errorf("oldest pending cookie %s was kept", first)
		}
	}
}

func TestRedirectBeforeDiscovery(t *testing.T) {
	clk := authtest.NewClock(time.Unix(1e9, 0))
	sm, err := session.New(session.Config{Secrets: []auth.Secret{auth.Secret(base64.StdEncoding.EncodeToString(make([]byte, 32)))}},
		session.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := url.Parse("http://localhost:4180")
	c, err := New(Config{}, Options{PublicURL: pub, IssuerURL: "http://127.0.0.1:1/oauth2/issuer", Sessions: sm})
	if err != nil {
		t.Fatal(err)
	}
	if c.Ready() {
		t.Error("Ready() = true before Discover")
	}
	for _, h := range []http.HandlerFunc{c.Start, c.Callback} {
		w := httptest.NewRecorder()
		h(w, httptest.NewRequest("GET", "/oauth2/start?rd=/x", nil))
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "sign-in is not available yet") {
			t.Errorf("before discovery: %d %q, want 503 saying sign-in is not available yet", w.Code, w.Body.String())
		}
		if len(w.Result().Cookies()) != 0 && w.Result().Cookies()[0].MaxAge >= 0 {
			t.Errorf("before discovery a cookie was set: %v", w.Result().Cookies())
		}
	}
	if err := c.Discover(t.Context()); err == nil {
		t.Error("Discover against a closed port succeeded")
	}
	if _, err := c.Refresh(t.Context(), &session.Data{RefreshToken: "x"}); !errors.Is(err, ErrNotReady) {
		t.Errorf("Refresh before discovery = %v, want ErrNotReady", err)
	}
}

func TestCallbackFailures(t *testing.T) {
	tests := []struct {
		name string
		// setup runs before the sign-in starts.
		setup func(e *env)
		// tamper changes the callback URL or the browser before the callback.
		tamper     func(e *env, b *browser, cb *url.URL)
		wantStatus int
		wantText   string
	}{
		{
			name: "issuer error",
			tamper: func(e *env, b *browser, cb *url.URL) {
				q := cb.Query()
				q.Del("code")
				q.Set("error", "access_denied")
				q.Set("error_description", "<script>alert(1)</script>")
				cb.RawQuery = q.Encode()
			},
			wantStatus: http.StatusForbidden, wantText: "access_denied",
		},
		{
			name:       "missing state",
			tamper:     func(e *env, b *browser, cb *url.URL) { setQuery(cb, "state", "") },
			wantStatus: http.StatusBadRequest, wantText: "state",
		},
		{
			name: "wrong state",
			tamper: func(e *env, b *browser, cb *url.URL) {
				id, _ := stateID(cb.Query().Get("state"))
				setQuery(cb, "state", id+".AAAAAAAAAAAAAAAAAAAAAAAAAA")
			},
			wantStatus: http.StatusBadRequest, wantText: "does not belong to this browser",
		},
		{
			name: "state naming no cookie",
			tamper: func(e *env, b *browser, cb *url.URL) {
				setQuery(cb, "state", "ABCDEFGHIJ.AAAAAAAAAAAAAAAAAAAAAAAAAA")
			},
			wantStatus: http.StatusBadRequest, wantText: "expired or was started in another browser",
		},
		{
			name: "missing cookie",
			tamper: func(e *env, b *browser, cb *url.URL) {
				jar, _ := cookiejar.New(nil)
				b.jar = jar
				b.c.Jar = jar
			},
			wantStatus: http.StatusBadRequest, wantText: "expired or was started in another browser",
		},
		{
			name:       "pending cookie expired",
			tamper:     func(e *env, b *browser, cb *url.URL) { e.clock.Advance(11 * time.Minute) },
			wantStatus: http.StatusBadRequest, wantText: "expired",
		},
		{
			name:       "missing code",
			tamper:     func(e *env, b *browser, cb *url.URL) { setQuery(cb, "code", "") },
			wantStatus: http.StatusBadRequest, wantText: "code",
		},
		{
			name:       "unknown code",
			tamper:     func(e *env, b *browser, cb *url.URL) { setQuery(cb, "code", "NOT-A-CODE") },
			wantStatus: http.StatusBadRequest, wantText: "did not accept the sign-in code",
		},
		{
			name: "replayed code",
			tamper: func(e *env, b *browser, cb *url.URL) {
				// Use the code once in a successful sign-in from another
				// tab, then present it again with a fresh pending cookie.
				b2 := newBrowser(e.t)
				b2.jar = b.jar
				b2.c.Jar = b.jar
				resp, _ := b2.get(cb.String())
				if resp.StatusCode != http.StatusFound {
					e.t.Fatalf("first use of the code = %d, want 302", resp.StatusCode)
				}
				fresh, _ := url.Parse(e.start(b, "/dest/"))
				setQuery(cb, "state", fresh.Query().Get("state"))
			},
			wantStatus: http.StatusBadRequest, wantText: "did not accept the sign-in code",
		},
		{
			name: "bad nonce",
			setup: func(e *env) {
				e.op.set(func(op *testOP) { op.mutateID = func(c map[string]any) { c["nonce"] = "other" } })
			},
			wantStatus: http.StatusUnauthorized, wantText: "could not be verified",
		},
		{
			name: "no nonce",
			setup: func(e *env) {
				e.op.set(func(op *testOP) { op.mutateID = func(c map[string]any) { delete(c, "nonce") } })
			},
			wantStatus: http.StatusUnauthorized, wantText: "could not be verified",
		},
		{
			name: "expired id token",
			setup: func(e *env) {
				e.op.set(func(op *testOP) {
					op.mutateID = func(c map[string]any) { c["exp"] = op.now().Add(-time.Minute).Unix() }
				})
			},
			wantStatus: http.StatusUnauthorized, wantText: "could not be verified",
		},
		{
			name: "wrong iss",
			setup: func(e *env) {
				e.op.set(func(op *testOP) { op.mutateID = func(c map[string]any) { c["iss"] = "https://evil.example" } })
			},
			wantStatus: http.StatusUnauthorized, wantText: "could not be verified",
		},
		{
			name: "wrong aud",
			setup: func(e *env) {
				e.op.set(func(op *testOP) { op.mutateID = func(c map[string]any) { c["aud"] = "another-client" } })
			},
			wantStatus: http.StatusUnauthorized, wantText: "could not be verified",
		},
		{
			name: "alg none",
			setup: func(e *env) {
				e.op.set(func(op *testOP) { op.sign = signNone; op.algs = []string{"none", "RS256"} })
			},
			wantStatus: http.StatusUnauthorized, wantText: "could not be verified",
		},
		{
			name:       "unknown kid",
			setup:      func(e *env) { e.op.set(func(op *testOP) { op.sign = signUnknownKID }) },
			wantStatus: http.StatusUnauthorized, wantText: "could not be verified",
		},
		{
			name:       "bad signature",
			setup:      func(e *env) { e.op.set(func(op *testOP) { op.sign = signWrongKey }) },
			wantStatus: http.StatusUnauthorized, wantText: "could not be verified",
		},
		{
			name: "wrong at_hash",
			setup: func(e *env) {
				e.op.set(func(op *testOP) { op.mutateID = func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" } })
			},
			wantStatus: http.StatusUnauthorized, wantText: "could not be verified",
		},
		{
			name:       "no sub",
			setup:      func(e *env) { e.op.set(func(op *testOP) { op.mutateID = func(c map[string]any) { delete(c, "sub") } }) },
			wantStatus: http.StatusUnauthorized, wantText: "could not be verified",
		},
		{
			name:       "RFC 9207 iss parameter wrong",
			setup:      func(e *env) { e.op.set(func(op *testOP) { op.issParam = true }) },
			tamper:     func(e *env, b *browser, cb *url.URL) { setQuery(cb, "iss", "https://evil.example") },
			wantStatus: http.StatusBadRequest, wantText: "unexpected identity provider",
		},
		{
			name:       "RFC 9207 iss parameter missing",
			setup:      func(e *env) { e.op.set(func(op *testOP) { op.issParam = true }) },
			tamper:     func(e *env, b *browser, cb *url.URL) { setQuery(cb, "iss", "") },
			wantStatus: http.StatusBadRequest, wantText: "unexpected identity provider",
		},
		{
			name:       "token endpoint unreachable",
			tamper:     func(e *env, b *browser, cb *url.URL) { e.op.set(func(op *testOP) { op.tokenDown = true }) },
			wantStatus: http.StatusBadGateway, wantText: "could not be reached",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config, o *Options) {})
			if tt.setup != nil {
				tt.setup(e)
				// Discovery metadata may have changed.
				if err := e.client.Discover(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			b := newBrowser(t)
			cbRaw := e.start(b, "/dest/after")
			cb, _ := url.Parse(cbRaw)
			code := cb.Query().Get("code")
			if tt.tamper != nil {
				tt.tamper(e, b, cb)
			}
			resp, body := b.get(cb.String())
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("callback status = %d, want %d; body:\n%s", resp.StatusCode, tt.wantStatus, body)
			}
			if resp.StatusCode >= 500 && resp.StatusCode != http.StatusBadGateway {
				t.Errorf("callback answered %d: never 5xx for a bad request", resp.StatusCode)
			}
			if !strings.Contains(body, tt.wantText) {
				t.Errorf("error page does not say %q:\n%s", tt.wantText, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q, want text/html", ct)
			}
			if !strings.Contains(body, ">Try again</a>") || !strings.Contains(body, `href="`+e.front.URL+`/oauth2/start`) {
				t.Errorf("error page has no Try again link to /oauth2/start:\n%s", body)
			}
			for _, bad := range []string{code, "<script>", "panic", "goroutine", testClientSecret} {
				if bad != "" && strings.Contains(body, bad) {
					t.Errorf("error page contains %q:\n%s", bad, body)
				}
			}
			if s := sessionCookiesSet(resp, "_portcullis"); len(s) != 0 {
				t.Errorf("failed callback set session cookies %v", s)
			}
			if p := pendingCookies(b, e.public); len(p) != 0 && tt.name != "missing state" && tt.name != "state naming no cookie" {
				t.Errorf("pending cookie not expired by the callback: %v", p)
			}
			if !strings.Contains(e.logs.String(), "callback") {
				t.Errorf("failure not logged; logs:\n%s", e.logs.String())
			}
			if code != "" && strings.Contains(e.logs.String(), code) {
				t.Errorf("logs contain the code:\n%s", e.logs.String())
			}
		})
	}
}

func setQuery(u *url.URL, k, v string) {
	q := u.Query()
	if v == "" {
		q.Del(k)
	} else {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
}

func TestUserInfoFillsGroups(t *testing.T) {
	e := newEnv(t, nil)
	e.op.set(func(op *testOP) { op.omitGroups = true; op.userinfoGroups = []string{"from-userinfo"} })
	b := newBrowser(t)
	resp, body := b.get(e.start(b, "/dest/x"))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback = %d %s, want 302", resp.StatusCode, body)
	}
	resp, body = b.get(resp.Header.Get("Location"))
	if !strings.Contains(body, "groups=from-userinfo ") {
		t.Errorf("destination saw %q, want groups from userinfo", body)
	}

	// A userinfo answer for another subject is ignored.
	e.op.set(func(op *testOP) { op.sub = "someone-else" })
	b = newBrowser(t)
	cb := e.start(b, "/dest/x")
	e.op.set(func(op *testOP) { op.sub = "user-123" }) // userinfo now answers for user-123, the code for someone-else
	resp, _ = b.get(cb)
	_, body = b.get(resp.Header.Get("Location"))
	if !strings.Contains(body, "user=alice") || strings.Contains(body, "from-userinfo") {
		t.Errorf("destination saw %q, want no groups from a userinfo of another sub", body)
	}
}

func TestPendingCookieGarbageExpired(t *testing.T) {
	e := newEnv(t, nil)
	b := newBrowser(t)
	cu := *e.public
	cu.Path = "/oauth2/"
	b.jar.SetCookies(&cu, []*http.Cookie{{Name: "_portcullis_login_GARBAGE234", Value: "not-sealed", Path: "/oauth2/"}})
	resp, _ := b.get(e.front.URL + PathStart + "?rd=/x")
	expired := false
	for _, c := range resp.Cookies() {
		if c.Name == "_portcullis_login_GARBAGE234" && c.MaxAge < 0 {
			expired = true
		}
	}
	if !expired {
		t.Errorf("start did not expire an unreadable pending cookie; Set-Cookie: %v", resp.Header["Set-Cookie"])
	}
}

// By default a session keeps only what later requests need: the refresh
// token always, the ID token only for sign-out's id_token_hint, the access
// token never — so big tokens do not multiply the session's cookies.
func TestSessionKeepsOnlyNeededTokens(t *testing.T) {
	for _, tt := range []struct {
		name       string
		endIssuer  bool
		wantIDHint bool
	}{
		{"issuer with end_session_endpoint keeps the hint", false, true},
		{"built-in issuer needs no hint", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(_ *Config, o *Options) {
				o.KeepAccessToken, o.KeepIDToken = false, false
				if tt.endIssuer {
					o.EndIssuerSession = func(http.ResponseWriter, *http.Request) {}
				}
			})
			e.op.set(func(op *testOP) { op.endSession = true })
			if err := e.client.Discover(t.Context()); err != nil {
				t.Fatal(err)
			}
			b := newBrowser(t)
			follow := &http.Client{Jar: b.jar}
			resp, err := follow.Get(e.front.URL + PathStart)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			req := httptest.NewRequest("GET", "/", nil)
			for _, c := range b.jar.Cookies(e.public) {
				req.AddCookie(c)
			}
			d, err := e.sessions.Load(req)
			if err != nil {
				t.Fatalf("Load after sign-in: %v", err)
			}
			if d.AccessToken != "" || d.RefreshToken == "" || (d.IDToken != "") != tt.wantIDHint {
				t.Errorf("session tokens: id=%t access=%t refresh=%t, want id=%t access=false refresh=true",
					d.IDToken != "", d.AccessToken != "", d.RefreshToken != "", tt.wantIDHint)
			}
		})
	}
}

// email_verified decides whether an email counts; an issuer that never
// sends the claim needs the explicit insecure_trust_unverified_email.
func TestEmailVerified(t *testing.T) {
	for _, tt := range []struct {
		name   string
		trust  bool
		claims map[string]any
		want   bool
	}{
		{"verified", false, map[string]any{"email": "a@x.com", "email_verified": true}, true},
		{"verified as string", false, map[string]any{"email": "a@x.com", "email_verified": "true"}, true},
		{"explicitly unverified", false, map[string]any{"email": "a@x.com", "email_verified": false}, false},
		{"claim absent", false, map[string]any{"email": "a@x.com"}, false},
		{"claim absent, trusted", true, map[string]any{"email": "a@x.com"}, true},
		{"explicitly unverified, trusted", true, map[string]any{"email": "a@x.com", "email_verified": false}, false},
		{"no email, trusted", true, map[string]any{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config, _ *Options) { c.InsecureTrustUnverifiedEmail = tt.trust })
			if got := e.client.IdentityFromClaims(tt.claims).EmailVerified; got != tt.want {
				t.Errorf("EmailVerified = %v, want %v", got, tt.want)
			}
		})
	}
}

// With claims.user set to the email claim, an unverified address does not
// become the user name.
func TestUserFromEmailNeedsVerification(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Options) { c.Claims.User = "email" })
	if got := e.client.IdentityFromClaims(map[string]any{"sub": "s1", "email": "ceo@x.com"}).User; got != "s1" {
		t.Errorf("User from an unverified email = %q, want the subject", got)
	}
	if got := e.client.IdentityFromClaims(map[string]any{"sub": "s1", "email": "ceo@x.com", "email_verified": true}).User; got != "ceo@x.com" {
		t.Errorf("User from a verified email = %q, want it", got)
	}
}

// IdentityFromClaims may be given claims shared with a cache: the groups
// it returns are its own.
func TestIdentityFromClaimsSharesNoGroups(t *testing.T) {
	e := newEnv(t, nil)
	for _, groups := range []any{[]string{"a", "b"}, []any{"a", "b"}} {
		claims := map[string]any{"sub": "s1", "groups": groups}
		id := e.client.IdentityFromClaims(claims)
		if len(id.Groups) != 2 {
			t.Fatalf("Groups = %q, want [a b]", id.Groups)
		}
		id.Groups[0] = "changed"
		if again := e.client.IdentityFromClaims(claims); again.Groups[0] != "a" {
			t.Errorf("changing the returned groups (%T) changed the claims: %q", groups, again.Groups)
		}
	}
}
