package issuer

import (
	"html"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// evil is what a user, a client registration or a request could put in any
// field of a page.
const evil = `<script>alert(1)</script>"' onfocus='x' a="b" &amp;`

// unsafeURLs must never reach an href or action.
var unsafeURLs = []string{
	"javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "\tjavascript:alert(1)",
	"java\tscript:alert(1)", "java\nscript:alert(1)", "data:text/html,<script>alert(1)</script>",
	"DATA:text/html;base64,PHNjcmlwdD4=", " data:text/html,x", "vbscript:msgbox(1)", "VbScRiPt:msgbox(1)",
	"//evil.example/", "/\\evil.example/", " //evil.example/", " /\\evil.example/", "\\\\evil.example/",
	"/\t/evil.example/", "/\n/evil.example/", "/\r\\evil.example/", "\x00javascript:alert(1)",
	"evil.example/x", "mailto:a@evil.example", "", " ", "#x", "?a=1",
}

// checkEscaped fails unless page, built with evil in every field, has the
// same markup as benign, built with plain values: html.EscapeString leaves
// no <, >, " or ' of a value in the output, so any extra one is a value
// that got out.
func checkEscaped(t *testing.T, name, page, benign string) {
	t.Helper()
	for _, c := range []string{"<", ">", `"`, "'"} {
		if got, want := strings.Count(page, c), strings.Count(benign, c); got != want {
			t.Errorf("%s: %d %q in the page, want %d (a value is not escaped):\n%s", name, got, c, want, page)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "onfocus='") || !strings.Contains(page, "&amp;amp;") {
		t.Errorf("%s: value not escaped:\n%s", name, page)
	}
}

func TestPagesEscapeEveryValue(t *testing.T) {
	for _, tc := range []struct{ name, page, benign string }{
		{"login",
			loginPage{Action: "/a" + evil, Req: evil, CSRF: evil, Client: evil, Username: evil, Error: evil}.html(),
			loginPage{Action: "/a", Req: "x", CSRF: "x", Client: "x", Username: "x", Error: "x"}.html()},
		{"consent",
			consentPage{Action: "/a" + evil, Req: evil, CSRF: evil, Client: evil, User: evil, Scopes: []string{evil, scopeText(evil)}}.html(),
			consentPage{Action: "/a", Req: "x", CSRF: "x", Client: "x", User: "x", Scopes: []string{"x", "x"}}.html()},
		{"error", errorHTML(evil, evil), errorHTML("x", "x")},
	} {
		checkEscaped(t, tc.name, tc.page, tc.benign)
		if n := strings.Count(tc.page, html.EscapeString(evil)); n < 2 {
			t.Errorf("%s: the escaped value appears %d times:\n%s", tc.name, n, tc.page)
		}
	}
}

func TestSafeURL(t *testing.T) {
	for _, u := range unsafeURLs {
		if got := safeURL(u); got != "#" {
			t.Errorf("safeURL(%q) = %q, want #", u, got)
		}
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
