// Package issuer is Portcullis's built-in OpenID provider: it authenticates
// the users of its config and issues ID, access and refresh tokens to the
// registered clients (the proxy itself among them) over the standard
// OAuth 2.0 / OpenID Connect endpoints.
//
// It serves discovery (also in the RFC 8414 form), the JWKS, authorize with
// a login form and an optional consent page, token (authorization_code with
// PKCE S256, refresh_token with rotation, client_credentials, and the
// opt-in password and implicit grants), userinfo, introspection (RFC 7662),
// revocation (RFC 7009) and RP-initiated logout. Its state lives in a
// store.Store the caller owns; it does not decide who may reach which
// upstream (that is auth/policy) and does not set the proxy's session.
package issuer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"golang.org/x/crypto/bcrypt"
)

// Endpoint paths below the issuer path.
const (
	pathDiscovery  = "/.well-known/openid-configuration"
	pathKeys       = "/keys"
	pathAuthorize  = "/authorize"
	pathLogin      = "/login"
	pathConsent    = "/consent"
	pathToken      = "/token"
	pathUserinfo   = "/userinfo"
	pathIntrospect = "/introspect"
	pathRevoke     = "/revoke"
	pathEndSession = "/end_session"
	// pathRFC8414 is prefixed to the issuer path (RFC 8414 §3).
	pathRFC8414 = "/.well-known/oauth-authorization-server"
)

// CookieName is the issuer's login-session cookie.
const CookieName = "_portcullis_issuer"

// loginSessionTTL is how long a sign-in at the issuer lets further
// authorization requests through without the password.
const loginSessionTTL = 12 * time.Hour

// Options are the issuer's run-time dependencies.
type Options struct {
	// PublicURL is Portcullis's public URL. Required: the default issuer URL
	// is PublicURL + "/oauth2/issuer" and the default audience PublicURL.
	PublicURL *url.URL
	// Store holds codes, tokens, keys and sessions. Required; the caller
	// owns it (Close does not close it) and keeps it across reloads.
	Store store.Store
	// Logger receives start-up warnings, internal errors and the audit
	// events (records with an "audit" attribute: token_granted,
	// token_refused, login, login_failed, login_throttled, token_revoked,
	// refresh_reuse_detected, code_replay_detected, key_rotated,
	// login_session_ended). Nil discards.
	Logger *slog.Logger
	// Metrics records tokens, errors, sign-ins, throttling, revocations and
	// key rotations. Nil records nothing.
	Metrics *Metrics
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Issuer is the built-in OpenID provider. It is safe for concurrent use.
type Issuer struct {
	iss        string // issuer identifier, no trailing slash
	path       string // issuer URL path, no trailing slash ("" at the root)
	publicURL  string
	secure     bool
	cookiePath string

	st      store.Store
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	keys    *keyring
	// checking counts password checks under way per client IP.
	checking checksInFlight
	// verified remembers access tokens whose signature and claims passed.
	verified *verifiedCache
	mux      *http.ServeMux

	reloadMu sync.Mutex
	state    atomic.Pointer[state]
}

// state is everything Reload swaps; handlers load it once per request.
type state struct {
	tokens    TokensConfig
	alg       string
	clients   map[string]*client
	users     *userDir
	discovery []byte
	// dummyHash is compared against when a username is unknown, so that a
	// wrong username costs as much as a wrong password (same bcrypt cost
	// as the configured users).
	dummyHash []byte
}

// client is a ClientConfig with defaults applied and its secret loaded.
type client struct {
	ClientConfig
	// secretSum is the SHA-256 of a plain secret (from secret or
	// secret_file), compared in constant time.
	secretSum  [32]byte
	hasPlain   bool
	secretHash []byte
}

func (c *client) allows(grant string) bool {
	for _, g := range c.Grants {
		if g == grant {
			return true
		}
	}
	return false
}

// New builds an issuer from a validated config and loads (or, on first
// start, creates) its signing keys in opts.Store.
func New(ctx context.Context, cfg Config, opts Options) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("issuer: invalid config: %w", err)
	}
	if opts.PublicURL == nil || !opts.PublicURL.IsAbs() {
		return nil, errors.New("issuer: Options.PublicURL is required and must be absolute")
	}
	if opts.Store == nil {
		return nil, errors.New("issuer: Options.Store is required")
	}
	i := &Issuer{
		publicURL: strings.TrimSuffix(opts.PublicURL.String(), "/"),
		st:        opts.Store,
		log:       opts.Logger,
		metrics:   opts.Metrics,
		now:       opts.Now,
		verified:  newVerifiedCache(verifiedMaxEntries, verifiedMaxAge),
	}
	if i.log == nil {
		i.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if i.now == nil {
		i.now = time.Now
	}
	raw := cfg.URL
	if raw == "" {
		raw = i.publicURL + "/oauth2/issuer"
	}
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil {
		return nil, fmt.Errorf("issuer: url: %q: %w", raw, err)
	}
	if err := validateIssuerURL(u.String()); err != nil {
		return nil, fmt.Errorf("issuer: url: %q: %w", raw, err)
	}
	i.iss = u.String()
	i.path = u.EscapedPath()
	i.secure = u.Scheme == "https"
	i.cookiePath = i.path
	if strings.HasPrefix(i.path+"/", "/oauth2/") {
		i.cookiePath = "/oauth2/"
	}
	if i.cookiePath == "" {
		i.cookiePath = "/"
	}

	s, err := i.buildState(cfg)
	if err != nil {
		return nil, err
	}
	i.state.Store(s)
	i.keys, err = newKeyring(ctx, i.st, cfg.Keys, s.tokens.maxSignedTTL(), i.now, i.log, i.metrics)
	if err != nil {
		return nil, err
	}
	i.warn(ctx, cfg, s)
	i.mux = i.routes()
	return i, nil
}

func (t TokensConfig) maxSignedTTL() time.Duration { return max(t.AccessTTL, t.IDTTL) }

// warn logs the risky settings once at start-up.
func (i *Issuer) warn(ctx context.Context, cfg Config, s *state) {
	for _, c := range cfg.Clients {
		for _, g := range c.Grants {
			switch g {
			case GrantImplicit:
				i.log.WarnContext(ctx, "issuer: client uses the implicit grant; tokens travel in the URL fragment (prefer authorization_code with PKCE)", "client_id", c.ID)
			case GrantPassword:
				i.log.WarnContext(ctx, "issuer: client uses the password grant; it sees users' passwords (prefer authorization_code with PKCE)", "client_id", c.ID)
			}
		}
	}
	if u, ok := s.users.lookup(ctx, "demo"); ok && bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte("demo")) == nil {
		i.log.WarnContext(ctx, `issuer: the example user "demo" with password "demo" is active; remove it before real use`)
	}
}

// buildState applies defaults to cfg and loads its secret and users files.
func (i *Issuer) buildState(cfg Config) (*state, error) {
	s := &state{tokens: cfg.Tokens.withDefaults(), alg: cfg.Keys.withDefaults().Algorithm, clients: map[string]*client{}}
	for n, cc := range cfg.Clients {
		c := &client{ClientConfig: cc}
		if len(c.Grants) == 0 {
			c.Grants = defaultGrants
		}
		if len(c.Scopes) == 0 {
			c.Scopes = defaultScopes
		}
		if len(c.Audience) == 0 {
			c.Audience = []string{i.publicURL}
		}
		switch {
		case !cc.Secret.IsZero():
			c.secretSum, c.hasPlain = sha256.Sum256([]byte(cc.Secret.Reveal())), true
		case cc.SecretFile != "":
			b, err := os.ReadFile(cc.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("issuer: clients[%d].secret_file: %w", n, err)
			}
			sec := strings.TrimRight(string(b), "\r\n")
			if len(sec) < minSecretLen {
				return nil, fmt.Errorf("issuer: clients[%d].secret_file: %q: secret shorter than %d characters", n, cc.SecretFile, minSecretLen)
			}
			c.secretSum, c.hasPlain = sha256.Sum256([]byte(sec)), true
		case cc.SecretHash != "":
			c.secretHash = []byte(cc.SecretHash)
		}
		s.clients[c.ID] = c
	}
	users, err := newUserDir(cfg.Users, cfg.UsersFile, i.now, i.log)
	if err != nil {
		return nil, err
	}
	s.users = users
	cost := bcrypt.DefaultCost
	for _, u := range append(slices.Clone(cfg.Users), users.fileUsers()...) {
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil {
			cost = c
			break
		}
	}
	if s.dummyHash, err = bcrypt.GenerateFromPassword([]byte(randomToken()), cost); err != nil {
		return nil, fmt.Errorf("issuer: making dummy hash: %w", err)
	}
	if s.discovery, err = i.discoveryJSON(s); err != nil {
		return nil, err
	}
	return s, nil
}

// URL returns the issuer identifier (the iss of every token).
func (i *Issuer) URL() string { return i.iss }

// Handler serves every endpoint at its full path (issuer path + /authorize
// …) and the RFC 8414 metadata at /.well-known/oauth-authorization-server
// followed by the issuer path.
func (i *Issuer) Handler() http.Handler { return i.mux }

// Paths returns the path prefixes Handler serves, for the router.
func (i *Issuer) Paths() []string {
	return []string{i.path + "/", pathRFC8414 + i.path}
}

// Reload swaps users, clients, token lifetimes and key settings for cfg
// without touching keys or stored grants. The issuer URL and storage
// cannot change this way; a bad cfg leaves the old one serving.
func (i *Issuer) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("issuer: invalid config: %w", err)
	}
	want := cfg.URL
	if want == "" {
		want = i.publicURL + "/oauth2/issuer"
	}
	if strings.TrimSuffix(want, "/") != i.iss {
		return fmt.Errorf("issuer: url: %q: cannot change on reload (restart instead)", cfg.URL)
	}
	i.reloadMu.Lock()
	defer i.reloadMu.Unlock()
	s, err := i.buildState(cfg)
	if err != nil {
		return err
	}
	i.keys.configure(cfg.Keys, s.tokens.maxSignedTTL())
	i.state.Store(s)
	return nil
}

// Close stops background work. It does not close the store.
func (i *Issuer) Close() {}

// randomToken returns 256 random bits, base64url without padding.
func randomToken() string {
	b := make([]byte, 32)
	// crypto/rand.Read never fails (it crashes the program instead).
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashID is how a secret value (code, refresh token, session cookie) is
// named in the store.
func hashID(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
