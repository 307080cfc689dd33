package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/issuer"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"github.com/portcullis-proxy/portcullis/auth/login"
	"github.com/portcullis-proxy/portcullis/auth/session"
	"github.com/portcullis-proxy/portcullis/upstream"
)

// memoryUpstream answers every request in memory with the bench upstream's
// ~100-byte JSON body, so a benchmark measures the gate, not a network.
type memoryUpstream struct{}

var memoryBody = []byte(`{"ok":true,"service":"bench-upstream","note":"a small fixed body, about one hundred bytes long."}` + "\n")

func (memoryUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(memoryBody)),
		ContentLength: int64(len(memoryBody)),
		Request:       r,
	}, nil
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }

// benchGate is a Handler as bench/run.sh configures Portcullis: the
// built-in issuer, the cookie session store, one upstream at / with
// bearer: true and a public prefix; the upstream is memoryUpstream.
type benchGate struct {
	h      *Handler
	base   string
	cookie string // Cookie header of a signed-in browser
	// leanCookie is the same session without ID and access tokens, as
	// portcullis serve keeps it when no route forwards them.
	leanCookie string
	token      string // a client_credentials access token
}

func newBenchGate(b *testing.B, logger *slog.Logger, metrics *Metrics) *benchGate {
	b.Helper()
	return newBenchGateTo(b, logger, metrics, "http://127.0.0.1:9", memoryUpstream{})
}

// newBenchGateTo is newBenchGate with the route's upstream at upstreamURL,
// reached through transport.
func newBenchGateTo(b *testing.B, logger *slog.Logger, metrics *Metrics, upstreamURL string, transport http.RoundTripper) *benchGate {
	b.Helper()
	const base = "http://127.0.0.1:4180"
	pub, _ := url.Parse(base)
	st := store.NewMemory(store.Options{})
	b.Cleanup(func() { st.Close() })
	iss, err := issuer.New(b.Context(), issuer.Config{
		Users: []issuer.UserConfig{{Username: "bench", Email: "bench@example.com", Name: "Bench User",
			Groups: []string{"bench"}, PasswordHash: hashOf(b, "bench-pw")}},
		Clients: []issuer.ClientConfig{
			{ID: "bench-client", Secret: testClientSecret, Grants: []string{"client_credentials"}, Audience: []string{base}},
			{ID: "portcullis", Secret: testClientSecret, RedirectURIs: []string{base + "/oauth2/callback"},
				Grants: []string{"authorization_code", "refresh_token"}},
		},
		Tokens: issuer.TokensConfig{AccessTTL: time.Hour, IDTTL: time.Hour},
	}, issuer.Options{PublicURL: pub, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(iss.Close)
	sessions, err := session.New(session.Config{Secrets: []auth.Secret{randomSecret()}}, session.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sessions.Close() })
	lc, err := login.New(login.Config{Issuer: "builtin", ClientID: "portcullis", ClientSecret: testClientSecret,
		Scopes: []string{"openid", "email", "profile", "groups", "offline_access"}},
		login.Options{PublicURL: pub, IssuerURL: iss.URL(), Sessions: sessions,
			HTTPClient: &http.Client{Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
				rec := httptest.NewRecorder()
				iss.Handler().ServeHTTP(rec, r)
				return rec.Result(), nil
			})}})
	if err != nil {
		b.Fatal(err)
	}
	if err := lc.Discover(b.Context()); err != nil {
		b.Fatal(err)
	}
	h, err := New(Config{PublicURL: base, Routes: []RouteConfig{{
		Config: upstream.Config{Name: "bench", URL: upstreamURL},
		Path:   "/", Bearer: true, Public: []string{"/public/"},
	}}}, Options{
		Sessions: sessions, Login: lc, Issuer: iss,
		Bearer: IssuerBearer{Issuer: iss, Login: lc}, BearerAudience: base,
		Transport: transport, Metrics: metrics, Logger: logger,
	})
	if err != nil {
		b.Fatal(err)
	}
	g := &benchGate{h: h, base: base}

	// A session as the sign-in flow saves it: identity, ID, access and
	// refresh tokens, an hour until the access token needs refreshing.
	var rec *httptest.ResponseRecorder
	d := &session.Data{
		Identity: auth.Identity{Issuer: iss.URL(), Subject: "bench", User: "bench", Email: "bench@example.com",
			EmailVerified: true, Groups: []string{"bench"}, PreferredUsername: "bench", Name: "Bench User"},
		IDToken: strings.Repeat("i", 600), AccessToken: strings.Repeat("a", 700), RefreshToken: strings.Repeat("r", 43),
		AccessExpiry: time.Now().Add(time.Hour),
	}
	g.cookie = sessionCookie(b, sessions, base, d)
	// As portcullis serve saves it when no route forwards a token.
	lean := *d
	lean.IDToken, lean.AccessToken = "", ""
	g.leanCookie = sessionCookie(b, sessions, base, &lean)

	req := httptest.NewRequest(http.MethodPost, iss.URL()+"/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("bench-client", testClientSecret)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(rec.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		b.Fatalf("client_credentials = %d %s", rec.Code, rec.Body)
	}
	g.token = tr.AccessToken
	return g
}

// sessionCookie is the Cookie header that carries d.
func sessionCookie(b *testing.B, sessions *session.Manager, base string, d *session.Data) string {
	b.Helper()
	rec := httptest.NewRecorder()
	if err := sessions.Save(rec, httptest.NewRequest(http.MethodGet, base+"/", nil), d); err != nil {
		b.Fatal(err)
	}
	var cookies []string
	for _, c := range rec.Result().Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	return strings.Join(cookies, "; ")
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// request returns what the bench's wrk sends for kind.
func (g *benchGate) request(kind string) *http.Request {
	path := "/"
	if kind == "public" {
		path = "/public/ping"
	}
	if kind == "fwdauth" {
		path = "/oauth2/auth"
	}
	r := httptest.NewRequest(http.MethodGet, g.base+path, nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("Accept", "application/json")
	switch kind {
	case "cookie", "fwdauth":
		r.Header.Set("Cookie", g.cookie)
	case "bearer":
		r.Header.Set("Authorization", "Bearer "+g.token)
	}
	return r
}

// run serves kind through the gate b.N times and checks the status.
func (g *benchGate) run(b *testing.B, kind string, want int) {
	tmpl := g.request(kind)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		r := tmpl.Clone(tmpl.Context())
		clear(w.h)
		w.status = 0
		g.h.ServeHTTP(w, r)
		if w.status != want && !(w.status == 0 && want == http.StatusOK) {
			b.Fatalf("%s: status %d, want %d", kind, w.status, want)
		}
	}
}

// BenchmarkGate runs whole requests through Handler.ServeHTTP, as
// bench/run.sh sends them, to an in-memory upstream: a signed-in browser
// (session cookie), a client with a built-in-issuer access token, a public
// path, an API call without credentials, and forward-auth. Logging is at
// warn and metrics are recorded, as in the load benchmark.
func BenchmarkGate(b *testing.B) {
	g := newBenchGate(b, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		NewMetrics(prometheus.NewRegistry()))
	for _, tt := range []struct {
		kind string
		want int
	}{
		{"cookie", http.StatusOK},
		{"bearer", http.StatusOK},
		{"public", http.StatusOK},
		{"unauth", http.StatusUnauthorized},
		{"fwdauth", http.StatusAccepted},
	} {
		b.Run(tt.kind, func(b *testing.B) { g.run(b, tt.kind, tt.want) })
	}
}

// BenchmarkGateAccessLog is the signed-in request with the access line on:
// level info, JSON, to a file, written directly (one write per line, under
// the handler's lock) and through a LogBuffer.
func BenchmarkGateAccessLog(b *testing.B) {
	for _, mode := range []string{"direct", "buffered"} {
		b.Run(mode, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			var w io.Writer = f
			if mode == "buffered" {
				lb := NewLogBuffer(f, LogBufferOptions{})
				defer lb.Close()
				w = lb
			}
			g := newBenchGate(b, slog.New(slog.NewJSONHandler(w, nil)), NewMetrics(prometheus.NewRegistry()))
			g.run(b, "cookie", http.StatusOK)
		})
	}
}

// BenchmarkRouteMatch matches against a table of 40 routes: 20 host-less
// path prefixes and 20 host-specific ones.
func BenchmarkRouteMatch(b *testing.B) {
	var rs []*route
	for i := range 20 {
		rs = append(rs, &route{name: fmt.Sprint("p", i), path: fmt.Sprintf("/app%02d/", i)})
		rs = append(rs, &route{name: fmt.Sprint("h", i), host: fmt.Sprintf("svc%02d.example.com", i), path: "/"})
	}
	rs = append(rs, &route{name: "root", path: "/"})
	t := newTable(rs)
	for _, tt := range []struct{ name, host, path, want string }{
		{"host", "svc17.example.com", "/some/deep/path", "h17"},
		{"path", "portcullis.example.com", "/app13/x/y", "p13"},
		{"fallback", "portcullis.example.com", "/elsewhere", "root"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r := t.match(tt.host, tt.path); r == nil || r.name != tt.want {
					b.Fatalf("match(%q, %q) = %v, want %s", tt.host, tt.path, r, tt.want)
				}
			}
		})
	}
}
