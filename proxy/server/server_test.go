package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestServeProtocols(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.writePair(t, certFile, keyFile, "files")

	tests := []struct {
		name      string
		tls       TLSConfig
		proto     string
		wantProto string
	}{
		{"off http/1.1", TLSConfig{}, "h1", "HTTP/1.1"},
		{"off h2c", TLSConfig{Mode: ModeOff}, "h2c", "HTTP/2.0"},
		{"self-signed http/1.1", TLSConfig{Mode: ModeSelfSigned}, "h1", "HTTP/1.1"},
		{"self-signed h2", TLSConfig{Mode: ModeSelfSigned}, "h2", "HTTP/2.0"},
		{"files http/1.1", TLSConfig{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile}, "h1", "HTTP/1.1"},
		{"files h2", TLSConfig{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile}, "h2", "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, nil, Options{}, func(c *Config) { c.TLS = tt.tls })
			roots := ca.pool
			if s.selfSigned != nil {
				roots = x509.NewCertPool()
				roots.AddCert(s.selfSigned.Leaf)
			}
			resp, body := get(t, newClient(t, tt.proto, roots), baseURL(s)+"/hello")
			if want := tt.wantProto + " /hello"; resp.StatusCode != http.StatusOK || body != want {
				t.Errorf("GET /hello = %d %q, want 200 %q", resp.StatusCode, body, want)
			}
			if tt.tls.Mode == ModeOff || tt.tls.Mode == "" {
				if resp.TLS != nil {
					t.Errorf("GET over mode off: response has TLS state, want plain HTTP")
				}
				return
			}
			if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Fatalf("GET over TLS: TLS state = %+v, want TLS 1.2 or later", resp.TLS)
			}
		})
	}
}

func TestTLSMinimumVersion(t *testing.T) {
	s := newTestServer(t, nil, Options{}, func(c *Config) { c.TLS.Mode = ModeSelfSigned })
	conn, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Fatalf("TLS 1.1 handshake succeeded, want it refused")
	}
}

func TestSelfSignedCertificate(t *testing.T) {
	clock := newFakeClock()
	var logs logRecorder
	s := newUnstartedServer(t, nil, Options{
		Hostnames: []string{"App.Example.com:8443", "10.0.0.5", "[2001:db8::1]:443", "localhost"},
		Now:       clock.Now, Logger: logs.logger(),
	}, func(c *Config) { c.TLS.Mode = ModeSelfSigned })
	leaf := s.selfSigned.Leaf

	if want := []string{"app.example.com", "localhost"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNSNames = %v, want %v", leaf.DNSNames, want)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"10.0.0.5", "2001:db8::1", "127.0.0.1", "::1"}; !slices.Equal(ips, want) {
		t.Errorf("IPAddresses = %v, want %v", ips, want)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key = %T, want ECDSA P-256", leaf.PublicKey)
	}
	if want := clock.Now().AddDate(1, 0, 0); !leaf.NotAfter.Equal(want.Truncate(time.Second)) {
		t.Errorf("NotAfter = %v, want %v", leaf.NotAfter, want)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, name := range []string{"app.example.com", "localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: clock.Now()}); err != nil {
			t.Errorf("Verify(%q) = %v, want nil", name, err)
		}
	}
	recs := logs.find("self-signed")
	if len(recs) != 1 || recs[0].Level != slog.LevelWarn || !strings.Contains(recs[0].Msg, "local use") {
		t.Fatalf("self-signed log records = %+v, want one warning mentioning local use", recs)
	}
	if got, want := recs[0].Attrs["sha256"], fingerprint(leaf.Raw); got != want || len(got) != 95 {
		t.Errorf("logged sha256 = %q, want %q", got, want)
	}
}

func TestNewFilesErrors(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certA, keyA := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	certB, keyB := filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key")
	ca.writePair(t, certA, keyA, "a")
	ca.writePair(t, certB, keyB, "b")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name       string
		cert, key  string
		wantSubstr []string
	}{
		{"missing cert", missing, keyA, []string{"tls.cert_file", missing, "no such file"}},
		{"missing key", certA, missing, []string{"tls.key_file", missing, "no such file"}},
		{"mismatched pair", certA, keyB, []string{certA, keyB, "private key does not match"}},
		{"garbage cert", garbage, keyA, []string{garbage, keyA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{TLS: TLSConfig{Mode: ModeFiles, CertFile: tt.cert, KeyFile: tt.key}}, protoHandler(), Options{})
			if err == nil {
				t.Fatalf("New() = nil error, want one naming the file")
			}
			for _, want := range tt.wantSubstr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New() = %v, want it to contain %q", err, want)
				}
			}
		})
	}
	t.Run("invalid config", func(t *testing.T) {
		_, err := New(Config{TLS: TLSConfig{Mode: "on"}}, protoHandler(), Options{})
		if err == nil || !strings.Contains(err.Error(), `tls.mode: "on"`) {
			t.Errorf("New(mode on) = %v, want the validation error", err)
		}
	})
	t.Run("nil handler", func(t *testing.T) {
		if _, err := New(Config{}, nil, Options{}); err == nil {
			t.Errorf("New(nil handler) = nil error, want one")
		}
	})
}

// peerCN returns the common name of the certificate a response came over.
func peerCN(t *testing.T, resp *http.Response) string {
	t.Helper()
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatalf("response without TLS peer certificates")
	}
	return resp.TLS.PeerCertificates[0].Subject.CommonName
}

// getReused fetches url and reports whether the client reused a connection.
func getReused(t *testing.T, c *http.Client, url string) (*http.Response, bool) {
	t.Helper()
	var reused bool
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	}), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, reused
}

func TestFilesRotation(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.writePair(t, certFile, keyFile, "first")
	clock := newFakeClock()
	var logs logRecorder
	s := newTestServer(t, nil, Options{Now: clock.Now, Logger: logs.logger()}, func(c *Config) {
		c.TLS = TLSConfig{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile}
	})
	url := baseURL(s) + "/"

	old := newClient(t, "h1", ca.pool)
	if resp, _ := getReused(t, old, url); peerCN(t, resp) != "first" {
		t.Fatalf("before rotation: cert CN = %q, want first", peerCN(t, resp))
	}

	ca.writePair(t, certFile, keyFile, "second")
	// Within the check interval no handshake touches the disk.
	if resp, _ := getReused(t, newClient(t, "h1", ca.pool), url); peerCN(t, resp) != "first" {
		t.Errorf("new connection within the check interval: CN = %q, want first (files not re-read yet)", peerCN(t, resp))
	}
	clock.Advance(fileCheckInterval)
	for _, proto := range []string{"h1", "h2"} {
		if resp, _ := getReused(t, newClient(t, proto, ca.pool), url); peerCN(t, resp) != "second" {
			t.Errorf("new %s connection after rotation: CN = %q, want second", proto, peerCN(t, resp))
		}
	}
	resp, reused := getReused(t, old, url)
	if !reused || peerCN(t, resp) != "first" || resp.StatusCode != http.StatusOK {
		t.Errorf("old connection after rotation: reused=%v CN=%q status=%d, want reused, first, 200", reused, peerCN(t, resp), resp.StatusCode)
	}
	if len(logs.find("reloaded TLS certificate")) != 1 {
		t.Errorf("logs = %s\nwant one \"reloaded TLS certificate\"", logs.all())
	}

	// A broken pair on disk is logged once and the previous one keeps serving.
	if err := os.WriteFile(keyFile, []byte("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		clock.Advance(fileCheckInterval)
		if resp, _ := getReused(t, newClient(t, "h1", ca.pool), url); peerCN(t, resp) != "second" {
			t.Errorf("with a broken key on disk: CN = %q, want second (the previous certificate)", peerCN(t, resp))
		}
	}
	if recs := logs.find("cannot reload TLS certificate"); len(recs) != 1 || recs[0].Level != slog.LevelError {
		t.Errorf("logs = %s\nwant one error \"cannot reload TLS certificate\"", logs.all())
	}
	for _, rec := range logs.find("") {
		if strings.Contains(rec.Attrs["err"], "broken") {
			t.Errorf("log record %+v quotes key material", rec)
		}
	}

	// Fixing the pair is picked up again.
	ca.writePair(t, certFile, keyFile, "third")
	clock.Advance(fileCheckInterval)
	if resp, _ := getReused(t, newClient(t, "h1", ca.pool), url); peerCN(t, resp) != "third" {
		t.Errorf("after fixing the pair: CN = %q, want third", peerCN(t, resp))
	}
}

func TestReload(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.writePair(t, certFile, keyFile, "first")
	clock := newFakeClock()
	base := Config{Listen: "127.0.0.1:0", TLS: TLSConfig{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile}}
	s := newTestServer(t, nil, Options{Now: clock.Now, Hostnames: []string{"localhost"}}, func(c *Config) { *c = base })
	url := baseURL(s) + "/"
	old := newClient(t, "h2", ca.pool)
	getReused(t, old, url)

	cnOfNew := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}

	t.Run("same paths force a re-read", func(t *testing.T) {
		ca.writePair(t, certFile, keyFile, "second")
		if err := s.Reload(base); err != nil {
			t.Fatalf("Reload() = %v, want nil", err)
		}
		if got := cnOfNew(); got != "second" {
			t.Errorf("after Reload: CN = %q, want second (without waiting for the check interval)", got)
		}
	})
	t.Run("broken files change nothing", func(t *testing.T) {
		bad := base
		bad.TLS.KeyFile = filepath.Join(dir, "missing.key")
		err := s.Reload(bad)
		if err == nil || !strings.Contains(err.Error(), "missing.key") {
			t.Fatalf("Reload(missing key) = %v, want an error naming the file", err)
		}
		if got := cnOfNew(); got != "second" {
			t.Errorf("after a failed Reload: CN = %q, want second", got)
		}
	})
	t.Run("invalid config changes nothing", func(t *testing.T) {
		bad := base
		bad.TLS.Mode = "on"
		if err := s.Reload(bad); err == nil || errors.Is(err, ErrRestartRequired) {
			t.Fatalf("Reload(mode on) = %v, want a validation error", err)
		}
	})
	t.Run("files to self-signed", func(t *testing.T) {
		next := base
		next.TLS = TLSConfig{Mode: ModeSelfSigned}
		if err := s.Reload(next); err != nil {
			t.Fatalf("Reload(self-signed) = %v, want nil", err)
		}
		if got := cnOfNew(); got != "Portcullis self-signed" {
			t.Errorf("after switching to self-signed: CN = %q", got)
		}
		if err := s.Reload(base); err != nil {
			t.Fatalf("Reload(files) = %v, want nil", err)
		}
		if got := cnOfNew(); got != "second" {
			t.Errorf("after switching back to files: CN = %q, want second", got)
		}
	})
	t.Run("listen change needs a restart", func(t *testing.T) {
		next := base
		next.Listen = "127.0.0.1:1"
		next.MetricsListen = "127.0.0.1:0"
		next.Timeouts.Shutdown = 5 * time.Second
		err := s.Reload(next)
		if !errors.Is(err, ErrRestartRequired) || !strings.Contains(err.Error(), `listen changed from "127.0.0.1:0" to "127.0.0.1:1"`) ||
			!strings.Contains(err.Error(), "metrics_listen") {
			t.Fatalf("Reload(new listen) = %v, want ErrRestartRequired naming listen and metrics_listen", err)
		}
		if got := time.Duration(s.shutdownTimeout.Load()); got != 5*time.Second {
			t.Errorf("timeouts.shutdown after a partial reload = %v, want 5s applied", got)
		}
	})
	t.Run("turning TLS off needs a restart", func(t *testing.T) {
		err := s.Reload(Config{Listen: base.Listen})
		if !errors.Is(err, ErrRestartRequired) || !strings.Contains(err.Error(), `tls.mode changed from "files" to "off"`) {
			t.Fatalf("Reload(mode off) = %v, want ErrRestartRequired naming tls.mode", err)
		}
		if got := cnOfNew(); got != "second" {
			t.Errorf("after a refused mode change: CN = %q, want second", got)
		}
	})
	t.Run("old connection kept", func(t *testing.T) {
		resp, reused := getReused(t, old, url)
		if !reused || peerCN(t, resp) != "first" {
			t.Errorf("connection from before the reloads: reused=%v CN=%q, want reused and first", reused, peerCN(t, resp))
		}
	})
}

// streamingHandler writes a first line, then waits for release before
// finishing, so a test controls exactly when a request is in flight.
func streamingHandler(release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "started\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
			io.WriteString(w, "finished\n")
		case <-r.Context().Done():
		}
	})
}

func TestGracefulShutdown(t *testing.T) {
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			release := make(chan struct{})
			listenersClosed := make(chan struct{})
			s := newUnstartedServer(t, streamingHandler(release), Options{}, func(c *Config) {
				c.TLS.Mode = ModeSelfSigned
				c.MetricsListen = "127.0.0.1:0"
			})
			s.onShutdown = func() { close(listenersClosed) }
			if err := s.Start(t.Context()); err != nil {
				t.Fatalf("Start() = %v", err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(s.selfSigned.Leaf)
			resp, err := newClient(t, proto, roots).Get(baseURL(s) + "/slow")
			if err != nil {
				t.Fatalf("GET /slow: %v", err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			if line, err := br.ReadString('\n'); err != nil || line != "started\n" {
				t.Fatalf("first line = %q, %v; want started", line, err)
			}

			shutdownErr := make(chan error, 1)
			go func() { shutdownErr <- s.Shutdown(context.Background()) }()
			waitOrFail(t, listenersClosed, "listeners to close")

			if conn, err := net.Dial("tcp", s.Addr().String()); err == nil {
				conn.Close()
				t.Errorf("dial during shutdown succeeded, want connection refused")
			}
			_, body := get(t, newClient(t, "h1", nil), "http://"+s.MetricsAddr().String()+"/readyz")
			if body != "not ready\n" {
				t.Errorf("/readyz while draining = %q, want not ready", body)
			}
			select {
			case err := <-shutdownErr:
				t.Fatalf("Shutdown() returned %v while a request was in flight", err)
			default:
			}

			close(release)
			rest, err := io.ReadAll(br)
			if err != nil || string(rest) != "finished\n" {
				t.Errorf("rest of the in-flight response = %q, %v; want finished", rest, err)
			}
			if err := <-shutdownErr; err != nil {
				t.Errorf("Shutdown() = %v, want nil after a clean drain", err)
			}
		})
	}
}

func TestShutdownPastDeadline(t *testing.T) {
	never := make(chan struct{})
	s := newUnstartedServer(t, streamingHandler(never), Options{}, func(c *Config) {
		c.Timeouts.Shutdown = time.Nanosecond
	})
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	resp, err := newClient(t, "h1", nil).Get(baseURL(s) + "/stuck")
	if err != nil {
		t.Fatalf("GET /stuck: %v", err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); line != "started\n" {
		t.Fatalf("first line = %q, want started", line)
	}
	err = s.Shutdown(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "server: shutdown:") {
		t.Fatalf("Shutdown() with a stuck request = %v, want a server: error wrapping context.DeadlineExceeded", err)
	}
	if _, err := io.ReadAll(br); err == nil {
		t.Errorf("stuck response completed normally, want its connection closed")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown() = %v, want nil", err)
	}
}

func TestShutdownContextCanceled(t *testing.T) {
	never := make(chan struct{})
	listenersClosed := make(chan struct{})
	s := newUnstartedServer(t, streamingHandler(never), Options{}, nil)
	s.onShutdown = func() { close(listenersClosed) }
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	resp, err := newClient(t, "h1", nil).Get(baseURL(s) + "/stuck")
	if err != nil {
		t.Fatalf("GET /stuck: %v", err)
	}
	defer resp.Body.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-listenersClosed
		cancel()
	}()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown(canceled ctx) = %v, want context.Canceled", err)
	}
}

func TestMetricsListener(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "portcullis_up 1\n")
	})
	s := newTestServer(t, nil, Options{Metrics: metrics, Ready: ready.Load}, func(c *Config) { c.MetricsListen = "127.0.0.1:0" })
	base := "http://" + s.MetricsAddr().String()
	c := newClient(t, "h1", nil)

	check := func(path string, wantCode int, wantBody string) {
		t.Helper()
		resp, body := get(t, c, base+path)
		if resp.StatusCode != wantCode || (wantBody != "" && body != wantBody) {
			t.Errorf("GET %s = %d %q, want %d %q", path, resp.StatusCode, body, wantCode, wantBody)
		}
	}
	check("/healthz", http.StatusOK, "ok\n")
	check("/readyz", http.StatusOK, "ready\n")
	check("/metrics", http.StatusOK, "portcullis_up 1\n")
	check("/other", http.StatusNotFound, "")
	ready.Store(false)
	check("/readyz", http.StatusServiceUnavailable, "not ready\n")
	check("/healthz", http.StatusOK, "ok\n")

	// The main listener does not serve the operations endpoints.
	if _, body := get(t, c, baseURL(s)+"/healthz"); body != "HTTP/1.1 /healthz" {
		t.Errorf("main listener GET /healthz = %q, want the application handler", body)
	}

	t.Run("nil metrics and ready", func(t *testing.T) {
		s := newTestServer(t, nil, Options{}, func(c *Config) { c.MetricsListen = "127.0.0.1:0" })
		base := "http://" + s.MetricsAddr().String()
		if resp, _ := get(t, c, base+"/metrics"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /metrics without a handler = %d, want 404", resp.StatusCode)
		}
		if resp, _ := get(t, c, base+"/readyz"); resp.StatusCode != http.StatusOK {
			t.Errorf("GET /readyz without Ready = %d, want 200", resp.StatusCode)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		s := newTestServer(t, nil, Options{}, nil)
		if s.MetricsAddr() != nil || s.HTTPAddr() != nil {
			t.Errorf("MetricsAddr() = %v, HTTPAddr() = %v, want nil", s.MetricsAddr(), s.HTTPAddr())
		}
	})
}

func TestRun(t *testing.T) {
	var logs logRecorder
	s, err := New(Config{Listen: "127.0.0.1:0"}, protoHandler(), Options{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	listening := logs.waitFor("listening")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitOrFail(t, listening, "the server to listen")

	if _, body := get(t, newClient(t, "h1", nil), baseURL(s)+"/x"); body != "HTTP/1.1 /x" {
		t.Errorf("GET /x = %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
	if _, err := net.Dial("tcp", s.Addr().String()); err == nil {
		t.Errorf("dial after Run returned succeeded, want refused")
	}
}

func TestStartErrors(t *testing.T) {
	s := newTestServer(t, nil, Options{}, nil)
	if err := s.Start(t.Context()); err == nil {
		t.Errorf("second Start() = nil, want an error")
	}
	busy := s.Addr().String()
	s2, err := New(Config{Listen: "127.0.0.1:0", MetricsListen: busy}, protoHandler(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = s2.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "metrics_listen") || !strings.Contains(err.Error(), busy) {
		t.Fatalf("Start() with a busy metrics port = %v, want an error naming metrics_listen and %s", err, busy)
	}
	if s2.Addr() != nil {
		t.Errorf("Addr() after a failed Start = %v, want nil", s2.Addr())
	}
	if err := s2.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown() after a failed Start = %v, want nil", err)
	}
}

func TestHandshakeErrorsLogAtDebug(t *testing.T) {
	var logs logRecorder
	s := newTestServer(t, nil, Options{Logger: logs.logger()}, func(c *Config) { c.TLS.Mode = ModeSelfSigned })
	handshake := logs.waitFor("TLS handshake error")
	// Plain HTTP to the TLS port fails the handshake.
	resp, err := newClient(t, "h1", nil).Get("http://" + s.Addr().String() + "/")
	if err == nil {
		resp.Body.Close()
	}
	waitOrFail(t, handshake, "the handshake error log")
	for _, rec := range logs.find("TLS handshake error") {
		if rec.Level != slog.LevelDebug {
			t.Errorf("handshake error logged at %v, want debug", rec.Level)
		}
	}
}

func TestReloadACME(t *testing.T) {
	cfg := Config{Listen: "127.0.0.1:0", TLS: TLSConfig{Mode: ModeACME, ACME: ACMEConfig{
		Email: "ops@portcullis.test", Domains: []string{"a.portcullis.test"}, Storage: t.TempDir(),
	}}}
	s, err := New(cfg, protoHandler(), Options{})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	if err := s.Reload(cfg); err != nil {
		t.Errorf("Reload(same acme config) = %v, want nil", err)
	}
	next := cfg
	next.TLS.ACME.Domains = []string{"a.portcullis.test", "b.portcullis.test"}
	if err := s.Reload(next); !errors.Is(err, ErrRestartRequired) || !strings.Contains(err.Error(), "tls.acme changed") {
		t.Errorf("Reload(new acme domains) = %v, want ErrRestartRequired naming tls.acme", err)
	}
	if err := s.Reload(Config{Listen: cfg.Listen, TLS: TLSConfig{Mode: ModeSelfSigned}}); !errors.Is(err, ErrRestartRequired) {
		t.Errorf("Reload(acme to self-signed) = %v, want ErrRestartRequired", err)
	}
}
