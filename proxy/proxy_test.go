package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/issuer"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"github.com/portcullis-proxy/portcullis/auth/login"
	"github.com/portcullis-proxy/portcullis/auth/policy"
	"github.com/portcullis-proxy/portcullis/auth/session"
	"github.com/portcullis-proxy/portcullis/upstream"
	"github.com/portcullis-proxy/portcullis/upstream/upstreamtest"
)

// env is a complete front door on a real listener: the built-in issuer
// mounted at its paths, the proxy as its client, a recording backend.
type env struct {
	t        *testing.T
	ts       *httptest.Server
	base     string
	backend  *upstreamtest.Backend
	issuer   *issuer.Issuer
	sessions *session.Manager
	client   *http.Client // trusts ts; no cookie jar
}

type envConfig struct {
	h2      bool
	metrics *Metrics
	logger  *slog.Logger
	scopes  []string
	countTo *countingTransport // counts the proxy's own calls to the issuer
	proxy   Config
	issuer  issuer.Config
	trusted []string
}

const testClientSecret = "test-client-secret-0123456789-abcdefghij"

func hashOf(t testing.TB, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func randomSecret() auth.Secret {
	var b [32]byte
	rand.Read(b[:])
	return auth.Secret(base64.StdEncoding.EncodeToString(b[:]))
}

func newEnv(t *testing.T, mutate func(*envConfig)) *env {
	t.Helper()
	backend := upstreamtest.NewBackend(t)
	ts := httptest.NewUnstartedServer(nil)
	ec := &envConfig{
		issuer: issuer.Config{
			Users: []issuer.UserConfig{
				{Username: "alice", Email: "alice@example.com", Name: "Alice", Groups: []string{"staff"}, PasswordHash: hashOf(t, "alice-pw")},
			},
			Clients: []issuer.ClientConfig{{
				ID: "script", Secret: testClientSecret, Grants: []string{"client_credentials"}, Scopes: []string{"read"},
			}},
		},
	}
	ec.proxy.Routes = []RouteConfig{{Config: upstream.Config{Name: "app", URL: backend.URL()}, Public: []string{"/public/"}}}
	if mutate != nil {
		mutate(ec)
	}
	scheme := "http"
	if ec.h2 {
		scheme = "https"
		ts.EnableHTTP2 = true
	}
	base := scheme + "://" + ts.Listener.Addr().String()
	pub, _ := url.Parse(base)
	ec.proxy.PublicURL = base
	ec.proxy.TrustedProxies = ec.trusted

	st := store.NewMemory(store.Options{})
	t.Cleanup(func() { st.Close() })
	ec.issuer.Clients = append(ec.issuer.Clients, issuer.ClientConfig{
		ID: "portcullis", Secret: testClientSecret, RedirectURIs: []string{base + "/oauth2/callback"},
		Grants: []string{"authorization_code", "refresh_token"},
	})
	iss, err := issuer.New(t.Context(), ec.issuer, issuer.Options{PublicURL: pub, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	sessions, err := session.New(session.Config{Secrets: []auth.Secret{randomSecret()}}, session.Options{Secure: ec.h2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sessions.Close() })

	if ec.h2 {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	noFollow := *ts.Client()
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	client := &noFollow

	scopes := ec.scopes
	if scopes == nil {
		scopes = []string{"openid", "email", "profile", "groups"}
	}
	loginHTTP := ts.Client()
	if ec.countTo != nil {
		ec.countTo.base = loginHTTP.Transport
		loginHTTP = &http.Client{Transport: ec.countTo}
	}
	lc, err := login.New(login.Config{Issuer: "builtin", ClientID: "portcullis", ClientSecret: testClientSecret, Scopes: scopes}, login.Options{
		PublicURL: pub, IssuerURL: iss.URL(), Sessions: sessions, HTTPClient: loginHTTP,
		KeepAccessToken:  routesForward(ec.proxy.Routes, "access_token"),
		KeepIDToken:      routesForward(ec.proxy.Routes, "id_token"),
		EndIssuerSession: iss.EndLoginSession,
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(ec.proxy, Options{
		Sessions: sessions, Login: lc, Issuer: iss,
		Bearer: IssuerBearer{Issuer: iss, Login: lc}, BearerAudience: base,
		Assert:  AssertionSigner(iss, base),
		Metrics: ec.metrics,
		Logger:  ec.logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = h
	if err := lc.Discover(t.Context()); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ts: ts, base: base, backend: backend, issuer: iss, sessions: sessions, client: client}
}

func routesForward(rs []RouteConfig, item string) bool {
	for _, r := range rs {
		for _, f := range r.Forward {
			if f == item {
				return true
			}
		}
	}
	return false
}

// browser returns a cookie-jar client that follows redirects.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *e.ts.Client()
	c.Jar = jar
	return &c
}

func do(t *testing.T, c *http.Client, method, u, accept string, body url.Values) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	req, _ := http.NewRequest(method, u, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var (
	formAction = regexp.MustCompile(`<form[^>]*method="post"[^>]*action="([^"]*)"|<form[^>]*action="([^"]*)"[^>]*method="post"`)
	hiddenIn   = regexp.MustCompile(`<input[^>]*type="hidden"[^>]*>`)
	attrRe     = regexp.MustCompile(`(name|value)="([^"]*)"`)
)

// signIn drives the login form from start and returns the final response.
func (e *env) signIn(c *http.Client, start, user, pass string) (*http.Response, string) {
	e.t.Helper()
	resp, body := do(e.t, c, "GET", start, "text/html", nil)
	m := formAction.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		e.t.Fatalf("GET %s: %d at %s, want the login form:\n%s", start, resp.StatusCode, resp.Request.URL, body)
	}
	action := m[1] + m[2]
	form := url.Values{}
	for _, in := range hiddenIn.FindAllString(body, -1) {
		var name, value string
		for _, a := range attrRe.FindAllStringSubmatch(in, -1) {
			if a[1] == "name" {
				name = a[2]
			} else {
				value = a[2]
			}
		}
		form.Set(name, htmlUnescape(value))
	}
	form.Set("username", user)
	form.Set("password", pass)
	u, _ := resp.Request.URL.Parse(htmlUnescape(action))
	return do(e.t, c, "POST", u.String(), "text/html", form)
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

func modes(t *testing.T, f func(t *testing.T, h2 bool)) {
	t.Run("h1", func(t *testing.T) { f(t, false) })
	t.Run("h2", func(t *testing.T) { f(t, true) })
}

func TestSignInAndForward(t *testing.T) {
	modes(t, func(t *testing.T, h2 bool) {
		e := newEnv(t, func(c *envConfig) { c.h2 = h2 })
		c := e.browser()

		resp, body := do(t, c, "GET", e.base+"/private", "application/json", nil)
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Bearer" || strings.TrimSpace(body) != `{"error":"unauthenticated"}` {
			t.Fatalf("API without session = %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
		noFollow := *c
		noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, _ = do(t, &noFollow, "GET", e.base+"/private", "text/html,application/xhtml+xml", nil)
		if resp.StatusCode != 302 || !strings.HasPrefix(resp.Header.Get("Location"), e.issuer.URL()+"/authorize?") {
			t.Fatalf("browser without session = %d to %q, want 302 to the issuer", resp.StatusCode, resp.Header.Get("Location"))
		}
		if n := len(e.backend.Requests()); n != 0 {
			t.Fatalf("backend saw %d requests before sign-in", n)
		}

		resp, _ = e.signIn(c, e.base+"/private/x?q=1", "alice", "alice-pw")
		if resp.StatusCode != 200 || resp.Request.URL.String() != e.base+"/private/x?q=1" {
			t.Fatalf("after sign-in: %d at %s", resp.StatusCode, resp.Request.URL)
		}
		if h2 && resp.Proto != "HTTP/2.0" {
			t.Errorf("proto = %s, want HTTP/2.0", resp.Proto)
		}

		req, _ := http.NewRequest("GET", e.base+"/private//a/./b/../c", nil)
		for _, name := range []string{"X-Forwarded-User", "x-forwarded-email", "X_Forwarded_Groups", "X-Forwarded-Preferred-Username", "X-Portcullis-Assertion", "X-Auth-Request-User"} {
			req.Header.Set(name, "mallory")
		}
		req.Header.Set("Cookie", "theme=dark")
		if _, err := c.Do(req); err != nil {
			t.Fatal(err)
		}
		got := e.backend.Last(t)
		if got.Path != "/private/a/c" {
			t.Errorf("backend path = %q, want the canonical /private/a/c", got.Path)
		}
		want := map[string]string{"X-Forwarded-User": "alice", "X-Forwarded-Email": "alice@example.com", "X-Forwarded-Groups": "staff", "X-Forwarded-Preferred-Username": "alice"}
		for k, v := range want {
			if vals := got.Header[k]; len(vals) != 1 || vals[0] != v {
				t.Errorf("backend %s = %q, want [%s]", k, vals, v)
			}
		}
		for k, vals := range got.Header {
			for _, v := range vals {
				if strings.Contains(v, "mallory") {
					t.Errorf("spoofed %s: %q reached the backend", k, v)
				}
				if k == "Cookie" && strings.Contains(v, "_portcullis") {
					t.Errorf("session cookie reached the backend: %q", v)
				}
			}
		}
		if c := got.Header["Cookie"]; len(c) != 1 || !strings.Contains(c[0], "theme=dark") {
			t.Errorf("backend Cookie = %q, want the app's own cookie kept", c)
		}

		resp, body = do(t, c, "GET", e.base+"/oauth2/userinfo", "", nil)
		var ui map[string]any
		json.Unmarshal([]byte(body), &ui)
		if resp.StatusCode != 200 || ui["user"] != "alice" || ui["email"] != "alice@example.com" || ui["name"] != "Alice" {
			t.Errorf("userinfo = %d %s", resp.StatusCode, body)
		}
	})
}

// rawGet sends path exactly as given, which net/http's client would not.
func rawGet(t *testing.T, addr, path string, header string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n%sConnection: close\r\n\r\n", path, addr, header)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// Every normalisation trick against a route with public ["/public/"]: an
// anonymous caller never reaches a non-public path, and what the backend
// receives is exactly the canonical path.
func TestPathTricksNeverOpenProtectedPaths(t *testing.T) {
	e := newEnv(t, nil)
	addr := e.ts.Listener.Addr().String()
	tricks := []string{
		"/public/../admin", "/public/%2e%2e/admin", "/public/%2E%2E/admin", "/public/.%2e/admin",
		"/public%2F..%2Fadmin", "/public%2f..%2fadmin", "//public/../admin", "/public/x%00", "/public/x%00/../../admin",
		"/admin;/public/", "/admin%23/public/", "/public/..;/admin", "/public/%2e%2e;/admin", "/public\\..\\admin",
		"/public/%5C../admin", "/./public/../admin", "/public/./../admin", "/public/%252e%252e/admin",
		"/PUBLIC/x", "/public", "/publicity", "/public%2fx",
	}
	for _, p := range tricks {
		before := len(e.backend.Requests())
		code, _ := rawGet(t, addr, p, "")
		reqs := e.backend.Requests()
		if code != 400 && code != 401 && code != 200 {
			t.Errorf("GET %q = %d, want 400, 401 or a public 200", p, code)
		}
		for _, r := range reqs[before:] {
			if !strings.HasPrefix(r.RequestURI, "/public/") {
				t.Errorf("GET %q reached the backend as %q", p, r.RequestURI)
			}
		}
		if code == 200 && len(reqs) == before {
			t.Errorf("GET %q = 200 without reaching the backend", p)
		}
	}
	if code, _ := rawGet(t, addr, "/public/a/../b%20c/%7Ed", ""); code != 200 {
		t.Fatalf("public path = %d, want 200", code)
	}
	if got := e.backend.Last(t).RequestURI; got != "/public/b%20c/~d" {
		t.Errorf("backend request URI = %q, want exactly the canonical /public/b%%20c/~d", got)
	}
	if code, body := rawGet(t, addr, "/a%2Fb", ""); code != 400 || !strings.Contains(body, "bad_request") {
		t.Errorf("encoded slash = %d %s, want 400", code, body)
	}
}

func TestBadCookiesMeanSignedOut(t *testing.T) {
	e := newEnv(t, nil)
	for _, cookie := range []string{
		"_portcullis=garbage",
		"_portcullis=" + strings.Repeat("A", 5000),
		"_portcullis=MTY3|bad|sig; _portcullis_1=x",
		"_portcullis_login_abc=zzz",
	} {
		code, body := rawGet(t, e.ts.Listener.Addr().String(), "/private", "Cookie: "+cookie+"\r\n")
		if code != 401 {
			t.Errorf("cookie %.40q: %d %s, want 401", cookie, code, body)
		}
	}
}

func TestPolicyForbids(t *testing.T) {
	e := newEnv(t, func(c *envConfig) {
		c.proxy.Routes[0].Allow.Groups = []string{"admins"}
	})
	c := e.browser()
	resp, body := e.signIn(c, e.base+"/", "alice", "alice-pw")
	if resp.StatusCode != 403 || !strings.Contains(body, "allowed group") || strings.Contains(body, "admins") {
		t.Fatalf("signed in, not allowed: %d\n%s", resp.StatusCode, body)
	}
	resp, body = do(t, c, "GET", e.base+"/x", "application/json", nil)
	if resp.StatusCode != 403 || !strings.Contains(body, `"forbidden"`) {
		t.Errorf("API forbidden = %d %s", resp.StatusCode, body)
	}
	// Still signed in: authentication and authorisation are separate.
	if resp, _ := do(t, c, "GET", e.base+"/oauth2/userinfo", "", nil); resp.StatusCode != 200 {
		t.Errorf("userinfo of a refused user = %d, want 200", resp.StatusCode)
	}
	if len(e.backend.Requests()) != 0 {
		t.Error("a refused request reached the backend")
	}
}

func TestOpenRedirectsEndLocal(t *testing.T) {
	e := newEnv(t, nil)
	for _, rd := range []string{"//evil.com", "/\\evil.com", "https://evil.com", "/%2F%2Fevil.com", "/%09/evil.com", "/%5Cevil.com", "https://trusted.example.com@evil.com"} {
		c := e.browser()
		resp, _ := e.signIn(c, e.base+"/oauth2/start?rd="+url.QueryEscape(rd), "alice", "alice-pw")
		if u := resp.Request.URL; u.Host != e.ts.Listener.Addr().String() {
			t.Errorf("rd=%q ended at %s, want a local path", rd, u)
		}
	}
}

func TestLargeSessionIsChunkedAndSignOutClearsAll(t *testing.T) {
	var groups []string
	for i := range 300 {
		groups = append(groups, fmt.Sprintf("group-with-a-long-name-%03d", i))
	}
	e := newEnv(t, func(c *envConfig) {
		c.issuer.Users[0].Groups = groups
		c.proxy.Routes[0].Forward = []string{"user"}
	})
	c := e.browser()
	e.signIn(c, e.base+"/", "alice", "alice-pw")
	u, _ := url.Parse(e.base)
	var chunks int
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, "_portcullis_") && !strings.HasPrefix(ck.Name, "_portcullis_login") {
			chunks++
		}
	}
	if chunks < 2 {
		t.Fatalf("8 KB of groups produced %d chunk cookies, want at least 2", chunks)
	}
	resp, body := do(t, c, "GET", e.base+"/oauth2/userinfo", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "group-with-a-long-name-299") {
		t.Fatalf("chunked session did not round-trip: %d", resp.StatusCode)
	}
	do(t, c, "GET", e.base+"/oauth2/sign_out", "text/html", nil)
	for _, ck := range c.Jar.Cookies(u) {
		if strings.HasPrefix(ck.Name, "_portcullis") && !strings.HasPrefix(ck.Name, "_portcullis_login") {
			t.Errorf("cookie %s survived sign-out", ck.Name)
		}
	}
}

func TestForwardAuth(t *testing.T) {
	e := newEnv(t, func(c *envConfig) {
		c.trusted = []string{"127.0.0.1/32"}
		c.proxy.Routes[0].Allow.Groups = []string{"staff"}
	})
	c := e.browser()
	e.signIn(c, e.base+"/", "alice", "alice-pw")
	ask := func(c *http.Client, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest("GET", e.base+"/oauth2/auth", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := ask(c, map[string]string{"X-Original-URI": "/app/page"})
	if resp.StatusCode != 202 || resp.Header.Get("X-Auth-Request-User") != "alice" || resp.Header.Get("X-Forwarded-User") != "alice" {
		t.Fatalf("signed-in forward-auth = %d, user %q", resp.StatusCode, resp.Header.Get("X-Auth-Request-User"))
	}
	anon := e.browser()
	if resp := ask(anon, map[string]string{"X-Original-URI": "/app/page"}); resp.StatusCode != 401 {
		t.Errorf("anonymous forward-auth = %d, want 401", resp.StatusCode)
	}
	if resp := ask(anon, map[string]string{"X-Original-URI": "/public/x"}); resp.StatusCode != 202 {
		t.Errorf("anonymous forward-auth of a public path = %d, want 202", resp.StatusCode)
	}
	if resp := ask(anon, map[string]string{"X-Original-URI": "/public/../app"}); resp.StatusCode != 401 {
		t.Errorf("forward-auth of /public/../app = %d, want 401", resp.StatusCode)
	}
	if resp := ask(anon, map[string]string{"X-Forwarded-Uri": "/public%2F..%2Fapp"}); resp.StatusCode != 403 {
		t.Errorf("forward-auth of an ambiguous path = %d, want 403", resp.StatusCode)
	}
	if resp := ask(c, map[string]string{"X-Original-URI": "/x", "User-Agent": "curl/8"}); resp.StatusCode != 202 {
		t.Errorf("User-Agent changed the answer: %d", resp.StatusCode)
	}
}

// From a peer that is not a trusted proxy, the headers describing the
// original request are ignored: asking about a public path does not help.
func TestForwardAuthIgnoresUntrustedPeers(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequest("GET", e.base+"/oauth2/auth", nil)
	req.Header.Set("X-Original-URI", "/public/x")
	req.Header.Set("X-Forwarded-Uri", "/public/x")
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("untrusted peer asking about a public path = %d, want 401 (judged as /)", resp.StatusCode)
	}
}

func TestBearerTokens(t *testing.T) {
	e := newEnv(t, func(c *envConfig) {
		c.proxy.Routes[0].Bearer = true
	})
	tok := clientCredentials(t, e)
	call := func(token string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", e.base+"/api/x", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := call(tok)
	if resp.StatusCode != 200 {
		t.Fatalf("client-credentials token = %d %s", resp.StatusCode, body)
	}
	if got := e.backend.Last(t).Header.Get("X-Forwarded-User"); got != "script" {
		t.Errorf("backend X-Forwarded-User = %q, want the client id", got)
	}
	for _, bad := range []string{"garbage", tok[:len(tok)-4] + "AAAA", strings.Replace(tok, ".", "x.", 1)} {
		resp, _ := call(bad)
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("bad token = %d %q, want 401 invalid_token", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

func clientCredentials(t *testing.T, e *env) string {
	t.Helper()
	req, _ := http.NewRequest("POST", e.issuer.URL()+"/token", strings.NewReader("grant_type=client_credentials&scope=read"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("script", testClientSecret)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tr)
	if resp.StatusCode != 200 || tr.AccessToken == "" {
		t.Fatalf("client_credentials = %d", resp.StatusCode)
	}
	return tr.AccessToken
}

func TestServerSentEventsAndWebsocketThroughGate(t *testing.T) {
	e := newEnv(t, nil)
	c := e.browser()
	e.signIn(c, e.base+"/", "alice", "alice-pw")

	release := make(chan struct{})
	e.backend.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "websocket" {
			hj, _ := w.(http.Hijacker)
			conn, brw, err := hj.Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			io.Copy(conn, brw) // echo
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: last\n\n")
	}))

	resp, err := c.Get(e.base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	close(release)
	resp.Body.Close()
	if err != nil || line != "data: first\n" {
		t.Fatalf("first SSE event = %q, %v; want it before the stream ends", line, err)
	}

	u, _ := url.Parse(e.base)
	var cookies []string
	for _, ck := range c.Jar.Cookies(u) {
		cookies = append(cookies, ck.Name+"="+ck.Value)
	}
	conn, err := net.Dial("tcp", e.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: %s\r\n\r\n", u.Host, strings.Join(cookies, "; "))
	br := bufio.NewReader(conn)
	wsResp, err := http.ReadResponse(br, nil)
	if err != nil || wsResp.StatusCode != 101 {
		t.Fatalf("websocket upgrade through the gate = %v, %v", wsResp, err)
	}
	fmt.Fprint(conn, "ping-frame")
	buf := make([]byte, len("ping-frame"))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping-frame" {
		t.Fatalf("websocket echo = %q, %v", buf, err)
	}
}

// countingTransport counts refresh_token grants the proxy sends.
type countingTransport struct {
	base      http.RoundTripper
	mu        sync.Mutex
	refreshes int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil && strings.HasSuffix(r.URL.Path, "/token") {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		if strings.Contains(string(b), "grant_type=refresh_token") {
			c.mu.Lock()
			c.refreshes++
			c.mu.Unlock()
		}
	}
	return c.base.RoundTrip(r)
}

// A session whose access token is due is refreshed once, however many
// requests arrive at the same moment, and the renewed session keeps working.
func TestRefreshOncePerSession(t *testing.T) {
	counter := &countingTransport{}
	e := newEnv(t, func(c *envConfig) {
		c.scopes = []string{"openid", "email", "profile", "groups", "offline_access"}
		c.countTo = counter
		// Shorter than session.refresh_after (5m): due at once.
		c.issuer.Tokens.AccessTTL = 2 * time.Minute
	})
	c := e.browser()
	e.signIn(c, e.base+"/", "alice", "alice-pw")
	counter.mu.Lock()
	counter.refreshes = 0 // the sign-in's own landing request was already due
	counter.mu.Unlock()
	u, _ := url.Parse(e.base)
	var cookie []string
	for _, ck := range c.Jar.Cookies(u) {
		cookie = append(cookie, ck.Name+"="+ck.Value)
	}
	// Twenty requests a browser sends at once, all with the same cookie.
	var wg sync.WaitGroup
	results := make(chan *http.Response, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", e.base+"/x", nil)
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Cookie", strings.Join(cookie, "; "))
			resp, err := e.client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			results <- resp
		}()
	}
	wg.Wait()
	close(results)
	var renewed []*http.Cookie
	for resp := range results {
		if resp.StatusCode != 200 {
			t.Errorf("concurrent request during refresh = %d, want 200", resp.StatusCode)
		}
		if len(resp.Cookies()) > 0 {
			renewed = resp.Cookies()
		}
	}
	counter.mu.Lock()
	n := counter.refreshes
	counter.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d refresh grants for one session, want 1", n)
	}
	if renewed == nil {
		t.Fatal("no response carried the renewed session")
	}
	// The renewed session works: its rotated refresh token is the live one
	// (a replayed one would have revoked the whole family).
	c.Jar.SetCookies(u, renewed)
	if code, body := rawGetWithJar(t, c, e.base+"/y"); code != 200 {
		t.Fatalf("after refresh: %d %s, want 200", code, body)
	}
}

func rawGetWithJar(t *testing.T, c *http.Client, u string) (int, string) {
	resp, body := do(t, c, "GET", u, "application/json", nil)
	return resp.StatusCode, body
}

var _ = context.Background

// allow_encoded_slashes lets %2F through to the route that opts in, as
// written, and never as a public path; other routes still refuse it.
func TestAllowEncodedSlashes(t *testing.T) {
	e := newEnv(t, func(c *envConfig) {
		c.proxy.Routes = append(c.proxy.Routes, RouteConfig{
			Config:              upstream.Config{Name: "repo", URL: c.proxy.Routes[0].URL},
			Path:                "/repo/",
			Public:              []string{"/repo/public/"},
			AllowEncodedSlashes: true,
		})
	})
	addr := e.ts.Listener.Addr().String()
	if code, _ := rawGet(t, addr, "/repo/public/a%2Fb", ""); code != 401 {
		t.Errorf("encoded slash under a public prefix = %d, want 401 (never public)", code)
	}
	if code, _ := rawGet(t, addr, "/app/a%2Fb", ""); code != 400 {
		t.Errorf("encoded slash on a route without the opt-in = %d, want 400", code)
	}
	if code, _ := rawGet(t, addr, "/oauth2/userinfo%2F..", ""); code != 400 {
		t.Errorf("encoded slash under /oauth2/ = %d, want 400", code)
	}
	if code, _ := rawGet(t, addr, "/repo/x%00", ""); code != 400 {
		t.Errorf("NUL on an opted-in route = %d, want 400", code)
	}
	// Nothing behind the kept slashes may lead out of the route, for an
	// upstream that decodes them and cleans the path.
	for _, p := range []string{"/repo/..%2Fapp", "/repo/x%2F..%2F..%2Fapp", "/repo/.%2Fx", "/repo/x%5C..%5Capp", "/repo/..%3B%2Fapp"} {
		if code, _ := rawGet(t, addr, p, ""); code != 400 {
			t.Errorf("GET %q = %d, want 400", p, code)
		}
	}
	c := e.browser()
	e.signIn(c, e.base+"/", "alice", "alice-pw")
	u, _ := url.Parse(e.base)
	var cookie []string
	for _, ck := range c.Jar.Cookies(u) {
		cookie = append(cookie, ck.Name+"="+ck.Value)
	}
	code, _ := rawGet(t, addr, "/repo/group%2fproject/./x/../files", "Cookie: "+strings.Join(cookie, "; ")+"\r\n")
	if code != 200 {
		t.Fatalf("signed-in request with an encoded slash = %d, want 200", code)
	}
	if got := e.backend.Last(t).RequestURI; got != "/repo/group%2Fproject/files" {
		t.Errorf("backend received %q, want the slashes kept encoded and only real segments resolved", got)
	}
}

// Forward-auth answers carry tokens only to trusted proxies: a script on a
// page that holds the session cookie must not read the access token.
func TestForwardAuthTokensOnlyToTrustedPeers(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			e := newEnv(t, func(c *envConfig) {
				if trusted {
					c.trusted = []string{"127.0.0.1/32"}
				}
				c.proxy.Routes[0].Forward = []string{"user", "access_token"}
			})
			c := e.browser()
			e.signIn(c, e.base+"/", "alice", "alice-pw")
			resp, _ := do(t, c, "GET", e.base+"/oauth2/auth", "", nil)
			if resp.StatusCode != 202 || resp.Header.Get("X-Auth-Request-User") != "alice" {
				t.Fatalf("forward-auth = %d, user %q", resp.StatusCode, resp.Header.Get("X-Auth-Request-User"))
			}
			got := resp.Header.Get("X-Auth-Request-Access-Token") + resp.Header.Get("X-Forwarded-Access-Token")
			if trusted && got == "" {
				t.Error("trusted proxy did not get the access token it is configured to forward")
			}
			if !trusted && got != "" {
				t.Error("an untrusted caller got the access token")
			}
		})
	}
}

// Sign-out revokes the session's refresh token at the issuer, so a copy of
// the cookie stops working at its next refresh instead of after a week.
func TestSignOutRevokesRefreshToken(t *testing.T) {
	e := newEnv(t, func(c *envConfig) {
		c.scopes = []string{"openid", "email", "profile", "groups", "offline_access"}
		c.issuer.Tokens.AccessTTL = 2 * time.Minute // due at once (refresh_after 5m)
	})
	c := e.browser()
	e.signIn(c, e.base+"/", "alice", "alice-pw")
	u, _ := url.Parse(e.base)
	copied := c.Jar.Cookies(u)
	do(t, c, "GET", e.base+"/oauth2/sign_out", "text/html", nil)

	thief := e.browser()
	thief.Jar.SetCookies(u, copied)
	if resp, body := do(t, thief, "GET", e.base+"/x", "application/json", nil); resp.StatusCode != 401 {
		t.Fatalf("copied cookie after sign-out = %d %s, want 401 (refresh refused)", resp.StatusCode, body)
	}
}

// The review's reproductions: with allow_encoded_slashes on one route, an
// upstream that decodes %2F must not be steered to a path another route's
// policy guards.
func TestEncodedSlashesCannotReachAnotherRoute(t *testing.T) {
	e := newEnv(t, func(c *envConfig) {
		backend := c.proxy.Routes[0].URL
		c.proxy.Routes = []RouteConfig{
			{Config: upstream.Config{Name: "admin", URL: backend}, Path: "/admin", Allow: policy.Config{Groups: []string{"admins"}}},
			{Config: upstream.Config{Name: "app", URL: backend}, Path: "/app", AllowEncodedSlashes: true},
			{Config: upstream.Config{Name: "all", URL: backend}, Path: "/", AllowEncodedSlashes: true},
		}
	})
	c := e.browser()
	e.signIn(c, e.base+"/app/", "alice", "alice-pw")
	u, _ := url.Parse(e.base)
	var cookie []string
	for _, ck := range c.Jar.Cookies(u) {
		cookie = append(cookie, ck.Name+"="+ck.Value)
	}
	hdr := "Cookie: " + strings.Join(cookie, "; ") + "\r\n"
	addr := e.ts.Listener.Addr().String()
	if code, _ := rawGet(t, addr, "/admin/secret", hdr); code != 403 {
		t.Fatalf("alice at /admin/secret = %d, want 403", code)
	}
	for _, p := range []string{"/app/..%2Fadmin%2Fsecret", "/admin%2Fsecret", "/x%2F..%2Fadmin%2Fsecret"} {
		before := len(e.backend.Requests())
		code, _ := rawGet(t, addr, p, hdr)
		if code == 200 || len(e.backend.Requests()) != before {
			t.Errorf("GET %q = %d and reached the backend: another route's policy bypassed", p, code)
		}
	}
	if code, _ := rawGet(t, addr, "/app/a%2Fb", hdr); code != 200 {
		t.Errorf("a harmless encoded slash on the opted-in route = %d, want 200", code)
	}
}

func TestAssertionCarriesOnlyVerifiedEmail(t *testing.T) {
	e := newEnv(t, nil)
	sign := AssertionSigner(e.issuer, e.base)
	for _, verified := range []bool{true, false} {
		tok, err := sign(t.Context(), &auth.Identity{Subject: "s", User: "mallory", Email: "ceo@example.com", EmailVerified: verified}, "app")
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if got := strings.Contains(string(payload), "ceo@example.com"); got != verified {
			t.Errorf("verified=%v: assertion %s carries the email = %v", verified, payload, got)
		}
	}
}
