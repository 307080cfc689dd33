package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth/authtest"
)

func TestPageEscapesEveryValue(t *testing.T) {
	authtest.CheckEscaped(t, "page", pageHTML(http.StatusForbidden, authtest.Evil, authtest.Evil, "/a"+authtest.Evil, authtest.Evil),
		pageHTML(http.StatusForbidden, "x", "x", "/a", "x"))
}

func TestPageURLs(t *testing.T) {
	for _, u := range append(authtest.UnsafeURLs, "") {
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
