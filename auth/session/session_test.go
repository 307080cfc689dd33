package session

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
)

func secret(b byte, n int) string {
	k := make([]byte, n)
	for i := range k {
		k[i] = b + byte(i)
	}
	return base64.StdEncoding.EncodeToString(k)
}

func TestValidate(t *testing.T) {
	good := secret(1, 32)
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, each must appear; none: valid
	}{
		{"zero config is valid (the command makes a secret)", Config{}, nil},
		{"unset env secret ignored", Config{Secrets: []auth.Secret{""}}, nil},
		{"full", Config{CookieName: "_p", Secrets: []auth.Secret{auth.Secret(good)}, Lifetime: time.Hour,
			RefreshAfter: time.Minute, SameSite: "strict", Store: StoreConfig{Type: "redis", URL: "redis://h:6379/1", KeyPrefix: "x:"}}, nil},
		{"url-safe unpadded secret", Config{Secrets: []auth.Secret{auth.Secret(strings.TrimRight(
			base64.URLEncoding.EncodeToString([]byte(strings.Repeat("\xfb\xff", 16))), "="))}}, nil},
		{"short secret", Config{Secrets: []auth.Secret{auth.Secret(good), auth.Secret(secret(1, 16))}},
			[]string{`secrets[1]: decodes to 16 bytes, want 32 (generate one with "portcullis secret")`}},
		{"not base64", Config{Secrets: []auth.Secret{"hunter2 is not base64!"}},
			[]string{"secrets[0]: not base64"}},
		{"every problem at once", Config{CookieName: "bad name", Secrets: []auth.Secret{"not-a-usable-secret"}, SecretsFile: "/f",
			Lifetime: -time.Second, RefreshAfter: -time.Second, SameSite: "Lax", Store: StoreConfig{Type: "memcache"}},
			[]string{`cookie_name: "bad name"`, "secrets[0]:", `secrets_file: "/f": set either`, `lifetime: "-1s"`,
				`refresh_after: "-1s"`, `same_site: "Lax": unknown value`, `store.type: "memcache": unknown store type (want cookie or redis)`}},
		{"tiny lifetime", Config{Lifetime: time.Millisecond}, []string{`lifetime: "1ms": shorter than 1s`}},
		{"redis without url", Config{Store: StoreConfig{Type: "redis"}}, []string{"store.url: required with type redis"}},
		{"redis bad scheme", Config{Store: StoreConfig{Type: "redis", URL: "http://u:pw@h"}},
			[]string{`store.url: "http://u:xxxxx@h": unsupported scheme "http"`}},
		{"url with cookie store", Config{Store: StoreConfig{URL: "redis://h"}}, []string{`store.url: "redis://h": only used with type redis`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tt.want) {
				t.Errorf("Validate() reported %d problems, want %d: %v", n, len(tt.want), err)
			}
			for _, s := range tt.cfg.Secrets {
				if s != "" && strings.Contains(err.Error(), s.Reveal()) {
					t.Errorf("Validate() = %q quotes a secret", err)
				}
			}
			if strings.Contains(err.Error(), ":pw@") {
				t.Errorf("Validate() = %q quotes a redis password", err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, other := secret(1, 32), secret(100, 32)
	goodFile := write("good", "# current\n"+good+"\n\n"+other+"\n")
	badFile := write("bad", good+"\n"+secret(1, 16)+"\n")
	emptyFile := write("empty", "# nothing\n\n")
	tests := []struct {
		name    string
		cfg     Config
		opts    Options
		wantErr string
	}{
		{"defaults", Config{Secrets: []auth.Secret{auth.Secret(good)}}, Options{}, ""},
		{"no secret", Config{}, Options{}, "no secret configured"},
		{"only empty secrets", Config{Secrets: []auth.Secret{"", ""}}, Options{}, "no secret configured"},
		{"invalid config", Config{Secrets: []auth.Secret{auth.Secret(good)}, SameSite: "sometimes"}, Options{}, "same_site"},
		{"none needs secure", Config{Secrets: []auth.Secret{auth.Secret(good)}, SameSite: "none"}, Options{}, `same_site "none" needs Secure`},
		{"none with secure", Config{Secrets: []auth.Secret{auth.Secret(good)}, SameSite: "none"}, Options{Secure: true}, ""},
		{"secrets file", Config{SecretsFile: goodFile}, Options{}, ""},
		{"secrets file with a bad line", Config{SecretsFile: badFile}, Options{}, "line 2: decodes to 16 bytes"},
		{"empty secrets file", Config{SecretsFile: emptyFile}, Options{}, "no secret in file"},
		{"missing secrets file", Config{SecretsFile: filepath.Join(dir, "nope")}, Options{}, "secrets_file"},
		{"redis", Config{Secrets: []auth.Secret{auth.Secret(good)}, Store: StoreConfig{Type: "redis", URL: "redis://127.0.0.1:1/0"}}, Options{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.cfg, tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New() = %v, want nil", err)
				}
				defer m.Close()
				if m.CookieName() != DefaultCookieName || m.Lifetime() != DefaultLifetime || m.RefreshAfter() != DefaultRefreshAfter {
					t.Errorf("New() defaults = %q %s %s, want %q %s %s", m.CookieName(), m.Lifetime(), m.RefreshAfter(),
						DefaultCookieName, DefaultLifetime, DefaultRefreshAfter)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() = %v, want an error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), good) || strings.Contains(err.Error(), secret(1, 16)) {
				t.Errorf("New() = %q quotes a secret", err)
			}
		})
	}
}

// TestSecretsFileRotation checks that the file's first line seals and later
// lines open.
func TestSecretsFileRotation(t *testing.T) {
	oldS, newS := secret(1, 32), secret(100, 32)
	p := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(p, []byte(newS+"\n"+oldS+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := New(Config{Secrets: []auth.Secret{auth.Secret(oldS)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	after, err := New(Config{SecretsFile: p}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := before.Seal("n", "x")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := after.Open("n", v, &got, time.Minute); err != nil || got != "x" {
		t.Errorf("Open() with the old secret on line 2 = %q, %v, want \"x\", nil", got, err)
	}
}

// TestChunkLayout pins the documented cookie layout: the base cookie holds
// the whole value, or the count of chunks _1…_N.
func TestChunkLayout(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	m, err := New(Config{Secrets: []auth.Secret{auth.Secret(secret(1, 32))}}, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, groups := range []int{0, 300} {
		d := &Data{Identity: auth.Identity{Subject: "s"}}
		for i := range groups {
			d.Identity.Groups = append(d.Identity.Groups, fmt.Sprintf("group-with-a-long-name-%04d", i))
		}
		rec := httptest.NewRecorder()
		if err := m.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), d); err != nil {
			t.Fatal(err)
		}
		cookies := rec.Result().Cookies()
		base := cookies[len(cookies)-1]
		if base.Name != "_portcullis" {
			t.Fatalf("last cookie = %s, want the base cookie", base.Name)
		}
		if groups == 0 {
			if len(cookies) != 1 || !strings.HasPrefix(base.Value, sealedV2Prefix) {
				t.Errorf("small session: cookies %d, base %d bytes; want 1 cookie holding the value", len(cookies), len(base.Value))
			}
			continue
		}
		n, err := strconv.Atoi(base.Value)
		if err != nil || n != len(cookies)-1 || n < 2 {
			t.Fatalf("big session: base = %q with %d cookies, want the chunk count", base.Value, len(cookies))
		}
		for i, c := range cookies[:n] {
			if c.Name != "_portcullis_"+strconv.Itoa(i+1) || len(c.Value) > chunkLen {
				t.Errorf("chunk %d = %s (%d bytes), want _portcullis_%d of at most %d", i, c.Name, len(c.Value), i+1, chunkLen)
			}
		}
	}
}

// TestLoadStoreUnavailable checks that a dead redis is reported as such,
// not as "no session", and that Check sees it.
func TestLoadStoreUnavailable(t *testing.T) {
	m, err := New(Config{Secrets: []auth.Secret{auth.Secret(secret(1, 32))},
		Store: StoreConfig{Type: StoreRedis, URL: "redis://127.0.0.1:1/0?max_retries=-1"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	id := make([]byte, 32)
	cookie, err := m.keys.seal(m.name, id)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: m.name, Value: cookie})
	if _, err := m.Load(r); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoSession) {
		t.Errorf("Load() with redis down = %v, want ErrUnavailable", err)
	}
	if err := m.Check(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Check() with redis down = %v, want ErrUnavailable", err)
	}
	rec := httptest.NewRecorder()
	if err := m.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), &Data{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Save() with redis down = %v, want ErrUnavailable", err)
	}
	if len(rec.Result().Cookies()) != 0 {
		t.Error("Save() with redis down set a cookie")
	}
}

func TestDataNeverPrintsTokens(t *testing.T) {
	d := Data{IDToken: "tok-id", AccessToken: "tok-access", RefreshToken: "tok-refresh",
		Identity: auth.Identity{Subject: "s", AccessToken: "tok-id2"}}
	for _, s := range []string{fmt.Sprint(d), fmt.Sprintf("%v %+v %#v %s", d, &d, d, &d)} {
		if strings.Contains(s, "tok-") {
			t.Errorf("formatted Data = %q, leaks a token", s)
		}
	}
}
