package proxy

import (
	"errors"
	"net/url"
	"testing"
)

var canonicalTests = []struct {
	in, want string // want "" means refused
}{
	{"", "/"},
	{"/", "/"},
	{"/a/b", "/a/b"},
	{"/a/b/", "/a/b/"},
	{"//a///b//", "/a/b/"},
	{"/a/./b", "/a/b"},
	{"/a/b/.", "/a/b/"},
	{"/a/b/..", "/a/"},
	{"/a/../../../b", "/b"},
	{"/..", "/"},
	{"/public/../admin", "/admin"},
	{"/public/%2e%2e/admin", "/admin"},
	{"/public/%2E%2E/admin", "/admin"},
	{"/public/.%2e/admin", "/admin"},
	{"/public/%2e/admin", "/public/admin"},
	{"//public/../admin", "/admin"},
	{"/%61dmin", "/admin"},
	{"/a%7Eb%2Dc%5F", "/a~b-c_"},
	{"/a%20b", "/a%20b"},
	{"/a%3fb", "/a%3Fb"},
	{"/admin;/public/", "/admin;/public/"},
	{"/admin%23/public/", "/admin%23/public/"},
	{"/a;b=c/d", "/a;b=c/d"},
	{"/%252e%252e/admin", "/%252e%252e/admin"},
	{"/caf\xc3\xa9", "/caf\xc3\xa9"},
	{"/...", "/..."},
	{"/.hidden/x", "/.hidden/x"},
	{"/..a", "/..a"},
	// refused
	{"relative", ""},
	{"/public%2F..%2Fadmin", ""},
	{"/public%2f..%2fadmin", ""},
	{"/a%5Cb", ""},
	{"/a\\b", ""},
	{"/public/x%00", ""},
	{"/a\x00b", ""},
	{"/a%0a", ""},
	{"/a%7F", ""},
	{"/a\tb", ""},
	{"/..;/admin", ""},
	{"/public/..;x/admin", ""},
	{"/.;/admin", ""},
	{"/%2e%2e;/admin", ""},
	{"/public/..%3B/admin", ""},
	{"/public/..%3b/admin", ""},
	{"/public/%2e%2e%3B/admin", ""},
	{"/.%3B/admin", ""},
	{"/a%3Bb/c", "/a%3Bb/c"},
	{"/...%3B/x", "/...%3B/x"},
	{"/a%", ""},
	{"/a%2", ""},
	{"/a%2/b", ""},
	{"/a%zz", ""},
}

func TestCanonicalPath(t *testing.T) {
	for _, tt := range canonicalTests {
		got, err := canonicalPath(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("canonicalPath(%q) = %q, want refused", tt.in, got)
			} else if !errors.Is(err, errBadPath) {
				t.Errorf("canonicalPath(%q) error %v is not errBadPath", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("canonicalPath(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

// Canonical output is a fixed point and a valid escaped path.
func FuzzCanonicalPath(f *testing.F) {
	for _, tt := range canonicalTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := canonicalPath(in)
		if err != nil {
			return
		}
		again, err := canonicalPath(got)
		if err != nil || again != got {
			t.Fatalf("canonicalPath(%q) = %q, but canonicalPath(%q) = %q, %v", in, got, got, again, err)
		}
		if _, err := url.PathUnescape(got); err != nil {
			t.Fatalf("canonicalPath(%q) = %q, not a valid escaped path: %v", in, got, err)
		}
	})
}

func BenchmarkCanonicalPath(b *testing.B) {
	for _, p := range []string{"/api/v1/users/42/profile", "/public/%2e%2e/a//b/./c%20d"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := canonicalPath(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
