package store_test

import (
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  store.Config
		want []string // substrings, one per expected problem; nil means valid
	}{
		{"zero is memory", store.Config{}, nil},
		{"memory", store.Config{Type: "memory"}, nil},
		{"bolt", store.Config{Type: "bolt", Path: "/var/lib/portcullis/issuer.db"}, nil},
		{"redis", store.Config{Type: "redis", URL: "redis://127.0.0.1:6379/0"}, nil},
		{"rediss with prefix", store.Config{Type: "redis", URL: "rediss://u:pw@redis.internal:6380/2", KeyPrefix: "a:"}, nil},
		{"unknown type", store.Config{Type: "mongo"},
			[]string{`type: "mongo": unknown storage type (want memory, bolt or redis)`}},
		{"bolt without path", store.Config{Type: "bolt"}, []string{"path: required when type is bolt"}},
		{"redis without url", store.Config{Type: "redis"}, []string{"url: required when type is redis"}},
		{"redis bad scheme", store.Config{Type: "redis", URL: "http://127.0.0.1:6379"},
			[]string{`url: "http://127.0.0.1:6379": unsupported scheme "http" (want redis or rediss)`}},
		{"redis no host", store.Config{Type: "redis", URL: "redis:///0"}, []string{`url: "redis:///0": missing host`}},
		{"redis unparsable", store.Config{Type: "redis", URL: "redis://u:hunter2@[::1"},
			[]string{"url: not a valid URL"}},
		{"settings of other types", store.Config{Type: "memory", Path: "x.db", URL: "redis://u:hunter2@h", KeyPrefix: "p:"},
			[]string{`path: "x.db": only used when type is bolt`, `url: "redis://u:xxxxx@h": only used when type is redis`,
				`key_prefix: "p:": only used when type is redis`}},
		{"every problem at once", store.Config{Type: "bolt", URL: "redis://h"},
			[]string{"path: required when type is bolt", `url: "redis://h": only used when type is redis`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", tt.cfg, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want %q", tt.cfg, tt.want)
			}
			msg := err.Error()
			if n := len(strings.Split(msg, "\n")); n != len(tt.want) {
				t.Errorf("Validate(%+v) reported %d problems, want %d: %s", tt.cfg, n, len(tt.want), msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Validate(%+v) = %q, want it to contain %q", tt.cfg, msg, w)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("Validate(%+v) = %q, leaks the password", tt.cfg, msg)
			}
		})
	}
}

func TestOpenMemory(t *testing.T) {
	s, err := store.Open(t.Context(), store.Config{}, store.Options{})
	if err != nil {
		t.Fatalf("Open(memory) = %v, want nil", err)
	}
	defer s.Close()
	if _, ok := s.(*store.Memory); !ok {
		t.Errorf("Open(memory) = %T, want *store.Memory", s)
	}
}

func TestOpenInvalid(t *testing.T) {
	s, err := store.Open(t.Context(), store.Config{Type: "mongo"}, store.Options{})
	if err == nil || s != nil {
		t.Fatalf("Open(mongo) = %v, %v, want nil store and an error", s, err)
	}
	if !strings.Contains(err.Error(), `type: "mongo"`) {
		t.Errorf("Open(mongo) error = %q, want it to name type", err)
	}
}
