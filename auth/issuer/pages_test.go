package issuer

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth/authtest"
)

func TestPagesEscapeEveryValue(t *testing.T) {
	for _, tc := range []struct{ name, page, benign string }{
		{"login",
			loginPage{Action: "/a" + authtest.Evil, Req: authtest.Evil, CSRF: authtest.Evil, Client: authtest.Evil, Username: authtest.Evil, Error: authtest.Evil}.html(),
			loginPage{Action: "/a", Req: "x", CSRF: "x", Client: "x", Username: "x", Error: "x"}.html()},
		{"consent",
			consentPage{Action: "/a" + authtest.Evil, Req: authtest.Evil, CSRF: authtest.Evil, Client: authtest.Evil, User: authtest.Evil, Scopes: []string{authtest.Evil, scopeText(authtest.Evil)}}.html(),
			consentPage{Action: "/a", Req: "x", CSRF: "x", Client: "x", User: "x", Scopes: []string{"x", "x"}}.html()},
		{"error", errorHTML(authtest.Evil, authtest.Evil), errorHTML("x", "x")},
	} {
		authtest.CheckEscaped(t, tc.name, tc.page, tc.benign)
	}
}

func TestPageActionURLs(t *testing.T) {
	for _, u := range append(authtest.UnsafeURLs, "") {
		for name, page := range map[string]string{
			"login":   loginPage{Action: u}.html(),
			"consent": consentPage{Action: u}.html(),
		} {
			if !strings.Contains(page, `<form method="post" action="#"`) {
				t.Errorf("%s with action %q: not neutralised:\n%s", name, u, page)
			}
		}
	}
	for u, want := range map[string]string{
		"/oauth2/login":                "/oauth2/login",
		"/":                            "/",
		"/a?b=1&c=<2>":                 "/a?b=1&amp;c=&lt;2&gt;",
		"https://id.example/x?a=1&b=2": "https://id.example/x?a=1&amp;b=2",
		"HTTP://id.example/":           "HTTP://id.example/",
		`/a"onclick="x`:                "/a&#34;onclick=&#34;x",
	} {
		if page := (loginPage{Action: u}).html(); !strings.Contains(page, `action="`+want+`"`) {
			t.Errorf("action %q: want action=%q in:\n%s", u, want, page)
		}
	}
}

func TestRenderHeaders(t *testing.T) {
	i := &Issuer{}
	for _, page := range []string{loginPage{Action: "/l"}.html(), consentPage{Action: "/c"}.html(), errorHTML("t", "m"), signedOutHTML()} {
		rec := httptest.NewRecorder()
		i.render(rec, http.StatusTeapot, page)
		if rec.Code != http.StatusTeapot || rec.Body.String() != page {
			t.Fatalf("status %d, body %q", rec.Code, rec.Body.String())
		}
		for k, want := range map[string]string{
			"Content-Type":            "text/html; charset=utf-8",
			"Content-Length":          strconv.Itoa(len(page)),
			"Cache-Control":           "no-store",
			"Pragma":                  "no-cache",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
		} {
			if got := rec.Header().Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		if !strings.HasPrefix(page, "<!doctype html>") || !strings.HasSuffix(page, "</html>\n") {
			t.Errorf("not a whole page:\n%s", page)
		}
	}
}

// The form the browser tests fill in.
func TestLoginFormMarkup(t *testing.T) {
	page := loginPage{Action: "/oauth2/login", Req: "r1", CSRF: "c1", Error: "Wrong password"}.html()
	for _, want := range []string{
		`<form method="post" action="/oauth2/login" aria-describedby="login-error">`,
		`<input type="hidden" name="req" value="r1">`,
		`<input type="hidden" name="csrf" value="c1">`,
		`<input type="text" id="username" name="username" value=""`,
		`<input type="password" id="password" name="password"`,
		`<p class="alert" role="alert" id="login-error">Wrong password</p>`,
		`<title>Sign in</title>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("missing %s in:\n%s", want, page)
		}
	}
	if page := (loginPage{Action: "/l"}).html(); strings.Contains(page, "login-error") || strings.Contains(page, "to continue to") {
		t.Errorf("empty Error/Client still shown:\n%s", page)
	}
}
