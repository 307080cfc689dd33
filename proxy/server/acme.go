package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
)

// acmeManager owns one certmagic cache and config. It never touches
// certmagic.Default or certmagic.DefaultACME, which are package globals.
type acmeManager struct {
	cfg    ACMEConfig
	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
}

// loadCARoot reads the PEM roots trusted for a private ACME server's HTTPS.
func loadCARoot(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: tls.acme.ca_root: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("server: tls.acme.ca_root: %q: no PEM certificate found", path)
	}
	return pool, nil
}

// newACMEManager builds the certmagic objects. httpAddr and tlsAddr are the
// bound challenge listeners: telling certmagic their ports makes its solvers
// find them in use and rely on our handlers instead of binding :80 and :443
// themselves.
func newACMEManager(cfg ACMEConfig, roots *x509.CertPool, httpAddr, tlsAddr net.Addr, log *slog.Logger) *acmeManager {
	zl := newZapLogger(log.With("component", "acme"))
	m := &acmeManager{cfg: cfg}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		// One config manages every certificate of this server.
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		Logger:           zl,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: cfg.Storage},
		Logger:  zl,
	})
	tmpl := certmagic.ACMEIssuer{
		CA:           cfg.CA,
		Email:        cfg.Email,
		Agreed:       true, // configuring an ACME CA is the operator's agreement to its terms
		TrustedRoots: roots,
		Logger:       zl,
	}
	if host, port, ok := splitTCPAddr(httpAddr); ok {
		tmpl.ListenHost, tmpl.AltHTTPPort = host, port
	}
	if _, port, ok := splitTCPAddr(tlsAddr); ok {
		tmpl.AltTLSALPNPort = port
	}
	m.issuer = certmagic.NewACMEIssuer(m.magic, tmpl)
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	return m
}

func splitTCPAddr(a net.Addr) (string, int, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return "", 0, false
	}
	host := ""
	if !ta.IP.IsUnspecified() {
		host = ta.IP.String()
	}
	return host, ta.Port, true
}

// manage obtains or loads the certificates, then keeps them renewed in the
// background until stop.
func (m *acmeManager) manage(ctx context.Context) error {
	if err := m.magic.ManageSync(ctx, m.cfg.Domains); err != nil {
		return fmt.Errorf("server: acme: obtaining certificates for %s: %w", strings.Join(m.cfg.Domains, ", "), err)
	}
	return nil
}

// tlsConfig serves the managed certificates and answers TLS-ALPN-01
// challenges on the main listener.
func (m *acmeManager) tlsConfig() *tls.Config {
	tc := m.magic.TLSConfig()
	tc.MinVersion = tls.VersionTLS12
	tc.NextProtos = []string{"h2", "http/1.1", acmez.ACMETLS1Protocol}
	return tc
}

func (m *acmeManager) stop() { m.cache.Stop() }

// notAfter is the latest expiry among the cached certificates for the first
// domain; a renewal replaces the old certificate in the cache.
func (m *acmeManager) notAfter() (time.Time, bool) {
	var last time.Time
	for _, c := range m.cache.AllMatchingCertificates(bareHost(m.cfg.Domains[0])) {
		if c.Leaf != nil && c.Leaf.NotAfter.After(last) {
			last = c.Leaf.NotAfter
		}
	}
	return last, !last.IsZero()
}

// httpHandler answers HTTP-01 challenges and redirects everything else for
// the managed domains to https on the main listener's port. Other hosts get
// a 421: this listener never redirects to a host it does not serve.
func (m *acmeManager) httpHandler(httpsAddr net.Addr) http.Handler {
	port := ""
	if _, p, ok := splitTCPAddr(httpsAddr); ok && p != 443 {
		port = strconv.Itoa(p)
	}
	redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := bareHost(r.Host)
		if !slices.ContainsFunc(m.cfg.Domains, func(d string) bool { return bareHost(d) == host }) {
			http.Error(w, "unknown host", http.StatusMisdirectedRequest)
			return
		}
		if port != "" {
			host = net.JoinHostPort(host, port)
		}
		// Built field by field: the host is one we serve whatever the
		// request-target looked like (absolute-form, "//x" paths).
		target := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, target.String(), http.StatusPermanentRedirect)
	})
	return m.issuer.HTTPChallengeHandler(redirect)
}
