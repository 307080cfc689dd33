// Package upstreamtest provides a recording backend for tests of anything
// that forwards to an upstream: a real httptest server that remembers every
// request it received and answers with it as JSON.
//
// It imports only the standard library, so any package's tests may use it.
package upstreamtest

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Request is what the backend saw of one request.
type Request struct {
	Method     string      `json:"method"`
	Host       string      `json:"host"`
	Path       string      `json:"path"`     // r.URL.Path, decoded
	RawPath    string      `json:"raw_path"` // r.URL.RawPath: set only when the wire form was not the default encoding
	RawQuery   string      `json:"query"`
	RequestURI string      `json:"request_uri"` // the target exactly as sent
	Proto      string      `json:"proto"`
	ProtoMajor int         `json:"proto_major"`
	TLS        bool        `json:"tls"`
	RemoteAddr string      `json:"remote_addr"`
	Header     http.Header `json:"headers"`
	Body       string      `json:"body"`
}

// Backend is a running recording server. Its handler can be replaced with
// Handle for tests that need another answer; requests are recorded either
// way.
type Backend struct {
	// Server is the underlying server; its URL is the backend's address.
	Server *httptest.Server

	mu      sync.Mutex
	reqs    []Request
	handler http.Handler
}

// NewBackend starts a plain HTTP/1.1 backend, closed at the end of the test.
func NewBackend(t testing.TB) *Backend {
	t.Helper()
	b := &Backend{}
	b.Server = httptest.NewServer(b)
	t.Cleanup(b.Server.Close)
	return b
}

// NewTLSBackend starts an HTTPS backend with HTTP/2 enabled (a client that
// offers h2 gets it), closed at the end of the test. CAFile writes its
// certificate for clients to trust.
func NewTLSBackend(t testing.TB) *Backend {
	t.Helper()
	b := &Backend{}
	b.Server = httptest.NewUnstartedServer(b)
	b.Server.EnableHTTP2 = true
	b.Server.StartTLS()
	t.Cleanup(b.Server.Close)
	return b
}

// NewUnixBackend starts a plain HTTP/1.1 backend listening on the unix
// socket at path, closed at the end of the test. Keep path short: sockets
// are limited to about 100 bytes.
func NewUnixBackend(t testing.TB, path string) *Backend {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("upstreamtest: listen on %s: %v", path, err)
	}
	b := &Backend{}
	b.Server = httptest.NewUnstartedServer(b)
	b.Server.Listener.Close()
	b.Server.Listener = ln
	b.Server.Start()
	t.Cleanup(b.Server.Close)
	return b
}

// URL returns the backend's base URL (for a unix backend it is not dialable).
func (b *Backend) URL() string { return b.Server.URL }

// CAFile writes the backend's TLS certificate as PEM to a temporary file and
// returns its path.
func (b *Backend) CAFile(t testing.TB) string {
	t.Helper()
	cert := b.Server.Certificate()
	if cert == nil {
		t.Fatal("upstreamtest: CAFile on a backend without TLS")
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Handle replaces the answer the backend gives (requests are still
// recorded). Nil restores the JSON echo.
func (b *Backend) Handle(h http.Handler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.handler = h
}

// Requests returns a copy of every request received so far, oldest first.
func (b *Backend) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.reqs...)
}

// Last returns the most recent request, failing the test when there is none.
func (b *Backend) Last(t testing.TB) Request {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		t.Fatal("upstreamtest: the backend received no request")
	}
	return b.reqs[len(b.reqs)-1]
}

// ServeHTTP records r and answers with its JSON (or with the Handle handler).
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Request{
		Method:     r.Method,
		Host:       r.Host,
		Path:       r.URL.Path,
		RawPath:    r.URL.RawPath,
		RawQuery:   r.URL.RawQuery,
		RequestURI: r.RequestURI,
		Proto:      r.Proto,
		ProtoMajor: r.ProtoMajor,
		TLS:        r.TLS != nil,
		RemoteAddr: r.RemoteAddr,
		Header:     r.Header.Clone(),
	}
	b.mu.Lock()
	h := b.handler
	b.mu.Unlock()
	if h == nil {
		body, _ := io.ReadAll(r.Body)
		rec.Body = string(body)
	}
	b.mu.Lock()
	b.reqs = append(b.reqs, rec)
	b.mu.Unlock()
	if h != nil {
		h.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(rec)
}
