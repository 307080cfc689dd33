package login

import (
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reasons a sign-in fails: the reason label of portcullis_sign_ins_total and
// the reason attribute of the sign_in_failed audit event. The set is fixed
// so that nothing a client sends can become a label value.
const (
	reasonNone           = "none"            // the sign-in succeeded
	reasonUnavailable    = "unavailable"     // issuer discovery has not succeeded yet
	reasonIssuerError    = "issuer_error"    // the issuer answered the callback with error=
	reasonState          = "state"           // state missing, unknown, or not this browser's
	reasonExpired        = "expired"         // the pending sign-in is older than its lifetime
	reasonIssuerMismatch = "issuer_mismatch" // RFC 9207 iss parameter missing or wrong
	reasonMissingCode    = "missing_code"    // the callback carried no code
	reasonExchange       = "exchange"        // the token endpoint refused the code
	reasonUnreachable    = "unreachable"     // the token endpoint could not be reached
	reasonBadResponse    = "bad_response"    // the token response was unusable or had no ID token
	reasonIDToken        = "id_token"        // the ID token failed verification (signature, iss, aud, exp, at_hash, sub)
	reasonNonce          = "nonce"           // the ID token's nonce is not this attempt's
	reasonSession        = "session"         // the session could not be saved
)

// Results of portcullis_token_refreshes_total.
const (
	refreshSuccess = "success" // this call refreshed the tokens
	refreshRefused = "refused" // the session cannot be refreshed (ErrUnauthenticated)
	refreshError   = "error"   // a temporary failure (issuer down, not discovered)
	refreshShared  = "shared"  // answered with the result of a concurrent or recent refresh
)

// Reasons of the refresh_refused audit event.
const (
	refuseNoRefreshToken = "no_refresh_token"
	refuseIssuer         = "issuer_refused"
	refuseNoAccessToken  = "no_access_token"
	refuseIDToken        = "id_token"
	refuseSubject        = "subject_mismatch"
)

// Metrics holds this package's Prometheus collectors. A nil *Metrics records
// nothing, so tests and callers that do not care pass nil. Create it ONCE per
// process (the command keeps it across config reloads): registering twice
// panics.
type Metrics struct {
	signIns   *prometheus.CounterVec
	signOuts  prometheus.Counter
	refreshes *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (none when
// reg is nil):
//   - portcullis_sign_ins_total{result="success"|"failure", reason}: reason is
//     "none" on success, else one of unavailable, issuer_error, state,
//     expired, issuer_mismatch, missing_code, exchange, unreachable,
//     bad_response, id_token, nonce, session;
//   - portcullis_sign_outs_total: sign-out requests, with or without a session;
//   - portcullis_token_refreshes_total{result="success"|"refused"|"error"|"shared"}:
//     shared counts callers answered by another caller's refresh of the same
//     refresh token (for 30s after it).
//
// It panics when they are already registered with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		signIns: f.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_sign_ins_total",
			Help: "Sign-in callbacks handled, by result and failure reason (reason=\"none\" on success).",
		}, []string{"result", "reason"}),
		signOuts: f.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_sign_outs_total",
			Help: "Sign-out requests handled.",
		}),
		refreshes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_token_refreshes_total",
			Help: "Session token refreshes, by result; shared means answered by another request's refresh.",
		}, []string{"result"}),
	}
	// Every series exists from the start, so rate() and absent-alerts work
	// before the first failure.
	m.signIns.WithLabelValues("success", reasonNone)
	for _, r := range []string{reasonUnavailable, reasonIssuerError, reasonState, reasonExpired, reasonIssuerMismatch,
		reasonMissingCode, reasonExchange, reasonUnreachable, reasonBadResponse, reasonIDToken, reasonNonce, reasonSession} {
		m.signIns.WithLabelValues("failure", r)
	}
	for _, r := range []string{refreshSuccess, refreshRefused, refreshError, refreshShared} {
		m.refreshes.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) signIn(reason string) {
	if m == nil {
		return
	}
	result := "failure"
	if reason == reasonNone {
		result = "success"
	}
	m.signIns.WithLabelValues(result, reason).Inc()
}

func (m *Metrics) signOut() {
	if m != nil {
		m.signOuts.Inc()
	}
}

func (m *Metrics) refresh(result string) {
	if m != nil {
		m.refreshes.WithLabelValues(result).Inc()
	}
}

// remoteIP is the host of the request's TCP peer, the ip attribute of audit
// events.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
