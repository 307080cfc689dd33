package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/bearer"
	"github.com/portcullis-proxy/portcullis/auth/session"
	"github.com/portcullis-proxy/portcullis/upstream"
)

// forwardAuth answers /oauth2/auth for nginx auth_request, Traefik
// ForwardAuth and Envoy ext_authz: 202 with identity headers, 401 or 403
// — never another 2xx on any error (DESIGN.md "Forward-auth").
//
// The original request is described by headers that only a trusted proxy
// may set; from any other peer they are ignored and the route for the
// request's own Host and "/" is judged, so a client cannot ask about a
// public path to get a 202 for a protected one.
func (h *Handler) forwardAuth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	host, path := normalizeHost(r.Host), "/"
	if h.isTrusted(r) {
		if oh, op, ok := originalRequest(r); ok {
			host, path = oh, op
		} else if op != "" || oh != "" {
			h.forwardDeny(w, r, http.StatusForbidden)
			return
		}
	}
	cp, encoded, err := h.canonical(host, path)
	if err != nil {
		h.forwardDeny(w, r, http.StatusForbidden)
		return
	}
	rt := h.routes.match(host, cp)
	if rt == nil {
		h.forwardDeny(w, r, http.StatusForbidden)
		return
	}
	id, err := h.identify(w, r, rt)
	if err == nil {
		err = rt.policy.Check(id)
	}
	switch {
	case errors.Is(err, session.ErrUnavailable), errors.Is(err, bearer.ErrUnavailable):
		// Forward-auth answers only 202, 401 or 403 (DESIGN.md).
		h.log.ErrorContext(r.Context(), "session store unavailable", "err", err)
		h.forwardDeny(w, r, http.StatusUnauthorized)
	case err == nil:
		fwd := rt.forward
		if !h.isTrusted(r) {
			// The answer goes back to whoever asked: tokens only to a
			// trusted proxy, never to a page's script holding the cookie.
			fwd &^= upstream.ForwardAccessToken | upstream.ForwardIDToken | upstream.ForwardAssertion
		}
		upstream.SetIdentityHeaders(w.Header(), id, fwd)
		upstream.SetAuthRequestHeaders(w.Header(), id, fwd)
		w.WriteHeader(http.StatusAccepted)
	case !encoded && rt.isPublic(cp):
		w.WriteHeader(http.StatusAccepted)
	case errors.Is(err, auth.ErrForbidden):
		h.forwardDeny(w, r, http.StatusForbidden)
	case errors.Is(err, auth.ErrInvalidToken):
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		h.forwardDeny(w, r, http.StatusUnauthorized)
	default:
		w.Header().Set("WWW-Authenticate", "Bearer")
		h.forwardDeny(w, r, http.StatusUnauthorized)
	}
}

func (h *Handler) forwardDeny(w http.ResponseWriter, r *http.Request, status int) {
	writeJSON(w, status, map[string]string{"error": errorCode(status)})
}

// originalRequest reads the host and escaped path of the request a proxy
// is asking about: X-Original-URL, or X-Forwarded-Host with
// X-Forwarded-Uri / X-Original-URI. ok is false when none is usable; a
// non-empty but unparsable value is reported too, so the caller refuses
// instead of falling back.
func originalRequest(r *http.Request) (host, path string, ok bool) {
	if v := r.Header.Get("X-Original-Url"); v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return "", v, false
		}
		return normalizeHost(u.Host), u.EscapedPath(), true
	}
	uri := r.Header.Get("X-Forwarded-Uri")
	if uri == "" {
		uri = r.Header.Get("X-Original-Uri")
	}
	if uri == "" {
		return "", "", false
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if !strings.HasPrefix(uri, "/") {
		return "", uri, false
	}
	host = r.Header.Get("X-Forwarded-Host")
	if host == "" {
		host = r.Host
	}
	return normalizeHost(host), uri, true
}
