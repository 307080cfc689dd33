// Package server turns an http.Handler into running listeners: the main
// listener with its TLS (off, self-signed, files or ACME via certmagic), the
// ACME HTTP-01/redirect listener, and an operations listener for /metrics,
// /healthz and /readyz; it drains them gracefully at shutdown. It knows
// nothing about authentication or routing.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxHeaderBytes bounds request headers on every listener; 64 KiB is ample
// for chunked session cookies and far below net/http's 1 MiB default.
const maxHeaderBytes = 64 << 10

// ErrRestartRequired is wrapped by [Server.Reload] for changes that only a
// restart can apply (listen addresses, turning TLS on or off, ACME settings,
// read_header/idle timeouts). The rest of the new config is applied anyway.
var ErrRestartRequired = errors.New("restart required")

// Options are the dependencies of a [Server].
type Options struct {
	// Hostnames are put in a self-signed certificate, typically the host of
	// public_url; localhost, 127.0.0.1 and ::1 are always added. A port is
	// ignored.
	Hostnames []string
	// Metrics is served at /metrics on Config.MetricsListen. Nil: 404.
	Metrics http.Handler
	// Collectors records the served certificate's expiry and the open
	// connections; [Server.Start] makes it report this server. Nil records
	// nothing.
	Collectors *Metrics
	// Ready reports readiness at /readyz. Nil: always ready (while not
	// shutting down).
	Ready func() bool
	// Logger receives server and certmagic logs. Nil: discarded.
	Logger *slog.Logger
	// Now is the clock for certificate validity and file checks. Nil:
	// time.Now.
	Now func() time.Time
}

// Server runs the listeners of one Portcullis process. Build it with [New],
// then [Server.Run] it, or [Server.Start] and [Server.Shutdown] it.
type Server struct {
	h    http.Handler
	opts Options
	log  *slog.Logger
	now  func() time.Time

	// tlsCur is the per-mode TLS config handed to each new TLS connection;
	// Reload swaps it, which leaves established connections untouched.
	tlsCur          atomic.Pointer[tls.Config]
	expiry          atomic.Pointer[certExpiry] // of the certificate tlsCur serves; nil with tls off
	shutdownTimeout atomic.Int64
	draining        atomic.Bool
	// addrs is readable while Start waits for ACME with mu held.
	addrs atomic.Pointer[listenAddrs]

	mu         sync.Mutex
	cfg        Config // with defaults; the settings in effect
	selfSigned *tls.Certificate
	files      *fileCert
	caRoots    *x509.CertPool
	acme       *acmeManager
	started    bool
	stopped    bool
	servers    []*http.Server // main first, then the acme http listener, metrics last
	mainSrv    *http.Server
	hasMetrics bool
	serveErr   chan error
	serving    sync.WaitGroup

	// onShutdown, when set by tests, runs once Shutdown has closed the main
	// listener.
	onShutdown func()
}

// New checks cfg and prepares the TLS material: a self-signed certificate is
// generated here and files are loaded here, so a bad file fails start-up with
// an error naming it. It binds nothing; see [Server.Start].
func New(cfg Config, h http.Handler, opts Options) (*Server, error) {
	if h == nil {
		return nil, errors.New("server: nil handler")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: invalid config: %w", err)
	}
	s := &Server{h: h, opts: opts, log: opts.Logger, now: opts.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	cfg = cfg.withDefaults()
	tc, files, err := s.prepareTLS(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.TLS.Mode == ModeACME {
		if s.caRoots, err = loadCARoot(cfg.TLS.ACME.CARoot); err != nil {
			return nil, err
		}
	}
	s.cfg, s.files = cfg, files
	if tc != nil {
		s.tlsCur.Store(tc)
		s.expiry.Store(s.expiryOf(cfg.TLS.Mode, files))
	}
	s.shutdownTimeout.Store(int64(cfg.Timeouts.Shutdown))
	return s, nil
}

// prepareTLS builds the TLS config of the self-signed and files modes. It
// returns nil for off, and for acme, whose config exists only after Start.
func (s *Server) prepareTLS(cfg Config) (*tls.Config, *fileCert, error) {
	switch cfg.TLS.Mode {
	case ModeSelfSigned:
		if s.selfSigned == nil {
			cert, err := generateSelfSigned(s.opts.Hostnames, s.now())
			if err != nil {
				return nil, nil, err
			}
			s.selfSigned = cert
			s.log.Warn("serving a self-signed TLS certificate; it is for local use only and browsers will warn about it",
				"dns_names", cert.Leaf.DNSNames, "ip_addresses", cert.Leaf.IPAddresses,
				"not_after", cert.Leaf.NotAfter, "sha256", fingerprint(cert.Leaf.Raw))
		}
		tc := baseTLSConfig()
		tc.Certificates = []tls.Certificate{*s.selfSigned}
		return tc, nil, nil
	case ModeFiles:
		fc, err := newFileCert(cfg.TLS.CertFile, cfg.TLS.KeyFile, s.now, s.log.With("component", "tls"))
		if err != nil {
			return nil, nil, err
		}
		tc := baseTLSConfig()
		tc.GetCertificate = fc.getCertificate
		return tc, fc, nil
	}
	return nil, nil, nil
}

// Start binds the listeners and serves them in goroutines, then returns. Use
// "127.0.0.1:0" addresses to get free ports, read back with [Server.Addr]. In
// acme mode the challenge listener and the main listener serve first (the CA
// reaches them during validation), then Start blocks in certmagic's
// ManageSync until every domain has a certificate, and fails if one cannot
// be obtained; ctx bounds that wait (Addr already answers meanwhile;
// Shutdown waits for Start to return, so cancel ctx to abort it).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("server: already started")
	}
	cfg := s.cfg
	var lc net.ListenConfig
	var bound []net.Listener
	listen := func(key, addr string) (net.Listener, error) {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, l := range bound {
				l.Close()
			}
			return nil, fmt.Errorf("server: %s: %w", key, err)
		}
		bound = append(bound, ln)
		return ln, nil
	}
	mainLn, err := listen("listen", cfg.Listen)
	if err != nil {
		return err
	}
	var metricsLn, httpLn net.Listener
	if cfg.MetricsListen != "" {
		if metricsLn, err = listen("metrics_listen", cfg.MetricsListen); err != nil {
			return err
		}
	}
	if cfg.TLS.Mode == ModeACME {
		if httpLn, err = listen("tls.acme.http_listen", cfg.TLS.ACME.HTTPListen); err != nil {
			return err
		}
	}

	s.serveErr = make(chan error, 3)
	s.mainSrv = s.newHTTPServer(cfg, s.h, "http")
	s.mainSrv.ConnState = s.opts.Collectors.connState()
	if s.onShutdown != nil {
		s.mainSrv.RegisterOnShutdown(s.onShutdown)
	}
	var acme *acmeManager
	var httpSrv, metricsSrv *http.Server
	if httpLn != nil {
		acme = newACMEManager(cfg.TLS.ACME, s.caRoots, httpLn.Addr(), mainLn.Addr(), s.log)
		s.tlsCur.Store(acme.tlsConfig())
		s.expiry.Store(&certExpiry{source: ModeACME, notAfter: acme.notAfter})
		httpSrv = s.newHTTPServer(cfg, acme.httpHandler(mainLn.Addr()), "acme-http")
		httpSrv.Protocols = new(http.Protocols)
		httpSrv.Protocols.SetHTTP1(true)
		s.serve(httpSrv, httpLn, false)
	}
	s.serve(s.mainSrv, mainLn, cfg.TLS.Mode != ModeOff)
	if metricsLn != nil {
		metricsSrv = s.newHTTPServer(cfg, s.opsHandler(), "metrics")
		metricsSrv.Protocols = new(http.Protocols)
		metricsSrv.Protocols.SetHTTP1(true)
		s.serve(metricsSrv, metricsLn, false)
	}
	s.servers = []*http.Server{s.mainSrv}
	if httpSrv != nil {
		s.servers = append(s.servers, httpSrv)
	}
	if metricsSrv != nil {
		s.servers = append(s.servers, metricsSrv)
	}
	s.hasMetrics = metricsLn != nil
	s.addrs.Store(&listenAddrs{main: mainLn.Addr(), metrics: lnAddr(metricsLn), http: lnAddr(httpLn)})
	s.started = true
	s.opts.Collectors.serve(s)

	s.log.Info("listening", "addr", mainLn.Addr().String(), "tls", cfg.TLS.Mode)
	if metricsLn != nil {
		s.log.Info("metrics listening", "addr", metricsLn.Addr().String())
	}
	if acme != nil {
		s.log.Info("acme: challenge and redirect listener", "addr", httpLn.Addr().String(), "ca", cfg.TLS.ACME.CA, "domains", cfg.TLS.ACME.Domains)
		if err := acme.manage(ctx); err != nil {
			for _, srv := range s.servers {
				srv.Close()
			}
			acme.stop()
			s.serving.Wait()
			s.stopped = true
			s.addrs.Store(nil)
			return err
		}
		s.acme = acme
	}
	return nil
}

// newHTTPServer applies the settings every listener shares. There is no
// WriteTimeout: proxied responses (SSE, downloads) stream for as long as they
// need.
func (s *Server) newHTTPServer(cfg Config, h http.Handler, component string) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader,
		IdleTimeout:       cfg.Timeouts.Idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          newErrorLog(s.log, component),
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	if cfg.TLS.Mode == ModeOff {
		// Prior-knowledge HTTP/2 (h2c) for load balancers that terminate TLS
		// and speak HTTP/2 to their backends; an HTTP/1.1 client is unaffected.
		srv.Protocols.SetUnencryptedHTTP2(true)
	} else {
		srv.Protocols.SetHTTP2(true)
		srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				if tc := s.tlsCur.Load(); tc != nil {
					return tc, nil
				}
				return nil, errors.New("server: no TLS certificate configured")
			},
		}
	}
	return srv
}

// serve runs srv on ln until it is shut down; any other end is reported to
// Run.
func (s *Server) serve(srv *http.Server, ln net.Listener, useTLS bool) {
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		var err error
		if useTLS {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.serveErr <- fmt.Errorf("server: serving %s: %w", ln.Addr(), err)
		}
	}()
}

type listenAddrs struct{ main, metrics, http net.Addr }

// lnAddr avoids a typed-nil net.Addr for a listener that is not configured.
func lnAddr(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

// Addr is the main listener's address, nil before Start.
func (s *Server) Addr() net.Addr {
	if a := s.addrs.Load(); a != nil {
		return a.main
	}
	return nil
}

// MetricsAddr is the operations listener's address, nil before Start or when
// metrics_listen is empty.
func (s *Server) MetricsAddr() net.Addr {
	if a := s.addrs.Load(); a != nil {
		return a.metrics
	}
	return nil
}

// HTTPAddr is the ACME challenge/redirect listener's address, nil before
// Start or outside acme mode.
func (s *Server) HTTPAddr() net.Addr {
	if a := s.addrs.Load(); a != nil {
		return a.http
	}
	return nil
}

// Shutdown stops accepting connections at once, marks /readyz unready, and
// waits for in-flight requests to finish, for at most timeouts.shutdown or
// until ctx ends. It returns nil after a clean drain; otherwise it closes the
// remaining connections and returns an error. Hijacked connections
// (websockets) are not waited for. The metrics listener closes last, so
// probes see the drain.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	servers, acme, hasMetrics := s.servers, s.acme, s.hasMetrics
	s.mu.Unlock()

	s.draining.Store(true)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.shutdownTimeout.Load()))
	defer cancel()

	front, ops := servers, []*http.Server(nil)
	if hasMetrics {
		front, ops = servers[:len(servers)-1], servers[len(servers)-1:]
	}
	errs := make([]error, len(front))
	var wg sync.WaitGroup
	for i, srv := range front {
		wg.Go(func() { errs[i] = srv.Shutdown(ctx) })
	}
	wg.Wait()
	for _, srv := range ops {
		errs = append(errs, srv.Shutdown(ctx))
	}
	err := errors.Join(errs...)
	if err != nil {
		for _, srv := range servers {
			srv.Close()
		}
		err = fmt.Errorf("server: shutdown: in-flight requests cut off: %w", err)
	}
	if acme != nil {
		acme.stop()
	}
	s.serving.Wait()
	if err == nil {
		s.log.Info("server stopped")
	}
	return err
}

// Run starts the server, serves until ctx ends or a listener fails, then
// shuts down gracefully (bounded by timeouts.shutdown, not by ctx, which is
// already done). It returns nil after a clean drain.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-s.serveErr:
	}
	return errors.Join(serveErr, s.Shutdown(context.WithoutCancel(ctx)))
}

// Reload applies a new config without dropping a connection: new
// certificate files (re-read even when the paths are unchanged), a switch
// between self-signed and files, and timeouts.shutdown take effect for new
// connections and the next shutdown. Changes only a restart can apply are
// reported in an error wrapping [ErrRestartRequired] and otherwise ignored;
// the server keeps serving with the old values. An invalid config or an
// unreadable certificate changes nothing.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("server: reload: invalid config: %w", err)
	}
	cfg = cfg.withDefaults()

	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cfg
	var restart []error
	need := func(key string, from, to any) {
		restart = append(restart, fmt.Errorf("server: %s changed from %q to %q: %w", key, from, to, ErrRestartRequired))
	}
	if cfg.Listen != old.Listen {
		need("listen", old.Listen, cfg.Listen)
	}
	if cfg.MetricsListen != old.MetricsListen {
		need("metrics_listen", old.MetricsListen, cfg.MetricsListen)
	}
	if cfg.Timeouts.ReadHeader != old.Timeouts.ReadHeader {
		need("timeouts.read_header", old.Timeouts.ReadHeader, cfg.Timeouts.ReadHeader)
	}
	if cfg.Timeouts.Idle != old.Timeouts.Idle {
		need("timeouts.idle", old.Timeouts.Idle, cfg.Timeouts.Idle)
	}
	// The listener is plain or TLS for its whole life, and ACME owns a
	// challenge listener and a certificate cache of its own.
	modeOK := cfg.TLS.Mode == old.TLS.Mode ||
		(cfg.TLS.Mode == ModeSelfSigned || cfg.TLS.Mode == ModeFiles) && (old.TLS.Mode == ModeSelfSigned || old.TLS.Mode == ModeFiles)
	if !modeOK {
		need("tls.mode", old.TLS.Mode, cfg.TLS.Mode)
	} else if cfg.TLS.Mode == ModeACME && !cfg.TLS.ACME.equal(old.TLS.ACME) {
		restart = append(restart, fmt.Errorf("server: tls.acme changed: %w", ErrRestartRequired))
	}

	next := old
	next.Timeouts.Shutdown = cfg.Timeouts.Shutdown
	if modeOK && cfg.TLS.Mode != ModeACME {
		tc, files, err := s.prepareTLS(cfg)
		if err != nil {
			return fmt.Errorf("server: reload: %w", err)
		}
		next.TLS = cfg.TLS
		s.files = files
		if tc != nil {
			s.tlsCur.Store(tc)
			s.expiry.Store(s.expiryOf(cfg.TLS.Mode, files))
		}
	}
	s.cfg = next
	s.shutdownTimeout.Store(int64(next.Timeouts.Shutdown))
	if len(restart) > 0 {
		err := errors.Join(restart...)
		s.log.Warn("config reloaded partially; restart to apply the rest", "err", err)
		return err
	}
	s.log.Info("server config reloaded", "tls", next.TLS.Mode)
	return nil
}

// opsHandler serves the operations listener.
func (s *Server) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if s.draining.Load() || (s.opts.Ready != nil && !s.opts.Ready()) {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if s.opts.Metrics != nil {
		mux.Handle("GET /metrics", s.opts.Metrics)
	}
	return mux
}
