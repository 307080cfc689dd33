package upstream

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestEchoJSON(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p protocol) {
		u := newTestUpstream(t, "builtin:echo", nil)
		front, client := newFrontend(t, p, withIdentity(alice(), u))
		req := newRequest(t, "GET", front.URL+"/a/b%20c;v=1?x=1&y=%2F", map[string]string{
			"Accept":              "application/json",
			"X-Forwarded-User":    "evil",
			"x_auth_request_user": "evil",
			"X-Custom":            "kept",
		})
		res, body := do(t, client, p, req)
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("answer = %d %q, want 200 application/json", res.StatusCode, res.Header.Get("Content-Type"))
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &keys); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		var got []string
		for k := range keys {
			got = append(got, k)
		}
		slices.Sort(got)
		if want := []string{"headers", "host", "method", "path", "query"}; !slices.Equal(got, want) {
			t.Errorf("echo JSON keys = %v, want %v", got, want)
		}
		var e echoRequest
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatal(err)
		}
		frontHost := strings.TrimPrefix(strings.TrimPrefix(front.URL, "https://"), "http://")
		if e.Method != "GET" || e.Host != frontHost || e.Path != "/a/b c;v=1" || e.Query != "x=1&y=%2F" {
			t.Errorf("echo = %s %q %q %q, want GET %q %q %q", e.Method, e.Host, e.Path, e.Query, frontHost, "/a/b c;v=1", "x=1&y=%2F")
		}
		want := map[string][]string{
			HeaderUser:              {"alice"},
			HeaderEmail:             {"alice@example.com"},
			HeaderGroups:            {"admins,dev"},
			HeaderPreferredUsername: {"Alice A"},
			"X-Custom":              {"kept"},
			"X-Forwarded-For":       {"127.0.0.1"},
		}
		for k, v := range want {
			if !slices.Equal(e.Headers[k], v) {
				t.Errorf("echo headers[%q] = %q, want %q", k, e.Headers[k], v)
			}
		}
		for k, vs := range e.Headers {
			if k != http.CanonicalHeaderKey(k) && !strings.Contains(k, "_") {
				t.Errorf("echo header name %q is not canonical", k)
			}
			if slices.Contains(vs, "evil") {
				t.Errorf("echo received spoofed %s", k)
			}
		}
		if _, ok := e.Headers["User-Agent"]; ok && e.Headers["User-Agent"][0] == "" {
			t.Error("echo shows the empty User-Agent ReverseProxy uses internally")
		}
	})
}

func TestEchoHTML(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p protocol) {
		u := newTestUpstream(t, "builtin:echo", func(c *Config, _ *Options) {
			c.Forward = []string{"user", "email", "groups", "access_token", "id_token"}
		})
		id := alice()
		id.User = "alice<b>"
		front, client := newFrontend(t, p, withIdentity(id, u))
		res, body := do(t, client, p, newRequest(t, "GET", front.URL+"/page?q=1", map[string]string{"Accept": "text/html"}))
		if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || ct != "text/html; charset=utf-8" {
			t.Fatalf("answer = %d %q, want 200 text/html", res.StatusCode, ct)
		}
		top, _, ok := strings.Cut(body, "<h2>Request</h2>")
		if !ok {
			t.Fatalf("page has no Request section: %q", body)
		}
		if !strings.Contains(top, `<strong id="user">alice&lt;b&gt;</strong>`) {
			t.Errorf("top of page lacks the escaped user name: %q", top)
		}
		if !strings.Contains(top, "alice@example.com") {
			t.Errorf("top of page lacks the email: %q", top)
		}
		for _, secret := range []string{"access-token-value", "id-token-value"} {
			if strings.Contains(body, secret) {
				t.Errorf("HTML echo shows %q", secret)
			}
		}
		if !strings.Contains(body, "[redacted, 18 bytes]") {
			t.Errorf("HTML echo does not show the redacted access token")
		}
		if !strings.Contains(body, "/page") || !strings.Contains(body, "q=1") {
			t.Errorf("HTML echo lacks path or query")
		}
	})
}

func TestEchoStandalone(t *testing.T) {
	s := httptest.NewServer(Echo())
	t.Cleanup(s.Close)
	res, body := do(t, s.Client(), protocols[0], newRequest(t, "POST", s.URL+"/x", map[string]string{"Accept": "text/html"}))
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "Not signed in") {
		t.Errorf("anonymous echo page = %d %q, want 200 with \"Not signed in\"", res.StatusCode, body)
	}
}
