package login

import (
	"html"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// evil is what a user, the identity provider or a request could put in
// any field of a page.
const evil = `<script>alert(1)</script>"' onfocus='x' a="b" &amp;`

// unsafeURLs must never reach an href.
var unsafeURLs = []string{
	"javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "\tjavascript:alert(1)",
	"java\tscript:alert(1)", "java\nscript:alert(1)", "data:text/html,<script>alert(1)</script>",
	"DATA:text/html;base64,PHNjcmlwdD4=", " data:text/html,x", "vbscript:msgbox(1)", "VbScRiPt:msgbox(1)",
	"//evil.example/", "/\\evil.example/", " //evil.example/", " /\\evil.example/", "\\\\evil.example/",
	"/\t/evil.example/", "/\n/evil.example/", "/\r\\evil.example/", "\x00javascript:alert(1)",
	"evil.example/x", "mailto:a@evil.example", " ", "#x", "?a=1",
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
	if n := strings.Count(page, html.EscapeString(evil)); n < 2 {
		t.Errorf("%s: the escaped value appears %d times:\n%s", name, n, page)
	}
}

func TestErrorPageEscapesEveryValue(t *testing.T) {
	checkEscaped(t, "error page",
		errorPageHTML(502, evil, evil, "https://portcullis.example/oauth2/start?rd="+evil),
		errorPageHTML(502, "x", "x", "https://portcullis.example/oauth2/start?rd=x"))
}

func TestErrorPageURLs(t *testing.T) {
	for _, u := range append(unsafeURLs, "") {
		if got := safeURL(u); got != "#" {
			t.Errorf("safeURL(%q) = %q, want #", u, got)
		}
		if u == "" {
			continue // no retry link at all
		}
		if page := errorPageHTML(502, "t", "m", u); !strings.Contains(page, `<a class="button" href="#">`) {
			t.Errorf("retry %q: not neutralised:\n%s", u, page)
		}
	}
	for u, want := range map[string]string{
		"https://portcullis.example/oauth2/start?rd=%2Fa&x=<1>": "https://portcullis.example/oauth2/start?rd=%2Fa&amp;x=&lt;1&gt;",
		"HTTP://portcullis.example/":                            "HTTP://portcullis.example/",
		"/oauth2/start":                                         "/oauth2/start",
	} {
		if page := errorPageHTML(502, "t", "m", u); !strings.Contains(page, `href="`+want+`"`) {
			t.Errorf("retry %q: want href=%q in:\n%s", u, want, page)
		}
	}
	if page := errorPageHTML(503, "t", "m", ""); strings.Contains(page, "<a ") || !strings.Contains(page, `<p class="code">Error 503</p>`) {
		t.Errorf("page without retry:\n%s", page)
	}
}

func TestErrorPageHeaders(t *testing.T) {
	rec := httptest.NewRecorder()
	(&Client{}).page(rec, http.StatusBadGateway, "Sign-in failed", "msg", "/oauth2/start")
	if rec.Code != http.StatusBadGateway || rec.Body.String() != errorPageHTML(http.StatusBadGateway, "Sign-in failed", "msg", "/oauth2/start") {
		t.Fatalf("status %d, body:\n%s", rec.Code, rec.Body.String())
	}
	for k, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
	} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}
