package issuer

import (
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/oauth2"
)

// TestMetricsAndAudit drives sign-ins, every grant's success and the main
// refusals through a real server, and checks counters and audit events.
func TestMetricsAndAudit(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var logs authtest.Buffer
	cfg := testConfig()
	cfg.Clients = append(cfg.Clients, ClientConfig{ID: "cli", Secret: appSecret, Grants: []string{GrantPassword}})
	clk := authtest.NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	st := store.NewMemory(store.Options{Now: clk.Now})
	t.Cleanup(func() { st.Close() })
	e := newEnvOpts(t, cfg, st, clk, Options{
		Metrics: m,
		Logger:  slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	var secrets []string
	keep := func(vs ...any) {
		for _, v := range vs {
			if s, ok := v.(string); ok && s != "" {
				secrets = append(secrets, s)
			}
		}
	}
	keep(appSecret, otherSecret, testPassword)

	// Sign in through the form and redeem the code twice (a replay).
	b := e.browser()
	oc := e.oauth2Config("app", appSecret, appRedirect, "openid", "offline_access")
	v1 := oauth2.GenerateVerifier()
	code1 := e.authorizeCode(b, oc, v1, "alice")
	res, tok1 := e.postForm(pathToken, "app", appSecret, codeForm(code1, v1))
	if res.StatusCode != http.StatusOK {
		t.Fatalf("code grant: %d %v", res.StatusCode, tok1)
	}
	res, body := e.postForm(pathToken, "app", appSecret, codeForm(code1, v1))
	wantOAuthError(t, res, body, http.StatusBadRequest, errInvalidGrant)
	keep(code1, v1, tok1["access_token"], tok1["refresh_token"], tok1["id_token"])

	// A second code (the browser is signed in), a refresh, and the
	// rotated-out refresh token presented again.
	v2 := oauth2.GenerateVerifier()
	code2 := e.authorizeCode(b, oc, v2, "alice")
	_, tok2 := e.postForm(pathToken, "app", appSecret, codeForm(code2, v2))
	rt2, _ := tok2["refresh_token"].(string)
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}}
	if res, tok3 := e.postForm(pathToken, "app", appSecret, refresh); res.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %v", res.StatusCode, tok3)
	} else {
		keep(tok3["access_token"], tok3["refresh_token"], tok3["id_token"])
	}
	res, body = e.postForm(pathToken, "app", appSecret, refresh)
	wantOAuthError(t, res, body, http.StatusBadRequest, errInvalidGrant)
	keep(code2, v2, tok2["access_token"], rt2, tok2["id_token"])

	// A wrong password on the form, then bob throttled at the password grant.
	lb := e.browser()
	lres, lbody := e.startLogin(lb)
	submitLogin(t, lb, lres, lbody, "alice", "wrong-password-1")
	keep("wrong-password-1")
	password := func(pass string) (*http.Response, map[string]any) {
		return e.postForm(pathToken, "cli", appSecret, url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {pass}})
	}
	for range userFailures {
		res, body := password("wrong-password-2")
		wantOAuthError(t, res, body, http.StatusBadRequest, errInvalidGrant)
	}
	keep("wrong-password-2")
	res, body = password(testPassword)
	wantOAuthError(t, res, body, http.StatusTooManyRequests, errInvalidGrant)

	// prompt=none without a session, and a client nobody configured.
	res, _ = get(t, e.browser(), oc.AuthCodeURL("st-2", oauth2.S256ChallengeOption(v1), oauth2.SetAuthURLParam("prompt", "none")))
	if p := redirectParams(t, res, appRedirect); p.Get("error") != errLoginRequired {
		t.Fatalf("prompt=none = %v, want login_required", p)
	}
	res, body = e.postForm(pathToken, "ghost-client", "ghost-secret", url.Values{"grant_type": {"client_credentials"}})
	wantOAuthError(t, res, body, http.StatusUnauthorized, errInvalidClient)
	keep("ghost-secret")

	// client_credentials, then its revocation.
	cc := url.Values{"grant_type": {"client_credentials"}}
	_, ccTok := e.postForm(pathToken, "other", otherSecret, cc)
	at, _ := ccTok["access_token"].(string)
	keep(at)
	if res, _ := e.postForm(pathRevoke, "other", otherSecret, url.Values{"token": {at}}); res.StatusCode != http.StatusOK {
		t.Fatalf("revoke = %d", res.StatusCode)
	}

	// Sign-out at the issuer ends alice's login session.
	for _, ck := range b.Jar.Cookies(&url.URL{Scheme: "http", Host: e.srv.Listener.Addr().String(), Path: "/"}) {
		keep(ck.Value)
	}
	if res, _ := get(t, b, e.srv.URL+pathEndSession); res.StatusCode != http.StatusOK {
		t.Fatalf("end_session = %d", res.StatusCode)
	}

	// Key rotation is due after rotate_every.
	e.clock.Advance(KeysConfig{}.withDefaults().RotateEvery + time.Minute)
	_, ccTok = e.postForm(pathToken, "other", otherSecret, cc)
	keep(ccTok["access_token"])
	newKid := kidOf(t, ccTok["access_token"].(string))

	counters := []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"issued{authorization_code,app}", m.issued.WithLabelValues(GrantAuthorizationCode, "app"), 2},
		{"issued{refresh_token,app}", m.issued.WithLabelValues(GrantRefreshToken, "app"), 1},
		{"issued{client_credentials,other}", m.issued.WithLabelValues(GrantClientCredentials, "other"), 2},
		{"errors{token,invalid_grant,app}", m.errors.WithLabelValues("token", errInvalidGrant, "app"), 2},
		{"errors{token,invalid_grant,cli}", m.errors.WithLabelValues("token", errInvalidGrant, "cli"), float64(userFailures + 1)},
		{"errors{token,invalid_client,unknown}", m.errors.WithLabelValues("token", errInvalidClient, unknownClient), 1},
		{"errors{authorize,login_required,app}", m.errors.WithLabelValues("authorize", errLoginRequired, "app"), 1},
		{"logins{success}", m.logins.WithLabelValues(loginSuccess), 1},
		{"logins{failure}", m.logins.WithLabelValues(loginFailure), float64(1 + userFailures)},
		{"logins{throttled}", m.logins.WithLabelValues(loginThrottled), 1},
		{"throttled{user}", m.throttled.WithLabelValues("user"), 1},
		{"throttled{ip}", m.throttled.WithLabelValues("ip"), 0},
		{"revocations{request}", m.revocations.WithLabelValues(revokeRequest), 1},
		{"revocations{refresh_reuse}", m.revocations.WithLabelValues(revokeRefreshReuse), 1},
		{"revocations{code_replay}", m.revocations.WithLabelValues(revokeCodeReplay), 1},
		{"key_rotations", m.rotations, 1},
	}
	for _, c := range counters {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "portcullis_issuer_tokens_issued_total", "portcullis_issuer_key_rotations_total"); err != nil || n != 4 {
		t.Errorf("gathered %d series, %v; want 4", n, err)
	}

	out := logs.String()
	evs := authtest.AuditEvents(t, out)
	ip := "127.0.0.1"
	authtest.WantAudit(t, evs, "login", map[string]any{"sub": "alice", "client_id": "app", "ip": ip, "level": "INFO"})
	authtest.WantAudit(t, evs, "token_granted", map[string]any{"grant": GrantAuthorizationCode, "client_id": "app", "sub": "alice", "ip": ip})
	authtest.WantAudit(t, evs, "token_granted", map[string]any{"grant": GrantClientCredentials, "client_id": "other", "sub": "other"})
	authtest.WantAudit(t, evs, "code_replay_detected", map[string]any{"client_id": "app", "sub": "alice", "ip": ip, "level": "WARN"})
	authtest.WantAudit(t, evs, "refresh_reuse_detected", map[string]any{"client_id": "app", "sub": "alice", "ip": ip, "level": "WARN"})
	authtest.WantAudit(t, evs, "token_refused", map[string]any{"error": errInvalidGrant, "client_id": "app", "grant": GrantRefreshToken, "level": "WARN"})
	authtest.WantAudit(t, evs, "login_failed", map[string]any{"username": "alice", "reason": "bad_credentials", "client_id": "app", "ip": ip, "level": "WARN"})
	authtest.WantAudit(t, evs, "login_throttled", map[string]any{"username": "bob", "reason": "user", "client_id": "cli", "ip": ip})
	authtest.WantAudit(t, evs, "token_revoked", map[string]any{"client_id": "other", "sub": "other", "token_type": "access_token", "ip": ip})
	authtest.WantAudit(t, evs, "login_session_ended", map[string]any{"sub": "alice", "ip": ip})
	authtest.WantAudit(t, evs, "key_rotated", map[string]any{"kid": newKid})
	for _, ev := range evs {
		if ev["audit"] == "token_refused" && ev["error"] == errInvalidClient {
			if _, ok := ev["client_id"]; ok {
				t.Errorf("token_refused for an unknown client names one: %v", ev)
			}
		}
	}
	if strings.Contains(out, "ghost-client") {
		t.Errorf("a client id nobody configured reached the log:\n%s", out)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("logs contain a secret value %.12q…", s)
		}
	}
}

func TestMetricsNil(t *testing.T) {
	var m *Metrics
	m.tokenIssued(GrantImplicit, "x")
	m.tokenError("token", errInvalidGrant, "x")
	m.login(loginThrottled, "user")
	m.revoked(revokeRequest)
	m.rotated()
}
