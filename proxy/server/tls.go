package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fileCheckInterval is how often, at most, a handshake stats the certificate
// files: cheap enough for the handshake path, quick enough for a rotation.
const fileCheckInterval = 2 * time.Second

// baseTLSConfig is the part every TLS mode shares: TLS 1.2 at least, and
// ALPN offering HTTP/2 before HTTP/1.1.
func baseTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// generateSelfSigned makes an ECDSA P-256 certificate valid for a year for
// hosts plus localhost, 127.0.0.1 and ::1.
func generateSelfSigned(hosts []string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("server: generating self-signed key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("server: generating serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Portcullis self-signed", Organization: []string{"Portcullis"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clocks lag
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	seen := map[string]bool{}
	for _, h := range append(append([]string(nil), hosts...), "localhost", "127.0.0.1", "::1") {
		h = bareHost(h)
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("server: creating self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("server: parsing self-signed certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// bareHost strips a port and IPv6 brackets, and lower-cases a host name.
func bareHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// fingerprint is the SHA-256 of a certificate's DER, as browsers show it.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// expiryOf reports the certificate of the self-signed or files mode, for
// the expiry metric. For files it follows each reload of the pair.
func (s *Server) expiryOf(mode string, files *fileCert) *certExpiry {
	switch {
	case mode == ModeSelfSigned && s.selfSigned != nil:
		leaf := s.selfSigned.Leaf
		return &certExpiry{source: mode, notAfter: func() (time.Time, bool) { return leaf.NotAfter, true }}
	case mode == ModeFiles && files != nil:
		return &certExpiry{source: mode, notAfter: files.notAfter}
	}
	return nil
}

// fileCert serves a certificate from a cert/key file pair and picks up changes
// on disk (cert-manager, a renewed Let's Encrypt pair) without a restart.
type fileCert struct {
	certFile, keyFile string
	now               func() time.Time
	log               *slog.Logger

	cert      atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64 // unix nanoseconds; handshakes before it do no I/O

	mu       sync.Mutex // held by the one handshake that checks the files
	certInfo os.FileInfo
	keyInfo  os.FileInfo
	lastErr  string
}

// newFileCert loads the pair, failing with an error that names the bad file.
func newFileCert(certFile, keyFile string, now func() time.Time, log *slog.Logger) (*fileCert, error) {
	f := &fileCert{certFile: certFile, keyFile: keyFile, now: now, log: log}
	ci, ki, err := f.stat()
	if err != nil {
		return nil, err
	}
	cert, err := f.load()
	if err != nil {
		return nil, err
	}
	f.certInfo, f.keyInfo = ci, ki
	f.cert.Store(cert)
	f.nextCheck.Store(now().Add(fileCheckInterval).UnixNano())
	f.logLoaded(cert, "loaded TLS certificate")
	return f, nil
}

func (f *fileCert) stat() (os.FileInfo, os.FileInfo, error) {
	ci, err := os.Stat(f.certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("server: tls.cert_file: %w", err)
	}
	ki, err := os.Stat(f.keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("server: tls.key_file: %w", err)
	}
	return ci, ki, nil
}

func (f *fileCert) load() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(f.certFile)
	if err != nil {
		return nil, fmt.Errorf("server: tls.cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(f.keyFile)
	if err != nil {
		return nil, fmt.Errorf("server: tls.key_file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The tls error never quotes key material, only what is wrong.
		return nil, fmt.Errorf("server: tls.cert_file %q with tls.key_file %q: %w", f.certFile, f.keyFile, err)
	}
	return &cert, nil
}

// notAfter is the expiry of the certificate being served.
func (f *fileCert) notAfter() (time.Time, bool) {
	c := f.cert.Load()
	if c == nil || c.Leaf == nil {
		return time.Time{}, false
	}
	return c.Leaf.NotAfter, true
}

func (f *fileCert) logLoaded(cert *tls.Certificate, msg string) {
	if cert.Leaf == nil {
		return
	}
	f.log.Info(msg, "cert_file", f.certFile, "subject", cert.Leaf.Subject.String(),
		"dns_names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter, "sha256", fingerprint(cert.Leaf.Raw))
	if f.now().After(cert.Leaf.NotAfter) {
		f.log.Warn("TLS certificate has expired", "cert_file", f.certFile, "not_after", cert.Leaf.NotAfter)
	}
}

// getCertificate is the tls.Config hook. At most one handshake every
// fileCheckInterval stats the files; the others read an atomic pointer.
func (f *fileCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := f.now()
	if now.UnixNano() >= f.nextCheck.Load() && f.mu.TryLock() {
		f.nextCheck.Store(now.Add(fileCheckInterval).UnixNano())
		f.refreshLocked()
		f.mu.Unlock()
	}
	return f.cert.Load(), nil
}

// refreshLocked re-reads the pair when either file changed since the last
// attempt. A broken pair is logged once and the previous certificate keeps
// serving; the stamps are taken before reading, so a pair still being
// written is retried when the write finishes.
func (f *fileCert) refreshLocked() {
	ci, ki, err := f.stat()
	if err != nil {
		f.logOnce(err)
		return
	}
	if same(ci, f.certInfo) && same(ki, f.keyInfo) {
		return
	}
	f.certInfo, f.keyInfo = ci, ki
	cert, err := f.load()
	if err != nil {
		f.logOnce(err)
		return
	}
	f.lastErr = ""
	f.cert.Store(cert)
	f.logLoaded(cert, "reloaded TLS certificate")
}

func (f *fileCert) logOnce(err error) {
	if err.Error() == f.lastErr {
		return
	}
	f.lastErr = err.Error()
	f.log.Error("cannot reload TLS certificate; keeping the previous one", "err", err)
}

func same(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}
