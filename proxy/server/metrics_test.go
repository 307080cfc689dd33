package server

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// expirySeries gathers portcullis_tls_certificate_expiry_timestamp_seconds
// by its source label.
func expirySeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() = %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "portcullis_tls_certificate_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" {
					out[l.GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

func leafOf(t *testing.T, certFile string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pem.Decode(b)
	if p == nil {
		t.Fatalf("%s: no PEM block", certFile)
	}
	c, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hijackHandler answers /hijack on a hijacked connection and everything else
// like protoHandler.
func hijackHandler() http.Handler {
	proto := protoHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hijack" {
			proto.ServeHTTP(w, r)
			return
		}
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		buf.Flush()
	})
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	s := newTestServer(t, hijackHandler(), Options{
		Collectors: m,
		Metrics:    promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Hostnames:  []string{"localhost"},
	}, func(c *Config) {
		c.TLS.Mode = ModeSelfSigned
		c.MetricsListen = "127.0.0.1:0"
	})

	want := float64(s.selfSigned.Leaf.NotAfter.Unix())
	if got := expirySeries(t, reg); len(got) != 1 || got[ModeSelfSigned] != want {
		t.Errorf("expiry series = %v, want only self-signed=%v", got, want)
	}
	// The operations listener serves it.
	resp, body := get(t, newClient(t, "h1", nil), "http://"+s.MetricsAddr().String()+"/metrics")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `portcullis_tls_certificate_expiry_timestamp_seconds{source="self-signed"}`) {
		t.Errorf("GET /metrics = %d, lacks the expiry series:\n%s", resp.StatusCode, body)
	}

	// Reloading to files switches the series to the files' certificate.
	ca := newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca.writePair(t, certFile, keyFile, "files")
	next := s.cfg
	next.TLS = TLSConfig{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile}
	if err := s.Reload(next); err != nil {
		t.Fatalf("Reload(files) = %v", err)
	}
	want = float64(leafOf(t, certFile).NotAfter.Unix())
	if got := expirySeries(t, reg); len(got) != 1 || got[ModeFiles] != want {
		t.Errorf("after Reload: expiry series = %v, want only files=%v", got, want)
	}

	// Connections: two kept alive, one hijacked (it stops counting).
	conns := func() float64 { return testutil.ToFloat64(m.conns) }
	url := baseURL(s)
	for i, proto := range []string{"h1", "h2"} {
		if resp, _ := get(t, newClient(t, proto, ca.pool), url+"/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s GET = %d", proto, resp.StatusCode)
		}
		if got := conns(); got != float64(i+1) {
			t.Errorf("connections_active after %d kept-alive connections = %v, want %d", i+1, got, i+1)
		}
	}
	hc := newClient(t, "h1", ca.pool)
	hresp, err := hc.Get(url + "/hijack")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(hresp.Body)
	hresp.Body.Close()
	if string(b) != "hijacked" {
		t.Fatalf("GET /hijack = %q, want hijacked", b)
	}
	if got := conns(); got != 2 {
		t.Errorf("connections_active after a hijack = %v, want 2", got)
	}

	// A later server with tls off takes the series over: it has none.
	newTestServer(t, nil, Options{Collectors: m}, nil)
	if got := expirySeries(t, reg); len(got) != 0 {
		t.Errorf("expiry series with tls off = %v, want none", got)
	}
}

func TestMetricsNil(t *testing.T) {
	var m *Metrics
	m.serve(nil)
	if m.connState() != nil {
		t.Error("nil Metrics has a ConnState hook")
	}
}
