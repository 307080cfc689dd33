package issuer

import (
	"bytes"
	"encoding/json"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

func kidOf(t *testing.T, raw string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Protected.KeyID
}

func (e *env) jwksKids() []string {
	e.t.Helper()
	res, err := e.srv.Client().Get(e.srv.URL + pathKeys)
	if err != nil {
		e.t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(readBody(e.t, res)), &set); err != nil {
		e.t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		if !k.IsPublic() {
			e.t.Fatalf("JWKS publishes a private key %q", k.KeyID)
		}
		kids = append(kids, k.KeyID)
	}
	return kids
}

func (e *env) clientToken() string {
	e.t.Helper()
	res, body := e.postForm(pathToken, "other", otherSecret, url.Values{"grant_type": {"client_credentials"}})
	if res.StatusCode != 200 {
		e.t.Fatalf("client_credentials: %d %v", res.StatusCode, body)
	}
	return body["access_token"].(string)
}

// TestKeyRotation: a new key signs after rotate_every; the old one stays
// in the JWKS until every token it signed has expired.
func TestKeyRotation(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Keys = KeysConfig{Algorithm: alg, RotateEvery: 24 * time.Hour} })
			ctx := ctxWith(t.Context(), e.srv.Client())
			e.clock.Advance(24*time.Hour - time.Second)
			old := e.clientToken()
			e.clock.Advance(2 * time.Second)
			cur := e.clientToken()
			k1, k2 := kidOf(t, old), kidOf(t, cur)
			if k1 == k2 {
				t.Fatalf("kid %q still signs after rotate_every", k1)
			}
			if kids := e.jwksKids(); !slices.Contains(kids, k1) || !slices.Contains(kids, k2) {
				t.Fatalf("JWKS kids = %v, want both %s and %s", kids, k1, k2)
			}
			ks := oidc.NewRemoteKeySet(ctx, e.srv.URL+pathKeys)
			for _, tok := range []string{old, cur} {
				if _, err := ks.VerifySignature(ctx, tok); err != nil {
					t.Errorf("go-oidc RemoteKeySet.VerifySignature: %v", err)
				}
				if _, err := e.iss.VerifyAccessToken(t.Context(), tok); err != nil {
					t.Errorf("VerifyAccessToken: %v", err)
				}
			}
			// ID tokens live 1h: the old key must outlast them.
			e.clock.Advance(defaultIDTTL)
			if kids := e.jwksKids(); !slices.Contains(kids, k1) {
				t.Errorf("old key left the JWKS while its ID tokens may be live: %v", kids)
			}
			e.clock.Advance(keyRetireSlack + time.Second)
			if kids := e.jwksKids(); slices.Contains(kids, k1) || !slices.Contains(kids, k2) {
				t.Errorf("JWKS kids = %v after the old key's tokens expired, want only %s", kids, k2)
			}
			keys, err := e.st.ListKeys(t.Context())
			if err != nil || len(keys) != 1 {
				t.Errorf("stored keys = %d (%v), want the expired one deleted", len(keys), err)
			}
		})
	}
}

// TestRestart: with a persistent store, keys and refresh tokens survive New.
func TestRestart(t *testing.T) {
	clk := authtest.NewClock(time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC))
	path := filepath.Join(t.TempDir(), "issuer.db")
	st1, err := store.OpenBolt(path, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, testConfig(), st1, clk)
	code, verifier := e.codeFor("openid", "offline_access")
	_, tok := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	if err := st1.Close(); err != nil {
		t.Fatal(err)
	}

	st2, err := store.OpenBolt(path, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	pub, _ := url.Parse("https://portcullis.example.com")
	iss2, err := New(t.Context(), e.cfg, Options{PublicURL: pub, Store: st2, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer iss2.Close()
	if _, err := iss2.VerifyAccessToken(t.Context(), at); err != nil {
		t.Errorf("access token after restart: %v", err)
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	req := httptest.NewRequest(http.MethodPost, e.srv.URL+pathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("app", appSecret)
	rec := httptest.NewRecorder()
	iss2.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("refresh after restart: %d %s", rec.Code, rec.Body)
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if kidOf(t, out["access_token"].(string)) != kidOf(t, at) {
		t.Error("a new key was generated on restart instead of loading the stored one")
	}
}

// BenchmarkTokenClientCredentials measures the token endpoint in process.
func BenchmarkTokenClientCredentials(b *testing.B) {
	clk := authtest.NewClock(time.Now())
	st := store.NewMemory(store.Options{})
	defer st.Close()
	cfg := testConfig()
	cfg.URL = "https://portcullis.example.com/oauth2/issuer"
	k := testKeys()["RS256"]
	k.CreatedAt = clk.Now()
	if err := st.PutKey(b.Context(), k); err != nil {
		b.Fatal(err)
	}
	pub, _ := url.Parse("https://portcullis.example.com")
	iss, err := New(b.Context(), cfg, Options{PublicURL: pub, Store: st, Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	h := iss.Handler()
	body := []byte(url.Values{"grant_type": {"client_credentials"}, "scope": {"api.read"}}.Encode())
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, cfg.URL+pathToken, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("other", otherSecret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
