package session

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/authtest"
)

// TestRedisRecord checks what lands in redis: one key named
// prefix+sha256(id) in hex, a TTL of the remaining lifetime, and a sealed
// value that shows no token; Clear deletes it.
func TestRedisRecord(t *testing.T) {
	url := authtest.Redis(t)
	now := time.Unix(1_900_000_000, 0)
	m, err := New(Config{Secrets: []auth.Secret{auth.Secret(secret(1, 32))}, Lifetime: 2 * time.Hour,
		Store: StoreConfig{Type: StoreRedis, URL: url, KeyPrefix: "rec:"}}, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	opts, _ := redis.ParseURL(url)
	rc := redis.NewClient(opts)
	defer rc.Close()

	rec := httptest.NewRecorder()
	d := &Data{Identity: auth.Identity{Subject: "s"}, AccessToken: "very-secret-access-token", RefreshToken: "very-secret-refresh"}
	if err := m.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), d); err != nil {
		t.Fatal(err)
	}
	keys, err := rc.Keys(t.Context(), "rec:*").Result()
	if err != nil || len(keys) != 1 || !regexp.MustCompile(`^rec:[0-9a-f]{64}$`).MatchString(keys[0]) {
		t.Fatalf("redis keys = %q, %v, want one rec:<sha256 hex>", keys, err)
	}
	if ttl := rc.TTL(t.Context(), keys[0]).Val(); ttl <= time.Hour || ttl > 2*time.Hour {
		t.Errorf("TTL = %s, want about the remaining lifetime 2h", ttl)
	}
	val := rc.Get(t.Context(), keys[0]).Val()
	if strings.Contains(val, "very-secret") {
		t.Error("redis record holds a token in clear text")
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || len(cookies[0].Value) > 300 || strings.Contains(keys[0], cookies[0].Value) {
		t.Errorf("cookies = %d, first %d bytes; want one short cookie unrelated to the key", len(cookies), len(cookies[0].Value))
	}

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: cookies[0].Name, Value: cookies[0].Value})
	m.Clear(httptest.NewRecorder(), r)
	if n := rc.Exists(t.Context(), keys[0]).Val(); n != 0 {
		t.Errorf("record still exists after Clear")
	}
}
