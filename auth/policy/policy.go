// Package policy decides, without any I/O, whether an authenticated
// identity may use a route. Authentication (who you are) happens elsewhere;
// this package only answers "is this identity allowed here".
package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/portcullis-proxy/portcullis/auth"
)

// Config is an upstream's `allow:` block. A user is allowed when any one
// non-empty list matches; when every list is empty, any signed-in user is.
type Config struct {
	// Users lists allowed user names (the Identity's User), exact match.
	// Default: empty.
	Users []string `yaml:"users"`
	// Emails lists allowed email addresses, compared case-insensitively;
	// only a verified email (email_verified) matches. Default: empty.
	Emails []string `yaml:"emails"`
	// Domains lists allowed email domains: "example.com" matches exactly
	// that domain, "*.example.com" matches its subdomains (not itself);
	// only a verified email matches. Default: empty.
	Domains []string `yaml:"domains"`
	// Groups lists allowed groups; membership of any one is enough.
	// Default: empty.
	Groups []string `yaml:"groups"`
}

// Validate reports every malformed entry at once, naming its key path
// relative to the allow block.
func (c Config) Validate() error {
	var errs []error
	for i, u := range c.Users {
		if strings.TrimSpace(u) == "" {
			errs = append(errs, fmt.Errorf("users[%d]: empty user name", i))
		}
	}
	for i, e := range c.Emails {
		if strings.Count(e, "@") != 1 || strings.HasPrefix(e, "@") || strings.HasSuffix(e, "@") {
			errs = append(errs, fmt.Errorf("emails[%d]: %q: not an email address (want name@domain)", i, e))
		}
	}
	for i, d := range c.Domains {
		bare := strings.TrimPrefix(d, "*.")
		if bare == "" || strings.ContainsAny(bare, "@*/ ") || strings.HasPrefix(bare, ".") || strings.HasSuffix(bare, ".") {
			errs = append(errs, fmt.Errorf("domains[%d]: %q: not a domain (want example.com or *.example.com)", i, d))
		}
	}
	for i, g := range c.Groups {
		if g == "" {
			errs = append(errs, fmt.Errorf("groups[%d]: empty group name", i))
		}
	}
	return errors.Join(errs...)
}

// Policy is a compiled allow block. The zero Policy allows every identity.
type Policy struct {
	users   map[string]struct{}
	emails  map[string]struct{}
	domains []string // exact, lower-case
	suffix  []string // ".example.com" for "*.example.com"
	groups  map[string]struct{}
	open    bool
}

// New compiles cfg. It fails only when cfg does not validate.
func New(cfg Config) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Policy{
		users:  set(cfg.Users, false),
		emails: set(cfg.Emails, true),
		groups: set(cfg.Groups, false),
	}
	for _, d := range cfg.Domains {
		d = strings.ToLower(d)
		if rest, ok := strings.CutPrefix(d, "*."); ok {
			p.suffix = append(p.suffix, "."+rest)
		} else {
			p.domains = append(p.domains, d)
		}
	}
	p.open = len(p.users)+len(p.emails)+len(p.domains)+len(p.suffix)+len(p.groups) == 0
	return p, nil
}

// DeniedError says what a refused identity lacked, in words fit for the
// person refused: it names the kinds of rule, never who is allowed.
type DeniedError struct {
	// Missing lists the rule kinds that exist and did not match, e.g.
	// "an allowed user", "membership of an allowed group".
	Missing []string
}

// Error implements error.
func (e *DeniedError) Error() string {
	return "policy: access denied: this route requires " + strings.Join(e.Missing, " or ")
}

// Unwrap makes errors.Is(err, auth.ErrForbidden) true.
func (e *DeniedError) Unwrap() error { return auth.ErrForbidden }

// Check returns nil when id may use the route, a *DeniedError otherwise.
// A nil identity is never allowed (fail closed).
func (p *Policy) Check(id *auth.Identity) error {
	if id == nil {
		return auth.ErrUnauthenticated
	}
	if p == nil || p.open {
		return nil
	}
	if _, ok := p.users[id.User]; ok && id.User != "" {
		return nil
	}
	// Email and domain rules trust only an address the issuer verified:
	// where users can set their own email, anyone could claim the CEO's.
	if email, domain, ok := splitEmail(id.Email); ok && id.EmailVerified {
		if _, ok := p.emails[email]; ok {
			return nil
		}
		for _, d := range p.domains {
			if domain == d {
				return nil
			}
		}
		for _, s := range p.suffix {
			if strings.HasSuffix(domain, s) && len(domain) > len(s) {
				return nil
			}
		}
	}
	for _, g := range id.Groups {
		if _, ok := p.groups[g]; ok {
			return nil
		}
	}
	var missing []string
	if len(p.users) > 0 {
		missing = append(missing, "an allowed user")
	}
	if len(p.emails) > 0 {
		missing = append(missing, "an allowed email address")
	}
	if len(p.domains)+len(p.suffix) > 0 {
		missing = append(missing, "an email address in an allowed domain")
	}
	if len(p.groups) > 0 {
		missing = append(missing, "membership of an allowed group")
	}
	return &DeniedError{Missing: missing}
}

// splitEmail lower-cases an address and returns it with its domain, only
// when it has exactly one '@' with something on both sides: anything else
// ("a@b@evil.com") matches no email or domain rule.
func splitEmail(e string) (email, domain string, ok bool) {
	at := strings.IndexByte(e, '@')
	if at <= 0 || at == len(e)-1 || strings.IndexByte(e[at+1:], '@') >= 0 {
		return "", "", false
	}
	e = strings.ToLower(e)
	return e, e[at+1:], true
}

func set(xs []string, lower bool) map[string]struct{} {
	if len(xs) == 0 {
		return nil
	}
	m := make(map[string]struct{}, len(xs))
	for _, x := range xs {
		if lower {
			x = strings.ToLower(x)
		}
		m[x] = struct{}{}
	}
	return m
}
