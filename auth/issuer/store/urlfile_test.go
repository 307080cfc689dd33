package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth/authtest"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

// url_file keeps the Redis password out of the config file.
func TestOpenRedisURLFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "redis-url")
	os.WriteFile(f, []byte(authtest.Redis(t)+"\n"), 0o600)
	st, err := store.Open(t.Context(), store.Config{Type: store.TypeRedis, URLFile: f, KeyPrefix: "urlfile:"}, store.Options{})
	if err != nil {
		t.Fatalf("Open with url_file: %v", err)
	}
	st.Close()

	for _, tt := range []struct {
		cfg  store.Config
		want string
	}{
		{store.Config{Type: store.TypeRedis, URL: "redis://x:1", URLFile: f}, "url: set url or url_file, not both"},
		{store.Config{Type: store.TypeMemory, URLFile: f}, `url_file: "` + f + `": only used when type is redis`},
	} {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
	if _, err := store.Open(t.Context(), store.Config{Type: store.TypeRedis, URLFile: filepath.Join(t.TempDir(), "missing")}, store.Options{}); err == nil || !strings.Contains(err.Error(), "url_file") {
		t.Errorf("Open with a missing url_file = %v, want an error naming url_file", err)
	}
}
