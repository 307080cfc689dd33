package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/portcullis-proxy/portcullis/auth/issuer"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

const extSecret = "external-client-secret-0123456789abcdef"

// startExternalIssuer runs an OpenID provider on its own server, standing
// in for Keycloak, Dex or Entra ID.
func startExternalIssuer(t *testing.T, redirectURI string) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	pub, _ := url.Parse("http://" + ts.Listener.Addr().String())
	hash, _ := bcrypt.GenerateFromPassword([]byte("carol-pw"), bcrypt.MinCost)
	st := store.NewMemory(store.Options{})
	t.Cleanup(func() { st.Close() })
	iss, err := issuer.New(t.Context(), issuer.Config{
		Users: []issuer.UserConfig{{Username: "carol", Email: "carol@corp.example", Groups: []string{"eng"}, PasswordHash: string(hash)}},
		Clients: []issuer.ClientConfig{
			{ID: "portcullis-ext", Secret: extSecret, RedirectURIs: []string{redirectURI}, Grants: []string{"authorization_code", "refresh_token"}},
			{ID: "script", Secret: extSecret, Grants: []string{"client_credentials"}, Audience: []string{"api://reports"}},
			{ID: "other", Secret: extSecret, Grants: []string{"client_credentials"}, Audience: []string{"api://elsewhere"}},
		},
	}, issuer.Options{PublicURL: pub, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(iss.Close)
	ts.Config.Handler = iss.Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	return iss.URL()
}

func TestExternalIssuerBearerAndAssertion(t *testing.T) {
	var issURL string
	in := startServe(t, func(p int) string {
		issURL = startExternalIssuer(t, fmt.Sprintf("http://localhost:%d/oauth2/callback", p))
		return fmt.Sprintf(`
server:
  listen: "127.0.0.1:%d"
  public_url: "http://localhost:%d"
login:
  issuer: %q
  client_id: portcullis-ext
  client_secret: %q
  scopes: [openid, email, profile, groups]
upstreams:
  - name: reports
    url: builtin:echo
    bearer: true
    bearer_audiences: ["api://reports"]
    forward: [user, email, groups, assertion]
`, p, p, issURL, extSecret)
	}, nil)

	// A person signs in through the external issuer's own form.
	c := newBrowserClient(t)
	resp, body := signIn(t, c, in.base+"/q3", "carol", "carol-pw")
	if resp.StatusCode != 200 || !strings.Contains(body, "carol") {
		t.Fatalf("browser sign-in through the external issuer: %d\n%s", resp.StatusCode, body)
	}

	// A script with a client-credentials token for api://reports.
	call := func(tok string) (int, echoed, http.Header) {
		req, _ := http.NewRequest("GET", in.base+"/api/q3", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e echoed
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e, resp.Header
	}
	token := func(client string) string {
		cc := clientcredentials.Config{ClientID: client, ClientSecret: extSecret, TokenURL: issURL + "/token"}
		tok, err := cc.Token(context.Background())
		if err != nil {
			t.Fatalf("client_credentials for %s: %v", client, err)
		}
		return tok.AccessToken
	}
	code, e, _ := call(token("script"))
	if code != 200 || len(e.Headers["X-Forwarded-User"]) != 1 || e.Headers["X-Forwarded-User"][0] != "script" {
		t.Fatalf("script's bearer token = %d, user %v", code, e.Headers["X-Forwarded-User"])
	}

	// The upstream can verify who called from the signed assertion, with
	// keys from /oauth2/issuer/keys, though login uses another issuer.
	assertion := e.Headers["X-Portcullis-Assertion"]
	if len(assertion) != 1 {
		t.Fatalf("no X-Portcullis-Assertion upstream: %v", e.Headers)
	}
	ctx := context.Background()
	keys := oidc.NewRemoteKeySet(ctx, in.base+"/oauth2/issuer/keys")
	v := oidc.NewVerifier(in.base, keys, &oidc.Config{ClientID: "reports"})
	idt, err := v.Verify(ctx, assertion[0])
	if err != nil {
		t.Fatalf("assertion does not verify with go-oidc: %v", err)
	}
	if idt.Subject != "script" || idt.Expiry.Sub(idt.IssuedAt) > 5*60e9 {
		t.Errorf("assertion sub %q, lifetime %v", idt.Subject, idt.Expiry.Sub(idt.IssuedAt))
	}
	if _, err := oidc.NewVerifier(in.base, keys, &oidc.Config{ClientID: "another-app"}).Verify(ctx, assertion[0]); err == nil {
		t.Error("assertion for upstream reports verified for another audience")
	}

	// A token for another audience, and garbage, are invalid_token.
	for name, tok := range map[string]string{"other audience": token("other"), "garbage": "not-a-token"} {
		code, _, h := call(tok)
		if code != 401 || h.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("%s: %d %q, want 401 invalid_token", name, code, h.Get("WWW-Authenticate"))
		}
	}
}
