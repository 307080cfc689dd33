package issuer

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// unknownClient is the client_id label of a request that names no
// configured client: label values never come from what a client sends.
const unknownClient = "unknown"

// Results of portcullis_issuer_logins_total.
const (
	loginSuccess   = "success"
	loginFailure   = "failure"
	loginThrottled = "throttled"
)

// Reasons of portcullis_issuer_revocations_total.
const (
	revokeRequest      = "request"       // RFC 7009 revocation endpoint
	revokeRefreshReuse = "refresh_reuse" // a rotated-out refresh token came back: its family
	revokeCodeReplay   = "code_replay"   // a code was redeemed twice: what it issued
)

// Metrics holds this package's Prometheus collectors. A nil *Metrics records
// nothing, so tests and callers that do not care pass nil. Create it ONCE per
// process (the command keeps it across config reloads): registering twice
// panics.
type Metrics struct {
	issued      *prometheus.CounterVec
	errors      *prometheus.CounterVec
	logins      *prometheus.CounterVec
	throttled   *prometheus.CounterVec
	revocations *prometheus.CounterVec
	rotations   prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (none when
// reg is nil). client_id labels are configured client ids, or "unknown":
//   - portcullis_issuer_tokens_issued_total{grant, client_id}: token
//     responses, at /token and (implicit) at /authorize;
//   - portcullis_issuer_token_errors_total{endpoint, error, client_id}: the
//     RFC 6749 error code answered at endpoint token, introspect, revoke, or
//     sent to the client's redirect_uri (or shown, when it cannot be
//     trusted) at authorize;
//   - portcullis_issuer_logins_total{result="success"|"failure"|"throttled"}:
//     password checks, by the login form and the password grant;
//   - portcullis_issuer_throttled_total{key="user"|"ip"}: refused sign-ins by
//     the counter that refused them (both, when both are over the limit);
//   - portcullis_issuer_revocations_total{reason="request"|"refresh_reuse"|"code_replay"};
//   - portcullis_issuer_key_rotations_total: new signing keys, the first
//     one included.
//
// It panics when they are already registered with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		issued: f.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_issuer_tokens_issued_total",
			Help: "Token responses of the built-in issuer, by grant type and client.",
		}, []string{"grant", "client_id"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_issuer_token_errors_total",
			Help: "OAuth error codes answered by the built-in issuer, by endpoint, error and client.",
		}, []string{"endpoint", "error", "client_id"}),
		logins: f.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_issuer_logins_total",
			Help: "Username and password checks at the built-in issuer, by result.",
		}, []string{"result"}),
		throttled: f.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_issuer_throttled_total",
			Help: "Sign-in attempts refused by the failure throttle, by the counter over its limit.",
		}, []string{"key"}),
		revocations: f.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_issuer_revocations_total",
			Help: "Token and grant revocations, by cause.",
		}, []string{"reason"}),
		rotations: f.NewCounter(prometheus.CounterOpts{
			Name: "portcullis_issuer_key_rotations_total",
			Help: "Signing keys created by the built-in issuer.",
		}),
	}
	for _, r := range []string{loginSuccess, loginFailure, loginThrottled} {
		m.logins.WithLabelValues(r)
	}
	for _, k := range []string{"user", "ip"} {
		m.throttled.WithLabelValues(k)
	}
	for _, r := range []string{revokeRequest, revokeRefreshReuse, revokeCodeReplay} {
		m.revocations.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) tokenIssued(grant, clientID string) {
	if m != nil {
		m.issued.WithLabelValues(grant, clientID).Inc()
	}
}

func (m *Metrics) tokenError(endpoint, code, clientID string) {
	if m != nil {
		m.errors.WithLabelValues(endpoint, code, clientID).Inc()
	}
}

func (m *Metrics) login(result string, throttledKeys ...string) {
	if m == nil {
		return
	}
	m.logins.WithLabelValues(result).Inc()
	for _, k := range throttledKeys {
		m.throttled.WithLabelValues(k).Inc()
	}
}

func (m *Metrics) revoked(reason string) {
	if m != nil {
		m.revocations.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) rotated() {
	if m != nil {
		m.rotations.Inc()
	}
}

// clientLabel is id when it names a configured client, else "unknown".
func clientLabel(s *state, id string) string {
	if _, ok := s.clients[id]; ok {
		return id
	}
	return unknownClient
}

// knownClientID is the configured client a back-channel request names by
// Basic credentials or client_id, authenticated or not; "" when it names
// none, so that a made-up id never reaches a log or a label.
func knownClientID(r *http.Request, s *state) string {
	id, _, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
	} else {
		id = r.PostForm.Get("client_id")
	}
	if _, known := s.clients[id]; known {
		return id
	}
	return ""
}

// endpointOf names the back-channel endpoint r was sent to, for labels.
func (i *Issuer) endpointOf(r *http.Request) string {
	switch strings.TrimPrefix(r.URL.Path, i.path) {
	case pathToken:
		return "token"
	case pathIntrospect:
		return "introspect"
	case pathRevoke:
		return "revoke"
	}
	return "other"
}

// audit logs an audit event: one record whose "audit" attribute names the
// event, with facts (sub, client_id, grant, reason, ip …) and never a token,
// code, cookie, password or secret.
func (i *Issuer) audit(ctx context.Context, level slog.Level, event, msg string, attrs ...slog.Attr) {
	i.log.LogAttrs(ctx, level, msg, append([]slog.Attr{slog.String("audit", event)}, attrs...)...)
}

// optional is attr when its value is set, else nothing (a zero Attr, which
// slog drops).
func optional(key, value string) slog.Attr {
	if value == "" {
		return slog.Attr{}
	}
	return slog.String(key, value)
}
