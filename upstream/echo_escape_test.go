package upstream

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth/authtest"
)

// The HTML echo page shows request values, which anyone can choose, and
// identity headers, which come from the identity provider: every one is
// escaped.
func TestEchoHTMLEscapesEveryValue(t *testing.T) {
	const evil = authtest.Evil
	render := func(v string) string {
		r := &http.Request{
			Method: v, Host: v,
			URL: &url.URL{Path: "/" + v, RawQuery: v},
			Header: http.Header{
				HeaderUser: {v}, HeaderEmail: {v, v}, HeaderGroups: {v, v}, HeaderPreferredUsername: {v},
				"X-Other":     {v, v},
				"X-" + v:      {v},
				"Cookie":      {v},
				"Accept":      {"text/html"},
				"Unknown-Hdr": {v},
			},
		}
		rec := httptest.NewRecorder()
		Echo().ServeHTTP(rec, r)
		if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); csp != "default-src 'none'; style-src 'unsafe-inline'" {
			t.Fatalf("Content-Security-Policy %q", csp)
		}
		return rec.Body.String()
	}
	page, benign := render(evil), render("x")
	for _, c := range []string{"<", ">", `"`, "'"} {
		if got, want := strings.Count(page, c), strings.Count(benign, c); got != want {
			t.Errorf("%d %q in the page, want %d (a value is not escaped):\n%s", got, c, want, page)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "onfocus='") {
		t.Errorf("value not escaped:\n%s", page)
	}
	// method, host, path, query, the user at the top, identity rows (1+2+2+1),
	// header rows (the same 6, X-Other 2, X-evil name and value, unknown 1).
	if n, want := strings.Count(page, html.EscapeString(evil)), 5+6+6+2+2+1; n != want {
		t.Errorf("the escaped value appears %d times, want %d:\n%s", n, want, page)
	}
	if !strings.Contains(page, `<strong id="user">`+html.EscapeString(evil)+`</strong>`) {
		t.Errorf("user not shown escaped at the top:\n%s", page)
	}
}
