package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/portcullis-proxy/portcullis/auth/policy"
	"github.com/portcullis-proxy/portcullis/upstream"
)

// Config is what the front door needs from the file: where it is reached,
// which peers' forwarding headers to believe, and the route table.
type Config struct {
	// PublicURL is the URL users reach Portcullis at (server.public_url).
	// Every redirect and cookie is built from it, never from Host. Required.
	PublicURL string `yaml:"public_url"`
	// TrustedProxies lists CIDRs (or single addresses) whose X-Forwarded-*
	// and forward-auth headers are believed (server.trusted_proxies).
	// Default: none.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Routes is the `upstreams:` list. At least one is required.
	Routes []RouteConfig `yaml:"upstreams"`
}

// RouteConfig is one `upstreams:` entry: where requests go (the inlined
// upstream.Config) and which requests, for whom.
type RouteConfig struct {
	upstream.Config `yaml:",inline"`
	// Host matches the request's Host, case-insensitively, ignoring a
	// trailing dot and the port. Default: "" (any host).
	Host string `yaml:"host"`
	// Path is the path prefix this route serves. A prefix ending in "/"
	// matches by prefix; one that does not matches itself and everything
	// below it ("/app" serves /app and /app/x, not /application).
	// Default: "/".
	Path string `yaml:"path"`
	// Public lists path prefixes (same matching as Path, applied to the
	// canonical path) served without sign-in. ["/"] makes the whole route
	// public. Default: none.
	Public []string `yaml:"public"`
	// Allow restricts who may use the route once signed in. Default: any
	// signed-in user.
	Allow policy.Config `yaml:"allow"`
	// Bearer accepts Authorization: Bearer tokens from the login issuer on
	// this route. Default: false.
	Bearer bool `yaml:"bearer"`
	// BearerAudiences lists audiences accepted in bearer tokens besides the
	// default (login.client_id for an external issuer, public_url for the
	// built-in one). Default: none.
	BearerAudiences []string `yaml:"bearer_audiences"`
	// AllowEncodedSlashes lets paths with %2F or %5C through to this
	// upstream (some apps put them in paths) instead of refusing them with
	// 400. They are routed as written, never decoded or resolved, and such
	// a request is never public: it always needs a signed-in, allowed user.
	// Default: false.
	AllowEncodedSlashes bool `yaml:"allow_encoded_slashes"`
}

// Validate reports every problem at once. Route errors are named
// upstreams[i].key, other keys by their name in the server section.
func (c Config) Validate() error {
	var errs []error
	if _, err := parsePublicURL(c.PublicURL); err != nil {
		errs = append(errs, fmt.Errorf("public_url: %w", err))
	}
	for i, s := range c.TrustedProxies {
		if _, err := parsePrefix(s); err != nil {
			errs = append(errs, fmt.Errorf("trusted_proxies[%d]: %q: not a CIDR or IP address", i, s))
		}
	}
	if len(c.Routes) == 0 {
		errs = append(errs, errors.New("upstreams: at least one upstream is required"))
	}
	names := map[string]int{}
	type hostPath struct{ host, path string }
	seen := map[hostPath]int{}
	for i, r := range c.Routes {
		p := fmt.Sprintf("upstreams[%d].", i)
		errs = append(errs, prefixErrors(p, r.Config.Validate())...)
		errs = append(errs, prefixErrors(p+"allow.", r.Allow.Validate())...)
		if j, dup := names[r.Name]; dup && r.Name != "" {
			errs = append(errs, fmt.Errorf("%sname: %q: already used by upstreams[%d]", p, r.Name, j))
		}
		names[r.Name] = i
		if strings.ContainsAny(r.Host, "/ @") {
			errs = append(errs, fmt.Errorf("%shost: %q: want a host name only (no scheme, path or userinfo)", p, r.Host))
		}
		if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
			errs = append(errs, fmt.Errorf("%spath: %q: must start with /", p, r.Path))
		} else if r.Path != "" {
			if cp, err := canonicalPath(r.Path); err != nil || cp != r.Path {
				errs = append(errs, fmt.Errorf("%spath: %q: not in canonical form (want %q)", p, r.Path, cp))
			}
			if strings.HasPrefix(r.Path, "/oauth2/") || r.Path == "/oauth2" {
				errs = append(errs, fmt.Errorf("%spath: %q: /oauth2/ is reserved for Portcullis itself", p, r.Path))
			}
		}
		hp := hostPath{normalizeHost(r.Host), orDefault(r.Path, "/")}
		if j, dup := seen[hp]; dup {
			errs = append(errs, fmt.Errorf("%spath: %q: upstreams[%d] already serves host %q with this path", p, hp.path, j, r.Host))
		}
		seen[hp] = i
		for k, pub := range r.Public {
			if cp, err := canonicalPath(pub); err != nil || cp != pub || !strings.HasPrefix(pub, "/") {
				errs = append(errs, fmt.Errorf("%spublic[%d]: %q: must be a canonical path starting with /", p, k, pub))
			}
		}
		for k, a := range r.BearerAudiences {
			if a == "" {
				errs = append(errs, fmt.Errorf("%sbearer_audiences[%d]: empty audience", p, k))
			}
		}
	}
	return errors.Join(errs...)
}

// parsePublicURL checks public_url: an absolute http(s) URL with a host
// and no path beyond "/", query, fragment or userinfo.
func parsePublicURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New(`required (e.g. "https://app.example.com")`)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("%q: want scheme://host[:port] only (no path, query or userinfo)", s)
	}
	u.Path = ""
	return u, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// prefixErrors turns a joined error into one error per problem, each
// prefixed with the key path of the section it came from.
func prefixErrors(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			list = append(list, prefixErrors(prefix, e)...)
		}
		return list
	}
	return []error{fmt.Errorf("%s%w", prefix, err)}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// normalizeHost lower-cases a host and drops a trailing dot and any port,
// so "App.Example.COM.:443" and "app.example.com" are the same route.
func normalizeHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h)
}
