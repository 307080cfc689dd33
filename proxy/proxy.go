// Package proxy is Portcullis's front door: it canonicalises each request's
// path, matches it to a route, decides who the caller is (session cookie,
// else bearer token), applies the route's policy, and hands allowed requests
// to the route's upstream. It also serves Portcullis's own /oauth2/ routes
// (sign-in, callback, sign-out, forward-auth, userinfo, health) and mounts
// the built-in issuer.
//
// A Handler is immutable once built; a configuration reload builds a new one
// and swaps it in, so handlers need no locks.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/bearer"
	"github.com/portcullis-proxy/portcullis/auth/issuer"
	"github.com/portcullis-proxy/portcullis/auth/login"
	"github.com/portcullis-proxy/portcullis/auth/policy"
	"github.com/portcullis-proxy/portcullis/auth/session"
	"github.com/portcullis-proxy/portcullis/upstream"
)

// Control route paths served by Portcullis itself.
const (
	pathPrefix   = "/oauth2/"
	pathStart    = "/oauth2/start"
	pathCallback = "/oauth2/callback"
	pathSignOut  = "/oauth2/sign_out"
	pathAuth     = "/oauth2/auth"
	pathUserinfo = "/oauth2/userinfo"
	pathHealthz  = "/oauth2/healthz"
	pathReadyz   = "/oauth2/readyz"
)

// BearerVerifier turns a bearer token into an identity, checking that its
// audience is one of audiences. Errors mean "invalid token" (401).
type BearerVerifier interface {
	VerifyBearer(ctx context.Context, raw string, audiences []string) (*auth.Identity, error)
}

// Options are the long-lived parts a Handler is built from; the command
// keeps them across reloads.
type Options struct {
	// Sessions loads and saves the session cookie. Required.
	Sessions *session.Manager
	// Login runs the sign-in flow against the login issuer. Required.
	Login *login.Client
	// Issuer is the built-in issuer, mounted at its paths; nil when it is
	// not configured.
	Issuer *issuer.Issuer
	// Bearer verifies bearer tokens on routes with bearer: true; nil means
	// such routes refuse every bearer token.
	Bearer BearerVerifier
	// BearerAudience is the audience every bearer token may carry
	// (login.client_id for an external issuer, public_url for the built-in one).
	BearerAudience string
	// Transport is shared by every upstream (keep-alive pool); nil → upstream.NewTransport.
	Transport http.RoundTripper
	// Assert signs X-Portcullis-Assertion for routes that forward it.
	Assert func(ctx context.Context, id *auth.Identity, audience string) (string, error)
	// Metrics records request counts and latencies; nil records nothing.
	Metrics *Metrics
	// Logger receives access lines, audit events and errors; nil discards.
	Logger *slog.Logger
}

// Handler is the front door. Build it with New.
type Handler struct {
	publicURL   *url.URL
	publicHost  string
	trusted     []netip.Prefix
	routes      *table
	sessions    *session.Manager
	login       *login.Client
	issuer      *issuer.Issuer
	issuerHost  string // "" when the issuer shares the public host
	issuerPaths []string
	bearer      BearerVerifier
	control     *http.ServeMux
	// encodedSlashes is set when some route has allow_encoded_slashes.
	encodedSlashes bool
	// Metric series resolved once (nil without metrics): Portcullis's own
	// routes, the issuer, and requests no route took.
	controlSeries, issuerSeries, noneSeries *upstreamSeries
	log                                     *slog.Logger
}

// New compiles cfg into a Handler.
func New(cfg Config, opts Options) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Sessions == nil || opts.Login == nil {
		return nil, errors.New("proxy: Options.Sessions and Options.Login are required")
	}
	pub, _ := parsePublicURL(cfg.PublicURL)
	h := &Handler{
		publicURL:     pub,
		publicHost:    normalizeHost(pub.Host),
		sessions:      opts.Sessions,
		login:         opts.Login,
		issuer:        opts.Issuer,
		bearer:        opts.Bearer,
		controlSeries: opts.Metrics.series("portcullis"),
		issuerSeries:  opts.Metrics.series("issuer"),
		noneSeries:    opts.Metrics.series("none"),
		log:           opts.Logger,
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	for _, s := range cfg.TrustedProxies {
		p, _ := parsePrefix(s)
		h.trusted = append(h.trusted, p)
	}
	transport := opts.Transport
	if transport == nil {
		transport = upstream.NewTransport(upstream.TransportConfig{})
	}
	var routes []*route
	for i, rc := range cfg.Routes {
		up, err := upstream.New(rc.Config, upstream.Options{
			Transport:    transport,
			Assert:       opts.Assert,
			TrustedProxy: h.isTrusted,
			Logger:       h.log,
		})
		if err != nil {
			return nil, fmt.Errorf("upstreams[%d]: %w", i, err)
		}
		fwd, err := upstream.ParseForward(rc.Forward)
		if err != nil {
			return nil, fmt.Errorf("upstreams[%d].forward: %w", i, err)
		}
		pol, err := policy.New(rc.Allow)
		if err != nil {
			return nil, fmt.Errorf("upstreams[%d].allow: %w", i, err)
		}
		routes = append(routes, &route{
			name:           rc.Name,
			host:           normalizeHost(rc.Host),
			path:           orDefault(rc.Path, "/"),
			public:         rc.Public,
			policy:         pol,
			bearer:         rc.Bearer,
			audiences:      bearerAudiences(opts.BearerAudience, rc.BearerAudiences),
			forward:        fwd,
			encodedSlashes: rc.AllowEncodedSlashes,
			series:         opts.Metrics.series(rc.Name),
			upstream:       up,
		})
		h.encodedSlashes = h.encodedSlashes || rc.AllowEncodedSlashes
	}
	h.routes = newTable(routes)
	if h.issuer != nil {
		iu, err := url.Parse(h.issuer.URL())
		if err != nil {
			return nil, fmt.Errorf("proxy: issuer url: %w", err)
		}
		if ih := normalizeHost(iu.Host); ih != h.publicHost {
			h.issuerHost = ih
		}
		h.issuerPaths = h.issuer.Paths()
	}
	h.control = http.NewServeMux()
	h.control.HandleFunc("GET "+pathStart, h.login.Start)
	h.control.HandleFunc("GET "+pathCallback, h.login.Callback)
	h.control.HandleFunc(pathSignOut, h.signOut)
	h.control.HandleFunc(pathAuth, h.forwardAuth)
	h.control.HandleFunc("GET "+pathUserinfo, h.userinfo)
	h.control.HandleFunc("GET "+pathHealthz, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	h.control.HandleFunc("GET "+pathReadyz, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := h.Check(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return h, nil
}

// Check is the readiness probe: the login issuer was discovered and the
// session store answers.
func (h *Handler) Check(ctx context.Context) error {
	if !h.login.Ready() {
		return errors.New("the login issuer has not been discovered yet")
	}
	if err := h.sessions.Check(ctx); err != nil {
		return errors.New("the session store does not answer")
	}
	return nil
}

// ServeHTTP runs the gate for one request and writes its access line.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &recorder{ResponseWriter: w}
	a := access{upstream: "none", series: h.noneSeries, auth: outcomeNone}
	reqID := h.requestID(w, r)
	h.serve(rw, r, &a)
	d := time.Since(start)
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	a.series.observe(status, a.auth, d)
	h.logAccess(r, rw, &a, reqID, start, d)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, a *access) {
	// Before anything else: a client can never speak for the gate.
	upstream.StripIdentityHeaders(r.Header)

	host := normalizeHost(r.Host)
	cp, encoded, err := h.canonical(host, rawPath(r))
	if err != nil {
		h.page(w, r, http.StatusBadRequest, "Bad request", "The address of this request is malformed or ambiguous, so it was refused.")
		return
	}
	setPath(r, cp)

	if h.isIssuerPath(host, cp) {
		a.upstream, a.series = "issuer", h.issuerSeries
		h.issuer.Handler().ServeHTTP(w, h.withClientAddr(r))
		return
	}
	if strings.HasPrefix(cp, pathPrefix) || cp == "/oauth2" {
		a.upstream, a.series = "portcullis", h.controlSeries
		h.control.ServeHTTP(w, r)
		return
	}
	rt := h.routes.match(host, cp)
	if rt == nil {
		h.page(w, r, http.StatusNotFound, "Not found", "No application is configured at this address.")
		return
	}
	a.upstream, a.series = rt.name, rt.series
	if !encoded && rt.isPublic(cp) {
		a.auth = outcomePublic
		h.sessions.StripCookies(r)
		rt.upstream.ServeHTTP(w, r)
		return
	}
	id, err := h.identify(w, r, rt)
	h.sessions.StripCookies(r)
	if err != nil {
		a.auth = outcomeUnauthenticated
		h.refuse(w, r, err)
		return
	}
	a.user = id.User
	if err := rt.policy.Check(id); err != nil {
		a.auth = outcomeDenied
		h.auditDenied(r.Context(), r, rt, id.Subject)
		h.refuse(w, r, err)
		return
	}
	a.auth = string(id.Method)
	rt.upstream.ServeIdentity(w, r, id)
}

// canonical computes the request's canonical path. A path with %2F or %5C
// is refused unless the route it then matches allows encoded slashes;
// encoded reports that case, and such a path never reaches Portcullis's own
// routes or the issuer.
func (h *Handler) canonical(host, raw string) (cp string, encoded bool, err error) {
	cp, err = canonicalPath(raw)
	if err == nil || !errors.Is(err, errEncodedSlash) || !h.encodedSlashes {
		return cp, false, err
	}
	kept, err2 := canonicalize(raw, true)
	if err2 != nil {
		return "", false, err2
	}
	if strings.HasPrefix(kept, pathPrefix) || h.isIssuerPath(host, kept) {
		return "", false, err
	}
	rt := h.routes.match(host, kept)
	if rt == nil || !rt.encodedSlashes {
		return "", false, err
	}
	// An upstream that decodes the slashes must land on this same route:
	// otherwise "/app/x%2F..%2Fadmin"-like tricks (or "/admin%2Fx" under a
	// catch-all "/" route) would reach a path another route's policy guards.
	decoded, derr := canonicalPath(decodeSlashes(kept))
	if derr != nil || h.routes.match(host, decoded) != rt {
		return "", false, err
	}
	return kept, true, nil
}

// identify finds who the caller is: the session cookie first, then — on
// bearer routes — an Authorization: Bearer token. A presented bearer token
// that fails is ErrInvalidToken (never a sign-in redirect).
func (h *Handler) identify(w http.ResponseWriter, r *http.Request, rt *route) (*auth.Identity, error) {
	id, err := h.sessionIdentity(w, r)
	if err != nil {
		return nil, err
	}
	if id != nil {
		return id, nil
	}
	if rt != nil && rt.bearer {
		if raw, ok := bearerToken(r); ok {
			return h.verifyBearer(r.Context(), raw, rt)
		}
	}
	return nil, auth.ErrUnauthenticated
}

// sessionIdentity returns the identity of a valid session cookie, or nil.
// A session whose access token expires within session.refresh_after is
// refreshed first (login shares one refresh among concurrent requests of
// the same session) and the renewed session is saved on w. When refresh is
// refused the session ends; when it fails for a passing reason the session
// keeps working until its access token has actually expired. An error is
// returned only when the session store itself is unavailable.
func (h *Handler) sessionIdentity(w http.ResponseWriter, r *http.Request) (*auth.Identity, error) {
	// View, not Load: d is shared with the session cache and other
	// requests, and read only. A refresh makes a new Data of its own.
	d, err := h.sessions.View(r)
	if err != nil {
		if errors.Is(err, session.ErrUnavailable) {
			return nil, err
		}
		return nil, nil
	}
	if d.RefreshToken != "" && !d.AccessExpiry.IsZero() && !time.Now().Add(h.sessions.RefreshAfter()).Before(d.AccessExpiry) {
		nd, err := h.login.Refresh(r.Context(), d)
		switch {
		case err == nil:
			if err := h.sessions.Save(w, r, nd); err != nil {
				h.log.WarnContext(r.Context(), "saving refreshed session", "err", err)
			}
			// Refresh keeps ExpiresAt and Identity.Expiry, which View
			// has already bounded by the session.
			d = nd
		case errors.Is(err, auth.ErrUnauthenticated):
			// login records the refresh_refused audit event.
			h.log.DebugContext(r.Context(), "session ended: refresh refused", "sub", d.Identity.Subject, "err", err)
			h.sessions.Clear(w, r)
			return nil, nil
		case time.Now().Before(d.AccessExpiry):
			h.log.WarnContext(r.Context(), "token refresh failed; retrying on a later request", "sub", d.Identity.Subject, "err", err)
		default:
			h.log.WarnContext(r.Context(), "token refresh failed and the access token has expired", "sub", d.Identity.Subject, "err", err)
			return nil, nil
		}
	}
	// Handed on without a copy: nothing after the gate modifies an
	// identity (policy, forward-auth and the upstream only read it).
	return &d.Identity, nil
}

func (h *Handler) verifyBearer(ctx context.Context, raw string, rt *route) (*auth.Identity, error) {
	if h.bearer == nil {
		return nil, fmt.Errorf("%w: bearer tokens are not configured", auth.ErrInvalidToken)
	}
	id, err := h.bearer.VerifyBearer(ctx, raw, rt.audiences)
	if errors.Is(err, bearer.ErrUnavailable) {
		// The issuer is down: that is not the caller's fault.
		return nil, err
	}
	if err != nil {
		h.log.DebugContext(ctx, "bearer token refused", "route", rt.name, "err", err)
		return nil, fmt.Errorf("%w: %v", auth.ErrInvalidToken, err)
	}
	id.Method = auth.MethodBearer
	return id, nil
}

// bearerAudiences is the audience list a route's bearer tokens are
// checked against: the default audience (when there is one), then the
// route's own. Built once per route, not per request.
func bearerAudiences(def string, route []string) []string {
	var auds []string
	if def != "" {
		auds = append(auds, def)
	}
	return append(auds, route...)
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(v[7:])
	return tok, tok != ""
}

// refuse answers an authentication or authorisation failure the way the
// caller can act on it: a browser without credentials is sent to sign in,
// an API caller gets 401 JSON, a bad bearer token 401 invalid_token, and a
// refused identity 403.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, session.ErrUnavailable), errors.Is(err, bearer.ErrUnavailable):
		h.unavailable(w, r, err)
	case errors.Is(err, auth.ErrForbidden):
		h.forbidden(w, r, err)
	case errors.Is(err, auth.ErrInvalidToken):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSONBody(w, http.StatusUnauthorized, invalidTokenJSON)
	case isBrowser(r):
		h.login.Redirect(w, r, h.returnTarget(r))
	default:
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeJSONBody(w, http.StatusUnauthorized, unauthenticatedJSON)
	}
}

// unavailable answers 503 when the session store or the issuer cannot be
// reached: the cause is ours, so the user is not sent to sign in again.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.log.ErrorContext(r.Context(), "dependency unavailable", "err", err)
	w.Header().Set("Retry-After", "5")
	h.page(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", "Portcullis cannot reach a service it depends on right now. Please try again in a moment.")
}

func (h *Handler) forbidden(w http.ResponseWriter, r *http.Request, err error) {
	msg := "You are signed in, but this application does not allow your account."
	var denied *policy.DeniedError
	if errors.As(err, &denied) {
		msg += " It requires " + strings.Join(denied.Missing, " or ") + "."
	}
	if isBrowser(r) {
		h.page(w, r, http.StatusForbidden, "Access denied", msg)
		return
	}
	writeJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "error_description": msg})
}

// returnTarget is where the user comes back to after signing in: the
// canonical path and query, made absolute only for a configured route host
// other than the public one.
func (h *Handler) returnTarget(r *http.Request) string {
	rd := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		rd += "?" + r.URL.RawQuery
	}
	if host := normalizeHost(r.Host); host != h.publicHost {
		for _, rh := range h.routes.hosts() {
			if rh == host {
				return h.publicURL.Scheme + "://" + r.Host + rd
			}
		}
	}
	return rd
}

// isIssuerPath reports whether the built-in issuer serves this request.
func (h *Handler) isIssuerPath(host, path string) bool {
	if h.issuer == nil || (h.issuerHost != "" && host != h.issuerHost) {
		return false
	}
	for _, p := range h.issuerPaths {
		if pathHasPrefix(path, p) {
			return true
		}
	}
	return false
}

// isTrusted reports whether the request's direct peer is a trusted proxy.
func (h *Handler) isTrusted(r *http.Request) bool {
	if len(h.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && h.trustedAddr(ap.Addr().Unmap())
}

func (h *Handler) signOut(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		h.page(w, r, http.StatusMethodNotAllowed, "Method not allowed", "Sign out with GET or POST.")
		return
	}
	h.login.SignOut(w, r)
}

// userinfo answers the signed-in identity as JSON (DESIGN.md "Output shapes").
func (h *Handler) userinfo(w http.ResponseWriter, r *http.Request) {
	id, err := h.sessionIdentity(w, r)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if id == nil {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeJSONBody(w, http.StatusUnauthorized, unauthenticatedJSON)
		return
	}
	groups := id.Groups
	if groups == nil {
		groups = []string{}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"user":               id.User,
		"email":              id.Email,
		"groups":             groups,
		"preferred_username": id.PreferredUsername,
		"name":               id.Name,
	})
}

// rawPath is the request's path as the client sent it (still escaped).
func rawPath(r *http.Request) string {
	if u := r.RequestURI; len(u) > 0 && u[0] == '/' {
		if i := strings.IndexByte(u, '?'); i >= 0 {
			return u[:i]
		}
		return u
	}
	return r.URL.EscapedPath()
}

// setPath makes the request carry exactly the canonical path.
func setPath(r *http.Request, cp string) {
	if r.URL.RawPath == cp || (r.URL.RawPath == "" && r.URL.Path == cp) {
		return
	}
	p, err := url.PathUnescape(cp)
	if err != nil { // cannot happen: canonicalPath validated every escape
		p = cp
	}
	r.URL.Path = p
	if p == cp {
		r.URL.RawPath = ""
	} else {
		r.URL.RawPath = cp
	}
}

// isBrowser: a request is a browser's when it accepts HTML (DESIGN.md).
func isBrowser(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

var _ http.Handler = (*Handler)(nil)
