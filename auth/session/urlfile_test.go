package session_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"github.com/portcullis-proxy/portcullis/auth/session"
	"github.com/portcullis-proxy/portcullis/auth/session/sessiontest"
)

// store.url_file keeps the redis password out of the config file.
func TestRedisURLFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "redis-url")
	os.WriteFile(f, []byte(authtest.Redis(t)+"\n"), 0o600)
	cfg := session.Config{Secrets: []auth.Secret{sessiontest.Secret()}, Store: session.StoreConfig{Type: session.StoreRedis, URLFile: f}}
	m, err := session.New(cfg, session.Options{})
	if err != nil {
		t.Fatalf("New with store.url_file: %v", err)
	}
	if err := m.Check(t.Context()); err != nil {
		t.Errorf("Check = %v: the URL from the file was not used", err)
	}
	m.Close()
	cfg.Store.URL = "redis://127.0.0.1:1"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "set url or url_file, not both") {
		t.Errorf("Validate with both = %v", err)
	}
}
