// Package bearer verifies the bearer tokens API callers present to
// Portcullis on behalf of an external OpenID issuer: JWTs signed with the
// issuer's published keys, and opaque tokens checked at its RFC 7662
// introspection endpoint. It turns a good token into an auth.Identity and
// anything else into an error wrapping auth.ErrInvalidToken; it never
// redirects and never answers HTTP itself.
//
// Tokens of Portcullis's own built-in issuer are not its business: the
// proxy checks those against the issuer directly (revocation, typ at+jwt).
package bearer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/portcullis-proxy/portcullis/auth"
)

// Defaults for Options.
const (
	defaultLeeway    = 30 * time.Second
	defaultCacheSize = 10000
	defaultCacheTTL  = 30 * time.Second
	// maxJWTCacheLife caps how long a verified JWT is trusted without
	// looking at it again, so that a key the issuer withdrew stops
	// working within minutes even for long-lived tokens.
	maxJWTCacheLife = 5 * time.Minute
	// defaultHTTPTimeout bounds every discovery, JWKS and introspection
	// request made with the default client.
	defaultHTTPTimeout = 10 * time.Second
	// jwksMinRefetch is the least time between two JWKS downloads. go-oidc
	// refetches the set whenever a signature does not verify, so without
	// this every forged token would cost the issuer a request.
	jwksMinRefetch = 5 * time.Second
	// maxLeeway bounds Options.Leeway. go-oidc tolerates nbf up to 5m
	// ahead of the clock we give it, which is ours moved back by the
	// leeway; below 2m our own nbf check is always the stricter one.
	maxLeeway = 2 * time.Minute
	// maxTokenLen refuses absurd tokens before hashing, parsing or
	// sending them anywhere. Large Entra ID tokens stay well below it.
	maxTokenLen = 16 << 10
)

// knownAlgorithms are the asymmetric JWS algorithms a token may be signed
// with. "none" and the HMAC family are never accepted: an HMAC key would
// have to be the client secret, shared with everyone holding it.
var knownAlgorithms = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.EdDSA,
}

// ErrUnavailable is joined to ErrInvalidToken when a token could not be
// checked because the issuer could not be asked (not discovered yet, or
// its introspection endpoint failed), as opposed to the token being bad.
// Callers still MUST refuse the request; they may answer 503 instead of 401.
var ErrUnavailable = errors.New("bearer: issuer unavailable")

// Options configure a Verifier. Only IssuerURL is required.
type Options struct {
	// IssuerURL is the external login issuer (login.issuer). Tokens MUST
	// carry exactly this iss. Required.
	IssuerURL string
	// ClientID is login.client_id; with ClientSecret it authenticates
	// Portcullis at the introspection endpoint (client_secret_basic). An
	// introspected token without aud is accepted only when its client_id
	// is this one. Default "": opaque tokens are refused.
	ClientID string
	// ClientSecret is login.client_secret. Default "": opaque tokens are
	// refused (a public client cannot introspect).
	ClientSecret auth.Secret
	// HTTPClient makes the discovery, JWKS and introspection requests.
	// Nil means a client of its own with a 10s timeout.
	HTTPClient *http.Client
	// Claims maps a token's claims to an Identity (the command passes
	// login.Client.IdentityFromClaims so that login.claims applies). Nil
	// means user = preferred_username (else sub), email, groups, name.
	// Issuer, Subject, Expiry, AccessToken and Method are set afterwards
	// by the Verifier, whatever Claims returns.
	Claims func(claims map[string]any) auth.Identity
	// Algorithms are the JWS algorithms accepted. Each MUST be one of
	// RS256/384/512, ES256/384/512, PS256/384/512, EdDSA. Default: those
	// the issuer's discovery lists in id_token_signing_alg_values_supported
	// (and access_token_signing_alg_values_supported), else RS256.
	Algorithms []string
	// Leeway is the clock skew tolerated on exp and nbf. Default 30s; a
	// negative value means none; at most 2m.
	Leeway time.Duration
	// CacheSize is how many verified tokens are remembered. 0 means 10000,
	// a negative value turns the cache off. Failures are never cached.
	CacheSize int
	// CacheTTL is how long an introspection answer is trusted. Default 30s.
	// Verified JWTs are remembered until their exp, at most 5 minutes.
	CacheTTL time.Duration
	// Logger receives warnings about the issuer (never a token). Nil discards.
	Logger *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Verifier checks bearer tokens of one external issuer. It is safe for
// concurrent use; VerifyBearer refuses every token until Discover succeeded.
type Verifier struct {
	issuer       string
	clientID     string
	clientSecret auth.Secret
	http         *http.Client
	claims       func(map[string]any) auth.Identity
	algorithms   []string // from Options; nil means "from discovery"
	leeway       time.Duration
	cacheTTL     time.Duration
	log          *slog.Logger
	now          func() time.Time

	cache *cache // nil when off
	state atomic.Pointer[discovered]
}

// discovered is what Discover learnt; swapped as a whole.
type discovered struct {
	verifier      *oidc.IDTokenVerifier
	introspection string // "" when the issuer has none
	algorithms    []string
}

// New checks opts and returns a Verifier. It does no I/O; call Discover.
func New(opts Options) (*Verifier, error) {
	var errs []error
	u, err := url.Parse(opts.IssuerURL)
	switch {
	case opts.IssuerURL == "":
		errs = append(errs, errors.New("bearer: IssuerURL is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("bearer: IssuerURL: %q: %w", opts.IssuerURL, err))
	case (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, fmt.Errorf("bearer: IssuerURL: %q: must be an http(s) URL without query or fragment", opts.IssuerURL))
	}
	for _, a := range opts.Algorithms {
		if !slices.Contains(knownAlgorithms, a) {
			errs = append(errs, fmt.Errorf("bearer: Algorithms: %q: not allowed (want one of %s)", a, strings.Join(knownAlgorithms, ", ")))
		}
	}
	if opts.Leeway > maxLeeway {
		errs = append(errs, fmt.Errorf("bearer: Leeway: %s: at most %s", opts.Leeway, maxLeeway))
	}
	if opts.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("bearer: CacheTTL: %s: must not be negative", opts.CacheTTL))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	v := &Verifier{
		issuer:       opts.IssuerURL,
		clientID:     opts.ClientID,
		clientSecret: opts.ClientSecret,
		http:         opts.HTTPClient,
		claims:       opts.Claims,
		algorithms:   slices.Clone(opts.Algorithms),
		leeway:       opts.Leeway,
		cacheTTL:     opts.CacheTTL,
		log:          opts.Logger,
		now:          opts.Now,
	}
	if v.http == nil {
		v.http = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: defaultHTTPTimeout}
	}
	if v.claims == nil {
		v.claims = defaultClaims
	}
	switch {
	case v.leeway == 0:
		v.leeway = defaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.cacheTTL == 0 {
		v.cacheTTL = defaultCacheTTL
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch size := opts.CacheSize; {
	case size == 0:
		v.cache = newCache(defaultCacheSize)
	case size > 0:
		v.cache = newCache(size)
	}
	return v, nil
}

// Discover reads the issuer's OpenID discovery document: jwks_uri (required),
// introspection_endpoint (optional) and the signing algorithms. It may be
// called again (the command retries until it works); a failure leaves the
// previous discovery in place.
func (v *Verifier) Discover(ctx context.Context) error {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, v.http), v.issuer)
	if err != nil {
		return fmt.Errorf("bearer: discovery at %q: %w", v.issuer, err)
	}
	var meta struct {
		JWKSURI          string   `json:"jwks_uri"`
		Introspection    string   `json:"introspection_endpoint"`
		IDTokenAlgs      []string `json:"id_token_signing_alg_values_supported"`
		AccessTokenAlgs  []string `json:"access_token_signing_alg_values_supported"`
		IntrospectionAMs []string `json:"introspection_endpoint_auth_methods_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return fmt.Errorf("bearer: discovery at %q: %w", v.issuer, err)
	}
	if meta.JWKSURI == "" {
		return fmt.Errorf("bearer: discovery at %q: jwks_uri is missing", v.issuer)
	}
	if meta.Introspection != "" {
		if iu, err := url.Parse(meta.Introspection); err != nil || (iu.Scheme != "https" && iu.Scheme != "http") || iu.Host == "" {
			return fmt.Errorf("bearer: discovery at %q: introspection_endpoint %q is not an http(s) URL", v.issuer, meta.Introspection)
		}
	}
	algs := v.algorithms
	if len(algs) == 0 {
		algs = nil
		for _, a := range slices.Concat(meta.IDTokenAlgs, meta.AccessTokenAlgs) {
			if slices.Contains(knownAlgorithms, a) && !slices.Contains(algs, a) {
				algs = append(algs, a)
			}
		}
		if len(algs) == 0 {
			algs = []string{oidc.RS256}
		}
	}

	// The key set outlives ctx: it refetches on an unknown kid, through a
	// client that spaces those downloads out.
	jwksClient := *v.http
	jwksClient.Transport = &throttle{base: v.http.Transport, now: v.now, every: jwksMinRefetch}
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), &jwksClient), meta.JWKSURI)
	d := &discovered{
		verifier: oidc.NewVerifier(v.issuer, keys, &oidc.Config{
			// The audience is checked by us against a list: the proxy
			// accepts login.client_id and each route's bearer_audiences.
			SkipClientIDCheck:    true,
			SupportedSigningAlgs: algs,
			// go-oidc has no leeway on exp: moving its clock back gives
			// exp ours. nbf is checked again, with our leeway, in verifyJWT.
			Now: func() time.Time { return v.now().Add(-v.leeway) },
		}),
		introspection: meta.Introspection,
		algorithms:    algs,
	}
	if d.introspection != "" && len(meta.IntrospectionAMs) > 0 && !slices.Contains(meta.IntrospectionAMs, "client_secret_basic") {
		v.log.WarnContext(ctx, "bearer: the issuer does not list client_secret_basic for introspection; trying it anyway",
			"issuer", v.issuer)
	}
	v.state.Store(d)
	return nil
}

// Algorithms returns the JWS algorithms in force: Options.Algorithms, or
// what Discover found. Nil before the first successful Discover.
func (v *Verifier) Algorithms() []string {
	d := v.state.Load()
	if d == nil {
		return nil
	}
	return slices.Clone(d.algorithms)
}

// VerifyBearer checks raw and returns the identity it carries when one of
// audiences is among its audiences. JWTs are verified locally against the
// issuer's keys; anything else is introspected when the issuer offers it.
// Every error wraps auth.ErrInvalidToken and says why, without the token.
//
// The returned Identity is the caller's to modify; its Groups slice is
// shared with the cache and MUST NOT be modified in place.
func (v *Verifier) VerifyBearer(ctx context.Context, raw string, audiences []string) (*auth.Identity, error) {
	if raw == "" {
		return nil, invalid("the token is empty")
	}
	if len(raw) > maxTokenLen {
		return nil, invalid("the token is %d bytes long (at most %d)", len(raw), maxTokenLen)
	}
	if !isB64Token(raw) {
		return nil, invalid("the token has characters outside the RFC 6750 b64token set")
	}
	if len(audiences) == 0 {
		return nil, invalid("no audience is accepted here")
	}
	now := v.now()
	var key [32]byte
	if v.cache != nil {
		key = hashToken(raw)
		if e := v.cache.get(key, now); e != nil {
			return v.accept(e, raw, audiences)
		}
	}
	d := v.state.Load()
	if d == nil {
		return nil, fmt.Errorf("%w: %w: %q has not been discovered yet", auth.ErrInvalidToken, ErrUnavailable, v.issuer)
	}
	verify := func() (*entry, error) {
		var e *entry
		var err error
		if isJWT(raw) {
			e, err = v.verifyJWT(ctx, d, raw)
		} else {
			e, err = v.introspect(ctx, d, raw)
		}
		// The audience is not part of the entry's validity: it is checked
		// per call, so one entry serves every route.
		if err == nil && v.cache != nil {
			if now := v.now(); e.until.After(now) {
				v.cache.put(key, e, now)
			}
		}
		return e, err
	}
	var e *entry
	var err error
	if v.cache != nil {
		e, err = v.cache.do(ctx, key, verify)
	} else {
		e, err = verify()
	}
	if err != nil {
		return nil, err
	}
	return v.accept(e, raw, audiences)
}

// accept checks a verified token's audience against this call's list and
// returns a fresh Identity.
func (v *Verifier) accept(e *entry, raw string, audiences []string) (*auth.Identity, error) {
	if !e.ownClient && !intersects(e.audiences, audiences) {
		return nil, invalid("aud %q contains none of %q", e.audiences, audiences)
	}
	id := e.identity
	id.AccessToken = auth.Secret(raw)
	id.Method = auth.MethodBearer
	return &id, nil
}

// invalid formats a reason for refusing a token.
func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{auth.ErrInvalidToken}, a...)...)
}

// identity builds the Identity of a verified token.
func (v *Verifier) identity(claims map[string]any, iss, sub string, exp time.Time) auth.Identity {
	id := v.claims(claims)
	id.Issuer = iss
	id.Subject = sub
	id.Expiry = exp
	if id.User == "" {
		id.User = sub
	}
	id.AccessToken = ""
	id.IDToken = ""
	id.Method = auth.MethodBearer
	return id
}

// defaultClaims is the mapping used when Options.Claims is nil.
func defaultClaims(claims map[string]any) auth.Identity {
	str := func(k string) string { s, _ := claims[k].(string); return s }
	id := auth.Identity{
		User:              str("preferred_username"),
		Email:             str("email"),
		PreferredUsername: str("preferred_username"),
		Name:              str("name"),
	}
	if b, ok := claims["email_verified"].(bool); ok {
		id.EmailVerified = b
	}
	switch g := claims["groups"].(type) {
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				id.Groups = append(id.Groups, s)
			}
		}
	case string:
		id.Groups = []string{g}
	}
	return id
}

// isJWT tells a compact JWS (three dot-separated parts) from an opaque token.
func isJWT(raw string) bool { return strings.Count(raw, ".") == 2 }

// isB64Token reports whether s is an RFC 6750 §2.1 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
