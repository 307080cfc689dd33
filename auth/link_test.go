package auth

import (
	"testing"

	"github.com/portcullis-proxy/portcullis/auth/authtest"
)

func TestHrefValue(t *testing.T) {
	for _, u := range append(authtest.UnsafeURLs, "") {
		if got := HrefValue(u); got != "#" {
			t.Errorf("HrefValue(%q) = %q, want #", u, got)
		}
	}
	for u, want := range map[string]string{
		"/":                            "/",
		"/oauth2/login":                "/oauth2/login",
		"/a?b=1&c=<2>":                 "/a?b=1&amp;c=&lt;2&gt;",
		`/a"onclick="x`:                "/a&#34;onclick=&#34;x",
		"https://id.example/x?a=1&b=2": "https://id.example/x?a=1&amp;b=2",
		"HTTP://id.example/":           "HTTP://id.example/",
	} {
		if got := HrefValue(u); got != want {
			t.Errorf("HrefValue(%q) = %q, want %q", u, got, want)
		}
	}
}
