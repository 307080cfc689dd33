package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Auth outcomes recorded per request (metrics label "auth", log key "auth").
const (
	outcomeNone            = "none"            // Portcullis's own routes, 404s, bad requests
	outcomeSession         = "session"         // allowed by a session cookie
	outcomeBearer          = "bearer"          // allowed by a bearer token
	outcomePublic          = "public"          // a public path
	outcomeDenied          = "denied"          // signed in, refused by policy (403)
	outcomeUnauthenticated = "unauthenticated" // no valid credentials (302/401)
)

// Metrics holds the front door's Prometheus collectors. Create it once per
// process (a reload builds a new Handler but keeps these); a nil *Metrics
// records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers portcullis_requests_total{upstream,code,auth} and
// portcullis_request_duration_seconds{upstream} with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_requests_total",
			Help: "Requests answered, by upstream (route name, or portcullis/issuer/none), status class and auth outcome.",
		}, []string{"upstream", "code", "auth"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "portcullis_request_duration_seconds",
			Help:    "Time from request to the end of the response, by upstream.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"upstream"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// outcomes lists the auth outcomes in the order series are kept.
var outcomes = [...]string{outcomeNone, outcomeSession, outcomeBearer, outcomePublic, outcomeDenied, outcomeUnauthenticated}

// statusClasses lists the code label values in the order series are kept.
var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// upstreamSeries are one upstream label's series, resolved once when a
// Handler is built, so that a request costs two array lookups and atomic
// adds instead of hashing its label values.
type upstreamSeries struct {
	requests [len(statusClasses)][len(outcomes)]prometheus.Counter
	duration prometheus.Observer
}

// series resolves the series of one upstream label; nil when m is nil.
func (m *Metrics) series(upstream string) *upstreamSeries {
	if m == nil {
		return nil
	}
	s := &upstreamSeries{duration: m.duration.WithLabelValues(upstream)}
	for c, class := range statusClasses {
		for o, outcome := range outcomes {
			s.requests[c][o] = m.requests.WithLabelValues(upstream, class, outcome)
		}
	}
	return s
}

func (s *upstreamSeries) observe(status int, auth string, d time.Duration) {
	if s == nil {
		return
	}
	c := min(max(status/100-1, 0), len(statusClasses)-1)
	o := 0
	for i, name := range outcomes {
		if name == auth {
			o = i
			break
		}
	}
	s.requests[c][o].Inc()
	s.duration.Observe(d.Seconds())
}

// access is what the gate learns about one request, for its access line
// and metrics.
type access struct {
	upstream string
	series   *upstreamSeries // upstream's series; nil without metrics
	auth     string
	user     string
}

// recorder notes the status and size of a response. Unwrap lets
// http.ResponseController (used by ReverseProxy for flushing and for
// websocket upgrades) reach the real writer.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 || (w.status < 200 && code >= 200) {
		if code >= 200 {
			w.oneRequestID() // the final header, after any 1xx
		}
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.oneRequestID()
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// oneRequestID leaves the response one X-Request-Id before its header is
// written. ReverseProxy adds the upstream's response headers to the ones
// the gate set, so an upstream that sends X-Request-Id (many echo the one
// they were given) would make two: the upstream's own then wins, as it is
// the one in the upstream's logs.
func (w *recorder) oneRequestID() {
	h := w.Header()
	if v := h["X-Request-Id"]; len(v) > 1 {
		h["X-Request-Id"] = v[1:]
	}
}

// Flush keeps streaming (SSE) working for code that asserts http.Flusher.
func (w *recorder) Flush() {
	if w.status == 0 {
		w.oneRequestID()
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack keeps websocket upgrades working for code that asserts http.Hijacker.
func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logAccess writes the one access line of a request. It never includes
// query values, cookies, tokens or Authorization.
func (h *Handler) logAccess(r *http.Request, rw *recorder, a *access, reqID string, start time.Time, d time.Duration) {
	ctx := r.Context()
	if !h.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	// The record goes straight to the handler: Logger.LogAttrs would also
	// walk the stack (runtime.Callers) for a source position the access
	// line never shows.
	rec := slog.NewRecord(start.Add(d), slog.LevelInfo, "request", 0)
	rec.AddAttrs(
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.EscapedPath()),
		slog.Int("status", status),
		slog.Int64("bytes", rw.bytes),
		slog.Duration("duration", d),
		slog.String("upstream", a.upstream),
		slog.String("user", a.user),
		slog.String("auth", a.auth),
		slog.String("ip", h.clientIP(r).String()),
		slog.String("request_id", reqID),
	)
	_ = h.log.Handler().Handle(ctx, rec)
}

// requestID keeps a well-formed X-Request-Id from a trusted proxy, else
// makes a new one; it is sent upstream (set on r) and back to the client
// (set on w).
func (h *Handler) requestID(w http.ResponseWriter, r *http.Request) string {
	if v := r.Header.Get("X-Request-Id"); v != "" && len(v) <= 64 && isToken(v) && h.isTrusted(r) {
		w.Header()["X-Request-Id"] = []string{v}
		return v
	}
	// Request ids correlate log lines; they guard nothing, so the
	// runtime's per-thread ChaCha8 generator serves (crypto/rand costs a
	// system call's worth more per request).
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	id := hex.EncodeToString(b[:])
	// One backing array for both headers' values; each gets its own
	// capacity-1 slice, so appending to one never touches the other.
	vals := []string{id, id}
	r.Header["X-Request-Id"] = vals[0:1:1]
	w.Header()["X-Request-Id"] = vals[1:2:2]
	return id
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// clientIP is the address of the client: the peer, or — when the peer is a
// trusted proxy — the right-most X-Forwarded-For address that is not
// itself a trusted proxy (left-most entries are client-controlled).
func (h *Handler) clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	peer := ap.Addr().Unmap()
	if !h.trustedAddr(peer) {
		return peer
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return peer // malformed: believe nothing beyond the peer
			}
			a = a.Unmap()
			if !h.trustedAddr(a) {
				return a
			}
		}
	}
	return peer
}

// withClientAddr gives the built-in issuer the real client address, so that
// its per-IP sign-in throttling counts clients, not the proxy in front.
func (h *Handler) withClientAddr(r *http.Request) *http.Request {
	if !h.isTrusted(r) || r.Header.Get("X-Forwarded-For") == "" {
		return r
	}
	ip := h.clientIP(r)
	if !ip.IsValid() {
		return r
	}
	r2 := r.WithContext(r.Context())
	r2.RemoteAddr = net.JoinHostPort(ip.String(), strconv.Itoa(0))
	return r2
}

func (h *Handler) trustedAddr(a netip.Addr) bool {
	for _, p := range h.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// auditDenied records a policy refusal in the audit trail.
func (h *Handler) auditDenied(ctx context.Context, r *http.Request, rt *route, sub string) {
	h.log.LogAttrs(ctx, slog.LevelInfo, "access denied by route policy",
		slog.String("audit", "access_denied"),
		slog.String("sub", sub),
		slog.String("upstream", rt.name),
		slog.String("path", r.URL.EscapedPath()),
		slog.String("ip", h.clientIP(r).String()),
	)
}
