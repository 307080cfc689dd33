package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func noEnv(string) string { return "" }

// The example must always load and validate: it is the README's first command.
func TestExampleConfigLoads(t *testing.T) {
	cfg, errs := loadConfig("../../config.example.yaml", noEnv)
	if len(errs) > 0 {
		t.Fatalf("config.example.yaml: %v", errs)
	}
	if !cfg.usesBuiltinIssuer() || cfg.Server.PublicURL != "http://localhost:4180" || cfg.Upstreams[0].URL != "builtin:echo" {
		t.Fatalf("config.example.yaml is not the quick-start config: %+v", cfg)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(cfg.Issuer.Users[0].PasswordHash), []byte("demo")); err != nil {
		t.Fatalf("demo user's password is not demo: %v", err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "-config", "../../config.example.yaml"}, nil, &out, &errOut, noEnv); code != 0 {
		t.Fatalf("check exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"OK", "built-in issuer", "builtin:echo"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check summary lacks %q:\n%s", want, out.String())
		}
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `
server:
  public_url: "http://localhost:4180"
login:
  issuer: builtin
issuer:
  users:
    - { username: demo, password_hash: "$2a$12$NzMfQfN7xDNbRxVXK.VTYOidCRP7LIAS8rXWP9nkdkFPmYjgZZRj6" }
upstreams:
  - { name: app, url: "builtin:echo" }
`

func TestCheckReportsEveryProblem(t *testing.T) {
	bad := `
server:
  public_url: "localhost:4180"
  trusted_proxies: ["10.0.0.0/33"]
  tls: { mode: on }
session:
  lifetme: 1h
login:
  issuer: builtin
issuer:
  users:
    - { username: demo, password_hash: "plain" }
upstreams:
  - { name: app, url: "builtin:echo" }
  - { name: app, url: "htp://x", path: "/oauth2/x" }
`
	var out, errOut bytes.Buffer
	code := run([]string{"check", "-config", writeFile(t, bad)}, nil, &out, &errOut, noEnv)
	if code != 1 {
		t.Fatalf("check exit = %d, want 1", code)
	}
	// Unknown keys are reported with their line before anything else.
	if !strings.Contains(errOut.String(), `line 7: unknown key "lifetme"`) {
		t.Fatalf("check output lacks the unknown key with its line:\n%s", errOut.String())
	}
	// Fix the unknown key: now every validation problem shows at once.
	errOut.Reset()
	code = run([]string{"check", "-config", writeFile(t, strings.Replace(bad, "lifetme", "lifetime", 1))}, nil, &out, &errOut, noEnv)
	if code != 1 {
		t.Fatalf("check exit = %d, want 1", code)
	}
	for _, want := range []string{
		`server.public_url: "localhost:4180"`,
		`server.trusted_proxies[0]: "10.0.0.0/33"`,
		`server.tls.mode: "on"`,
		`issuer.users[0].password_hash`,
		`upstreams[1].url: "htp://x": unsupported scheme "htp"`,
		`upstreams[1].name: "app": already used by upstreams[0]`,
		`upstreams[1].path: "/oauth2/x": /oauth2/ is reserved`,
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, errOut.String())
		}
	}
}

func TestEnvExpansion(t *testing.T) {
	env := map[string]string{"PUB": "http://example.test:8080", "SECRET": "x: [injected]", "LIFE": "2h"}
	text := strings.Replace(minimal, `"http://localhost:4180"`, "${PUB}", 1) + `
session:
  secrets: ["${SECRET}", "$${LITERAL}", "${UNSET}"]
  lifetime: ${LIFE}
`
	cfg, errs := parseConfig([]byte(text), func(k string) string { return env[k] })
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if cfg.Server.PublicURL != "http://example.test:8080" {
		t.Errorf("public_url = %q", cfg.Server.PublicURL)
	}
	if got := cfg.Session.Secrets[0].Reveal(); got != "x: [injected]" {
		t.Errorf("secret = %q: an env value must stay one scalar", got)
	}
	if got := cfg.Session.Secrets[1].Reveal(); got != "${LITERAL}" {
		t.Errorf("$${LITERAL} = %q, want literal ${LITERAL}", got)
	}
	if cfg.Session.Lifetime.String() != "2h0m0s" {
		t.Errorf("lifetime = %v, want 2h from ${LIFE}", cfg.Session.Lifetime)
	}
	if len(cfg.unsetVars) != 1 || cfg.unsetVars[0] != "UNSET" {
		t.Errorf("unsetVars = %v, want [UNSET]", cfg.unsetVars)
	}
}

func TestEmptyAndBrokenFiles(t *testing.T) {
	for name, text := range map[string]string{"empty": "", "not yaml": "server: [\n", "wrong type": "server: 3\n"} {
		_, errs := parseConfig([]byte(text), noEnv)
		if len(errs) == 0 {
			t.Errorf("%s: parseConfig accepted %q", name, text)
		}
	}
}

func TestSubcommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"hash-password"}, strings.NewReader("s3cret pass\n"), &out, &errOut, noEnv); code != 0 {
		t.Fatalf("hash-password exit %d: %s", code, errOut.String())
	}
	if err := bcrypt.CompareHashAndPassword(bytes.TrimSpace(out.Bytes()), []byte("s3cret pass")); err != nil {
		t.Fatalf("hash-password output does not verify: %v", err)
	}
	if code := run([]string{"hash-password"}, strings.NewReader(""), &out, &errOut, noEnv); code != 1 {
		t.Errorf("hash-password of nothing exit = %d, want 1", code)
	}
	out.Reset()
	run([]string{"secret"}, nil, &out, &errOut, noEnv)
	if s := strings.TrimSpace(out.String()); len(s) != 44 {
		t.Errorf("secret = %q, want 44 base64 characters", s)
	}
	out.Reset()
	if code := run([]string{"version"}, nil, &out, &errOut, noEnv); code != 0 || !strings.HasPrefix(out.String(), "portcullis ") {
		t.Errorf("version = %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, nil, &out, &errOut, noEnv); code != 2 {
		t.Errorf("unknown command exit = %d, want 2", code)
	}
}
