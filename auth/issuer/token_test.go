package issuer

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// codeFor runs the browser flow for client app and returns a fresh code
// and its verifier.
func (e *env) codeFor(scopes ...string) (code, verifier string) {
	oc := e.oauth2Config("app", appSecret, appRedirect, scopes...)
	verifier = oauth2.GenerateVerifier()
	return e.authorizeCode(e.browser(), oc, verifier, "alice"), verifier
}

func codeForm(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appRedirect}, "code_verifier": {verifier}}
}

func TestCodeGrantErrors(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name       string
		id, secret string
		edit       func(f url.Values)
		status     int
		want       string
	}{
		{"wrong verifier", "app", appSecret, func(f url.Values) { f.Set("code_verifier", oauth2.GenerateVerifier()) }, 400, errInvalidGrant},
		{"missing verifier", "app", appSecret, func(f url.Values) { f.Del("code_verifier") }, 400, errInvalidRequest},
		{"short verifier", "app", appSecret, func(f url.Values) { f.Set("code_verifier", "abc") }, 400, errInvalidRequest},
		{"wrong redirect_uri", "app", appSecret, func(f url.Values) { f.Set("redirect_uri", "https://app.example.com/other") }, 400, errInvalidGrant},
		{"other client", "other", otherSecret, func(url.Values) {}, 400, errInvalidGrant},
		{"wrong secret", "app", "x" + appSecret, func(url.Values) {}, 401, errInvalidClient},
		{"unknown client", "ghost", appSecret, func(url.Values) {}, 401, errInvalidClient},
		{"no client auth", "", "", func(url.Values) {}, 401, errInvalidClient},
		{"unknown code", "app", appSecret, func(f url.Values) { f.Set("code", "nope") }, 400, errInvalidGrant},
		{"unsupported grant", "app", appSecret, func(f url.Values) { f.Set("grant_type", "urn:x") }, 400, errUnsupportedGrantType},
		{"disallowed grant", "app", appSecret, func(f url.Values) { f.Set("grant_type", "client_credentials") }, 400, errUnauthorizedClient},
	}
	code, verifier := e.codeFor("openid")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := codeForm(code, verifier)
			tt.edit(f)
			res, body := e.postForm(pathToken, tt.id, tt.secret, f)
			wantOAuthError(t, res, body, tt.status, tt.want)
			if tt.status == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("WWW-Authenticate = %q, want Basic", res.Header.Get("WWW-Authenticate"))
			}
			if res.Header.Get("Pragma") != "no-cache" {
				t.Errorf("Pragma = %q, want no-cache", res.Header.Get("Pragma"))
			}
		})
	}
	// None of the failures above burnt the code.
	res, body := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
	if res.StatusCode != 200 || body["access_token"] == nil || body["id_token"] == nil {
		t.Fatalf("redeem after failures: %d %v", res.StatusCode, body)
	}

	t.Run("client_secret_post", func(t *testing.T) {
		code, verifier := e.codeFor("openid")
		f := codeForm(code, verifier)
		f.Set("client_id", "app")
		f.Set("client_secret", appSecret)
		if res, body := e.postForm(pathToken, "", "", f); res.StatusCode != 200 {
			t.Fatalf("client_secret_post: %d %v", res.StatusCode, body)
		}
	})
	t.Run("GET refused", func(t *testing.T) {
		res, err := e.srv.Client().Get(e.srv.URL + pathToken + "?grant_type=client_credentials")
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET /token = %d, want 405", res.StatusCode)
		}
		res.Body.Close()
	})
}

// TestCodeReplay: a second redemption fails and revokes what the first issued.
func TestCodeReplay(t *testing.T) {
	e := newEnv(t, nil)
	code, verifier := e.codeFor("openid", "offline_access")
	res, first := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
	if res.StatusCode != 200 {
		t.Fatalf("first redemption: %d %v", res.StatusCode, first)
	}
	at, rt := first["access_token"].(string), first["refresh_token"].(string)
	if !e.active(at) || !e.active(rt) {
		t.Fatal("tokens of the first redemption inactive before the replay")
	}
	res, body := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
	wantOAuthError(t, res, body, 400, errInvalidGrant)
	if e.active(at) {
		t.Error("access token still active after the code was replayed")
	}
	if e.active(rt) {
		t.Error("refresh token still active after the code was replayed")
	}
	if _, err := e.iss.VerifyAccessToken(t.Context(), at); err == nil {
		t.Error("VerifyAccessToken accepts a token revoked by code replay")
	}
}

func TestRefresh(t *testing.T) {
	e := newEnv(t, nil)
	code, verifier := e.codeFor("openid", "email", "offline_access")
	_, tok := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
	rt1, _ := tok["refresh_token"].(string)
	if rt1 == "" {
		t.Fatalf("no refresh token: %v", tok)
	}
	refresh := func(id, secret, rt, scope string) (*http.Response, map[string]any) {
		f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		if scope != "" {
			f.Set("scope", scope)
		}
		return e.postForm(pathToken, id, secret, f)
	}

	res, body := refresh("other", otherSecret, rt1, "")
	wantOAuthError(t, res, body, 400, errInvalidGrant)
	res, body = refresh("app", appSecret, rt1, "openid email groups")
	wantOAuthError(t, res, body, 400, errInvalidScope)

	res, body = refresh("app", appSecret, rt1, "openid")
	if res.StatusCode != 200 || body["scope"] != "openid" || body["id_token"] == nil {
		t.Fatalf("narrowing refresh: %d %v", res.StatusCode, body)
	}
	rt2 := body["refresh_token"].(string)
	at2 := body["access_token"].(string)
	if rt2 == rt1 {
		t.Fatal("refresh token not rotated")
	}
	// The narrowed exchange did not shrink the grant: email is still there.
	res, body = refresh("app", appSecret, rt2, "openid email")
	if res.StatusCode != 200 {
		t.Fatalf("second refresh: %d %v", res.StatusCode, body)
	}
	rt3 := body["refresh_token"].(string)

	// Presenting rotated-out rt1 again revokes the family, rt3 included.
	res, body = refresh("app", appSecret, rt1, "")
	wantOAuthError(t, res, body, 400, errInvalidGrant)
	res, body = refresh("app", appSecret, rt3, "")
	wantOAuthError(t, res, body, 400, errInvalidGrant)
	if e.active(at2) {
		t.Error("access token of a revoked family still active")
	}

	t.Run("needs offline_access", func(t *testing.T) {
		code, verifier := e.codeFor("openid")
		_, tok := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
		if tok["refresh_token"] != nil {
			t.Errorf("refresh token issued without offline_access: %v", tok)
		}
	})
	t.Run("expired", func(t *testing.T) {
		code, verifier := e.codeFor("openid", "offline_access")
		_, tok := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
		e.clock.Advance(defaultRefreshTTL + 1)
		res, body := refresh("app", appSecret, tok["refresh_token"].(string), "")
		wantOAuthError(t, res, body, 400, errInvalidGrant)
	})
}

func TestClientCredentials(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxWith(t.Context(), e.srv.Client())
	cfg := &clientcredentials.Config{ClientID: "other", ClientSecret: otherSecret, TokenURL: e.srv.URL + pathToken, Scopes: []string{"api.read"}}
	tok, err := cfg.Token(ctx)
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	if tok.RefreshToken != "" || tok.Extra("id_token") != nil {
		t.Errorf("client_credentials issued a refresh or ID token")
	}
	at, err := e.iss.VerifyAccessToken(t.Context(), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if at.Subject != "other" || at.ClientID != "other" || strings.Join(at.Scopes, " ") != "api.read" {
		t.Errorf("token = %+v, want sub=client id, scope api.read", at)
	}
	res, body := e.postForm(pathToken, "other", otherSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}})
	wantOAuthError(t, res, body, 400, errInvalidScope)
	res, body = e.postForm(pathToken, "", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {"native"}})
	wantOAuthError(t, res, body, 400, errUnauthorizedClient)
}

func TestIntrospectRevoke(t *testing.T) {
	e := newEnv(t, nil)
	code, verifier := e.codeFor("openid", "offline_access")
	_, tok := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
	at, rt, idt := tok["access_token"].(string), tok["refresh_token"].(string), tok["id_token"].(string)

	res, body := e.postForm(pathIntrospect, "", "", url.Values{"token": {at}})
	wantOAuthError(t, res, body, 401, errInvalidClient)
	res, body = e.postForm(pathIntrospect, "", "", url.Values{"token": {at}, "client_id": {"native"}})
	wantOAuthError(t, res, body, 401, errInvalidClient)

	res, body = e.postForm(pathIntrospect, "other", otherSecret, url.Values{"token": {at}})
	if res.StatusCode != 200 || body["active"] != true || body["sub"] != "alice" || body["client_id"] != "app" || body["scope"] != "openid offline_access" {
		t.Errorf("introspect(access) = %d %v", res.StatusCode, body)
	}
	if e.active(idt) {
		t.Error("an ID token introspects as active")
	}
	if e.active("garbage") {
		t.Error("garbage introspects as active")
	}

	// Revocation: unknown → 200; access token by jti; refresh by family.
	for _, tok := range []string{"unknown", "a.b.c"} {
		if res, body := e.postForm(pathRevoke, "app", appSecret, url.Values{"token": {tok}}); res.StatusCode != 200 {
			t.Errorf("revoke(%q) = %d %v, want 200", tok, res.StatusCode, body)
		}
	}
	if res, _ := e.postForm(pathRevoke, "other", otherSecret, url.Values{"token": {at}}); res.StatusCode != 200 || !e.active(at) {
		t.Error("another client revoked app's access token")
	}
	e.postForm(pathRevoke, "app", appSecret, url.Values{"token": {at}, "token_type_hint": {"access_token"}})
	if e.active(at) {
		t.Error("access token active after revocation")
	}
	if !e.active(rt) {
		t.Error("revoking the access token revoked the refresh token")
	}
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	_, body = e.postForm(pathToken, "app", appSecret, f)
	at2 := body["access_token"].(string)
	rt2 := body["refresh_token"].(string)
	e.postForm(pathRevoke, "app", appSecret, url.Values{"token": {rt2}})
	if e.active(rt2) || e.active(at2) {
		t.Error("refresh family (or its access token) active after revoking the refresh token")
	}
}

// TestCodeRedeemRace: of concurrent redemptions of one code exactly one
// succeeds.
func TestCodeRedeemRace(t *testing.T) {
	e := newEnv(t, nil)
	code, verifier := e.codeFor("openid")
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+pathToken, strings.NewReader(codeForm(code, verifier).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("app", appSecret)
			res, err := e.srv.Client().Do(req)
			if err != nil {
				codes <- 0
				return
			}
			res.Body.Close()
			codes <- res.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		if c == 200 {
			ok++
		} else if c != 400 {
			t.Errorf("concurrent redemption status %d, want 200 or 400", c)
		}
	}
	if ok != 1 {
		t.Errorf("%d concurrent redemptions succeeded, want exactly 1", ok)
	}
}
