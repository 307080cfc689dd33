package upstream

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth"
)

// protocol is one column of the HTTP/1.1 × HTTP/2 matrix for the frontend.
type protocol struct {
	name string
	h2   bool
}

var protocols = []protocol{{"h1", false}, {"h2", true}}

// eachProtocol runs f once with an HTTP/1.1 frontend and once with an HTTP/2
// (TLS) frontend.
func eachProtocol(t *testing.T, f func(t *testing.T, p protocol)) {
	t.Helper()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) { f(t, p) })
	}
}

// newFrontend serves h over p and returns the server and a client for it.
func newFrontend(t *testing.T, p protocol, h http.Handler) (*httptest.Server, *http.Client) {
	t.Helper()
	var s *httptest.Server
	if p.h2 {
		s = httptest.NewUnstartedServer(h)
		s.EnableHTTP2 = true
		s.StartTLS()
	} else {
		s = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s, s.Client()
}

// newTestUpstream builds an Upstream for url with valid defaults; mod changes
// one thing.
func newTestUpstream(t *testing.T, url string, mod func(*Config, *Options)) *Upstream {
	t.Helper()
	cfg := Config{Name: "app", URL: url}
	opts := Options{Transport: NewTransport(TransportConfig{})}
	if mod != nil {
		mod(&cfg, &opts)
	}
	u, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	if tr, ok := opts.Transport.(*http.Transport); ok {
		t.Cleanup(tr.CloseIdleConnections)
	}
	return u
}

// withIdentity serves h with id in the request context, as the proxy's gate
// does after a successful sign-in check. A nil id leaves the request anonymous.
func withIdentity(id *auth.Identity, h http.Handler) http.Handler {
	if id == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(auth.WithIdentity(r.Context(), id)))
	})
}

func alice() *auth.Identity {
	return &auth.Identity{
		Issuer:            "https://issuer.example",
		Subject:           "sub-alice",
		User:              "alice",
		Email:             "alice@example.com",
		EmailVerified:     true,
		Groups:            []string{"admins", "dev"},
		PreferredUsername: "Alice A",
		AccessToken:       "access-token-value",
		IDToken:           "id-token-value",
	}
}

// do sends req through client and returns the response and its body.
func do(t *testing.T, client *http.Client, p protocol, req *http.Request) (*http.Response, string) {
	t.Helper()
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if want := map[bool]int{false: 1, true: 2}[p.h2]; res.ProtoMajor != want {
		t.Fatalf("frontend answered over HTTP/%d, want HTTP/%d", res.ProtoMajor, want)
	}
	return res, string(body)
}

func newRequest(t *testing.T, method, url string, header map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		// Set the name exactly as written, as a client spoofing it would.
		req.Header[k] = append(req.Header[k], v)
	}
	return req
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// headerWithValue returns the names of received headers carrying value.
func headerWithValue(h http.Header, value string) []string {
	var names []string
	for k, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, value) {
				names = append(names, k)
			}
		}
	}
	return names
}
