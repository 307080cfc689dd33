package issuer

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"golang.org/x/crypto/bcrypt"
)

// Grant names as written in issuer.clients[].grants.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantImplicit          = "implicit"
)

// Scopes that carry meaning for the issuer; clients may list others (API
// scopes for client_credentials), which are passed through in `scope`.
const (
	ScopeOpenID        = "openid"
	ScopeEmail         = "email"
	ScopeProfile       = "profile"
	ScopeGroups        = "groups"
	ScopeOfflineAccess = "offline_access"
)

// minSecretLen is the shortest plain client secret accepted; anything
// shorter is guessable and must be given as a bcrypt secret_hash instead.
const minSecretLen = 32

var knownGrants = []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantPassword, GrantImplicit}

// Config is the `issuer:` section: the built-in OpenID provider.
type Config struct {
	// URL is the issuer identifier (iss) and the base of every endpoint.
	// Default: {public_url}/oauth2/issuer.
	URL string `yaml:"url"`
	// Users are the accounts that may sign in. Default: none.
	Users []UserConfig `yaml:"users"`
	// UsersFile is a YAML list of more users (same schema as Users), re-read
	// when its modification time changes. Default: "" (none).
	UsersFile string `yaml:"users_file"`
	// Clients are the registered OAuth clients. Default: none.
	Clients []ClientConfig `yaml:"clients"`
	// Tokens sets token and code lifetimes.
	Tokens TokensConfig `yaml:"tokens"`
	// Keys sets the signing algorithm and rotation period.
	Keys KeysConfig `yaml:"keys"`
	// Storage selects where codes, refresh tokens, keys and sessions live.
	// The command opens it and passes it in Options.Store. Default: memory.
	Storage store.Config `yaml:"storage"`
}

// UserConfig is one account of the built-in issuer.
type UserConfig struct {
	// Username is the sign-in name, the sub and preferred_username claims. Required.
	Username string `yaml:"username"`
	// Email is the email claim (email_verified is true). Default: "".
	Email string `yaml:"email"`
	// Name is the name claim. Default: "".
	Name string `yaml:"name"`
	// Groups is the groups claim (scope groups). Default: none.
	Groups []string `yaml:"groups"`
	// PasswordHash is a bcrypt hash ("portcullis hash-password"). Required.
	PasswordHash string `yaml:"password_hash"`
}

// ClientConfig is one registered OAuth client.
type ClientConfig struct {
	// ID is the client_id. Required, unique.
	ID string `yaml:"id"`
	// Secret is the client secret, at least 32 characters. Confidential
	// clients set exactly one of Secret, SecretFile, SecretHash. Default: "".
	Secret auth.Secret `yaml:"secret"`
	// SecretFile is a file holding the secret (trailing newline ignored). Default: "".
	SecretFile string `yaml:"secret_file"`
	// SecretHash is a bcrypt hash of the secret. Default: "".
	SecretHash string `yaml:"secret_hash"`
	// Public marks a client that cannot keep a secret (a native or browser
	// app): it authenticates with "none" and must use PKCE. Default: false.
	Public bool `yaml:"public"`
	// RedirectURIs are matched as exact strings; http is allowed only for
	// loopback hosts. Required for authorization_code and implicit.
	RedirectURIs []string `yaml:"redirect_uris"`
	// PostLogoutRedirectURIs are the allowed end_session targets (exact match). Default: none.
	PostLogoutRedirectURIs []string `yaml:"post_logout_redirect_uris"`
	// Grants the client may use. Default: [authorization_code, refresh_token].
	Grants []string `yaml:"grants"`
	// Scopes the client may request. Default: [openid, email, profile, groups, offline_access].
	Scopes []string `yaml:"scopes"`
	// Consent shows the user an allow/deny page before issuing. Default: false.
	Consent bool `yaml:"consent"`
	// Audience is the aud of the access tokens it gets. Default: [public_url].
	Audience []string `yaml:"audience"`
}

// TokensConfig sets lifetimes. Values down to 1s are accepted (tests).
type TokensConfig struct {
	// AccessTTL is the access-token lifetime. Default: 10m.
	AccessTTL time.Duration `yaml:"access_ttl"`
	// IDTTL is the ID-token lifetime. Default: 1h.
	IDTTL time.Duration `yaml:"id_ttl"`
	// RefreshTTL is the lifetime of each refresh token (renewed on rotation). Default: 720h.
	RefreshTTL time.Duration `yaml:"refresh_ttl"`
	// CodeTTL is the authorization-code lifetime. Default: 60s.
	CodeTTL time.Duration `yaml:"code_ttl"`
}

// KeysConfig sets how tokens are signed.
type KeysConfig struct {
	// Algorithm is RS256 or ES256. Default: RS256 (OIDC's must-have).
	Algorithm string `yaml:"algorithm"`
	// RotateEvery is how long a key signs before a new one replaces it;
	// retired keys stay in the JWKS until their tokens expired. Default: 720h.
	RotateEvery time.Duration `yaml:"rotate_every"`
}

// Defaults.
const (
	defaultAccessTTL   = 10 * time.Minute
	defaultIDTTL       = time.Hour
	defaultRefreshTTL  = 720 * time.Hour
	defaultCodeTTL     = 60 * time.Second
	defaultRotateEvery = 720 * time.Hour
	defaultAlgorithm   = "RS256"
)

var (
	defaultGrants = []string{GrantAuthorizationCode, GrantRefreshToken}
	defaultScopes = []string{ScopeOpenID, ScopeEmail, ScopeProfile, ScopeGroups, ScopeOfflineAccess}
)

// withDefaults fills zero values.
func (t TokensConfig) withDefaults() TokensConfig {
	if t.AccessTTL == 0 {
		t.AccessTTL = defaultAccessTTL
	}
	if t.IDTTL == 0 {
		t.IDTTL = defaultIDTTL
	}
	if t.RefreshTTL == 0 {
		t.RefreshTTL = defaultRefreshTTL
	}
	if t.CodeTTL == 0 {
		t.CodeTTL = defaultCodeTTL
	}
	return t
}

func (k KeysConfig) withDefaults() KeysConfig {
	if k.Algorithm == "" {
		k.Algorithm = defaultAlgorithm
	}
	if k.RotateEvery == 0 {
		k.RotateEvery = defaultRotateEvery
	}
	return k
}

// Validate reports every problem in c at once, each naming its key path
// relative to the issuer section. It does no I/O: secret_file and
// users_file are read by New.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if c.URL != "" {
		if err := validateIssuerURL(c.URL); err != nil {
			add("url: %q: %w", c.URL, err)
		}
	}
	errs = append(errs, validateUsers("users", c.Users)...)

	usernames := map[string]bool{}
	for _, u := range c.Users {
		usernames[u.Username] = true
	}
	seen := map[string]int{}
	for i, cl := range c.Clients {
		p := fmt.Sprintf("clients[%d]", i)
		errs = append(errs, cl.validate(p)...)
		if usernames[cl.ID] {
			// A client_credentials token's subject is the client id: it
			// must never pass for the user of the same name.
			add("%s.id: %q: also a username in users; choose another client id", p, cl.ID)
		}
		if cl.ID != "" {
			if j, dup := seen[cl.ID]; dup {
				add("%s.id: %q: duplicate client id (also clients[%d])", p, cl.ID, j)
			} else {
				seen[cl.ID] = i
			}
		}
	}

	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"tokens.access_ttl", c.Tokens.AccessTTL},
		{"tokens.id_ttl", c.Tokens.IDTTL},
		{"tokens.refresh_ttl", c.Tokens.RefreshTTL},
		{"tokens.code_ttl", c.Tokens.CodeTTL},
		{"keys.rotate_every", c.Keys.RotateEvery},
	} {
		if d.v != 0 && d.v < time.Second {
			add("%s: %q: must be at least 1s", d.key, d.v)
		}
	}
	switch c.Keys.Algorithm {
	case "", "RS256", "ES256":
	default:
		add("keys.algorithm: %q: unknown algorithm (want RS256 or ES256)", c.Keys.Algorithm)
	}
	if err := c.Storage.Validate(); err != nil {
		// Each storage problem keeps its own line, prefixed with our key.
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				add("storage.%w", e)
			}
		} else {
			add("storage.%w", err)
		}
	}
	return errors.Join(errs...)
}

// validateUsers checks a list of users as found at prefix (users, or the
// users_file name).
func validateUsers(prefix string, users []UserConfig) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	seen := map[string]int{}
	for i, u := range users {
		p := fmt.Sprintf("%s[%d]", prefix, i)
		switch {
		case u.Username == "":
			add("%s.username: missing", p)
		case strings.TrimSpace(u.Username) != u.Username || strings.ContainsFunc(u.Username, isControl):
			add("%s.username: %q: has spaces at the ends or control characters", p, u.Username)
		default:
			if j, dup := seen[u.Username]; dup {
				add("%s.username: %q: duplicate username (also %s[%d])", p, u.Username, prefix, j)
			} else {
				seen[u.Username] = i
			}
		}
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			add(`%s.password_hash: not a bcrypt hash (make one with "portcullis hash-password")`, p)
		}
		for j, g := range u.Groups {
			if g == "" {
				add("%s.groups[%d]: empty group name", p, j)
			}
		}
	}
	return errs
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func (cl ClientConfig) validate(p string) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if cl.ID == "" {
		add("%s.id: missing", p)
	} else if strings.ContainsAny(cl.ID, ":") || strings.ContainsFunc(cl.ID, isControl) || strings.TrimSpace(cl.ID) != cl.ID {
		// A colon would make HTTP Basic client authentication ambiguous.
		add("%s.id: %q: must not contain ':', control characters or surrounding spaces", p, cl.ID)
	}

	nSecrets := 0
	if !cl.Secret.IsZero() {
		nSecrets++
		if len(cl.Secret.Reveal()) < minSecretLen {
			add("%s.secret: shorter than %d characters (use secret_hash or a longer secret)", p, minSecretLen)
		}
	}
	if cl.SecretFile != "" {
		nSecrets++
	}
	if cl.SecretHash != "" {
		nSecrets++
		if _, err := bcrypt.Cost([]byte(cl.SecretHash)); err != nil {
			add(`%s.secret_hash: not a bcrypt hash (make one with "portcullis hash-password")`, p)
		}
	}
	switch {
	case cl.Public && nSecrets > 0:
		add("%s.secret: a public client has no secret (remove secret, secret_file and secret_hash, or set public: false)", p)
	case !cl.Public && nSecrets == 0:
		add("%s.secret: a confidential client needs one of secret, secret_file or secret_hash (or set public: true)", p)
	case nSecrets > 1:
		add("%s.secret: set only one of secret, secret_file and secret_hash", p)
	}

	grants := cl.Grants
	if len(grants) == 0 {
		grants = defaultGrants
	}
	for j, g := range cl.Grants {
		if !slices.Contains(knownGrants, g) {
			add("%s.grants[%d]: %q: unknown grant (want %s)", p, j, g, strings.Join(knownGrants, ", "))
		}
		if slices.Index(cl.Grants, g) != j {
			add("%s.grants[%d]: %q: listed twice", p, j, g)
		}
	}
	if cl.Public && slices.Contains(grants, GrantClientCredentials) {
		add("%s.grants: %q: not allowed for a public client (it cannot authenticate)", p, GrantClientCredentials)
	}
	needsRedirect := slices.Contains(grants, GrantAuthorizationCode) || slices.Contains(grants, GrantImplicit)
	if needsRedirect && len(cl.RedirectURIs) == 0 {
		add("%s.redirect_uris: missing (needed by authorization_code and implicit)", p)
	}
	for j, u := range cl.RedirectURIs {
		if err := validateRedirectURI(u); err != nil {
			add("%s.redirect_uris[%d]: %q: %w", p, j, u, err)
		}
	}
	for j, u := range cl.PostLogoutRedirectURIs {
		if err := validateRedirectURI(u); err != nil {
			add("%s.post_logout_redirect_uris[%d]: %q: %w", p, j, u, err)
		}
	}
	for j, s := range cl.Scopes {
		if !validScopeToken(s) {
			add("%s.scopes[%d]: %q: not a valid scope name", p, j, s)
		}
	}
	for j, a := range cl.Audience {
		if a == "" || strings.ContainsFunc(a, isControl) {
			add("%s.audience[%d]: %q: empty or has control characters", p, j, a)
		}
	}
	return errs
}

// validScopeToken follows RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

func validateIssuerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("must be an http or https URL")
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "#") || strings.HasSuffix(s, "?") {
		return errors.New("must have a host and no user, query or fragment")
	}
	return nil
}

// validateRedirectURI accepts absolute https URLs, and http only for
// loopback hosts (RFC 8252 §7.3, RFC 9700 §2.1), never with a fragment.
func validateRedirectURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return errors.New("not an absolute URL")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return errors.New("must not have a fragment")
	}
	if u.User != nil {
		return errors.New("must not have user information")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return errors.New("http is allowed only for loopback")
		}
	default:
		return fmt.Errorf("scheme %q not allowed (want https, or http for loopback)", u.Scheme)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
