// Package upstream forwards requests to one backend: an
// httputil.ReverseProxy with a Rewrite hook, a shared tuned transport, the
// identity headers a backend may trust, and the builtin:echo backend.
//
// It makes no routing or access decisions: the proxy has done both, and hands
// over a request whose path is already canonical and whose identity (if any)
// is in the context.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
)

// NewTransport returns a transport for upstreams, meant to be shared by all
// of them so keep-alive connections are pooled: generous idle pools,
// bounded dial and TLS handshakes, HTTP/2 to TLS upstreams that offer it,
// TLS 1.2 or newer, and no proxy taken from the environment (a proxy
// between Portcullis and its upstreams would see identity headers).
func NewTransport(tc TransportConfig) *http.Transport {
	tc = tc.withDefaults()
	d := &net.Dialer{Timeout: tc.DialTimeout, KeepAlive: tc.KeepAlive}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   tc.TLSHandshakeTimeout,
		ResponseHeaderTimeout: tc.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       tc.IdleConnTimeout,
		MaxIdleConns:          tc.MaxIdleConns,
		MaxIdleConnsPerHost:   tc.MaxIdleConnsPerHost,
		MaxConnsPerHost:       tc.MaxConnsPerHost,
	}
}

// Options carries what an Upstream needs besides its Config.
type Options struct {
	// Transport sends requests upstream; share one across upstreams. Nil
	// means NewTransport(TransportConfig{}). An upstream with ca_file,
	// insecure_skip_verify or a unix: URL gets its own clone of it (of a
	// fresh NewTransport when Transport is not an *http.Transport).
	Transport http.RoundTripper
	// Assert signs the X-Portcullis-Assertion JWT for id with the given
	// audience (the upstream's name). Required iff forward has assertion.
	Assert func(ctx context.Context, id *auth.Identity, audience string) (string, error)
	// TrustedProxy reports whether the request's peer (r.RemoteAddr) is a
	// proxy whose X-Forwarded-For/-Host/-Proto are believed. Nil trusts no
	// one.
	TrustedProxy func(r *http.Request) bool
	// Logger receives proxy errors. Nil discards them.
	Logger *slog.Logger
}

// Upstream is one backend. It is an http.Handler and safe for concurrent use.
type Upstream struct {
	name         string
	target       *url.URL
	forward      Forward
	preserveHost bool
	assert       func(ctx context.Context, id *auth.Identity, audience string) (string, error)
	trusted      func(r *http.Request) bool
	log          *slog.Logger
	proxy        *httputil.ReverseProxy
}

// New checks cfg and builds its Upstream. It reads ca_file.
func New(cfg Config, opts Options) (*Upstream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	forward, err := ParseForward(cfg.Forward)
	if err != nil {
		return nil, err
	}
	if forward.Has(ForwardAssertion) && opts.Assert == nil {
		return nil, errors.New("upstream: forward: assertion needs a signer (Options.Assert is nil)")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &Upstream{
		name:         cfg.Name,
		forward:      forward,
		preserveHost: cfg.PreserveHost == nil || *cfg.PreserveHost,
		assert:       opts.Assert,
		trusted:      opts.TrustedProxy,
		log:          log,
	}
	transport := opts.Transport
	if transport == nil {
		transport = NewTransport(TransportConfig{})
	}
	kind, _ := checkURL(cfg.URL) // Validate passed
	switch kind {
	case kindEcho:
		u.target = &url.URL{Scheme: "http", Host: "builtin-echo"}
		transport = echoTransport{h: Echo()}
	case kindUnix:
		socket := unixSocketPath(cfg.URL)
		t := cloneTransport(transport)
		d := &net.Dialer{}
		if base, ok := transport.(*http.Transport); ok && base.DialContext != nil {
			// Keep the shared dial timeout; only the address changes.
			dial := base.DialContext
			t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dial(ctx, "unix", socket)
			}
		} else {
			t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", socket)
			}
		}
		u.target = &url.URL{Scheme: "http", Host: "localhost"}
		transport = t
	default:
		u.target, err = url.Parse(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("upstream: url: %w", err)
		}
		if cfg.CAFile != "" || cfg.InsecureSkipVerify {
			t := cloneTransport(transport)
			if t.TLSClientConfig == nil {
				t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			if cfg.CAFile != "" {
				pool, err := loadCAFile(cfg.CAFile)
				if err != nil {
					return nil, err
				}
				t.TLSClientConfig.RootCAs = pool
			}
			if cfg.InsecureSkipVerify {
				t.TLSClientConfig.InsecureSkipVerify = true
				log.Warn("upstream: insecure_skip_verify is set: the upstream's certificate is NOT checked, so anyone on the path can read identity headers and tokens; use ca_file instead",
					"upstream", cfg.Name)
			}
			transport = t
		}
	}
	u.proxy = &httputil.ReverseProxy{
		Rewrite:       u.rewrite,
		Transport:     transport,
		FlushInterval: cfg.FlushInterval,
		BufferPool:    newBufferPool(),
		ErrorHandler:  u.handleError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return u, nil
}

// cloneTransport returns a private copy of rt's settings (not its pool).
func cloneTransport(rt http.RoundTripper) *http.Transport {
	if t, ok := rt.(*http.Transport); ok {
		return t.Clone()
	}
	return NewTransport(TransportConfig{})
}

func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("upstream: ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("upstream: ca_file: %s: no PEM certificates found", quote(path))
	}
	return pool, nil
}

// Name returns the upstream's configured name.
func (u *Upstream) Name() string { return u.name }

// Forward returns the identity fields this upstream is sent, so that a
// forward-auth answer for its route can send the same ones.
func (u *Upstream) Forward() Forward { return u.forward }

// ServeHTTP forwards r for the identity from auth.FromContext (none when
// the context carries none); see ServeIdentity.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, _ := auth.FromContext(r.Context())
	u.ServeIdentity(w, r, id)
}

// ServeIdentity forwards r: its path (already canonical) under the URL's
// base path, its query, and id (nil: nobody) as the headers the config's
// forward list selects.
//
// The identity headers are settled on r.Header itself, before
// ReverseProxy copies it for the outbound request: every client-sent
// spelling of them is removed here, whatever the caller did before, and
// then id's are set. Doing it on the way in, not in Rewrite, spares each
// request a copy of r to carry id in its context. r.Header is the
// caller's to lose: it is changed.
func (u *Upstream) ServeIdentity(w http.ResponseWriter, r *http.Request, id *auth.Identity) {
	// The proxy stripped the identity headers already; strip again so a
	// routing mistake elsewhere can never let a client speak for
	// Portcullis. The same pass drops what an untrusted peer may not say
	// about the URL, so the outbound copy needs no pass of its own.
	stripHeaders(r.Header, u.trusted == nil || !u.trusted(r))
	if dropped := SetIdentityHeaders(r.Header, id, u.forward); dropped != 0 {
		u.log.WarnContext(r.Context(), "upstream: identity fields not forwarded: value has control characters, surrounding spaces or (groups) commas",
			"upstream", u.name, "sub", id.Subject, "fields", dropped.String())
	}
	if id != nil && u.forward.Has(ForwardAssertion) {
		// Signing can fail: fail closed rather than forward without the
		// assertion.
		tok, err := u.assert(r.Context(), id, u.name)
		if err != nil {
			u.log.ErrorContext(r.Context(), "upstream: signing assertion failed", "upstream", u.name, "err", err)
			writeError(w, r, http.StatusInternalServerError)
			return
		}
		if validValue(tok) {
			r.Header[HeaderAssertion] = []string{tok}
		}
	}
	u.proxy.ServeHTTP(w, r)
}

// untrustedOnlyHeaders are removed from requests whose peer is not a
// trusted proxy: lower case, '-' standing for '-' or '_' (as for the
// identity headers, some servers read the two alike). Like X-Forwarded-For,
// these from an untrusted peer are lies some backends believe: X-Real-Ip
// about the client, and the rest about the URL — frameworks that route by
// X-Original-URL would serve a path other than the one the gate judged.
var untrustedOnlyHeaders = [...]string{
	"x-real-ip",
	"x-original-url", "x-rewrite-url", "x-original-uri", "x-forwarded-uri",
	"x-forwarded-prefix", "x-forwarded-path", "x-forwarded-port",
	"x-original-method", "x-forwarded-method",
}

// isUntrustedOnly reports whether name is one of untrustedOnlyHeaders,
// whatever its case and dashes. Most names fail the length or "x-" test.
func isUntrustedOnly(name string) bool {
	if len(name) < len("x-real-ip") || name[0]|0x20 != 'x' || !isDash(name[1]) {
		return false
	}
	for _, u := range untrustedOnlyHeaders {
		if equalFold(name, u) {
			return true
		}
	}
	return false
}

// rewrite builds the outbound request. ReverseProxy has already removed
// hop-by-hop headers, Forwarded and X-Forwarded-For/-Host/-Proto from
// pr.Out.
func (u *Upstream) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(u.target)
	if u.trusted != nil && u.trusted(pr.In) {
		in := pr.In.Header
		pr.Out.Header["X-Forwarded-For"] = in["X-Forwarded-For"]
		pr.SetXForwarded()
		if v := in["X-Forwarded-Host"]; len(v) > 0 {
			pr.Out.Header["X-Forwarded-Host"] = v
		}
		if v := in["X-Forwarded-Proto"]; len(v) > 0 {
			pr.Out.Header["X-Forwarded-Proto"] = v
		}
	} else {
		// ServeIdentity has dropped the untrustedOnlyHeaders from pr.In,
		// so its copy pr.Out holds none.
		pr.SetXForwarded()
	}
	if u.preserveHost {
		pr.Out.Host = pr.In.Host
	}
	// pr.Out's headers are ReverseProxy's copy of pr.In's, whose identity
	// headers ServeIdentity settled; but ReverseProxy also dropped every
	// header the client named in Connection, which could be ours. Put
	// them back: a client must not be able to hide a field of its
	// identity (or the ID token) from the upstream either. Only a
	// Connection header names others to drop (the fixed hop-by-hop list
	// holds none of ours), so without one there is nothing to restore.
	if _, ok := pr.In.Header["Connection"]; !ok {
		return
	}
	for _, name := range settledNames {
		if v, ok := pr.In.Header[name]; ok {
			pr.Out.Header[name] = v
		}
	}
	if u.forward.Has(ForwardIDToken) {
		if v, ok := pr.In.Header["Authorization"]; ok {
			pr.Out.Header["Authorization"] = v
		}
	}
}

// settledNames are the identity headers ServeIdentity may set on the
// inbound request (besides Authorization, with id_token forwarding).
var settledNames = [...]string{HeaderUser, HeaderEmail, HeaderGroups, HeaderPreferredUsername,
	HeaderAccessToken, HeaderAssertion}

// handleError answers a failed round trip with 502, unless the client went
// away, which is not worth a log line or an answer.
func (u *Upstream) handleError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return
	}
	// Transport errors name the dialled address at most, never the request's
	// headers or query, so err is safe to log.
	u.log.ErrorContext(r.Context(), "upstream: request failed", "upstream", u.name, "err", err)
	writeError(w, r, http.StatusBadGateway)
}

// bufferPool recycles the buffers ReverseProxy copies bodies through.
// It keeps pointers to the arrays themselves: a pointer fits in the pool's
// interface value as it is, where a *[]byte made in Put would be one more
// allocation per request.
type bufferPool struct{ p sync.Pool }

// bufferSize is twice ReverseProxy's own 32 KiB: a large download then
// takes half the read and write system calls, which streams it about 10 %
// faster on loopback (bench/run.sh's download row, paired runs). A buffer
// is held while a body is being copied, so it costs 64 KiB per response
// streaming at that moment — for the whole life of a server-sent event
// stream — and nothing per idle connection. Larger buffers were faster
// still (128–512 KiB: +20–40 %, but bimodal below 512 KiB) and would cost
// every open event stream that much memory.
const bufferSize = 64 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([bufferSize]byte) }}}
}

// Get returns a buffer of bufferSize bytes.
func (bp *bufferPool) Get() []byte { return bp.p.Get().(*[bufferSize]byte)[:] }

// Put returns b to the pool.
func (bp *bufferPool) Put(b []byte) {
	if cap(b) < bufferSize {
		return
	}
	bp.p.Put((*[bufferSize]byte)(b[:bufferSize]))
}

var (
	_ http.Handler        = (*Upstream)(nil)
	_ httputil.BufferPool = (*bufferPool)(nil)
	_ http.RoundTripper   = echoTransport{}
)
