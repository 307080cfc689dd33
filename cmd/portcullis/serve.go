package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/bearer"
	"github.com/portcullis-proxy/portcullis/auth/issuer"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"github.com/portcullis-proxy/portcullis/auth/login"
	"github.com/portcullis-proxy/portcullis/auth/session"
	"github.com/portcullis-proxy/portcullis/proxy"
	"github.com/portcullis-proxy/portcullis/proxy/server"
	"github.com/portcullis-proxy/portcullis/upstream"
)

// proxyClientID is the client id the proxy registers for itself at the
// built-in issuer when login.client_id is not set.
const proxyClientID = "portcullis"

// app is one running Portcullis: the parts that live as long as the
// process (listeners, upstream connection pool, issuer store and keys,
// generated secrets) and the current generation of everything a config
// reload rebuilds.
type app struct {
	log       *slog.Logger
	getenv    func(string) string
	file      string
	transport *http.Transport

	// Kept across reloads so that a reload never signs anyone out.
	generatedSessionSecret auth.Secret
	proxyClientSecret      auth.Secret
	store                  store.Store
	storeCfg               store.Config
	issuer                 *issuer.Issuer

	// Metrics collectors live as long as the process: registering them
	// again on reload would panic.
	registry      *prometheus.Registry
	proxyMetrics  *proxy.Metrics
	loginMetrics  *login.Metrics
	issuerMetrics *issuer.Metrics

	current atomic.Pointer[generation]
	mu      sync.Mutex // serialises reloads
}

// generation is everything built from one version of the config file.
type generation struct {
	cfg      *fileConfig
	sessions *session.Manager
	login    *login.Client
	handler  *proxy.Handler
}

// ServeHTTP hands each request to the current generation: a reload swaps
// the pointer, in-flight requests finish on the generation they started on.
func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.current.Load().handler.ServeHTTP(w, r)
}

func (a *app) ready() bool {
	g := a.current.Load()
	if g == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return g.handler.Check(ctx) == nil
}

// serve runs Portcullis until ctx ends, then drains and returns nil. Each
// value on reload (SIGHUP in main) re-reads the config file.
func serve(ctx context.Context, file string, stderr io.Writer, getenv func(string) string, reload <-chan os.Signal) error {
	cfg, errs := loadConfig(file, getenv)
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintf(stderr, "%s: %v\n", file, e)
		}
		return fmt.Errorf("%s: %d config problem(s); run \"portcullis check -config %s\" to list them", file, len(errs), file)
	}
	// Log lines gather in memory and are written outside the logger's lock
	// (every second, or sooner when the buffer is full), so the access line
	// does not make requests queue on a write. Closed last: nothing is lost.
	logOut := proxy.NewLogBuffer(stderr, proxy.LogBufferOptions{Size: logBufferSize(cfg.Server.Log)})
	defer logOut.Close()
	log := newLogger(cfg.Server.Log, logOut)
	a := &app{
		log:               log,
		getenv:            getenv,
		file:              file,
		transport:         upstream.NewTransport(upstream.TransportConfig{}),
		proxyClientSecret: auth.Secret(newSecret()),
	}
	// Metrics are collected only when they can be read: /metrics is served
	// on metrics_listen alone, and changing metrics_listen needs a restart.
	// Without it every collector is nil, which records nothing (no series
	// in memory, no counting on the request path).
	var metricsHandler http.Handler
	var serverMetrics *server.Metrics
	if cfg.Server.MetricsListen != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		a.registry = reg
		a.proxyMetrics = proxy.NewMetrics(reg)
		a.loginMetrics = login.NewMetrics(reg)
		a.issuerMetrics = issuer.NewMetrics(reg)
		metricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
		serverMetrics = server.NewMetrics(reg)
	}
	defer a.close()
	g, err := a.build(ctx, cfg)
	if err != nil {
		return err
	}
	a.current.Store(g)

	pub, _ := url.Parse(cfg.Server.PublicURL)
	srv, err := server.New(cfg.Server.Config, a, server.Options{
		Hostnames:  []string{pub.Hostname()},
		Ready:      a.ready,
		Metrics:    metricsHandler,
		Collectors: serverMetrics,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	log.Info("portcullis is serving", "version", version, "listen", srv.Addr().String(), "url", cfg.Server.PublicURL+"/")

	changed := make(chan os.Signal, 1)
	go watchFile(ctx, file, 2*time.Second, changed)
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down: draining in-flight requests")
			timeout := cfg.Server.Timeouts.Shutdown
			if timeout <= 0 {
				timeout = 30 * time.Second
			}
			sctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			log.Info("stopped")
			return nil
		case <-reload:
			a.reload(ctx, srv)
		case <-changed:
			log.Info("config file changed; reloading", "file", file)
			a.reload(ctx, srv)
		}
	}
}

// reload re-reads the file. A config that fails to load, validate or build
// is logged and the running generation keeps serving.
func (a *app) reload(ctx context.Context, srv *server.Server) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg, errs := loadConfig(a.file, a.getenv)
	if len(errs) > 0 {
		for _, e := range errs {
			a.log.Error("config reload refused; still serving the previous config", "audit", "config_reload_refused", "file", a.file, "err", e)
		}
		return
	}
	g, err := a.build(ctx, cfg)
	if err != nil {
		a.log.Error("config reload refused; still serving the previous config", "audit", "config_reload_refused", "file", a.file, "err", err)
		return
	}
	if err := srv.Reload(cfg.Server.Config); err != nil {
		a.log.Warn("listener settings not applied", "err", err)
	}
	old := a.current.Swap(g)
	a.log.Info("config reloaded", "audit", "config_reloaded", "file", a.file, "upstreams", len(cfg.Upstreams))
	if old != nil && old.sessions != g.sessions {
		// The old manager may still serve in-flight requests; close it
		// once they have had time to finish.
		time.AfterFunc(time.Minute, func() { _ = old.sessions.Close() })
	}
}

// build turns one config into a generation. Long-lived parts (issuer store
// and keys) are created on first use and reused afterwards.
func (a *app) build(ctx context.Context, cfg *fileConfig) (*generation, error) {
	for _, name := range cfg.unsetVars {
		a.log.Warn("config refers to an unset environment variable; it expands to an empty value", "var", name)
	}
	pub, _ := url.Parse(cfg.Server.PublicURL)
	secure := pub.Scheme == "https"

	sessCfg := cfg.Session
	if !hasSecret(sessCfg.Secrets) && sessCfg.SecretsFile == "" {
		if a.generatedSessionSecret == "" {
			a.generatedSessionSecret = auth.Secret(newSecret())
			a.log.Warn("no session secret configured (session.secrets, e.g. ${PORTCULLIS_SESSION_SECRET}); generated one for this process: sessions will not survive a restart and will not work across replicas. Run \"portcullis secret\" to make one.")
		}
		sessCfg.Secrets = []auth.Secret{a.generatedSessionSecret}
	}
	sessions, err := session.New(sessCfg, session.Options{Secure: secure, Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}

	loginCfg := cfg.Login
	var iss *issuer.Issuer
	if cfg.usesBuiltinIssuer() || cfg.hasIssuerConfig() || forwards(cfg, "assertion") {
		issCfg := cfg.Issuer
		if cfg.usesBuiltinIssuer() && loginCfg.ClientID == "" {
			issCfg.Clients = append(append([]issuer.ClientConfig(nil), issCfg.Clients...), issuer.ClientConfig{
				ID:           proxyClientID,
				Secret:       a.proxyClientSecret,
				RedirectURIs: []string{cfg.Server.PublicURL + "/oauth2/callback"},
				Grants:       []string{"authorization_code", "refresh_token"},
			})
			loginCfg.ClientID = proxyClientID
			loginCfg.ClientSecret = a.proxyClientSecret
		}
		if cfg.usesBuiltinIssuer() && len(loginCfg.Scopes) == 0 {
			// The built-in issuer sends groups only for the groups scope
			// (route policies and X-Forwarded-Groups need them), and a
			// refresh token only for offline_access (sessions then outlive
			// the 10-minute access tokens).
			loginCfg.Scopes = []string{"openid", "email", "profile", "groups", "offline_access"}
		}
		iss, err = a.openIssuer(ctx, issCfg, pub)
		if err != nil {
			_ = sessions.Close()
			return nil, err
		}
	}

	opts := login.Options{
		PublicURL:       pub,
		Sessions:        sessions,
		AllowedHosts:    routeHosts(cfg),
		KeepAccessToken: forwards(cfg, "access_token"),
		KeepIDToken:     forwards(cfg, "id_token"),
		Metrics:         a.loginMetrics,
		Logger:          a.log,
	}
	if cfg.usesBuiltinIssuer() {
		opts.IssuerURL = iss.URL()
		opts.HTTPClient = &http.Client{Transport: inProcess(iss.URL(), iss.Handler()), Timeout: 30 * time.Second}
		opts.EndIssuerSession = iss.EndLoginSession
	} else {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: outboundTransport()}
	}
	lc, err := login.New(loginCfg, opts)
	if err != nil {
		_ = sessions.Close()
		return nil, fmt.Errorf("login: %w", err)
	}
	var bv *bearer.Verifier
	if !cfg.usesBuiltinIssuer() && usesBearer(cfg) {
		bv, err = bearer.New(bearer.Options{
			IssuerURL:    loginCfg.Issuer,
			ClientID:     loginCfg.ClientID,
			ClientSecret: lc.ClientSecret(),
			HTTPClient:   opts.HTTPClient,
			Claims:       lc.IdentityFromClaims,
			Logger:       a.log,
		})
		if err != nil {
			_ = sessions.Close()
			return nil, fmt.Errorf("bearer: %w", err)
		}
	}
	discover := func(ctx context.Context) error {
		if err := lc.Discover(ctx); err != nil {
			return err
		}
		if bv != nil {
			return bv.Discover(ctx)
		}
		return nil
	}
	if cfg.usesBuiltinIssuer() || a.current.Load() != nil {
		// In-process discovery cannot fail for a reachable reason; on a
		// reload an external issuer must answer before the new config
		// replaces a working one.
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := discover(dctx)
		cancel()
		if err != nil {
			_ = sessions.Close()
			return nil, fmt.Errorf("login: discovery at %s: %w", loginCfg.Issuer, err)
		}
	} else {
		go a.discoverLoop(ctx, discover, loginCfg.Issuer)
	}

	pxOpts := proxy.Options{
		Sessions:  sessions,
		Login:     lc,
		Issuer:    iss,
		Transport: a.transport,
		Metrics:   a.proxyMetrics,
		Logger:    a.log,
	}
	if iss != nil {
		pxOpts.Assert = proxy.AssertionSigner(iss, cfg.Server.PublicURL)
	}
	if cfg.usesBuiltinIssuer() {
		pxOpts.Bearer = proxy.IssuerBearer{Issuer: iss, Login: lc}
		pxOpts.BearerAudience = cfg.Server.PublicURL
	} else if bv != nil {
		pxOpts.Bearer = bv
		pxOpts.BearerAudience = loginCfg.ClientID
	}
	h, err := proxy.New(cfg.proxyConfig(), pxOpts)
	if err != nil {
		_ = sessions.Close()
		return nil, err
	}
	return &generation{cfg: cfg, sessions: sessions, login: lc, handler: h}, nil
}

// openIssuer creates the built-in issuer on first use and reloads it
// afterwards, keeping its store (codes, refresh tokens, keys) as it is.
func (a *app) openIssuer(ctx context.Context, cfg issuer.Config, pub *url.URL) (*issuer.Issuer, error) {
	if a.issuer != nil {
		if !sameStore(a.storeCfg, cfg.Storage) {
			a.log.Warn("issuer.storage changed; the change takes effect at the next restart")
		}
		if err := a.issuer.Reload(cfg); err != nil {
			return nil, fmt.Errorf("issuer: %w", err)
		}
		return a.issuer, nil
	}
	st, err := store.Open(ctx, cfg.Storage, store.Options{Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("issuer.storage: %w", err)
	}
	iss, err := issuer.New(ctx, cfg, issuer.Options{PublicURL: pub, Store: st, Metrics: a.issuerMetrics, Logger: a.log})
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("issuer: %w", err)
	}
	a.store, a.storeCfg, a.issuer = st, cfg.Storage, iss
	return iss, nil
}

func sameStore(a, b store.Config) bool {
	return a == b
}

// discoverLoop retries discovery of an external issuer until it answers;
// /oauth2/readyz reports not ready until then.
func (a *app) discoverLoop(ctx context.Context, discover func(context.Context) error, issuerURL string) {
	delay := time.Second
	for {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := discover(dctx)
		cancel()
		if err == nil {
			a.log.Info("login issuer discovered", "issuer", issuerURL)
			return
		}
		a.log.Warn("login issuer discovery failed; retrying", "issuer", issuerURL, "err", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Minute)
	}
}

// watchFile sends on changed when path's modification time or size
// changes (as when a Kubernetes ConfigMap is updated), checking every
// interval until ctx ends. A file that is briefly missing mid-update is
// ignored until it is back.
func watchFile(ctx context.Context, path string, interval time.Duration, changed chan<- os.Signal) {
	stamp := func() (time.Time, int64, bool) {
		fi, err := os.Stat(path)
		if err != nil {
			return time.Time{}, 0, false
		}
		return fi.ModTime(), fi.Size(), true
	}
	mod, size, _ := stamp()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m, sz, ok := stamp()
			if !ok || (m.Equal(mod) && sz == size) {
				continue
			}
			mod, size = m, sz
			select {
			case changed <- os.Interrupt:
			default: // a reload is already pending
			}
		}
	}
}

func (a *app) close() {
	if g := a.current.Load(); g != nil {
		_ = g.sessions.Close()
	}
	if a.issuer != nil {
		a.issuer.Close()
	}
	if a.store != nil {
		_ = a.store.Close()
	}
}

func hasSecret(ss []auth.Secret) bool {
	for _, s := range ss {
		if !s.IsZero() {
			return true
		}
	}
	return false
}

// usesBearer reports whether any upstream accepts bearer tokens.
func usesBearer(cfg *fileConfig) bool {
	for _, u := range cfg.Upstreams {
		if u.Bearer {
			return true
		}
	}
	return false
}

// forwards reports whether any upstream forwards the named item.
func forwards(cfg *fileConfig, item string) bool {
	for _, u := range cfg.Upstreams {
		for _, f := range u.Forward {
			if f == item {
				return true
			}
		}
	}
	return false
}

// routeHosts lists the upstreams' hosts: the only hosts an absolute
// return target (rd) may name.
func routeHosts(cfg *fileConfig) []string {
	var hosts []string
	for _, u := range cfg.Upstreams {
		if u.Host != "" {
			hosts = append(hosts, strings.ToLower(u.Host))
		}
	}
	return hosts
}

// outboundTransport is for calls to an external issuer: honours the
// HTTPS_PROXY environment, as corporate networks need.
func outboundTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = http.ProxyFromEnvironment
	return t
}

func newLogger(c logConfig, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.level()}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// logBufferSize is how much the log buffer gathers before writing. The
// access line (one per request, at info) needs room for a burst of them;
// at warn and error only rare lines are written, and a line larger than
// the buffer is written directly, so a small one loses nothing. The buffer
// (two of this size) stays allocated for the process's life.
func logBufferSize(c logConfig) int {
	if c.level() <= slog.LevelInfo {
		return 64 << 10
	}
	return 4 << 10
}
