package server

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	acme := func(mut func(*ACMEConfig)) Config {
		c := Config{TLS: TLSConfig{Mode: ModeACME, ACME: ACMEConfig{
			Email: "ops@example.com", Domains: []string{"app.example.com"}, Storage: "/var/lib/portcullis/acme",
		}}}
		if mut != nil {
			mut(&c.TLS.ACME)
		}
		return c
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings, each must appear; nil means valid
	}{
		{name: "zero value is valid", cfg: Config{}},
		{name: "off explicit", cfg: Config{Listen: "127.0.0.1:4180", TLS: TLSConfig{Mode: "off"}}},
		{name: "self-signed", cfg: Config{TLS: TLSConfig{Mode: "self-signed"}, MetricsListen: "127.0.0.1:9090"}},
		{name: "files", cfg: Config{TLS: TLSConfig{Mode: "files", CertFile: "/c.pem", KeyFile: "/k.pem"}}},
		{name: "acme", cfg: acme(nil)},
		{name: "acme full", cfg: acme(func(a *ACMEConfig) {
			a.CA, a.CARoot, a.HTTPListen = "https://ca.internal/dir", "/etc/ca.pem", "127.0.0.1:8080"
		})},
		{name: "port zero for tests", cfg: Config{Listen: "127.0.0.1:0", MetricsListen: "127.0.0.1:0"}},
		{name: "ipv6 listen", cfg: Config{Listen: "[::1]:4180"}},
		{name: "unknown mode", cfg: Config{TLS: TLSConfig{Mode: "on"}},
			wantErr: []string{`tls.mode: "on": unknown (want off, self-signed, files or acme)`}},
		{name: "files without paths", cfg: Config{TLS: TLSConfig{Mode: "files"}},
			wantErr: []string{"tls.cert_file: required when tls.mode is files", "tls.key_file: required when tls.mode is files"}},
		{name: "cert without mode", cfg: Config{TLS: TLSConfig{CertFile: "/c.pem", KeyFile: "/k.pem"}},
			wantErr: []string{`tls.cert_file: "/c.pem": set but tls.mode is "off" (want files)`, `tls.key_file: "/k.pem": set but tls.mode is "off"`}},
		{name: "acme block without mode", cfg: Config{TLS: TLSConfig{Mode: "self-signed", ACME: ACMEConfig{Domains: []string{"a.example"}}}},
			wantErr: []string{`tls.acme: set but tls.mode is "self-signed" (want acme)`}},
		{name: "listen without port", cfg: Config{Listen: "abc"},
			wantErr: []string{`listen: "abc": want host:port`}},
		{name: "listen bad port", cfg: Config{Listen: ":http"},
			wantErr: []string{`listen: ":http": port "http"`}},
		{name: "listen port too big", cfg: Config{Listen: ":65536"},
			wantErr: []string{`listen: ":65536": port "65536": want a number from 0 to 65535`}},
		{name: "listen bad host", cfg: Config{Listen: "a b:80"},
			wantErr: []string{`listen: "a b:80": host "a b"`}},
		{name: "metrics bad", cfg: Config{MetricsListen: "9090"},
			wantErr: []string{`metrics_listen: "9090": want host:port`}},
		{name: "metrics same as listen", cfg: Config{Listen: ":4180", MetricsListen: "127.0.0.1:4180"},
			wantErr: []string{`metrics_listen: "127.0.0.1:4180": same address as listen`}},
		{name: "metrics same as default listen", cfg: Config{MetricsListen: ":4180"},
			wantErr: []string{`metrics_listen: ":4180": same address as listen`}},
		{name: "negative timeouts", cfg: Config{Timeouts: TimeoutsConfig{ReadHeader: -time.Second, Idle: -1, Shutdown: -time.Minute}},
			wantErr: []string{`timeouts.read_header: "-1s": must not be negative`, `timeouts.idle: "-1ns"`, `timeouts.shutdown: "-1m0s"`}},
		{name: "acme missing everything", cfg: Config{TLS: TLSConfig{Mode: ModeACME}},
			wantErr: []string{"tls.acme.domains: at least one domain is required", "tls.acme.storage: required", "tls.acme.email: required"}},
		{name: "acme bad domains", cfg: acme(func(a *ACMEConfig) {
			a.Domains = []string{"*.example.com", "https://app.example.com", "app.example.com", "APP.example.com", "bad_name.example"}
		}), wantErr: []string{
			`tls.acme.domains[0]: "*.example.com": wildcard names need a DNS challenge`,
			`tls.acme.domains[1]: "https://app.example.com": want a bare host name`,
			`tls.acme.domains[3]: "APP.example.com": duplicate`,
			`tls.acme.domains[4]: "bad_name.example": label "bad_name": invalid character '_'`,
		}},
		{name: "acme bad email", cfg: acme(func(a *ACMEConfig) { a.Email = "Ops <ops@example.com>" }),
			wantErr: []string{`tls.acme.email: "Ops <ops@example.com>": not a plain email address`}},
		{name: "acme http ca", cfg: acme(func(a *ACMEConfig) { a.CA = "http://ca.internal/dir" }),
			wantErr: []string{`tls.acme.ca: "http://ca.internal/dir": want an https:// ACME directory URL`}},
		{name: "acme http_listen", cfg: acme(func(a *ACMEConfig) { a.HTTPListen = "80" }),
			wantErr: []string{`tls.acme.http_listen: "80": want host:port`}},
		{name: "acme http_listen same as listen", cfg: acme(func(a *ACMEConfig) { a.HTTPListen = ":4180" }),
			wantErr: []string{`tls.acme.http_listen: ":4180": same address as listen`}},
		{name: "every problem at once", cfg: Config{Listen: "x", TLS: TLSConfig{Mode: "nope"}, Timeouts: TimeoutsConfig{Idle: -1}},
			wantErr: []string{`listen: "x"`, `tls.mode: "nope"`, `timeouts.idle`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tt.wantErr)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.wantErr) {
				t.Errorf("Validate() returned %d errors, want %d:\n%v", len(lines), len(tt.wantErr), err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %v, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	got := Config{TLS: TLSConfig{Mode: ModeACME}}.withDefaults()
	want := Config{
		Listen:   ":4180",
		TLS:      TLSConfig{Mode: ModeACME, ACME: ACMEConfig{CA: DefaultACMECA, HTTPListen: ":80"}},
		Timeouts: TimeoutsConfig{ReadHeader: 10 * time.Second, Idle: 120 * time.Second, Shutdown: 30 * time.Second},
	}
	if got.Listen != want.Listen || got.TLS.Mode != want.TLS.Mode || got.TLS.ACME.CA != want.TLS.ACME.CA ||
		got.TLS.ACME.HTTPListen != want.TLS.ACME.HTTPListen || got.Timeouts != want.Timeouts {
		t.Errorf("withDefaults() = %+v, want %+v", got, want)
	}
	if got := (Config{}).withDefaults(); got.TLS.Mode != ModeOff || got.TLS.ACME.HTTPListen != "" {
		t.Errorf("withDefaults() of zero = %+v, want mode off and no acme defaults", got)
	}
}
