package proxy

import (
	"encoding/json"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAccessLogAndMetrics(t *testing.T) {
	logs := &authtest.Buffer{}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	e := newEnv(t, func(c *envConfig) {
		c.metrics = m
		c.logger = slog.New(slog.NewJSONHandler(logs, nil))
		c.proxy.Routes[0].Allow.Users = []string{"alice"}
	})
	c := e.browser()
	e.signIn(c, e.base+"/start", "alice", "alice-pw")
	resp, _ := do(t, c, "GET", e.base+"/secret/page?token=hunter2&code=xyz", "application/json", nil)
	reqID := resp.Header.Get("X-Request-Id")
	if len(reqID) != 16 {
		t.Fatalf("X-Request-Id = %q, want 16 hex characters", reqID)
	}
	if got := e.backend.Last(t).Header.Get("X-Request-Id"); got != reqID {
		t.Errorf("upstream X-Request-Id = %q, want %q", got, reqID)
	}
	do(t, e.browser(), "GET", e.base+"/anon", "application/json", nil)
	do(t, e.browser(), "GET", e.base+"/public/p", "application/json", nil)

	for _, tt := range []struct{ upstream, code, auth string }{
		{"app", "2xx", "session"},
		{"app", "4xx", "unauthenticated"},
		{"app", "2xx", "public"},
		{"issuer", "2xx", "none"},
		{"portcullis", "3xx", "none"},
	} {
		if n := testutil.ToFloat64(m.requests.WithLabelValues(tt.upstream, tt.code, tt.auth)); n < 1 {
			t.Errorf("portcullis_requests_total{upstream=%q,code=%q,auth=%q} = %v, want ≥ 1", tt.upstream, tt.code, tt.auth, n)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "portcullis_request_duration_seconds"); err != nil || n == 0 {
		t.Errorf("no latency histogram: %d, %v", n, err)
	}

	out := logs.String()
	var line map[string]any
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, reqID) {
			json.Unmarshal([]byte(l), &line)
		}
	}
	if line == nil {
		t.Fatalf("no access line with request id %s:\n%s", reqID, out)
	}
	want := map[string]any{"msg": "request", "method": "GET", "path": "/secret/page", "status": float64(200), "upstream": "app", "user": "alice", "auth": "session", "ip": "127.0.0.1"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("access line %s = %v, want %v", k, line[k], v)
		}
	}
	for _, secret := range []string{"hunter2", "xyz", "_portcullis=", testClientSecret, "eyJ"} {
		if strings.Contains(out, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}

func TestAuditDenied(t *testing.T) {
	logs := &authtest.Buffer{}
	e := newEnv(t, func(c *envConfig) {
		c.logger = slog.New(slog.NewJSONHandler(logs, nil))
		c.proxy.Routes[0].Allow.Groups = []string{"admins"}
	})
	e.signIn(e.browser(), e.base+"/", "alice", "alice-pw")
	if !strings.Contains(logs.String(), `"audit":"access_denied"`) || !strings.Contains(logs.String(), `"sub":"alice"`) {
		t.Fatalf("no access_denied audit event:\n%s", logs.String())
	}
}

func TestClientIP(t *testing.T) {
	h := &Handler{}
	for _, s := range []string{"10.0.0.0/8", "127.0.0.1/32"} {
		p, _ := parsePrefix(s)
		h.trusted = append(h.trusted, p)
	}
	for _, tt := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"untrusted peer: XFF ignored", "203.0.113.9:1234", []string{"1.2.3.4"}, "203.0.113.9"},
		{"trusted peer, one hop", "10.1.1.1:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"client-supplied left entries ignored", "10.1.1.1:80", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7"},
		{"trusted hops skipped", "127.0.0.1:80", []string{"198.51.100.7, 10.2.2.2"}, "198.51.100.7"},
		{"several headers", "10.1.1.1:80", []string{"6.6.6.6", "198.51.100.7, 10.9.9.9"}, "198.51.100.7"},
		{"malformed entry stops at the peer", "10.1.1.1:80", []string{"nonsense"}, "10.1.1.1"},
		{"no XFF", "10.1.1.1:80", nil, "10.1.1.1"},
		{"ipv6 peer", "[2001:db8::1]:443", nil, "2001:db8::1"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tt.remote
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := h.clientIP(r); got != netip.MustParseAddr(tt.want) {
			t.Errorf("%s: clientIP = %v, want %s", tt.name, got, tt.want)
		}
	}
}

// The recorder must not hide Flush/Hijack from ReverseProxy.
func TestRecorderUnwraps(t *testing.T) {
	rr := httptest.NewRecorder()
	w := &recorder{ResponseWriter: rr}
	if err := http.NewResponseController(w).Flush(); err != nil {
		t.Fatalf("Flush through recorder: %v", err)
	}
	if !rr.Flushed {
		t.Fatal("recorder did not flush the underlying writer")
	}
}

// TestFixedJSONAnswers pins the pre-encoded answers to what encoding/json
// makes of the same values, so clients see no difference.
func TestFixedJSONAnswers(t *testing.T) {
	for _, tt := range []struct {
		body string
		v    map[string]string
	}{
		{unauthenticatedJSON, map[string]string{"error": "unauthenticated"}},
		{invalidTokenJSON, map[string]string{"error": "invalid_token", "error_description": "the bearer token is not valid here"}},
	} {
		rec := httptest.NewRecorder()
		writeJSON(rec, 401, tt.v)
		if rec.Body.String() != tt.body {
			t.Errorf("pre-encoded body = %q, want json's %q", tt.body, rec.Body.String())
		}
	}
}

// An upstream that answers with its own X-Request-Id (many echo the one
// they were sent) must not make the client see two.
func TestRequestIDFromUpstream(t *testing.T) {
	e := newEnv(t, nil)
	for _, tt := range []struct {
		name   string
		answer func(sent string) []string // the upstream's X-Request-Id values
		want   func(sent string) []string // what the client gets
	}{
		{"none", func(string) []string { return nil }, func(s string) []string { return []string{s} }},
		{"echoed", func(s string) []string { return []string{s} }, func(s string) []string { return []string{s} }},
		{"its own", func(string) []string { return []string{"app-7"} }, func(string) []string { return []string{"app-7"} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.backend.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if v := tt.answer(r.Header.Get("X-Request-Id")); v != nil {
					w.Header()["X-Request-Id"] = v
				}
				_, _ = w.Write([]byte("ok"))
			}))
			resp, _ := do(t, e.browser(), "GET", e.base+"/public/p", "application/json", nil)
			sent := e.backend.Last(t).Header.Get("X-Request-Id")
			if len(sent) != 16 {
				t.Fatalf("upstream X-Request-Id = %q, want 16 hex characters", sent)
			}
			got, want := resp.Header.Values("X-Request-Id"), tt.want(sent)
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("client X-Request-Id = %q, want %q", got, want)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	h := &Handler{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tt := range []struct {
		name, peer, sent string
		kept             bool
	}{
		{"none sent", "192.0.2.1:1000", "", false},
		{"untrusted peer", "192.0.2.1:1000", "abc-123", false},
		{"trusted peer", "10.1.2.3:1000", "abc-123", true},
		{"trusted peer, malformed", "10.1.2.3:1000", "abc 123", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.peer
			if tt.sent != "" {
				r.Header.Set("X-Request-Id", tt.sent)
			}
			w := httptest.NewRecorder()
			id := h.requestID(w, r)
			if tt.kept && id != tt.sent {
				t.Errorf("id = %q, want the trusted proxy's %q", id, tt.sent)
			}
			if !tt.kept && (len(id) != 16 || id == tt.sent) {
				t.Errorf("id = %q, want 16 new hex characters", id)
			}
			if got := r.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != id {
				t.Errorf("upstream X-Request-Id = %q, want [%s]", got, id)
			}
			if got := w.Header().Values("X-Request-Id"); len(got) != 1 || got[0] != id {
				t.Errorf("response X-Request-Id = %q, want [%s]", got, id)
			}
			// The two headers share nothing a later change could leak through.
			w.Header().Add("X-Request-Id", "other")
			if got := r.Header.Values("X-Request-Id"); len(got) != 1 {
				t.Errorf("adding to the response header changed the request's: %q", got)
			}
		})
	}
}
