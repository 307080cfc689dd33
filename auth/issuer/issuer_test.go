package issuer

import (
	"context"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"golang.org/x/crypto/bcrypt"
)

func TestStartupWarnings(t *testing.T) {
	demo, err := bcrypt.GenerateFromPassword([]byte("demo"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Users = append(cfg.Users, UserConfig{Username: "demo", PasswordHash: string(demo)})
	cfg.Clients = append(cfg.Clients,
		ClientConfig{ID: "legacy", Secret: appSecret, Grants: []string{GrantPassword}},
		ClientConfig{ID: "spa", Public: true, Grants: []string{GrantImplicit}, RedirectURIs: []string{"https://spa.example.com/"}})
	var logs authtest.Buffer
	st := store.NewMemory(store.Options{})
	defer st.Close()
	pub, _ := url.Parse("http://localhost:4180")
	iss, err := New(context.Background(), cfg, Options{PublicURL: pub, Store: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	out := logs.String()
	for _, want := range []string{"example user", "implicit grant", "password grant"} {
		if !strings.Contains(out, want) {
			t.Errorf("start-up log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, appSecret) {
		t.Error("start-up log contains a client secret")
	}
	if got, want := iss.URL(), "http://localhost:4180/oauth2/issuer"; got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	if got := iss.Paths(); got[0] != "/oauth2/issuer/" || got[1] != "/.well-known/oauth-authorization-server/oauth2/issuer" {
		t.Errorf("Paths() = %v", got)
	}
	if iss.cookiePath != "/oauth2/" {
		t.Errorf("cookie path = %q, want /oauth2/", iss.cookiePath)
	}
}

func TestUsersFileAndReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "users.yaml")
	write := func(content string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(file, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write("- username: carol\n  password_hash: '"+testHash()+"'\n  groups: [ops]\n", time.Unix(1000, 0))
	e := newEnv(t, func(c *Config) {
		c.UsersFile = file
		c.Clients = append(c.Clients, ClientConfig{ID: "cli", Secret: appSecret, Grants: []string{GrantPassword}})
	})
	login := func(user string) int {
		res, _ := e.postForm(pathToken, "cli", appSecret, url.Values{"grant_type": {"password"}, "username": {user}, "password": {testPassword}})
		return res.StatusCode
	}
	if got := login("carol"); got != 200 {
		t.Fatalf("carol from users_file: %d, want 200", got)
	}
	write("- username: dave\n  password_hash: '"+testHash()+"'\n", time.Unix(2000, 0))
	e.clock.Advance(usersFileCheckEvery)
	if got := login("dave"); got != 200 {
		t.Errorf("dave after the file changed: %d, want 200", got)
	}
	if got := login("carol"); got != 400 {
		t.Errorf("carol after removal: %d, want 400", got)
	}
	write("- username: [broken\n", time.Unix(3000, 0))
	e.clock.Advance(usersFileCheckEvery)
	if got := login("dave"); got != 200 {
		t.Errorf("a broken users_file dropped the users loaded before: %d", got)
	}

	// Reload: a new client appears, keys stay, the URL cannot change.
	kid := kidOf(t, e.clientToken())
	cfg := e.cfg
	cfg.UsersFile = ""
	cfg.Clients = append(cfg.Clients, ClientConfig{ID: "new", Secret: appSecret, Grants: []string{GrantClientCredentials}})
	if err := e.iss.Reload(cfg); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	res, body := e.postForm(pathToken, "new", appSecret, url.Values{"grant_type": {"client_credentials"}})
	if res.StatusCode != 200 || kidOf(t, body["access_token"].(string)) != kid {
		t.Errorf("after Reload: %d %v (want 200 with the same kid)", res.StatusCode, body)
	}
	if got := login("dave"); got == 200 {
		t.Error("dave still signs in after users_file was removed by Reload")
	}
	bad := cfg
	bad.URL = "https://elsewhere.example.com"
	if err := e.iss.Reload(bad); err == nil {
		t.Error("Reload accepted a new issuer URL")
	}
	bad = cfg
	bad.Keys.Algorithm = "none"
	if err := e.iss.Reload(bad); err == nil {
		t.Error("Reload accepted an invalid config")
	}
	if res, _ := e.postForm(pathToken, "new", appSecret, url.Values{"grant_type": {"client_credentials"}}); res.StatusCode != http.StatusOK {
		t.Error("a refused Reload changed the running config")
	}
}

// TestReloadRevokesRemoved: tokens of a user or client removed by a reload
// stop verifying at once.
func TestReloadRevokesRemoved(t *testing.T) {
	e := newEnv(t, nil)
	code, verifier := e.codeFor("openid")
	_, tok := e.postForm(pathToken, "app", appSecret, codeForm(code, verifier))
	userTok := tok["access_token"].(string)
	clientTok := e.clientToken()
	cfg := e.cfg
	cfg.Users = cfg.Users[1:]     // alice goes
	cfg.Clients = cfg.Clients[:1] // other goes
	if err := e.iss.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"removed user": userTok, "removed client": clientTok} {
		if _, err := e.iss.VerifyAccessToken(t.Context(), tok); err == nil {
			t.Errorf("VerifyAccessToken(%s) = nil, want an error", name)
		}
	}
}
