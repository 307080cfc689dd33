package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/portcullis-proxy/portcullis/auth/issuer"
	"github.com/portcullis-proxy/portcullis/auth/login"
	"github.com/portcullis-proxy/portcullis/auth/session"
	"github.com/portcullis-proxy/portcullis/proxy"
	"github.com/portcullis-proxy/portcullis/proxy/server"
)

// fileConfig is the whole YAML file: each section is the owning package's
// Config, composed here and nowhere else.
type fileConfig struct {
	Server    serverSection       `yaml:"server"`
	Session   session.Config      `yaml:"session"`
	Login     login.Config        `yaml:"login"`
	Issuer    issuer.Config       `yaml:"issuer"`
	Upstreams []proxy.RouteConfig `yaml:"upstreams"`

	// unsetVars names ${VAR} references whose variable was unset or empty.
	unsetVars []string
}

// serverSection is `server:`: the listener keys belong to proxy/server,
// the rest to the front door and to logging.
type serverSection struct {
	server.Config `yaml:",inline"`
	// PublicURL is the URL users reach Portcullis at. Required.
	PublicURL string `yaml:"public_url"`
	// TrustedProxies lists CIDRs whose X-Forwarded-* headers are believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Log configures logging.
	Log logConfig `yaml:"log"`
}

// logConfig is `server.log`.
type logConfig struct {
	// Format is text (default) or json.
	Format string `yaml:"format"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
}

// level is the configured level (info when empty; Validate rejects others).
func (c logConfig) level() slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(orDefault(c.Level, "info")))
	return level
}

func (c logConfig) Validate() error {
	var errs []error
	switch c.Format {
	case "", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("format: %q: unknown (want text or json)", c.Format))
	}
	switch strings.ToLower(c.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("level: %q: unknown (want debug, info, warn or error)", c.Level))
	}
	return errors.Join(errs...)
}

// builtinIssuer is the login.issuer value that selects the built-in issuer.
const builtinIssuer = "builtin"

func (c *fileConfig) usesBuiltinIssuer() bool {
	return c.Login.Issuer == "" || c.Login.Issuer == builtinIssuer
}

// proxyConfig assembles the front door's Config from its parts of the file.
func (c *fileConfig) proxyConfig() proxy.Config {
	return proxy.Config{
		PublicURL:      c.Server.PublicURL,
		TrustedProxies: c.Server.TrustedProxies,
		Routes:         c.Upstreams,
	}
}

// validate runs every section's Validate and returns all problems, each
// named by its full YAML key path.
func (c *fileConfig) validate() []error {
	var errs []error
	errs = append(errs, prefixed("server.", c.Server.Config.Validate())...)
	errs = append(errs, prefixed("server.log.", c.Server.Log.Validate())...)
	// proxy.Config names public_url/trusted_proxies bare and routes as upstreams[i].
	for _, e := range prefixed("", c.proxyConfig().Validate()) {
		msg := e.Error()
		if !strings.HasPrefix(msg, "upstreams") {
			e = fmt.Errorf("server.%w", e)
		}
		errs = append(errs, e)
	}
	errs = append(errs, prefixed("session.", c.Session.Validate())...)
	errs = append(errs, prefixed("login.", c.Login.Validate())...)
	if c.usesBuiltinIssuer() || c.hasIssuerConfig() {
		errs = append(errs, prefixed("issuer.", c.Issuer.Validate())...)
	}
	if c.usesBuiltinIssuer() && len(c.Issuer.Users) == 0 && c.Issuer.UsersFile == "" {
		errs = append(errs, errors.New(`issuer.users: login.issuer is "builtin" but no users are configured (add issuer.users or issuer.users_file)`))
	}
	return errs
}

// hasIssuerConfig reports whether the built-in issuer is configured to
// serve other clients even though login uses an external issuer.
func (c *fileConfig) hasIssuerConfig() bool {
	return len(c.Issuer.Clients) > 0 || len(c.Issuer.Users) > 0 || c.Issuer.UsersFile != ""
}

// prefixed splits a joined error into one error per problem, each prefixed
// with the section's key path.
func prefixed(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, prefixed(prefix, e)...)
		}
		return out
	}
	if prefix == "" {
		return []error{err}
	}
	return []error{fmt.Errorf("%s%w", prefix, err)}
}

// loadConfig reads, expands and strictly decodes a config file. It returns
// every problem found: unknown keys with their line, type errors, and
// validation errors by key path.
func loadConfig(path string, getenv func(string) string) (*fileConfig, []error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, []error{fmt.Errorf("read config: %w", err)}
	}
	cfg, errs := parseConfig(raw, getenv)
	if len(errs) > 0 {
		return nil, errs
	}
	if errs := cfg.validate(); len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// envRef matches ${NAME}; $${NAME} is a literal "${NAME}".
var envRef = regexp.MustCompile(`\$?\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// parseConfig decodes YAML in two passes. The first decodes the text as
// written, strictly, only to report unknown keys with their real line
// numbers. The second expands ${VAR} inside scalar values only — so an
// environment value can never inject YAML structure — and decodes the result.
func parseConfig(raw []byte, getenv func(string) string) (*fileConfig, []error) {
	var errs []error
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var probe fileConfig
	if err := dec.Decode(&probe); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			if err.Error() == "EOF" {
				return nil, []error{errors.New("config: the file is empty")}
			}
			return nil, []error{fmt.Errorf("config: %w", err)}
		}
		for _, m := range te.Errors {
			if strings.Contains(m, "not found in type") {
				errs = append(errs, fmt.Errorf("config: %s", friendlyUnknownKey(m)))
			}
		}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, []error{fmt.Errorf("config: %w", err)}
	}
	cfg := &fileConfig{}
	expandNode(&root, getenv, &cfg.unsetVars)
	if err := root.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				if !strings.Contains(m, "not found in type") {
					errs = append(errs, fmt.Errorf("config: %s", m))
				}
			}
		} else {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// friendlyUnknownKey rewrites yaml.v3's "line 3: field foo not found in
// type main.serverSection" as "line 3: unknown key "foo"".
func friendlyUnknownKey(m string) string {
	line, rest, ok := strings.Cut(m, ": field ")
	if !ok {
		return m
	}
	name, _, _ := strings.Cut(rest, " not found")
	return fmt.Sprintf("%s: unknown key %q (check its spelling and indentation)", line, name)
}

func expandNode(n *yaml.Node, getenv func(string) string, missing *[]string) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			if strings.HasPrefix(m, "$$") {
				return m[1:]
			}
			name := m[2 : len(m)-1]
			v := getenv(name)
			if v == "" {
				*missing = append(*missing, name)
			}
			return v
		})
		// A plain (unquoted) scalar is re-resolved after expansion, so
		// "port: ${PORT}" can become an int; a quoted one stays a string.
		if n.Style == 0 {
			n.Tag = ""
		}
		return
	}
	for _, c := range n.Content {
		expandNode(c, getenv, missing)
	}
}
