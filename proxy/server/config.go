package server

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TLS modes accepted in [TLSConfig.Mode].
const (
	// ModeOff serves plain HTTP (HTTP/1.1 and prior-knowledge HTTP/2), for
	// running behind a TLS-terminating load balancer or on loopback.
	ModeOff = "off"
	// ModeSelfSigned serves TLS with a certificate generated at start-up. It is
	// for local use: browsers warn about it.
	ModeSelfSigned = "self-signed"
	// ModeFiles serves TLS with a PEM certificate and key read from files, which
	// are re-read when they change on disk.
	ModeFiles = "files"
	// ModeACME obtains and renews certificates from an ACME CA through
	// certmagic.
	ModeACME = "acme"
)

// Defaults applied by [New] to zero-valued fields.
const (
	// DefaultListen is the default of Config.Listen.
	DefaultListen = ":4180"
	// DefaultACMEHTTPListen is the default of ACMEConfig.HTTPListen; HTTP-01
	// validation always arrives on port 80.
	DefaultACMEHTTPListen = ":80"
	// DefaultACMECA is the default of ACMEConfig.CA: Let's Encrypt production.
	DefaultACMECA = "https://acme-v02.api.letsencrypt.org/directory"
	// DefaultReadHeaderTimeout is the default of TimeoutsConfig.ReadHeader.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout is the default of TimeoutsConfig.Idle.
	DefaultIdleTimeout = 120 * time.Second
	// DefaultShutdownTimeout is the default of TimeoutsConfig.Shutdown.
	DefaultShutdownTimeout = 30 * time.Second
)

// Config is the listener part of the `server:` section. It is plain data; the
// command decodes it from YAML and [New] turns it into running listeners.
type Config struct {
	// Listen is the host:port of the main listener. Default ":4180".
	Listen string `yaml:"listen"`
	// TLS selects how the main listener gets its certificate. Default: mode
	// off (plain HTTP).
	TLS TLSConfig `yaml:"tls"`
	// MetricsListen is the host:port of a separate plain-HTTP listener serving
	// /metrics, /healthz and /readyz, e.g. "127.0.0.1:9090". Default "" (off).
	MetricsListen string `yaml:"metrics_listen"`
	// Timeouts bounds slow clients and the drain at shutdown. There is
	// deliberately no write timeout: responses (SSE, downloads) stream.
	Timeouts TimeoutsConfig `yaml:"timeouts"`
}

// TLSConfig selects and configures the certificate source of the main
// listener.
type TLSConfig struct {
	// Mode is one of off, self-signed, files or acme. Default "" (off).
	Mode string `yaml:"mode"`
	// CertFile is the PEM certificate chain, leaf first; required when mode
	// is files. Default "".
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile; required when mode is files.
	// Default "".
	KeyFile string `yaml:"key_file"`
	// ACME configures mode acme; it must be empty in the other modes.
	ACME ACMEConfig `yaml:"acme"`
}

// ACMEConfig configures certificate issuance from an ACME CA (mode acme).
type ACMEConfig struct {
	// Email is the contact address of the ACME account; required (the CA
	// warns there about expiry problems, and without it certmagic would
	// prompt on stdin).
	Email string `yaml:"email"`
	// Domains are the DNS names the certificate covers; at least one is
	// required. Wildcards are not supported (they need a DNS challenge).
	Domains []string `yaml:"domains"`
	// CA is the ACME directory URL. Default: Let's Encrypt production
	// (DefaultACMECA).
	CA string `yaml:"ca"`
	// CARoot is a PEM file of roots trusted for the CA's own HTTPS endpoint,
	// for private ACME servers. Default "" (the system roots).
	CARoot string `yaml:"ca_root"`
	// Storage is the directory holding the ACME account, certificates and
	// keys; required. In a container it belongs on a volume.
	Storage string `yaml:"storage"`
	// HTTPListen is the host:port answering HTTP-01 challenges and
	// redirecting every other request to https. Default ":80".
	HTTPListen string `yaml:"http_listen"`
}

// TimeoutsConfig holds the server timeouts.
type TimeoutsConfig struct {
	// ReadHeader bounds reading a request's headers. Default 10s.
	ReadHeader time.Duration `yaml:"read_header"`
	// Idle bounds how long a keep-alive connection waits for its next request.
	// Default 120s.
	Idle time.Duration `yaml:"idle"`
	// Shutdown bounds the drain of in-flight requests at shutdown. Default 30s.
	Shutdown time.Duration `yaml:"shutdown"`
}

func (a ACMEConfig) isZero() bool {
	return a.Email == "" && len(a.Domains) == 0 && a.CA == "" && a.CARoot == "" && a.Storage == "" && a.HTTPListen == ""
}

func (a ACMEConfig) equal(b ACMEConfig) bool {
	return a.Email == b.Email && slices.Equal(a.Domains, b.Domains) && a.CA == b.CA &&
		a.CARoot == b.CARoot && a.Storage == b.Storage && a.HTTPListen == b.HTTPListen
}

// Validate reports every problem of c at once, each naming its key path
// relative to Config and quoting the bad value. It does no I/O: that files
// exist is checked by [New].
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Listen != "" {
		if err := checkAddr(c.Listen); err != nil {
			add("listen: %q: %w", c.Listen, err)
		}
	}
	if c.MetricsListen != "" {
		if err := checkAddr(c.MetricsListen); err != nil {
			add("metrics_listen: %q: %w", c.MetricsListen, err)
		} else if listen := orDefault(c.Listen, DefaultListen); sameFixedAddr(c.MetricsListen, listen) {
			add("metrics_listen: %q: same address as listen", c.MetricsListen)
		}
	}

	t := c.TLS
	switch t.Mode {
	case "", ModeOff, ModeSelfSigned, ModeFiles, ModeACME:
	default:
		add("tls.mode: %q: unknown (want off, self-signed, files or acme)", t.Mode)
	}
	mode := orDefault(t.Mode, ModeOff)
	if mode == ModeFiles {
		if t.CertFile == "" {
			add("tls.cert_file: required when tls.mode is files")
		}
		if t.KeyFile == "" {
			add("tls.key_file: required when tls.mode is files")
		}
	} else {
		// A file or ACME setting under another mode is almost always a
		// forgotten mode line, and would silently serve without the TLS the
		// operator meant: refuse it.
		if t.CertFile != "" {
			add("tls.cert_file: %q: set but tls.mode is %q (want files)", t.CertFile, mode)
		}
		if t.KeyFile != "" {
			add("tls.key_file: %q: set but tls.mode is %q (want files)", t.KeyFile, mode)
		}
	}
	if mode == ModeACME {
		errs = append(errs, t.ACME.validate(orDefault(c.Listen, DefaultListen))...)
	} else if !t.ACME.isZero() {
		add("tls.acme: set but tls.mode is %q (want acme)", mode)
	}

	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"timeouts.read_header", c.Timeouts.ReadHeader}, {"timeouts.idle", c.Timeouts.Idle}, {"timeouts.shutdown", c.Timeouts.Shutdown}} {
		if d.v < 0 {
			add("%s: %q: must not be negative", d.key, d.v)
		}
	}
	return errors.Join(errs...)
}

func (a ACMEConfig) validate(listen string) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(a.Domains) == 0 {
		add("tls.acme.domains: at least one domain is required when tls.mode is acme")
	}
	seen := map[string]bool{}
	for i, d := range a.Domains {
		if err := checkDomain(d); err != nil {
			add("tls.acme.domains[%d]: %q: %w", i, d, err)
			continue
		}
		if seen[strings.ToLower(d)] {
			add("tls.acme.domains[%d]: %q: duplicate", i, d)
		}
		seen[strings.ToLower(d)] = true
	}
	if a.Email == "" {
		add("tls.acme.email: required when tls.mode is acme")
	} else {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email {
			add("tls.acme.email: %q: not a plain email address", a.Email)
		}
	}
	if a.CA != "" {
		u, err := url.Parse(a.CA)
		switch {
		case err != nil:
			add("tls.acme.ca: %q: %w", a.CA, err)
		case u.Scheme != "https" || u.Host == "":
			add("tls.acme.ca: %q: want an https:// ACME directory URL", a.CA)
		}
	}
	if a.Storage == "" {
		add("tls.acme.storage: required when tls.mode is acme (a directory kept across restarts)")
	}
	if a.HTTPListen != "" {
		if err := checkAddr(a.HTTPListen); err != nil {
			add("tls.acme.http_listen: %q: %w", a.HTTPListen, err)
		} else if sameFixedAddr(a.HTTPListen, listen) {
			add("tls.acme.http_listen: %q: same address as listen", a.HTTPListen)
		}
	}
	return errs
}

// checkAddr accepts host:port with a numeric port, the form net.Listen takes.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New(`want host:port, e.g. ":4180" or "127.0.0.1:4180"`)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil && checkDomain(host) != nil {
		return fmt.Errorf("host %q: want an IP address or a host name", host)
	}
	return nil
}

// checkDomain accepts a DNS name of letters, digits and hyphens; not a URL,
// not host:port and not a wildcard.
func checkDomain(d string) error {
	if d == "" {
		return errors.New("empty")
	}
	if strings.HasPrefix(d, "*.") {
		return errors.New("wildcard names need a DNS challenge, which is not supported")
	}
	if strings.ContainsAny(d, ":/") {
		return errors.New("want a bare host name (no scheme, port or path)")
	}
	if len(d) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, label := range strings.Split(strings.TrimSuffix(d, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q: invalid", label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("label %q: invalid character %q", label, r)
			}
		}
	}
	return nil
}

// sameFixedAddr reports whether two valid listen addresses would collide. Port
// 0 picks a free port and never collides.
func sameFixedAddr(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp || ap == "0" {
		return false
	}
	return ah == bh || ah == "" || bh == ""
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Listen = orDefault(c.Listen, DefaultListen)
	c.TLS.Mode = orDefault(c.TLS.Mode, ModeOff)
	if c.TLS.Mode == ModeACME {
		c.TLS.ACME.CA = orDefault(c.TLS.ACME.CA, DefaultACMECA)
		c.TLS.ACME.HTTPListen = orDefault(c.TLS.ACME.HTTPListen, DefaultACMEHTTPListen)
	}
	if c.Timeouts.ReadHeader == 0 {
		c.Timeouts.ReadHeader = DefaultReadHeaderTimeout
	}
	if c.Timeouts.Idle == 0 {
		c.Timeouts.Idle = DefaultIdleTimeout
	}
	if c.Timeouts.Shutdown == 0 {
		c.Timeouts.Shutdown = DefaultShutdownTimeout
	}
	return c
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
