package issuer

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

func TestConfigValidate(t *testing.T) {
	if err := testConfig().Validate(); err != nil {
		t.Fatalf("testConfig().Validate() = %v, want nil", err)
	}
	tests := []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"short secret", func(c *Config) { c.Clients[1].Secret = "short" },
			"clients[1].secret: shorter than 32 characters (use secret_hash or a longer secret)"},
		{"http redirect", func(c *Config) {
			c.Clients[0].RedirectURIs = append(c.Clients[0].RedirectURIs, "x", "http://evil.com/cb")
		},
			`clients[0].redirect_uris[2]: "http://evil.com/cb": http is allowed only for loopback`},
		{"redirect fragment", func(c *Config) { c.Clients[0].RedirectURIs = []string{"https://a.example/cb#x"} },
			`clients[0].redirect_uris[0]: "https://a.example/cb#x": must not have a fragment`},
		{"bad password hash", func(c *Config) { c.Users[0].PasswordHash = "demo" },
			`users[0].password_hash: not a bcrypt hash (make one with "portcullis hash-password")`},
		{"unknown grant", func(c *Config) { c.Clients[0].Grants = []string{"device_code"} },
			`clients[0].grants[0]: "device_code": unknown grant`},
		{"duplicate client", func(c *Config) { c.Clients[1].ID = "app" },
			`clients[1].id: "app": duplicate client id (also clients[0])`},
		{"duplicate user", func(c *Config) { c.Users[1].Username = "alice" },
			`users[1].username: "alice": duplicate username (also users[0])`},
		{"no secret", func(c *Config) { c.Clients[0].Secret = "" },
			`clients[0].secret: a confidential client needs one of secret, secret_file or secret_hash`},
		{"public with secret", func(c *Config) { c.Clients[2].SecretFile = "/x" },
			`clients[2].secret: a public client has no secret`},
		{"public client_credentials", func(c *Config) { c.Clients[2].Grants = []string{GrantClientCredentials} },
			`clients[2].grants: "client_credentials": not allowed for a public client`},
		{"two secrets", func(c *Config) { c.Clients[0].SecretFile = "/x" },
			`clients[0].secret: set only one of secret, secret_file and secret_hash`},
		{"bad secret_hash", func(c *Config) { c.Clients[0].Secret = ""; c.Clients[0].SecretHash = "$2a$nope" },
			`clients[0].secret_hash: not a bcrypt hash`},
		{"missing redirect", func(c *Config) { c.Clients[0].RedirectURIs = nil },
			`clients[0].redirect_uris: missing`},
		{"ttl too short", func(c *Config) { c.Tokens.AccessTTL = time.Millisecond },
			`tokens.access_ttl: "1ms": must be at least 1s`},
		{"algorithm", func(c *Config) { c.Keys.Algorithm = "HS256" },
			`keys.algorithm: "HS256": unknown algorithm (want RS256 or ES256)`},
		{"issuer url", func(c *Config) { c.URL = "ftp://x" }, `url: "ftp://x": must be an http or https URL`},
		{"storage", func(c *Config) { c.Storage = store.Config{Type: "foo"} }, `storage.type: "foo": unknown storage type`},
		{"scope", func(c *Config) { c.Clients[0].Scopes = []string{"a b"} }, `clients[0].scopes[0]: "a b": not a valid scope name`},
		{"client id is a username", func(c *Config) { c.Clients[0].ID = c.Users[0].Username },
			`clients[0].id: "alice": also a username in users; choose another client id`},
		{"client id colon", func(c *Config) { c.Clients[0].ID = "a:b" }, `clients[0].id: "a:b": must not contain ':'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want it to contain %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "short") && tt.name == "short secret" && strings.Contains(err.Error(), "\"short\"") {
				t.Errorf("Validate() quotes a secret: %v", err)
			}
		})
	}
	t.Run("every problem at once", func(t *testing.T) {
		c := testConfig()
		c.Users[0].PasswordHash = ""
		c.Clients[0].Grants = []string{"nope"}
		c.Keys.Algorithm = "x"
		err := c.Validate()
		if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
			t.Errorf("Validate() reported %d problems, want 3:\n%v", n, err)
		}
	})
	t.Run("localhost and loopback http allowed", func(t *testing.T) {
		c := testConfig()
		c.Clients[0].RedirectURIs = []string{"http://localhost:4180/oauth2/callback", "http://[::1]:9/cb", "http://127.0.0.1:8/cb"}
		if err := c.Validate(); err != nil {
			t.Errorf("Validate() = %v, want nil", err)
		}
	})
}
