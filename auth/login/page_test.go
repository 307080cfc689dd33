package login

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth/authtest"
)

func TestErrorPageEscapesEveryValue(t *testing.T) {
	authtest.CheckEscaped(t, "error page",
		errorPageHTML(502, authtest.Evil, authtest.Evil, "https://portcullis.example/oauth2/start?rd="+authtest.Evil),
		errorPageHTML(502, "x", "x", "https://portcullis.example/oauth2/start?rd=x"))
}

func TestErrorPageURLs(t *testing.T) {
	for _, u := range append(authtest.UnsafeURLs, "") {
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
