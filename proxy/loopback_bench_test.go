package proxy

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-proxy/portcullis/upstream"
)

// BenchmarkLoopback runs requests as bench/run.sh sends them through real
// servers on loopback: a client on raw keep-alive TCP connections, the
// gate behind an http.Server configured as proxy/server does with TLS off,
// the shared upstream transport, and an upstream http.Server answering
// bench/upstream's small JSON body. "bare" is bench/bareproxy's
// ReverseProxy in the same harness: the floor the others are compared to.
//
// Everything runs in this one process, so B/op and allocs/op count the
// client's and the upstream's allocations too (the same for every
// sub-benchmark); the differences between sub-benchmarks are the gate's.
// Profile with -cpuprofile/-memprofile to see where a request goes, e.g.
//
//	go test -run '^$' -bench 'Loopback/cookie' -benchmem -cpu 1 -memprofile mem.out ./proxy
func BenchmarkLoopback(b *testing.B) {
	body := []byte(`{"ok":true,"server":"bench-upstream","note":"a small fixed body so the proxy, not the app, is measured"}` + "\n")
	bodyLen := strconv.Itoa(len(body))
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{bodyLen}
		_, _ = w.Write(body)
	}))
	up.Config.ReadHeaderTimeout = 10 * time.Second
	up.Start()
	b.Cleanup(up.Close)

	transport := upstream.NewTransport(upstream.TransportConfig{})
	b.Cleanup(transport.CloseIdleConnections)
	g := newBenchGateTo(b, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		NewMetrics(prometheus.NewRegistry()), up.URL, transport)
	gate := httptest.NewUnstartedServer(g.h)
	// As proxy/server configures the main listener with tls: off.
	gate.Config.ReadHeaderTimeout = 10 * time.Second
	gate.Config.IdleTimeout = 120 * time.Second
	gate.Config.MaxHeaderBytes = 64 << 10
	gate.Config.Protocols = new(http.Protocols)
	gate.Config.Protocols.SetHTTP1(true)
	gate.Config.Protocols.SetUnencryptedHTTP2(true)
	gate.Start()
	b.Cleanup(gate.Close)

	bareHeaders := httptest.NewUnstartedServer(newBareProxyWith(b, up.URL, func(h http.Header) {
		// What the signed-in row's upstream gets on top: the identity and
		// a request id, with the bench user's values.
		h["X-Forwarded-User"] = []string{"bench"}
		h["X-Forwarded-Email"] = []string{"bench@example.com"}
		h["X-Forwarded-Groups"] = []string{"bench"}
		h["X-Forwarded-Preferred-Username"] = []string{"bench"}
		h["X-Request-Id"] = []string{"0123456789abcdef"}
	}))
	bareHeaders.Start()
	b.Cleanup(bareHeaders.Close)
	bare := httptest.NewUnstartedServer(newBareProxy(b, up.URL))
	bare.Config.ReadHeaderTimeout = 10 * time.Second
	bare.Config.IdleTimeout = 120 * time.Second
	bare.Start()
	b.Cleanup(bare.Close)

	for _, tt := range []struct {
		name, server, kind string
		want               int
	}{
		{"bare", bare.Listener.Addr().String(), "cookie", http.StatusOK},
		{"bare+identity-headers", bareHeaders.Listener.Addr().String(), "cookie", http.StatusOK},
		{"public", gate.Listener.Addr().String(), "public", http.StatusOK},
		{"cookie", gate.Listener.Addr().String(), "cookie", http.StatusOK},
		{"bearer", gate.Listener.Addr().String(), "bearer", http.StatusOK},
	} {
		b.Run(tt.name, func(b *testing.B) {
			raw := g.rawRequest(tt.kind)
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", tt.server)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				for pb.Next() {
					if _, err := c.Write(raw); err != nil {
						b.Error(err)
						return
					}
					res, err := http.ReadResponse(br, nil)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != tt.want {
						b.Errorf("%s: status %d, want %d", tt.name, res.StatusCode, tt.want)
						return
					}
				}
			})
		})
	}
}

// rawRequest is the HTTP/1.1 request bench/run.sh's wrk sends for kind.
func (g *benchGate) rawRequest(kind string) []byte {
	path := "/"
	if kind == "public" {
		path = "/public/ping"
	}
	s := "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:4180\r\nAccept: application/json\r\n"
	switch kind {
	case "cookie":
		s += "Cookie: " + g.leanCookie + "\r\n"
	case "bearer":
		s += "Authorization: Bearer " + g.token + "\r\n"
	}
	return []byte(s + "\r\n")
}

// newBareProxy is bench/bareproxy's handler.
func newBareProxy(b *testing.B, to string) http.Handler { return newBareProxyWith(b, to, nil) }

// newBareProxyWith is bench/bareproxy's handler, setting headers with set
// (when not nil) on every outbound request: the cost of the headers alone.
func newBareProxyWith(b *testing.B, to string, set func(http.Header)) http.Handler {
	target, err := url.Parse(to)
	if err != nil {
		b.Fatal(err)
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	b.Cleanup(t.CloseIdleConnections)
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			if set != nil {
				set(pr.Out.Header)
			}
		},
		Transport:  t,
		BufferPool: &bareBufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}},
	}
}

// bareBufferPool is bench/bareproxy's buffer pool, as it is.
type bareBufferPool struct{ p sync.Pool }

func (bp *bareBufferPool) Get() []byte  { return *(bp.p.Get().(*[]byte)) }
func (bp *bareBufferPool) Put(b []byte) { bp.p.Put(&b) }
