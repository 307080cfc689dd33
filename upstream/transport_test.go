package upstream

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/upstream/upstreamtest"
)

func TestUnixSocketUpstream(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p protocol) {
		// t.TempDir can exceed the ~100-byte socket path limit.
		dir, err := os.MkdirTemp("", "pcu")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		sock := filepath.Join(dir, "b.sock")
		backend := upstreamtest.NewUnixBackend(t, sock)
		shared := NewTransport(TransportConfig{})
		u := newTestUpstream(t, "unix:"+sock, func(_ *Config, o *Options) { o.Transport = shared })
		front, client := newFrontend(t, p, withIdentity(alice(), u))
		res, _ := do(t, client, p, newRequest(t, "GET", front.URL+"/hello?x=1", nil))
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200", res.StatusCode)
		}
		got := backend.Last(t)
		frontHost := strings.TrimPrefix(strings.TrimPrefix(front.URL, "https://"), "http://")
		if got.Path != "/hello" || got.RawQuery != "x=1" || got.Host != frontHost {
			t.Errorf("backend got path %q query %q host %q, want /hello x=1 %q", got.Path, got.RawQuery, got.Host, frontHost)
		}
		if g := got.Header.Get(HeaderUser); g != "alice" {
			t.Errorf("backend %s = %q, want alice", HeaderUser, g)
		}
		if shared.DialContext == nil {
			t.Error("the shared transport lost its dialer")
		}
	})
}

func TestHTTPSUpstream(t *testing.T) {
	eachProtocol(t, func(t *testing.T, p protocol) {
		backend := upstreamtest.NewTLSBackend(t)
		caFile := backend.CAFile(t)
		tests := []struct {
			name       string
			mod        func(*Config)
			wantStatus int
			wantLog    string
		}{
			{"ca_file", func(c *Config) { c.CAFile = caFile }, http.StatusOK, ""},
			{"system roots only", func(*Config) {}, http.StatusBadGateway, "certificate"},
			{"insecure_skip_verify", func(c *Config) { c.InsecureSkipVerify = true }, http.StatusOK, "insecure_skip_verify is set"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				log, logs := newLogger()
				u := newTestUpstream(t, backend.URL()+"/base", func(c *Config, o *Options) {
					tt.mod(c)
					o.Logger = log
				})
				front, client := newFrontend(t, p, withIdentity(alice(), u))
				n := len(backend.Requests())
				res, _ := do(t, client, p, newRequest(t, "GET", front.URL+"/p", nil))
				if res.StatusCode != tt.wantStatus {
					t.Fatalf("status = %d, want %d", res.StatusCode, tt.wantStatus)
				}
				if tt.wantLog != "" && !strings.Contains(logs.String(), tt.wantLog) {
					t.Errorf("log = %q, want it to mention %q", logs.String(), tt.wantLog)
				}
				if tt.wantStatus != http.StatusOK {
					if len(backend.Requests()) != n {
						t.Error("backend received a request over an unverified connection")
					}
					return
				}
				got := backend.Last(t)
				if got.ProtoMajor != 2 || !got.TLS || got.Path != "/base/p" {
					t.Errorf("backend got HTTP/%d tls=%v path %q, want HTTP/2 over TLS at /base/p", got.ProtoMajor, got.TLS, got.Path)
				}
			})
		}
	})
}

func TestNewTransport(t *testing.T) {
	tr := NewTransport(TransportConfig{})
	if tr.Proxy != nil {
		t.Error("NewTransport: Proxy is set; want no proxy from the environment")
	}
	if !tr.ForceAttemptHTTP2 {
		t.Error("NewTransport: ForceAttemptHTTP2 = false, want true")
	}
	if tr.MaxIdleConnsPerHost < 256 || tr.MaxIdleConns < 1024 || tr.IdleConnTimeout.Seconds() != 90 {
		t.Errorf("NewTransport pool = %d per host, %d total, idle %v; want ≥256, ≥1024, 90s",
			tr.MaxIdleConnsPerHost, tr.MaxIdleConns, tr.IdleConnTimeout)
	}
	if tr.TLSHandshakeTimeout == 0 || tr.DialContext == nil {
		t.Error("NewTransport: no TLS handshake timeout or dialer")
	}
	tr = NewTransport(TransportConfig{MaxIdleConnsPerHost: 7})
	if tr.MaxIdleConnsPerHost != 7 {
		t.Errorf("NewTransport(MaxIdleConnsPerHost: 7).MaxIdleConnsPerHost = %d, want 7", tr.MaxIdleConnsPerHost)
	}
}

func TestBufferPoolAllocatesNothing(t *testing.T) {
	bp := newBufferPool()
	bp.Put(bp.Get()) // the first Get makes the buffer
	if n := testing.AllocsPerRun(100, func() {
		b := bp.Get()
		if len(b) != bufferSize {
			t.Fatalf("len %d, want %d", len(b), bufferSize)
		}
		bp.Put(b)
	}); n != 0 {
		t.Errorf("Get+Put allocates %v times, want 0", n)
	}
	bp.Put(make([]byte, 10)) // too small: dropped, never handed out
	if b := bp.Get(); len(b) != bufferSize {
		t.Errorf("len %d after a short Put, want %d", len(b), bufferSize)
	}
}
