package session_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"github.com/portcullis-proxy/portcullis/auth/session"
	"github.com/portcullis-proxy/portcullis/auth/session/sessiontest"
)

// benchData returns a session whose JSON is about size bytes: a typical
// identity, JWT-sized tokens, and groups for the rest.
func benchData(size int) *session.Data {
	d := &session.Data{
		Identity: auth.Identity{Issuer: "https://issuer.example.com", Subject: "0f7c3a52-4c1e-4a8e-9d1b-2b0c6f1e9a77",
			User: "alice", Email: "alice@example.com", Name: "Alice Example", PreferredUsername: "alice"},
		IDToken:      strings.Repeat("i", 700),
		AccessToken:  strings.Repeat("a", 700),
		RefreshToken: strings.Repeat("r", 100),
		AccessExpiry: time.Now().Add(time.Hour),
	}
	for n := 1900; n < size; n += 31 {
		d.Identity.Groups = append(d.Identity.Groups, fmt.Sprintf("cn=group-%05d,ou=groups,dc=ex", n))
	}
	return d
}

// benchRequest saves d with m and returns a request carrying the cookies a
// browser would send back, next to a few foreign ones.
func benchRequest(b *testing.B, m *session.Manager, d *session.Data) *http.Request {
	b.Helper()
	rec := httptest.NewRecorder()
	if err := m.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), d); err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Add("Cookie", "_ga=GA1.2.1234567890.1234567890; theme=dark")
	for _, c := range rec.Result().Cookies() {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	return r
}

func BenchmarkLoad(b *testing.B) {
	stores := []struct {
		name  string
		store func(b *testing.B) session.StoreConfig
	}{
		{"cookie", func(*testing.B) session.StoreConfig { return session.StoreConfig{} }},
		{"redis", func(b *testing.B) session.StoreConfig {
			return session.StoreConfig{Type: session.StoreRedis, URL: authtest.Redis(b)}
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			cfg := session.Config{Secrets: []auth.Secret{sessiontest.Secret()}, Store: st.store(b)}
			m := sessiontest.MustNew(b, cfg, session.Options{})
			uncached := sessiontest.MustNew(b, cfg, session.Options{})
			session.WithoutCache(uncached)
			for _, size := range []struct {
				name  string
				m     *session.Manager
				bytes int
			}{{"2KB", m, 2048}, {"8KB-chunked", m, 8192}, {"2KB-miss", uncached, 2048}, {"8KB-chunked-miss", uncached, 8192}} {
				b.Run(size.name, func(b *testing.B) {
					m := size.m
					r := benchRequest(b, m, benchData(size.bytes))
					b.SetBytes(int64(len(r.Header.Get("Cookie"))))
					b.ReportAllocs()
					for b.Loop() {
						if _, err := m.Load(r); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
			// What the proxy calls: the cached Data itself, no copy.
			b.Run("2KB-view", func(b *testing.B) {
				r := benchRequest(b, m, benchData(2048))
				b.SetBytes(int64(len(r.Header.Get("Cookie"))))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.View(r); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkStripCookies(b *testing.B) {
	m := sessiontest.MustNew(b, session.Config{Secrets: []auth.Secret{sessiontest.Secret()}}, session.Options{})
	withSession := benchRequest(b, m, benchData(8192)).Header["Cookie"]
	for _, tt := range []struct {
		name    string
		headers []string
	}{
		{"no-session", []string{"_ga=GA1.2.1234567890.1234567890; theme=dark; lang=en"}},
		{"8KB-session", withSession},
	} {
		b.Run(tt.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			b.ReportAllocs()
			for b.Loop() {
				r.Header["Cookie"] = append(r.Header["Cookie"][:0], tt.headers...)
				m.StripCookies(r)
			}
		})
	}
}
