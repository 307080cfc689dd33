package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/portcullis-proxy/portcullis/auth/authtest"
)

// instance is a running `portcullis serve` in this process.
type instance struct {
	base   string // public URL
	file   string
	reload chan os.Signal
	logs   *authtest.Buffer
	cancel context.CancelFunc
	done   chan error
}

// exampleOnPort is config.example.yaml moved to a free port.
func exampleOnPort(t *testing.T, port int) string {
	t.Helper()
	raw, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(raw), "4180", fmt.Sprint(port))
	return s
}

// startServe runs serve on the given config text (with PORT replaced by a
// free port) and waits until it is ready.
func startServe(t *testing.T, text func(port int) string, env map[string]string) *instance {
	t.Helper()
	port := authtest.FreePort(t)
	in := &instance{
		base:   fmt.Sprintf("http://localhost:%d", port),
		file:   writeFile(t, text(port)),
		reload: make(chan os.Signal, 1),
		logs:   &authtest.Buffer{},
		done:   make(chan error, 1),
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() {
		in.done <- serve(ctx, in.file, in.logs, func(k string) string { return env[k] }, in.reload)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-in.done:
		case <-time.After(40 * time.Second):
			t.Error("serve did not stop within 40s of cancel")
		}
		if t.Failed() {
			t.Logf("portcullis logs:\n%s", in.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(in.base + "/oauth2/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return in
			}
		}
		select {
		case err := <-in.done:
			t.Fatalf("serve exited early: %v\nlogs:\n%s", err, in.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 20s (last: %v)\nlogs:\n%s", err, in.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func newBrowserClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second}
}

func get(t *testing.T, c *http.Client, u, accept string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Accept", accept)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// signIn follows the redirects from a protected URL to the login form,
// submits it, and returns the final response.
func signIn(t *testing.T, c *http.Client, start, user, pass string) (*http.Response, string) {
	t.Helper()
	resp, body := get(t, c, start, "text/html")
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s ended with %d, want the login form:\n%s", start, resp.StatusCode, body)
	}
	action, fields := parseForm(t, resp.Request.URL, body)
	fields.Set("username", user)
	fields.Set("password", pass)
	req, _ := http.NewRequest("POST", action, strings.NewReader(fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST login form: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// parseForm finds the page's POST form with a password field and returns
// its absolute action and every input's value.
func parseForm(t *testing.T, page *url.URL, body string) (string, url.Values) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var action string
	vals := url.Values{}
	found := false
	var walk func(n *html.Node, inForm bool)
	walk = func(n *html.Node, inForm bool) {
		if n.Type == html.ElementNode && n.Data == "form" && strings.EqualFold(attr(n, "method"), "post") && !found {
			found, inForm = true, true
			action = attr(n, "action")
		}
		if inForm && n.Type == html.ElementNode && (n.Data == "input" || n.Data == "button") && attr(n, "name") != "" {
			vals.Set(attr(n, "name"), attr(n, "value"))
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			walk(ch, inForm)
		}
	}
	walk(doc, false)
	if !found {
		t.Fatalf("no POST form on %s:\n%s", page, body)
	}
	u, err := page.Parse(action)
	if err != nil {
		t.Fatalf("form action %q: %v", action, err)
	}
	return u.String(), vals
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

type echoed struct {
	Method  string              `json:"method"`
	Host    string              `json:"host"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Headers map[string][]string `json:"headers"`
}

func echoJSON(t *testing.T, c *http.Client, u string) (int, echoed) {
	t.Helper()
	resp, body := get(t, c, u, "application/json")
	var e echoed
	if resp.StatusCode == 200 {
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("echo body is not JSON: %v\n%s", err, body)
		}
	}
	return resp.StatusCode, e
}

// The README's first command, end to end: example config, built-in issuer,
// demo/demo through the real login form, echo shows the identity.
func TestQuickStartSignIn(t *testing.T) {
	in := startServe(t, func(p int) string { return exampleOnPort(t, p) }, nil)
	c := newBrowserClient(t)

	// An API caller without a session gets 401 JSON.
	resp, body := get(t, c, in.base+"/report", "application/json")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Bearer" || !strings.Contains(body, `"unauthenticated"`) {
		t.Fatalf("unauthenticated API call = %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}

	resp, body = signIn(t, c, in.base+"/report?x=1", "demo", "demo")
	if resp.StatusCode != 200 || resp.Request.URL.String() != in.base+"/report?x=1" {
		t.Fatalf("after sign-in: %d at %s, want 200 at /report?x=1\n%s", resp.StatusCode, resp.Request.URL, body)
	}
	if !strings.Contains(body, "demo") {
		t.Errorf("echo page does not show the user:\n%s", body)
	}

	req, _ := http.NewRequest("GET", in.base+"/report", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Forwarded-User", "root")
	req.Header.Set("X_Forwarded_Groups", "admins")
	req.Header.Set("Cookie", "other=kept")
	r2, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e echoed
	json.NewDecoder(r2.Body).Decode(&e)
	r2.Body.Close()
	h := e.Headers
	if got := h["X-Forwarded-User"]; len(got) != 1 || got[0] != "demo" {
		t.Errorf("upstream X-Forwarded-User = %v, want [demo]", got)
	}
	if got := h["X-Forwarded-Email"]; len(got) != 1 || got[0] != "demo@example.com" {
		t.Errorf("upstream X-Forwarded-Email = %v", got)
	}
	if got := h["X-Forwarded-Groups"]; len(got) != 1 || got[0] != "demo" {
		t.Errorf("upstream X-Forwarded-Groups = %v, want [demo] (the client's admins must be gone)", got)
	}
	for name, vals := range h {
		if strings.EqualFold(name, "X_Forwarded_Groups") {
			t.Errorf("spoofed %s reached the upstream: %v", name, vals)
		}
		if name == "Cookie" && strings.Contains(strings.Join(vals, ";"), "_portcullis") {
			t.Errorf("session cookie reached the upstream: %v", vals)
		}
	}

	// userinfo
	resp, body = get(t, c, in.base+"/oauth2/userinfo", "application/json")
	if resp.StatusCode != 200 || !strings.Contains(body, `"user":"demo"`) {
		t.Errorf("userinfo = %d %s", resp.StatusCode, body)
	}

	// Sign out, then the session is gone.
	resp, _ = get(t, c, in.base+"/oauth2/sign_out?rd=/bye", "text/html")
	if code, _ := echoJSON(t, c, in.base+"/report"); code != 401 {
		t.Fatalf("after sign-out: %d, want 401", code)
	}
	// And the issuer's login session too: signing in again shows the form.
	resp, body = get(t, c, in.base+"/report", "text/html")
	if !strings.Contains(body, `name="password"`) {
		t.Fatalf("after sign-out the issuer did not ask for the password again: %d %s", resp.StatusCode, resp.Request.URL)
	}
}

// A wrong password keeps the user on the form and creates no session.
func TestQuickStartWrongPassword(t *testing.T) {
	in := startServe(t, func(p int) string { return exampleOnPort(t, p) }, nil)
	c := newBrowserClient(t)
	resp, body := signIn(t, c, in.base+"/", "demo", "wrong")
	if !strings.Contains(body, `name="password"`) {
		t.Fatalf("wrong password: %d at %s, want the form again", resp.StatusCode, resp.Request.URL)
	}
	if code, _ := echoJSON(t, c, in.base+"/"); code != 401 {
		t.Fatalf("wrong password created a session: %d", code)
	}
}

// SIGHUP reloads the file; a bad file is logged and the old config keeps serving.
func TestReload(t *testing.T) {
	in := startServe(t, func(p int) string { return exampleOnPort(t, p) }, map[string]string{"PORTCULLIS_SESSION_SECRET": newSecret()})
	c := newBrowserClient(t)
	signIn(t, c, in.base+"/", "demo", "demo")
	if code, _ := echoJSON(t, c, in.base+"/x"); code != 200 {
		t.Fatalf("before reload: %d", code)
	}
	orig, _ := os.ReadFile(in.file)

	// A broken config: refused, still serving, still signed in.
	os.WriteFile(in.file, []byte("server: [broken\n"), 0o600)
	in.reload <- os.Interrupt
	waitFor(t, func() bool { return strings.Contains(in.logs.String(), "config reload refused") })
	if code, _ := echoJSON(t, c, in.base+"/x"); code != 200 {
		t.Fatalf("after a refused reload: %d, want 200", code)
	}

	// A good config that makes /open public and restricts / to group
	// admins — picked up from the file changing, without a signal (as when
	// a Kubernetes ConfigMap is updated).
	next := strings.Replace(string(orig), "    url: builtin:echo", "    url: builtin:echo\n    public: [\"/open/\"]\n    allow: { groups: [admins] }", 1)
	os.WriteFile(in.file, []byte(next), 0o600)
	waitFor(t, func() bool { return strings.Contains(in.logs.String(), "config reloaded") })
	if code, _ := echoJSON(t, c, in.base+"/x"); code != 403 {
		t.Fatalf("after reload restricting to admins: %d, want 403 (still signed in, not allowed)", code)
	}
	anon := newBrowserClient(t)
	if code, _ := echoJSON(t, anon, in.base+"/open/page"); code != 200 {
		t.Fatalf("public path after reload: %d, want 200", code)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMetricsListener(t *testing.T) {
	mport := authtest.FreePort(t)
	in := startServe(t, func(p int) string {
		return strings.Replace(exampleOnPort(t, p), "  tls: { mode: off }", fmt.Sprintf("  tls: { mode: off }\n  metrics_listen: \"127.0.0.1:%d\"", mport), 1)
	}, nil)
	c := newBrowserClient(t)
	signIn(t, c, in.base+"/", "demo", "demo")
	base := fmt.Sprintf("http://127.0.0.1:%d", mport)
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, _ := get(t, c, base+p, ""); resp.StatusCode != 200 {
			t.Errorf("%s = %d, want 200", p, resp.StatusCode)
		}
	}
	resp, body := get(t, c, base+"/metrics", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics = %d", resp.StatusCode)
	}
	for _, want := range []string{
		`portcullis_requests_total{auth="session",code="2xx",upstream="echo"}`,
		`portcullis_requests_total{auth="none",code="2xx",upstream="issuer"}`,
		"portcullis_request_duration_seconds_bucket",
		`portcullis_sign_ins_total{reason="none",result="success"} 1`,
		`portcullis_issuer_logins_total{result="success"} 1`,
		"portcullis_connections_active",
		"go_goroutines",
		"process_start_time_seconds",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, secret := range []string{"demo@example.com", "_portcullis"} {
		if strings.Contains(body, secret) {
			t.Errorf("/metrics contains %q", secret)
		}
	}
}

// The README's script recipe: a client_credentials client (secret from a
// file), a bearer route, the token used on it and introspected.
func TestQuickStartScriptToken(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "reporter")
	const secret = "reporter-secret-0123456789-abcdefghijklmn"
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	in := startServe(t, func(p int) string {
		cfg := exampleOnPort(t, p)
		cfg = strings.Replace(cfg, "issuer:\n  users:", fmt.Sprintf("issuer:\n  clients:\n    - id: reporter\n      secret_file: %s\n      grants: [client_credentials]\n      scopes: [reports]\n  users:", secretFile), 1)
		return strings.Replace(cfg, "upstreams:\n", "upstreams:\n  - name: api\n    path: /api/\n    url: builtin:echo\n    bearer: true\n", 1)
	}, nil)
	post := func(path string, form url.Values) map[string]any {
		req, _ := http.NewRequest("POST", in.base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("reporter", secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s = %d %v", path, resp.StatusCode, out)
		}
		return out
	}
	tok, _ := post("/oauth2/issuer/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"reports"}})["access_token"].(string)
	if tok == "" {
		t.Fatal("no access token")
	}
	req, _ := http.NewRequest("GET", in.base+"/api/report", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e echoed
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 200 || e.Headers["X-Forwarded-User"][0] != "reporter" {
		t.Fatalf("bearer call = %d, user %v", resp.StatusCode, e.Headers["X-Forwarded-User"])
	}
	intro := post("/oauth2/issuer/introspect", url.Values{"token": {tok}})
	if intro["active"] != true || intro["client_id"] != "reporter" {
		t.Fatalf("introspection = %v", intro)
	}
	// The session-only route "/" does not accept bearer tokens.
	req, _ = http.NewRequest("GET", in.base+"/report", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("bearer token on a route without bearer: true = %d, want 401", resp.StatusCode)
	}
}
