package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestACMERedirectHandler(t *testing.T) {
	tests := []struct {
		name         string
		httpsPort    int
		host, target string
		wantCode     int
		wantLocation string
	}{
		{"path and query kept", 8443, "app.example.com", "/a/b?c=d", 308, "https://app.example.com:8443/a/b?c=d"},
		{"port 443 omitted", 443, "app.example.com:80", "/", 308, "https://app.example.com/"},
		{"host case and dot", 443, "APP.Example.com.", "/x", 308, "https://app.example.com/x"},
		{"second domain", 443, "www.example.com", "/", 308, "https://www.example.com/"},
		{"double slash stays a path", 443, "app.example.com", "//evil.example/x", 308, "https://app.example.com//evil.example/x"},
		{"absolute-form target", 443, "app.example.com", "http://app.example.com//evil.example/", 308, "https://app.example.com//evil.example/"},
		{"unknown host", 443, "evil.example", "/", http.StatusMisdirectedRequest, ""},
	}
	m := newACMEManager(ACMEConfig{Email: "ops@example.com", Domains: []string{"app.example.com", "www.example.com"},
		CA: "https://ca.invalid/dir", Storage: t.TempDir()}, nil, nil, nil, slogDiscard())
	t.Cleanup(m.stop)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := m.httpHandler(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tt.httpsPort})
			req := httptest.NewRequest(http.MethodGet, tt.target, nil)
			req.Host = tt.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode || rec.Header().Get("Location") != tt.wantLocation {
				t.Errorf("GET %s Host %s = %d %q, want %d %q", tt.target, tt.host, rec.Code, rec.Header().Get("Location"), tt.wantCode, tt.wantLocation)
			}
		})
	}
}

// pebble is a running Pebble ACME server.
type pebble struct {
	dirURL  string
	mgmt    string
	caRoot  string // PEM file of the CA that signs Pebble's own HTTPS certificate
	caPool  *x509.CertPool
	process *exec.Cmd
}

func goTool(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build Pebble (see scripts/test-deps.sh): %v", err)
	}
	return goBin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPebble builds and runs Pebble on free loopback ports, with challenge
// validation off (PEBBLE_VA_ALWAYS_VALID) so no port 80 is needed.
func startPebble(t *testing.T) *pebble {
	t.Helper()
	goBin := goTool(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "pebble")
	build := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, "github.com/letsencrypt/pebble/v2/cmd/pebble")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pebble (run scripts/test-deps.sh to fetch modules): %v\n%s", err, out)
	}
	out, err := exec.CommandContext(t.Context(), goBin, "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
	if err != nil {
		t.Fatalf("locating the pebble module: %v", err)
	}
	modDir := strings.TrimSpace(string(out))

	p := &pebble{
		dirURL: fmt.Sprintf("https://127.0.0.1:%d/dir", freePort(t)),
		mgmt:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		caRoot: filepath.Join(modDir, "test/certs/pebble.minica.pem"),
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  strings.TrimSuffix(strings.TrimPrefix(p.dirURL, "https://"), "/dir"),
		"managementListenAddress":        p.mgmt,
		"certificate":                    filepath.Join(modDir, "test/certs/localhost/cert.pem"),
		"privateKey":                     filepath.Join(modDir, "test/certs/localhost/key.pem"),
		"httpPort":                       freePort(t),
		"tlsPort":                        freePort(t),
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	cfgJSON, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgPath, cfgJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgPath)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pebble: %v", err)
	}
	p.process = cmd
	t.Cleanup(p.stop)

	announced := make(chan struct{})
	var logBuf strings.Builder
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			logBuf.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "ACME directory available") {
				once = true
				close(announced)
			}
		}
	}()
	t.Cleanup(func() {
		<-logDone
		if t.Failed() {
			t.Logf("pebble output:\n%s", logBuf.String())
		}
	})
	waitOrFail(t, announced, "pebble to start")

	pem, err := os.ReadFile(p.caRoot)
	if err != nil {
		t.Fatal(err)
	}
	p.caPool = x509.NewCertPool()
	p.caPool.AppendCertsFromPEM(pem)
	// Pebble announces its directory just before it listens; poll the
	// directory until it answers, bounded.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.caPool}}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(p.dirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble directory %s never answered: %v", p.dirURL, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func (p *pebble) stop() {
	if p.process.Process != nil && p.process.ProcessState == nil {
		p.process.Process.Kill()
		p.process.Wait()
	}
}

// issuingRoot fetches the root that signs the certificates Pebble issues.
func (p *pebble) issuingRoot(t *testing.T) *x509.CertPool {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.caPool}}}
	resp, err := c.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("fetching pebble's issuing root: %v", err)
	}
	defer resp.Body.Close()
	pem, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("pebble /roots/0 = %d %q, want a PEM certificate", resp.StatusCode, pem)
	}
	return pool
}

func TestACMEWithPebble(t *testing.T) {
	p := startPebble(t)
	const domain = "app.portcullis.test"
	storage := t.TempDir()
	cfg := Config{
		Listen: "127.0.0.1:0",
		TLS: TLSConfig{Mode: ModeACME, ACME: ACMEConfig{
			Email: "ops@portcullis.test", Domains: []string{domain}, CA: p.dirURL, CARoot: p.caRoot,
			Storage: storage, HTTPListen: "127.0.0.1:0",
		}},
	}
	var logs logRecorder
	reg := prometheus.NewRegistry()
	s, err := New(cfg, protoHandler(), Options{Logger: logs.logger(), Collectors: NewMetrics(reg)})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("Start() = %v\nlogs:\n%s", err, logs.all())
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })

	roots := p.issuingRoot(t)
	clientFor := func(proto string, addr net.Addr) *http.Client {
		c := newClient(t, proto, roots)
		c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr.String())
		}
		return c
	}
	for _, tt := range []struct{ proto, want string }{{"h1", "HTTP/1.1 /hello"}, {"h2", "HTTP/2.0 /hello"}} {
		resp, body := get(t, clientFor(tt.proto, s.Addr()), "https://"+domain+"/hello")
		if resp.StatusCode != http.StatusOK || body != tt.want {
			t.Errorf("%s GET https://%s/hello = %d %q, want 200 %q", tt.proto, domain, resp.StatusCode, body, tt.want)
		}
		leaf := resp.TLS.PeerCertificates[0]
		if !slices.Contains(leaf.DNSNames, domain) {
			t.Errorf("certificate DNS names = %v, want %s", leaf.DNSNames, domain)
		}
		if got, want := expirySeries(t, reg), float64(leaf.NotAfter.Unix()); len(got) != 1 || got[ModeACME] != want {
			t.Errorf("expiry series = %v, want only acme=%v (the served leaf's NotAfter)", got, want)
		}
	}

	// The HTTP listener redirects to https on the main port.
	c := clientFor("h1", s.HTTPAddr())
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, _ := get(t, c, "http://"+domain+"/path?q=1")
	want := fmt.Sprintf("https://%s:%d/path?q=1", domain, s.Addr().(*net.TCPAddr).Port)
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("GET http://%s/path?q=1 = %d %q, want 308 %q", domain, resp.StatusCode, resp.Header.Get("Location"), want)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}

	// A restart finds the certificate in storage and needs no CA at all.
	p.stop()
	s2, err := New(cfg, protoHandler(), Options{})
	if err != nil {
		t.Fatalf("New() for the restart = %v", err)
	}
	if err := s2.Start(ctx); err != nil {
		t.Fatalf("Start() with the certificate in storage and the CA gone = %v", err)
	}
	t.Cleanup(func() { s2.Shutdown(context.Background()) })
	if resp, _ := get(t, clientFor("h2", s2.Addr()), "https://"+domain+"/"); resp.StatusCode != http.StatusOK {
		t.Errorf("after restart: GET = %d, want 200", resp.StatusCode)
	}
}

func TestACMEStartFailsWithoutCA(t *testing.T) {
	cfg := Config{
		Listen: "127.0.0.1:0",
		TLS: TLSConfig{Mode: ModeACME, ACME: ACMEConfig{
			Email: "ops@portcullis.test", Domains: []string{"app.portcullis.test"},
			CA: fmt.Sprintf("https://127.0.0.1:%d/dir", freePort(t)), Storage: t.TempDir(), HTTPListen: "127.0.0.1:0",
		}},
	}
	s, err := New(cfg, protoHandler(), Options{})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	err = s.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "app.portcullis.test") {
		t.Fatalf("Start() with an unreachable CA = %v, want an error naming the domain", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown() after a failed Start = %v, want nil", err)
	}
}

func TestACMECARootErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("nope"), 0o600)
	for _, tt := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "missing.pem"), "no such file"},
		{"not pem", notPEM, "no PEM certificate found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{TLS: TLSConfig{Mode: ModeACME, ACME: ACMEConfig{
				Email: "ops@portcullis.test", Domains: []string{"a.test"}, CARoot: tt.path, Storage: dir,
			}}}
			_, err := New(cfg, protoHandler(), Options{})
			if err == nil || !strings.Contains(err.Error(), "tls.acme.ca_root") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(ca_root %s) = %v, want an error naming tls.acme.ca_root and %q", tt.path, err, tt.want)
			}
		})
	}
}
