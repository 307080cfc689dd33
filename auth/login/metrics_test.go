package login

import (
	"errors"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/session"
)

func TestMetricsAndAudit(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	logs := &authtest.Buffer{}
	e := newEnv(t, func(_ *Config, o *Options) {
		o.Metrics = m
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	signIns := func(result, reason string) float64 {
		return testutil.ToFloat64(m.signIns.WithLabelValues(result, reason))
	}
	refreshes := func(result string) float64 { return testutil.ToFloat64(m.refreshes.WithLabelValues(result)) }

	// Every series is there before anything happens.
	if n, err := testutil.GatherAndCount(reg, "portcullis_sign_ins_total"); err != nil || n != 13 {
		t.Errorf("portcullis_sign_ins_total series = %d, %v; want 13 (success + 12 reasons)", n, err)
	}

	// A sign-in, then a callback with a forged state.
	b, d := e.signIn()
	cb, _ := url.Parse(e.start(newBrowser(t), "/dest/"))
	code := cb.Query().Get("code")
	id, _ := stateID(cb.Query().Get("state"))
	setQuery(cb, "state", id+".AAAAAAAAAAAAAAAAAAAAAAAAAA")
	if resp, _ := b.get(cb.String()); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged state callback = %d, want 400", resp.StatusCode)
	}
	if got := signIns("success", reasonNone); got != 1 {
		t.Errorf("sign_ins{success} = %v, want 1", got)
	}
	if got := signIns("failure", reasonState); got != 1 {
		t.Errorf("sign_ins{failure,state} = %v, want 1", got)
	}

	// Refreshes: one that works, one answered from it, one the issuer
	// refuses, one with the issuer down.
	fresh, err := e.client.Refresh(t.Context(), d)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if _, err := e.client.Refresh(t.Context(), d); err != nil {
		t.Fatalf("Refresh within the grace window: %v", err)
	}
	dead := *d
	dead.RefreshToken = "rt-not-known-to-the-op"
	if _, err := e.client.Refresh(t.Context(), &dead); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("Refresh with an unknown token = %v, want ErrUnauthenticated", err)
	}
	e.op.set(func(op *testOP) { op.tokenDown = true })
	if _, err := e.client.Refresh(t.Context(), fresh); err == nil || errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("Refresh with the issuer down = %v, want a temporary error", err)
	}
	for _, tt := range []struct {
		result string
		want   float64
	}{{refreshSuccess, 1}, {refreshShared, 1}, {refreshRefused, 1}, {refreshError, 1}} {
		if got := refreshes(tt.result); got != tt.want {
			t.Errorf("token_refreshes{%s} = %v, want %v", tt.result, got, tt.want)
		}
	}

	// Sign-out.
	if resp, _ := b.get(e.front.URL + PathSignOut); resp.StatusCode != http.StatusFound {
		t.Fatalf("sign-out = %d, want 302", resp.StatusCode)
	}
	if got := testutil.ToFloat64(m.signOuts); got != 1 {
		t.Errorf("sign_outs = %v, want 1", got)
	}

	out := logs.String()
	evs := authtest.AuditEvents(t, out)
	in := authtest.FindAudit(t, evs, "sign_in")
	if in["sub"] != "user-123" || in["ip"] != "127.0.0.1" || in["level"] != "INFO" {
		t.Errorf("sign_in event = %v, want sub user-123, ip 127.0.0.1, level INFO", in)
	}
	failed := authtest.FindAudit(t, evs, "sign_in_failed")
	if failed["reason"] != reasonState || failed["ip"] != "127.0.0.1" || failed["level"] != "WARN" {
		t.Errorf("sign_in_failed event = %v, want reason state, ip, level WARN", failed)
	}
	refused := authtest.FindAudit(t, evs, "refresh_refused")
	if refused["reason"] != refuseIssuer || refused["sub"] != "user-123" || refused["error"] != "invalid_grant" || refused["level"] != "WARN" {
		t.Errorf("refresh_refused event = %v, want reason issuer_refused, sub user-123, error invalid_grant, level WARN", refused)
	}
	outEv := authtest.FindAudit(t, evs, "sign_out")
	if outEv["sub"] != "user-123" || outEv["ip"] != "127.0.0.1" {
		t.Errorf("sign_out event = %v, want sub user-123 and ip", outEv)
	}

	secrets := []string{code, d.IDToken, d.AccessToken, d.RefreshToken, fresh.AccessToken, fresh.RefreshToken, fresh.IDToken,
		dead.RefreshToken, testClientSecret}
	for _, ck := range b.jar.Cookies(e.public) {
		secrets = append(secrets, ck.Value)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("logs contain a secret value %.12q…:\n%s", s, out)
		}
	}
}

// TestRefreshRefusedReasons: each way a refresh is refused is named in the
// audit event, and counted once.
func TestRefreshRefusedReasons(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env, d *session.Data)
		want  string
	}{
		{"no refresh token", func(_ *env, d *session.Data) { d.RefreshToken = "" }, refuseNoRefreshToken},
		{"other subject", func(e *env, _ *session.Data) {
			e.op.set(func(op *testOP) { op.mutateID = func(c map[string]any) { c["sub"] = "mallory" } })
		}, refuseSubject},
		{"bad signature", func(e *env, _ *session.Data) { e.op.set(func(op *testOP) { op.sign = signWrongKey }) }, refuseIDToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			logs := &authtest.Buffer{}
			e := newEnv(t, func(_ *Config, o *Options) {
				o.Metrics = m
				o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
			})
			_, d := e.signIn()
			tt.setup(e, d)
			if _, err := e.client.Refresh(t.Context(), d); !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("Refresh = %v, want ErrUnauthenticated", err)
			}
			if got := testutil.ToFloat64(m.refreshes.WithLabelValues(refreshRefused)); got != 1 {
				t.Errorf("token_refreshes{refused} = %v, want 1", got)
			}
			if ev := authtest.FindAudit(t, authtest.AuditEvents(t, logs.String()), "refresh_refused"); ev["reason"] != tt.want {
				t.Errorf("refresh_refused reason = %v, want %s", ev["reason"], tt.want)
			}
		})
	}
}

func TestMetricsNil(t *testing.T) {
	var m *Metrics
	m.signIn(reasonNone)
	m.signOut()
	m.refresh(refreshSuccess)
}
