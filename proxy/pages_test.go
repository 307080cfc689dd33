package proxy

import (
	"html"
	"net/http"
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

func TestPageEscapesEveryValue(t *testing.T) {
	checkEscaped(t, "page", pageHTML(http.StatusForbidden, evil, evil, "/a"+evil, evil),
		pageHTML(http.StatusForbidden, "x", "x", "/a", "x"))
}

func TestPageURLs(t *testing.T) {
	for _, u := range append(unsafeURLs, "") {
		if got := safeURL(u); got != "#" {
			t.Errorf("safeURL(%q) = %q, want #", u, got)
		}
		if u == "" {
			continue // no link at all
		}
		if page := pageHTML(http.StatusForbidden, "t", "m", u, "l"); !strings.Contains(page, `<a href="#">l</a>`) {
			t.Errorf("link %q: not neutralised:\n%s", u, page)
		}
	}
	for u, want := range map[string]string{
		pathSignOut:                    pathSignOut,
		"/a?b=1&c=<2>":                 "/a?b=1&amp;c=&lt;2&gt;",
		"https://app.example/?a=1&b=2": "https://app.example/?a=1&amp;b=2",
	} {
		if page := pageHTML(http.StatusForbidden, "t", "m", u, "l"); !strings.Contains(page, `<a href="`+want+`">l</a>`) {
			t.Errorf("link %q: want href=%q in:\n%s", u, want, page)
		}
	}
	if page := pageHTML(http.StatusNotFound, "t", "m", "", ""); strings.Contains(page, "<a ") || !strings.Contains(page, `<p class="code">HTTP 404</p>`) {
		t.Errorf("page without link:\n%s", page)
	}
}
