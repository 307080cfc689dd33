package upstream

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings, one per expected error; nil means valid
	}{
		{"http", Config{Name: "a", URL: "http://127.0.0.1:8080"}, nil},
		{"https base path ca", Config{Name: "a", URL: "https://app.internal/base", CAFile: "/ca.pem"}, nil},
		{"unix", Config{Name: "a", URL: "unix:/run/app.sock"}, nil},
		{"unix triple slash", Config{Name: "a", URL: "unix:///run/app.sock"}, nil},
		{"echo", Config{Name: "a", URL: "builtin:echo", Forward: []string{"user", "assertion", "id_token"}}, nil},
		{"empty forward", Config{Name: "a", URL: "builtin:echo", Forward: []string{}}, nil},
		{"missing everything", Config{}, []string{"name: required", "url: required"}},
		{"bad scheme", Config{Name: "a", URL: "htp://x"},
			[]string{`url: "htp://x": unsupported scheme "htp" (want http, https, unix or builtin:echo)`}},
		{"unknown builtin", Config{Name: "a", URL: "builtin:foo"}, []string{`url: "builtin:foo": unknown builtin`}},
		{"unix without path", Config{Name: "a", URL: "unix:"}, []string{`url: "unix:": missing socket path`}},
		{"no host", Config{Name: "a", URL: "http:///x"}, []string{`url: "http:///x": missing host`}},
		{"credentials redacted", Config{Name: "a", URL: "http://u:hunter2@h"},
			[]string{`url: "http://u:xxxxx@h": credentials in the URL are not supported`}},
		{"query", Config{Name: "a", URL: "http://h/?a=1"}, []string{"a query is not supported"}},
		{"fragment", Config{Name: "a", URL: "http://h/#f"}, []string{"a fragment is not supported"}},
		{"unparsable", Config{Name: "a", URL: "http://h:port"}, []string{`url: "http://h:port": invalid URL`}},
		{"ca_file on http", Config{Name: "a", URL: "http://h", CAFile: "/ca.pem"},
			[]string{`ca_file: "/ca.pem": only for https upstreams`}},
		{"insecure on unix", Config{Name: "a", URL: "unix:/s", InsecureSkipVerify: true},
			[]string{"insecure_skip_verify: only for https upstreams"}},
		{"bad forward names", Config{Name: "a", URL: "http://h", Forward: []string{"user", "email", "token", "user"}},
			[]string{
				`forward[2]: "token": unknown (want user, email, groups, preferred_username, access_token, id_token or assertion)`,
				`forward[3]: "user": listed twice`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Errorf("Validate(%+v) = %v, want nil", tt.cfg, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want %q", tt.cfg, tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("Validate(%+v) = %q, want %d errors", tt.cfg, lines, len(tt.want))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate(%+v) = %q, want it to contain %q", tt.cfg, err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Validate error %q leaks the URL password", err)
			}
		})
	}
}

func TestTransportConfigValidate(t *testing.T) {
	if err := (TransportConfig{}).Validate(); err != nil {
		t.Errorf("TransportConfig{}.Validate() = %v, want nil", err)
	}
	err := TransportConfig{DialTimeout: -1, MaxIdleConns: -2}.Validate()
	if err == nil || !strings.Contains(err.Error(), `dial_timeout: "-1ns": must not be negative`) ||
		!strings.Contains(err.Error(), `max_idle_conns: "-2": must not be negative`) {
		t.Errorf("Validate(negative) = %v, want both keys named", err)
	}
}

func TestNewErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		opts Options
		want string
	}{
		{"invalid config", Config{Name: "a", URL: "ftp://h"}, Options{}, `upstream: url: "ftp://h": unsupported scheme`},
		{"assertion without signer", Config{Name: "a", URL: "http://h", Forward: []string{"assertion"}}, Options{},
			"upstream: forward: assertion needs a signer"},
		{"missing ca_file", Config{Name: "a", URL: "https://h", CAFile: filepath.Join(t.TempDir(), "none.pem")}, Options{},
			"upstream: ca_file: open"},
		{"ca_file without PEM", Config{Name: "a", URL: "https://h", CAFile: bad}, Options{}, "no PEM certificates found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
	u, err := New(Config{Name: "a", URL: "http://h", Forward: []string{"assertion"}}, Options{
		Assert: func(context.Context, *auth.Identity, string) (string, error) { return "x", nil },
	})
	if err != nil || u.Name() != "a" || u.Forward() != ForwardAssertion {
		t.Errorf("New(assertion with signer) = %v, %v; want Name() a", u, err)
	}
}
