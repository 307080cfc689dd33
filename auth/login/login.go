// Package login is Portcullis's OpenID Connect relying party: it signs a
// browser in against one issuer with the authorization-code flow (state,
// nonce and PKCE S256 on every attempt), turns the verified ID token into an
// auth.Identity and a session, refreshes tokens and signs the user out.
//
// The flow follows OpenID Connect Core 1.0 §3.1 and the OAuth 2.0 Security
// Best Current Practice (RFC 9700): fresh state, nonce and PKCE verifier per
// attempt, kept in a short-lived sealed cookie; exact redirect_uri built from
// the configured public URL; ID tokens verified by go-oidc with the issuer's
// advertised algorithms (never "none"); return targets checked by
// CleanReturnTarget.
package login

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/session"
)

// Route paths this package serves (DESIGN.md "HTTP surface").
const (
	PathStart    = "/oauth2/start"
	PathCallback = "/oauth2/callback"
	PathSignOut  = "/oauth2/sign_out"
)

// IssuerBuiltin is the login.issuer value that selects Portcullis's own
// OpenID provider.
const IssuerBuiltin = "builtin"

// DefaultBuiltinClientID is the client_id used with the built-in issuer when
// login.client_id is empty; the command registers that client with the
// issuer.
const DefaultBuiltinClientID = "portcullis"

// Config is the `login:` section.
type Config struct {
	// Issuer is "builtin" (the default when empty) or the URL of an external
	// OpenID provider. The URL MUST be https, except for a loopback host
	// (localhost, 127.0.0.0/8, ::1) where http is allowed for development.
	Issuer string `yaml:"issuer"`
	// ClientID is this relying party's client_id at the issuer. Required for
	// a URL issuer; with the built-in issuer it defaults to "portcullis".
	ClientID string `yaml:"client_id"`
	// ClientSecret is the client secret; empty means a public client that
	// authenticates with PKCE only. At most one of client_secret and
	// client_secret_file may be set.
	ClientSecret auth.Secret `yaml:"client_secret"`
	// ClientSecretFile names a file holding the client secret, read by New;
	// one trailing newline is trimmed. Default: none.
	ClientSecretFile string `yaml:"client_secret_file"`
	// Scopes are requested at sign-in. Default [openid, email, profile];
	// "openid" MUST be among them.
	Scopes []string `yaml:"scopes"`
	// Claims names the claims an Identity is built from.
	Claims ClaimsConfig `yaml:"claims"`
	// InsecureTrustUnverifiedEmail treats an email as verified when the
	// issuer sends no email_verified claim at all (some, like Entra ID,
	// verify addresses but never say so). Unverified emails never match
	// allow.emails / allow.domains and are not forwarded; turn this on
	// only for an issuer where users cannot set their own address.
	// Default: false.
	InsecureTrustUnverifiedEmail bool `yaml:"insecure_trust_unverified_email"`
}

// ClaimsConfig is `login.claims`: which claim fills which Identity field. A
// name may be a dotted path into nested objects ("realm_access.roles") when
// no top-level claim has that exact name.
type ClaimsConfig struct {
	// User names the claim for Identity.User. Default preferred_username;
	// the sub claim is used when the token lacks it.
	User string `yaml:"user"`
	// Email names the claim for Identity.Email. Default email.
	Email string `yaml:"email"`
	// Groups names the claim for Identity.Groups, a string or a list of
	// strings. Default groups.
	Groups string `yaml:"groups"`
}

func (c ClaimsConfig) withDefaults() ClaimsConfig {
	if c.User == "" {
		c.User = "preferred_username"
	}
	if c.Email == "" {
		c.Email = "email"
	}
	if c.Groups == "" {
		c.Groups = "groups"
	}
	return c
}

// Validate reports every problem in c at once; it does no I/O. Key paths are
// relative to the login section.
func (c Config) Validate() error {
	var errs []error
	isURL := c.Issuer != "" && c.Issuer != IssuerBuiltin
	if isURL {
		if err := checkIssuerURL(c.Issuer); err != nil {
			errs = append(errs, fmt.Errorf("issuer: %q: %w", c.Issuer, err))
		}
		if strings.TrimSpace(c.ClientID) == "" {
			errs = append(errs, fmt.Errorf("client_id: %q: required when issuer is a URL", c.ClientID))
		}
	}
	if c.ClientID != strings.TrimSpace(c.ClientID) {
		errs = append(errs, fmt.Errorf("client_id: %q: must not start or end with whitespace", c.ClientID))
	}
	if !c.ClientSecret.IsZero() && c.ClientSecretFile != "" {
		errs = append(errs, fmt.Errorf("client_secret_file: %q: set either client_secret or client_secret_file, not both", c.ClientSecretFile))
	}
	if c.Scopes != nil {
		if !slices.Contains(c.Scopes, oidc.ScopeOpenID) {
			errs = append(errs, fmt.Errorf("scopes: %q: must include \"openid\"", c.Scopes))
		}
		for i, s := range c.Scopes {
			if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r == 0x7f }) {
				errs = append(errs, fmt.Errorf("scopes[%d]: %q: not a valid scope token (RFC 6749 §3.3)", i, s))
			}
		}
	}
	for _, cl := range []struct{ key, val string }{
		{"claims.user", c.Claims.User}, {"claims.email", c.Claims.Email}, {"claims.groups", c.Claims.Groups},
	} {
		if cl.val != strings.TrimSpace(cl.val) || strings.HasPrefix(cl.val, ".") || strings.HasSuffix(cl.val, ".") {
			errs = append(errs, fmt.Errorf("%s: %q: not a claim name", cl.key, cl.val))
		}
	}
	return errors.Join(errs...)
}

// checkIssuerURL enforces https (http only for loopback) and a plain issuer
// identifier: OIDC Discovery §3 forbids query and fragment.
func checkIssuerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		return errors.New("want builtin or an https URL")
	case u.User != nil:
		return errors.New("must not contain userinfo")
	case u.RawQuery != "" || u.Fragment != "" || strings.Contains(s, "#") || strings.HasSuffix(s, "?"):
		return errors.New("must not have a query or fragment")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return errors.New("http is only allowed for a loopback host; use https")
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Options are what the command wires in besides the config.
type Options struct {
	// PublicURL is Portcullis's external base URL (server.public_url);
	// required. Only its scheme and host are used: the redirect_uri is
	// {scheme}://{host}/oauth2/callback, and every redirect this package
	// builds starts from it, never from the request's Host.
	PublicURL *url.URL
	// IssuerURL is the built-in issuer's URL; required when Config.Issuer is
	// "builtin", ignored otherwise.
	IssuerURL string
	// Sessions stores the session a successful sign-in creates and seals the
	// pending sign-in cookies; required.
	Sessions *session.Manager
	// HTTPClient is used for discovery, JWKS, token and userinfo requests.
	// Nil means a private client with a 30s timeout (never
	// http.DefaultClient).
	HTTPClient *http.Client
	// AllowedHosts are the hosts an absolute rd may point to (the upstreams'
	// hosts); PublicURL's host is always allowed.
	AllowedHosts []string
	// EndIssuerSession, when set (built-in issuer), ends the issuer's own
	// login session during SignOut instead of a redirect to
	// end_session_endpoint. It MUST only set headers (cookies), not write
	// the status or body.
	EndIssuerSession func(w http.ResponseWriter, r *http.Request)
	// KeepAccessToken keeps the access token in the session, for routes
	// that forward it (forward: access_token). Default false: every byte
	// of a session travels in cookies on every request.
	KeepAccessToken bool
	// KeepIDToken keeps the raw ID token in the session, for routes that
	// forward it (forward: id_token). It is also kept, whatever this says,
	// when sign-out needs it as id_token_hint (an issuer with an
	// end_session_endpoint and no EndIssuerSession).
	KeepIDToken bool
	// Logger receives flow failures and the audit events sign_in,
	// sign_in_failed, sign_out and refresh_refused (records carrying an
	// "audit" attribute); nil discards.
	Logger *slog.Logger
	// Metrics records sign-ins, sign-outs and refreshes; nil records
	// nothing.
	Metrics *Metrics
	// Now is the clock for token and cookie expiry; nil means time.Now.
	Now func() time.Time
}

// Client is the relying party for one issuer. Its methods are safe for
// concurrent use.
type Client struct {
	issuer       string
	clientID     string
	clientSecret auth.Secret
	scopes       []string
	claims       ClaimsConfig
	publicURL    *url.URL
	redirectURI  string
	sessions     *session.Manager
	httpClient   *http.Client
	allowedHosts []string
	endIssuer    func(w http.ResponseWriter, r *http.Request)
	keepAccess   bool
	keepID       bool
	// trustUnverifiedEmail is Config.InsecureTrustUnverifiedEmail.
	trustUnverifiedEmail bool
	log                  *slog.Logger
	metrics              *Metrics
	now                  func() time.Time

	disc    atomic.Pointer[discovered]
	flights flights
}

// discovered is everything learned from the issuer's metadata; it is
// replaced as a whole so readers never see half of it.
type discovered struct {
	provider      *oidc.Provider
	verifier      *oidc.IDTokenVerifier
	oauth         *oauth2.Config
	endSession    string
	revocation    string // RFC 7009 revocation_endpoint, if any
	issParamKnown bool   // RFC 9207 authorization_response_iss_parameter_supported
}

// New checks cfg and opts, reads the client secret file and returns a Client
// that is not Ready until Discover succeeds. It does no network I/O.
func New(cfg Config, opts Options) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if opts.PublicURL == nil || opts.PublicURL.Host == "" ||
		(opts.PublicURL.Scheme != "https" && opts.PublicURL.Scheme != "http") {
		return nil, errors.New("login: Options.PublicURL must be an absolute http(s) URL")
	}
	if opts.Sessions == nil {
		return nil, errors.New("login: Options.Sessions is required")
	}
	c := &Client{
		issuer:               cfg.Issuer,
		clientID:             cfg.ClientID,
		clientSecret:         cfg.ClientSecret,
		scopes:               cfg.Scopes,
		claims:               cfg.Claims.withDefaults(),
		sessions:             opts.Sessions,
		httpClient:           opts.HTTPClient,
		endIssuer:            opts.EndIssuerSession,
		keepAccess:           opts.KeepAccessToken,
		keepID:               opts.KeepIDToken,
		trustUnverifiedEmail: cfg.InsecureTrustUnverifiedEmail,
		log:                  opts.Logger,
		metrics:              opts.Metrics,
		now:                  opts.Now,
	}
	if c.issuer == "" || c.issuer == IssuerBuiltin {
		if opts.IssuerURL == "" {
			return nil, errors.New("login: Options.IssuerURL is required with the built-in issuer")
		}
		c.issuer = opts.IssuerURL
		if c.clientID == "" {
			c.clientID = DefaultBuiltinClientID
		}
	}
	if cfg.ClientSecretFile != "" {
		b, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("login: client_secret_file: %w", err)
		}
		s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if s == "" {
			return nil, fmt.Errorf("login: client_secret_file: %q: file is empty", cfg.ClientSecretFile)
		}
		c.clientSecret = auth.Secret(s)
	}
	if c.scopes == nil {
		c.scopes = []string{oidc.ScopeOpenID, oidc.ScopeEmail, oidc.ScopeProfile}
	}
	c.scopes = slices.Clone(c.scopes)
	// Only the origin counts: the control routes live at /oauth2/ on it.
	c.publicURL = &url.URL{Scheme: opts.PublicURL.Scheme, Host: opts.PublicURL.Host}
	c.redirectURI = c.publicURL.String() + PathCallback
	c.allowedHosts = append([]string{c.publicURL.Host}, opts.AllowedHosts...)
	if c.httpClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		c.httpClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.trustUnverifiedEmail {
		c.log.Warn("login: insecure_trust_unverified_email is on: an email without email_verified counts as verified for allow rules and forwarding; only safe where users cannot set their own address")
	}
	return c, nil
}

// Discover fetches the issuer's OpenID metadata and builds the ID-token
// verifier. The caller retries with backoff until it succeeds; until then
// sign-in answers 503. Calling it again re-reads the metadata.
func (c *Client) Discover(ctx context.Context) error {
	ctx = oidc.ClientContext(ctx, c.httpClient)
	p, err := oidc.NewProvider(ctx, c.issuer)
	if err != nil {
		return fmt.Errorf("login: discovery at %q: %w", c.issuer, err)
	}
	var meta struct {
		Algs          []string `json:"id_token_signing_alg_values_supported"`
		EndSession    string   `json:"end_session_endpoint"`
		Revocation    string   `json:"revocation_endpoint"`
		IssParam      bool     `json:"authorization_response_iss_parameter_supported"`
		AuthMethods   []string `json:"token_endpoint_auth_methods_supported"`
		TokenEndpoint string   `json:"token_endpoint"`
		AuthEndpoint  string   `json:"authorization_endpoint"`
	}
	if err := p.Claims(&meta); err != nil {
		return fmt.Errorf("login: discovery at %q: %w", c.issuer, err)
	}
	if meta.AuthEndpoint == "" || meta.TokenEndpoint == "" {
		return fmt.Errorf("login: discovery at %q: authorization_endpoint and token_endpoint are required", c.issuer)
	}
	var algs []string
	for _, a := range meta.Algs {
		if a != "" && !strings.EqualFold(a, "none") && !slices.Contains(algs, a) {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		algs = []string{oidc.RS256}
	}
	// The key set outlives this ctx (it refetches on unknown kid), so it
	// gets a background context that only carries our HTTP client.
	keyCtx := oidc.ClientContext(context.Background(), c.httpClient)
	d := &discovered{
		provider: p,
		verifier: p.VerifierContext(keyCtx, &oidc.Config{
			ClientID:             c.clientID,
			SupportedSigningAlgs: algs,
			Now:                  c.now,
		}),
		oauth: &oauth2.Config{
			ClientID:     c.clientID,
			ClientSecret: c.clientSecret.Reveal(),
			Endpoint:     p.Endpoint(),
			RedirectURL:  c.redirectURI,
			Scopes:       c.scopes,
		},
		endSession:    meta.EndSession,
		revocation:    meta.Revocation,
		issParamKnown: meta.IssParam,
	}
	switch {
	case c.clientSecret.IsZero(), !slices.Contains(meta.AuthMethods, "client_secret_basic") &&
		slices.Contains(meta.AuthMethods, "client_secret_post"):
		// A public client sends client_id in the body and no Basic header;
		// so does a confidential one whose issuer only takes
		// client_secret_post.
		d.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	default:
		// client_secret_basic is the default (OIDC Discovery §3); being
		// explicit avoids x/oauth2 retrying a failed code exchange with
		// the other style.
		d.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	c.disc.Store(d)
	return nil
}

// Ready reports whether discovery has succeeded, so sign-in can work.
func (c *Client) Ready() bool { return c.disc.Load() != nil }

// Mount registers Start, Callback and SignOut on mux with Go 1.22 patterns.
func (c *Client) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathStart, c.Start)
	mux.HandleFunc("GET "+PathCallback, c.Callback)
	mux.HandleFunc("GET "+PathSignOut, c.SignOut)
	mux.HandleFunc("POST "+PathSignOut, c.SignOut)
}

func (c *Client) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, c.httpClient)
}

// local turns a cleaned return target into an absolute URL on PublicURL, so
// the Location header never depends on the request's Host.
func (c *Client) local(rd string) string {
	if strings.HasPrefix(rd, "/") {
		return c.publicURL.Scheme + "://" + c.publicURL.Host + rd
	}
	return rd
}

// trimTokens drops the tokens nothing will use from a session about to be
// saved, so that sessions stay within a few cookies even when the issuer
// puts hundreds of groups in every token. The refresh token and the access
// token's expiry are always kept: refresh needs them.
func (c *Client) trimTokens(d *session.Data) {
	if !c.keepAccess {
		d.AccessToken = ""
	}
	if !c.keepID && !c.needsIDTokenHint() {
		d.IDToken = ""
	}
}

// needsIDTokenHint reports whether sign-out will send id_token_hint.
func (c *Client) needsIDTokenHint() bool {
	if c.endIssuer != nil {
		return false
	}
	disc := c.disc.Load()
	return disc == nil || disc.endSession != ""
}

// ClientSecret is the client secret in force (from client_secret or
// client_secret_file), for components that authenticate as the same client
// (bearer-token introspection).
func (c *Client) ClientSecret() auth.Secret { return c.clientSecret }
