package issuer

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/portcullis-proxy/portcullis/auth"
	"golang.org/x/oauth2"
)

// TestCodeFlow drives the browser sign-in end to end with go-oidc and
// x/oauth2 as the relying party, under both signing algorithms.
func TestCodeFlow(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Keys.Algorithm = alg })
			ctx := ctxWith(t.Context(), e.srv.Client())
			p := e.provider()
			oc := e.oauth2Config("app", appSecret, appRedirect, oidc.ScopeOpenID, "email", "profile", "groups", oidc.ScopeOfflineAccess)
			oc.Endpoint = p.Endpoint()
			b := e.browser()

			verifier := oauth2.GenerateVerifier()
			code := e.authorizeCode(b, oc, verifier, "alice", oidc.Nonce("n-1"))
			tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			rawID, _ := tok.Extra("id_token").(string)
			idt, err := p.Verifier(&oidc.Config{ClientID: "app", Now: e.clock.Now}).Verify(ctx, rawID)
			if err != nil {
				t.Fatalf("Verify(id_token): %v", err)
			}
			if idt.Nonce != "n-1" || idt.Subject != "alice" {
				t.Errorf("id token nonce, sub = %q, %q, want n-1, alice", idt.Nonce, idt.Subject)
			}
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Errorf("at_hash: %v", err)
			}
			var claims struct {
				Email         string   `json:"email"`
				EmailVerified bool     `json:"email_verified"`
				Groups        []string `json:"groups"`
				Preferred     string   `json:"preferred_username"`
				Name          string   `json:"name"`
				AuthTime      int64    `json:"auth_time"`
			}
			if err := idt.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			if claims.Email != "alice@example.com" || !claims.EmailVerified || !slices.Equal(claims.Groups, []string{"admins", "dev"}) ||
				claims.Preferred != "alice" || claims.Name != "Alice A" || claims.AuthTime != e.clock.Now().Unix() {
				t.Errorf("id token claims = %+v", claims)
			}
			if tok.RefreshToken == "" {
				t.Error("no refresh token despite offline_access")
			}

			at, err := e.iss.VerifyAccessToken(t.Context(), tok.AccessToken)
			if err != nil {
				t.Fatalf("VerifyAccessToken: %v", err)
			}
			if at.Subject != "alice" || at.ClientID != "app" || !slices.Equal(at.Audience, []string{"https://portcullis.example.com"}) ||
				at.Claims["email"] != "alice@example.com" || !slices.Contains(at.Scopes, "groups") {
				t.Errorf("VerifyAccessToken = %+v", at)
			}
			if _, err := e.iss.VerifyAccessToken(t.Context(), rawID); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("VerifyAccessToken(id_token) = %v, want ErrInvalidToken", err)
			}
			signed, err := e.iss.Sign(t.Context(), map[string]any{"iss": e.iss.URL(), "sub": "alice", "aud": "x", "exp": e.clock.Now().Unix() + 60, "client_id": "app", "jti": "j"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.iss.VerifyAccessToken(t.Context(), signed); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("VerifyAccessToken(assertion) = %v, want ErrInvalidToken", err)
			}

			ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("UserInfo: %v", err)
			}
			if ui.Subject != "alice" || ui.Email != "alice@example.com" {
				t.Errorf("UserInfo = %+v", ui)
			}

			// A second client signs in through the existing login session.
			oc2 := e.oauth2Config("other", otherSecret, "https://other.example.com/cb", "openid")
			v2 := oauth2.GenerateVerifier()
			res, _ := get(t, b, oc2.AuthCodeURL("st-1", oauth2.S256ChallengeOption(v2)))
			if v := redirectParams(t, res, oc2.RedirectURL); v.Get("code") == "" {
				t.Errorf("SSO redirect = %v, want a code without the form", v)
			}
		})
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, nil)
	p := e.provider()
	var m metadata
	if err := p.Claims(&m); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.CodeChallengeMethods, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported = %v", m.CodeChallengeMethods)
	}
	if !slices.Equal(m.ResponseTypes, []string{"code"}) {
		t.Errorf("response_types_supported = %v, want only code (no client has implicit)", m.ResponseTypes)
	}
	for _, g := range []string{"authorization_code", "refresh_token", "client_credentials"} {
		if !slices.Contains(m.GrantTypes, g) {
			t.Errorf("grant_types_supported = %v, lacks %s", m.GrantTypes, g)
		}
	}
	if slices.Contains(m.GrantTypes, "password") || slices.Contains(m.GrantTypes, "implicit") {
		t.Errorf("grant_types_supported = %v lists a grant no client has", m.GrantTypes)
	}
	if !slices.Contains(m.TokenAuthMethods, "none") || !slices.Contains(m.TokenAuthMethods, "client_secret_basic") {
		t.Errorf("token_endpoint_auth_methods_supported = %v", m.TokenAuthMethods)
	}
	res, err := e.srv.Client().Get(e.srv.URL + pathRFC8414)
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, res); res.StatusCode != 200 || !strings.Contains(body, `"issuer": "`+e.srv.URL+`"`) {
		t.Errorf("RFC 8414 metadata: %d %s", res.StatusCode, body)
	}
	if got := e.iss.Paths(); !slices.Equal(got, []string{"/", pathRFC8414}) {
		t.Errorf("Paths() = %v", got)
	}
}

// TestAuthorizeErrors covers the errors that are shown as a page (never a
// redirect) and those sent back to the client with state.
func TestAuthorizeErrors(t *testing.T) {
	e := newEnv(t, nil)
	ch := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	base := url.Values{
		"client_id": {"app"}, "redirect_uri": {appRedirect}, "response_type": {"code"}, "scope": {"openid"},
		"state": {"s1"}, "code_challenge": {ch}, "code_challenge_method": {"S256"},
	}
	tests := []struct {
		name     string
		edit     func(v url.Values)
		wantPage bool   // an error page and no redirect
		wantErr  string // error sent to the client
	}{
		{"unknown client", func(v url.Values) { v.Set("client_id", "nope") }, true, ""},
		{"wrong redirect_uri", func(v url.Values) { v.Set("redirect_uri", "https://evil.example.com/cb") }, true, ""},
		{"redirect_uri prefix", func(v url.Values) { v.Set("redirect_uri", appRedirect+"/x") }, true, ""},
		{"missing redirect_uri", func(v url.Values) { v.Del("redirect_uri") }, true, ""},
		{"loopback port on confidential client", func(v url.Values) {
			v.Set("redirect_uri", "https://app.example.com:8443/callback")
		}, true, ""},
		{"pkce plain", func(v url.Values) { v.Set("code_challenge_method", "plain") }, false, errInvalidRequest},
		{"pkce method missing", func(v url.Values) { v.Del("code_challenge_method") }, false, errInvalidRequest},
		{"pkce missing", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }, false, errInvalidRequest},
		{"pkce unknown method", func(v url.Values) { v.Set("code_challenge_method", "S512") }, false, errInvalidRequest},
		{"bad response_type", func(v url.Values) { v.Set("response_type", "token") }, false, errUnsupportedResponseType},
		{"implicit not allowed", func(v url.Values) { v.Set("response_type", "id_token"); v.Set("nonce", "n") }, false, errUnauthorizedClient},
		{"scope not allowed", func(v url.Values) { v.Set("scope", "openid admin") }, false, errInvalidScope},
		{"prompt none without session", func(v url.Values) { v.Set("prompt", "none") }, false, errLoginRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := url.Values{}
			for k, vs := range base {
				v[k] = slices.Clone(vs)
			}
			tt.edit(v)
			res, body := get(t, e.browser(), e.srv.URL+pathAuthorize+"?"+v.Encode())
			if tt.wantPage {
				if res.StatusCode != http.StatusBadRequest || res.Header.Get("Location") != "" || !strings.Contains(body, "<h1>") {
					t.Fatalf("got %d Location=%q, want 400 error page", res.StatusCode, res.Header.Get("Location"))
				}
				return
			}
			p := redirectParams(t, res, appRedirect)
			if p.Get("error") != tt.wantErr || p.Get("state") != "s1" {
				t.Errorf("redirect params = %v, want error=%s state=s1", p, tt.wantErr)
			}
		})
	}
}

// TestNativeLoopback lets a public client vary the loopback port only.
func TestNativeLoopback(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxWith(t.Context(), e.srv.Client())
	oc := e.oauth2Config("native", "", "http://127.0.0.1:49152/cb", "openid")
	b := e.browser()
	verifier := oauth2.GenerateVerifier()
	code := e.authorizeCode(b, oc, verifier, "bob")
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("Exchange(public client): %v", err)
	}
	if tok.RefreshToken != "" {
		t.Error("refresh token issued without offline_access")
	}
	c := e.iss.state.Load().clients["native"]
	for _, u := range []string{"http://127.0.0.1:1/cb", "http://127.0.0.1/cb"} {
		if !c.redirectAllowed(u) {
			t.Errorf("redirectAllowed(%q) = false, want true", u)
		}
	}
	for _, u := range []string{"http://127.0.0.1:1/cb2", "http://localhost:1/cb", "http://[::1]:1/cb", "https://127.0.0.1/cb", "http://127.0.0.1:99999/cb"} {
		if c.redirectAllowed(u) {
			t.Errorf("redirectAllowed(%q) = true, want false", u)
		}
	}
}
