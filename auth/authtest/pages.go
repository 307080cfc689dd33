package authtest

import (
	"html"
	"strings"
	"testing"
)

// Evil is what a user, an identity provider, a client registration or a
// request could put in any field of a page.
const Evil = `<script>alert(1)</script>"' onfocus='x' a="b" &amp;`

// UnsafeURLs must never reach an href or action.
var UnsafeURLs = []string{
	"javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "\tjavascript:alert(1)",
	"java\tscript:alert(1)", "java\nscript:alert(1)", "data:text/html,<script>alert(1)</script>",
	"DATA:text/html;base64,PHNjcmlwdD4=", " data:text/html,x", "vbscript:msgbox(1)", "VbScRiPt:msgbox(1)",
	"//evil.example/", "/\\evil.example/", " //evil.example/", " /\\evil.example/", "\\\\evil.example/",
	"/\t/evil.example/", "/\n/evil.example/", "/\r\\evil.example/", "\x00javascript:alert(1)",
	"evil.example/x", "mailto:a@evil.example", " ", "#x", "?a=1",
}

// CheckEscaped fails unless page, built with Evil in every field, has the
// same markup as benign, built with plain values: html.EscapeString leaves
// no <, >, " or ' of a value in the output, so any extra one is a value
// that got out. The escaped value must appear at least twice.
func CheckEscaped(t testing.TB, name, page, benign string) {
	t.Helper()
	for _, c := range []string{"<", ">", `"`, "'"} {
		if got, want := strings.Count(page, c), strings.Count(benign, c); got != want {
			t.Errorf("%s: %d %q in the page, want %d (a value is not escaped):\n%s", name, got, c, want, page)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "onfocus='") || !strings.Contains(page, "&amp;amp;") {
		t.Errorf("%s: value not escaped:\n%s", name, page)
	}
	if n := strings.Count(page, html.EscapeString(Evil)); n < 2 {
		t.Errorf("%s: the escaped value appears %d times:\n%s", name, n, page)
	}
}
