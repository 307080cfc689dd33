package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is one entry of `upstreams:` as far as forwarding is concerned. The
// proxy inlines its routing and policy keys (host, path, public, allow,
// bearer, bearer_audiences) next to these, so none of those names is used
// here.
type Config struct {
	// Name identifies the upstream in logs and metrics and is the audience of
	// X-Portcullis-Assertion. Required; the proxy checks it is unique.
	Name string `yaml:"name"`
	// URL is where requests go: http://host[:port][/base],
	// https://host[:port][/base], unix:/path.sock, or builtin:echo. A /base
	// path is prefixed to every forwarded path. Required.
	URL string `yaml:"url"`
	// CAFile is a PEM bundle of extra CAs trusted for an https URL, on top of
	// the system roots. Default: none (system roots only).
	CAFile string `yaml:"ca_file"`
	// Forward lists the identity fields sent upstream: user, email, groups,
	// preferred_username, access_token, id_token (as Authorization: Bearer)
	// and assertion. Default (key absent): [user, email, groups,
	// preferred_username]; an explicit empty list sends none.
	Forward []string `yaml:"forward"`
	// PreserveHost sends the client's Host header upstream. Default true;
	// false sends the URL's host instead.
	PreserveHost *bool `yaml:"preserve_host"`
	// FlushInterval is how often a streamed response body is flushed to the
	// client. Default 0: buffered, except that text/event-stream and
	// bodies of unknown length are flushed as they arrive; negative flushes
	// after every write.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// InsecureSkipVerify turns off certificate verification for an https
	// URL. Default false. It lets anyone on the path read the identity
	// headers and tokens sent upstream; a warning is logged at start-up.
	// Prefer ca_file.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

const builtinEcho = "builtin:echo"

const schemeWant = "want http, https, unix or builtin:echo"

// Validate reports every problem in c at once, each naming its key relative
// to this Config. It does no I/O: whether ca_file exists is checked by New.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Name) == "" {
		errs = append(errs, errors.New("name: required"))
	}
	kind, err := checkURL(c.URL)
	if err != nil {
		errs = append(errs, err)
	}
	if c.CAFile != "" && kind != kindHTTPS && err == nil {
		errs = append(errs, fmt.Errorf("ca_file: %s: only for https upstreams", quote(c.CAFile)))
	}
	if c.InsecureSkipVerify && kind != kindHTTPS && err == nil {
		errs = append(errs, errors.New("insecure_skip_verify: only for https upstreams"))
	}
	var seen Forward
	for i, s := range c.Forward {
		f, ok := parseForwardName(s)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("forward[%d]: %s: unknown (%s)", i, quote(s), forwardWant))
		case seen&f != 0:
			errs = append(errs, fmt.Errorf("forward[%d]: %s: listed twice", i, quote(s)))
		}
		seen |= f
	}
	return errors.Join(errs...)
}

type urlKind int

const (
	kindHTTP urlKind = iota + 1
	kindHTTPS
	kindUnix
	kindEcho
)

// checkURL classifies raw, or says what is wrong with it as `url: "raw": …`.
func checkURL(raw string) (urlKind, error) {
	bad := func(v, format string, args ...any) error {
		return fmt.Errorf("url: %s: "+format, append([]any{quote(v)}, args...)...)
	}
	switch {
	case raw == "":
		return 0, errors.New("url: required")
	case raw == builtinEcho:
		return kindEcho, nil
	case strings.HasPrefix(raw, "builtin:"):
		return 0, bad(raw, "unknown builtin (want builtin:echo)")
	case strings.HasPrefix(raw, "unix:"):
		if unixSocketPath(raw) == "" {
			return 0, bad(raw, "missing socket path (want unix:/path/to.sock)")
		}
		return kindUnix, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, bad(raw, "invalid URL: %v", err)
	}
	shown := u.Redacted()
	var kind urlKind
	switch u.Scheme {
	case "http":
		kind = kindHTTP
	case "https":
		kind = kindHTTPS
	default:
		return 0, bad(shown, "unsupported scheme %s (%s)", quote(u.Scheme), schemeWant)
	}
	switch {
	case u.User != nil:
		return 0, bad(shown, "credentials in the URL are not supported")
	case u.Host == "" || u.Hostname() == "":
		return 0, bad(shown, "missing host")
	case u.RawQuery != "" || u.ForceQuery:
		return 0, bad(shown, "a query is not supported")
	case u.Fragment != "":
		return 0, bad(shown, "a fragment is not supported")
	}
	return kind, nil
}

// unixSocketPath returns the socket path of a unix: URL (unix:/p, unix:///p or
// unix:relative), or "" when there is none.
func unixSocketPath(raw string) string {
	p := strings.TrimPrefix(raw, "unix:")
	if strings.HasPrefix(p, "///") {
		p = p[2:]
	}
	return p
}

func quote(s string) string { return strconv.Quote(s) }

// TransportConfig tunes the HTTP transport that all upstreams share. The zero
// value gives the defaults below, sized for a busy proxy.
type TransportConfig struct {
	// DialTimeout bounds a TCP (or unix socket) connect. Default 10s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// KeepAlive is the TCP keep-alive probe period. Default 30s.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// TLSHandshakeTimeout bounds the TLS handshake with an https upstream.
	// Default 10s.
	TLSHandshakeTimeout time.Duration `yaml:"tls_handshake_timeout"`
	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request is written. Default 0: no limit, so long polls work.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// IdleConnTimeout closes keep-alive connections idle this long. Default 90s.
	IdleConnTimeout time.Duration `yaml:"idle_conn_timeout"`
	// MaxIdleConns caps idle keep-alive connections in total. Default 1024.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// MaxIdleConnsPerHost caps idle keep-alive connections per upstream
	// host. Default 256 (the stdlib's 2 would reconnect under load).
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`
	// MaxConnsPerHost caps all connections per upstream host. Default 0: no
	// limit.
	MaxConnsPerHost int `yaml:"max_conns_per_host"`
}

// Validate reports every negative setting at once.
func (tc TransportConfig) Validate() error {
	var errs []error
	durs := []struct {
		key string
		d   time.Duration
	}{
		{"dial_timeout", tc.DialTimeout},
		{"keep_alive", tc.KeepAlive},
		{"tls_handshake_timeout", tc.TLSHandshakeTimeout},
		{"response_header_timeout", tc.ResponseHeaderTimeout},
		{"idle_conn_timeout", tc.IdleConnTimeout},
	}
	for _, d := range durs {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("%s: %s: must not be negative", d.key, quote(d.d.String())))
		}
	}
	ints := []struct {
		key string
		n   int
	}{
		{"max_idle_conns", tc.MaxIdleConns},
		{"max_idle_conns_per_host", tc.MaxIdleConnsPerHost},
		{"max_conns_per_host", tc.MaxConnsPerHost},
	}
	for _, n := range ints {
		if n.n < 0 {
			errs = append(errs, fmt.Errorf("%s: %s: must not be negative", n.key, quote(strconv.Itoa(n.n))))
		}
	}
	return errors.Join(errs...)
}

func (tc TransportConfig) withDefaults() TransportConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&tc.DialTimeout, 10*time.Second)
	def(&tc.KeepAlive, 30*time.Second)
	def(&tc.TLSHandshakeTimeout, 10*time.Second)
	def(&tc.IdleConnTimeout, 90*time.Second)
	if tc.ResponseHeaderTimeout < 0 {
		tc.ResponseHeaderTimeout = 0
	}
	if tc.MaxIdleConns <= 0 {
		tc.MaxIdleConns = 1024
	}
	if tc.MaxIdleConnsPerHost <= 0 {
		tc.MaxIdleConnsPerHost = 256
	}
	if tc.MaxConnsPerHost < 0 {
		tc.MaxConnsPerHost = 0
	}
	return tc
}
