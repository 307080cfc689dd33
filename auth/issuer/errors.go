package issuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// OAuth error codes (RFC 6749 §4.1.2.1, §5.2; OIDC Core §3.1.2.6; RFC 7009).
const (
	errInvalidRequest          = "invalid_request"
	errInvalidClient           = "invalid_client"
	errInvalidGrant            = "invalid_grant"
	errUnauthorizedClient      = "unauthorized_client"
	errUnsupportedGrantType    = "unsupported_grant_type"
	errUnsupportedResponseType = "unsupported_response_type"
	errInvalidScope            = "invalid_scope"
	errAccessDenied            = "access_denied"
	errServerError             = "server_error"
	errLoginRequired           = "login_required"
	errConsentRequired         = "consent_required"
	errInvalidToken            = "invalid_token"
)

// oauthError is a protocol error as the client sees it. err, when set, is
// logged and never shown.
type oauthError struct {
	status     int
	code       string
	desc       string
	retryAfter time.Duration
	err        error
}

func (e *oauthError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("issuer: %s: %s: %v", e.code, e.desc, e.err)
	}
	return fmt.Sprintf("issuer: %s: %s", e.code, e.desc)
}

func (e *oauthError) Unwrap() error { return e.err }

func newErr(status int, code, desc string) *oauthError {
	return &oauthError{status: status, code: code, desc: desc}
}

// internalErr hides err from the client behind server_error.
func internalErr(err error) *oauthError {
	return &oauthError{status: http.StatusInternalServerError, code: errServerError, desc: "internal error", err: err}
}

// asOAuth turns any error into an oauthError, internal unless it is one.
func asOAuth(err error) *oauthError {
	var oe *oauthError
	if errors.As(err, &oe) {
		return oe
	}
	return internalErr(err)
}

// noStore marks a response that carries or concerns credentials.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// writeJSON writes v with status and no-store headers.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
	}
	noStore(w)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeTokenError answers at the token, introspection and revocation
// endpoints as RFC 6749 §5.2 says.
func (i *Issuer) writeTokenError(w http.ResponseWriter, r *http.Request, err error) {
	e := asOAuth(err)
	s := i.state.Load()
	i.metrics.tokenError(i.endpointOf(r), e.code, clientLabel(s, knownClientID(r, s)))
	if e.status >= 500 {
		i.log.ErrorContext(r.Context(), "issuer: request failed", "path", r.URL.Path, "err", e.err)
	} else if e.err != nil {
		i.log.DebugContext(r.Context(), "issuer: request refused", "path", r.URL.Path, "error", e.code, "err", e.err)
	}
	if e.status == http.StatusUnauthorized && e.code == errInvalidClient {
		w.Header().Set("WWW-Authenticate", `Basic realm="portcullis", charset="UTF-8"`)
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.retryAfter.Seconds()))))
	}
	body := map[string]string{"error": e.code}
	if e.desc != "" {
		body["error_description"] = e.desc
	}
	writeJSON(w, e.status, body)
}

// redirectError sends an authorize error back to a trusted redirect_uri
// with state (RFC 6749 §4.1.2.1), in the query or the fragment.
func (i *Issuer) redirectError(w http.ResponseWriter, r *http.Request, ar *authRequest, err error) {
	e := asOAuth(err)
	i.metrics.tokenError("authorize", e.code, clientLabel(i.state.Load(), ar.ClientID))
	if e.status >= 500 {
		i.log.ErrorContext(r.Context(), "issuer: authorization failed", "client_id", ar.ClientID, "err", e.err)
	}
	v := url.Values{"error": {e.code}}
	if e.desc != "" {
		v.Set("error_description", e.desc)
	}
	i.redirectResponse(w, r, ar, v)
}

// redirectResponse sends params to ar's redirect_uri in its response mode,
// with state and iss (RFC 9207).
func (i *Issuer) redirectResponse(w http.ResponseWriter, r *http.Request, ar *authRequest, v url.Values) {
	if ar.State != "" {
		v.Set("state", ar.State)
	}
	v.Set("iss", i.iss)
	target := ar.RedirectURI
	if ar.fragment() {
		target += "#" + v.Encode()
	} else {
		u, err := url.Parse(target)
		if err != nil {
			i.errorPage(w, r, http.StatusBadRequest, "The application's redirect address is not valid.", err)
			return
		}
		q := u.Query()
		for k, vs := range v {
			q[k] = vs
		}
		u.RawQuery = q.Encode()
		target = u.String()
	}
	noStore(w)
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	http.Redirect(w, r, target, status)
}

// errorPage shows msg to the user; it is used when the client cannot be
// trusted with a redirect. err goes to the log only.
func (i *Issuer) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string, err error) {
	if status >= 500 {
		i.log.ErrorContext(r.Context(), "issuer: request failed", "path", r.URL.Path, "err", err)
	} else if err != nil {
		i.log.DebugContext(r.Context(), "issuer: request refused", "path", r.URL.Path, "err", err)
	}
	i.render(w, status, errorHTML("Sign-in error", msg))
}
