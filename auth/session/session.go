// Package session keeps a signed-in browser's identity and tokens in an
// encrypted, authenticated session: in chunked cookies, or in redis behind a
// cookie that carries only a sealed random id.
//
// It owns the session cookie names and flags, key derivation and rotation,
// the 4 KB-per-cookie budget and the session lifetime. It knows nothing about
// OIDC: auth/login decides what goes into a session, this package only keeps
// it safe. Both stores implement gorilla's sessions.Store; Manager is the API
// the rest of Portcullis uses.
package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gorilla/sessions"

	"github.com/portcullis-proxy/portcullis/auth"
)

// Defaults applied by New for zero Config fields.
const (
	DefaultCookieName   = "_portcullis"
	DefaultLifetime     = 168 * time.Hour
	DefaultRefreshAfter = 5 * time.Minute
	DefaultKeyPrefix    = "portcullis:session:"
)

// Store types accepted in StoreConfig.Type.
const (
	StoreCookie = "cookie"
	StoreRedis  = "redis"
)

// ErrNoSession means the request carries no usable session: no cookie, or
// one that is tampered with, sealed with an unknown key, expired, truncated
// or garbage. Callers treat it as "not signed in".
var ErrNoSession = errors.New("session: no session")

// ErrInvalid is wrapped by every error of Open: the value is tampered with,
// sealed with an unknown key or for another name, too old, or not what the
// caller expected.
var ErrInvalid = errors.New("session: invalid sealed value")

// Config is the `session:` section.
type Config struct {
	// CookieName is the name of the session cookie; chunks are named
	// CookieName_1, CookieName_2, …. Default "_portcullis".
	CookieName string `yaml:"cookie_name"`
	// Secrets are base64 (standard or URL alphabet, padded or not) encodings
	// of exactly 32 random bytes. The first one seals new sessions; every one
	// opens existing sessions, so a secret can be retired by moving it down
	// the list before removing it. Empty strings (an unset ${VAR}) are
	// ignored. No default: New requires at least one, here or in SecretsFile.
	Secrets []auth.Secret `yaml:"secrets"`
	// SecretsFile is a file with one secret per line, used instead of
	// Secrets; blank lines and lines starting with # are ignored. Default "".
	SecretsFile string `yaml:"secrets_file"`
	// Lifetime is how long a session lasts after sign-in. It is enforced
	// from the timestamp sealed inside the session, not only by the cookie's
	// Max-Age. Default 168h.
	Lifetime time.Duration `yaml:"lifetime"`
	// RefreshAfter: tokens are refreshed this long before they expire (the
	// proxy acts on it; this package carries it). Default 5m.
	RefreshAfter time.Duration `yaml:"refresh_after"`
	// SameSite is the SameSite attribute of the session cookies: lax,
	// strict or none (none needs an https public_url). Default lax.
	SameSite string `yaml:"same_site"`
	// Store chooses where session data lives. Default: in the cookies.
	Store StoreConfig `yaml:"store"`
}

// StoreConfig is the `session.store:` section.
type StoreConfig struct {
	// Type is cookie (the data is sealed into the cookies) or redis (the
	// cookie holds a sealed random id; the data lives in redis, so signing
	// out kills a stolen cookie). Default cookie.
	Type string `yaml:"type"`
	// URL is the redis URL (redis://, rediss:// or unix://), required for
	// type redis. Default "".
	URL string `yaml:"url"`
	// URLFile is a file holding the URL instead (it carries the redis
	// password), read in New; set URL or URLFile, not both. Default "".
	URLFile string `yaml:"url_file"`
	// KeyPrefix prefixes every redis key. Default "portcullis:session:".
	KeyPrefix string `yaml:"key_prefix"`
}

const secretHint = `(generate one with "portcullis secret")`

// Validate reports every problem in c at once, naming keys relative to the
// session section. It does no I/O, and does not require a secret: the
// command generates one (and warns) when none is configured.
func (c Config) Validate() error {
	var errs []error
	if c.CookieName != "" && !validCookieName(c.CookieName) {
		errs = append(errs, fmt.Errorf("cookie_name: %q: not a valid cookie name (want letters, digits and -._ only)", c.CookieName))
	}
	usable := 0
	for i, s := range c.Secrets {
		if s.IsZero() {
			continue
		}
		usable++
		if _, err := decodeSecret(s.Reveal()); err != nil {
			errs = append(errs, fmt.Errorf("secrets[%d]: %w %s", i, err, secretHint))
		}
	}
	if usable > 0 && c.SecretsFile != "" {
		errs = append(errs, fmt.Errorf("secrets_file: %q: set either secrets or secrets_file, not both", c.SecretsFile))
	}
	if c.Lifetime < 0 {
		errs = append(errs, fmt.Errorf("lifetime: %q: must not be negative", c.Lifetime))
	} else if c.Lifetime > 0 && c.Lifetime < time.Second {
		// Cookie Max-Age and the sealed timestamps count whole seconds.
		errs = append(errs, fmt.Errorf("lifetime: %q: shorter than 1s", c.Lifetime))
	}
	if c.RefreshAfter < 0 {
		errs = append(errs, fmt.Errorf("refresh_after: %q: must not be negative", c.RefreshAfter))
	}
	if _, err := parseSameSite(c.SameSite); err != nil {
		errs = append(errs, fmt.Errorf("same_site: %q: %w", c.SameSite, err))
	}
	switch c.Store.Type {
	case "", StoreCookie:
		if c.Store.URL != "" {
			errs = append(errs, fmt.Errorf("store.url: %q: only used with type redis", redactURL(c.Store.URL)))
		}
		if c.Store.URLFile != "" {
			errs = append(errs, fmt.Errorf("store.url_file: %q: only used with type redis", c.Store.URLFile))
		}
	case StoreRedis:
		switch u := c.Store.URL; {
		case u != "" && c.Store.URLFile != "":
			errs = append(errs, errors.New("store.url: set url or url_file, not both"))
		case u == "" && c.Store.URLFile == "":
			errs = append(errs, errors.New("store.url: required with type redis (or store.url_file)"))
		case u != "":
			if pu, err := url.Parse(u); err != nil {
				errs = append(errs, fmt.Errorf("store.url: %q: not a URL", redactURL(u)))
			} else if pu.Scheme != "redis" && pu.Scheme != "rediss" && pu.Scheme != "unix" {
				errs = append(errs, fmt.Errorf("store.url: %q: unsupported scheme %q (want redis, rediss or unix)", redactURL(u), pu.Scheme))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("store.type: %q: unknown store type (want cookie or redis)", c.Store.Type))
	}
	return errors.Join(errs...)
}

// redactURL hides a password in a redis URL so that it can be quoted in an
// error; an unparsable URL is not quoted at all, as it may hold one.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "[unparsable]"
	}
	return u.Redacted()
}

func parseSameSite(s string) (http.SameSite, error) {
	switch s {
	case "", "lax":
		return http.SameSiteLaxMode, nil
	case "strict":
		return http.SameSiteStrictMode, nil
	case "none":
		return http.SameSiteNoneMode, nil
	}
	return 0, errors.New("unknown value (want lax, strict or none)")
}

// validCookieName accepts a conservative subset of RFC 6265 token
// characters, so that the name never needs quoting and StripCookies can
// match it byte for byte.
func validCookieName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// Options are the run-time dependencies of a Manager.
type Options struct {
	// Secure marks every cookie Secure; set it exactly when public_url is
	// https.
	Secure bool
	// Logger receives rejected-session reasons at debug level; nil discards.
	Logger *slog.Logger
	// Now is the clock for lifetimes and Open's maxAge; nil means time.Now.
	Now func() time.Time
}

// Manager loads, saves and clears sessions, and seals short-lived values for
// other packages. It is safe for concurrent use.
type Manager struct {
	name         string
	secure       bool
	lifetime     time.Duration
	refreshAfter time.Duration
	storeType    string
	keys         *keyring
	store        sessions.Store
	closer       io.Closer // nil for the cookie store
	log          *slog.Logger
	now          func() time.Time
	cache        *dataCache
}

// New builds a Manager: it applies defaults, reads SecretsFile, derives the
// keys and, for type redis, creates the client (connections are made
// lazily; see Check). At least one usable secret is required.
func New(cfg Config, opts Options) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("session: invalid config: %w", err)
	}
	m := &Manager{
		name:         cfg.CookieName,
		secure:       opts.Secure,
		lifetime:     cfg.Lifetime,
		refreshAfter: cfg.RefreshAfter,
		storeType:    cfg.Store.Type,
		log:          opts.Logger,
		now:          opts.Now,
		cache:        newDataCache(cacheMaxEntries, cacheMaxBytes, cacheMaxAge),
	}
	if m.name == "" {
		m.name = DefaultCookieName
	}
	if m.lifetime == 0 {
		m.lifetime = DefaultLifetime
	}
	if m.refreshAfter == 0 {
		m.refreshAfter = DefaultRefreshAfter
	}
	if m.storeType == "" {
		m.storeType = StoreCookie
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	sameSite, _ := parseSameSite(cfg.SameSite)
	if sameSite == http.SameSiteNoneMode && !opts.Secure {
		return nil, errors.New(`session: same_site "none" needs Secure cookies (an https public_url)`)
	}
	secrets := cfg.Secrets
	if cfg.SecretsFile != "" {
		var err error
		if secrets, err = readSecretsFile(cfg.SecretsFile); err != nil {
			return nil, err
		}
	}
	keys, err := newKeyring(secrets)
	if err != nil {
		return nil, err
	}
	m.keys = keys
	cookieOpts := sessions.Options{
		Path:     "/",
		Secure:   opts.Secure,
		HttpOnly: true,
		SameSite: sameSite,
	}
	switch m.storeType {
	case StoreRedis:
		prefix := cfg.Store.KeyPrefix
		if prefix == "" {
			prefix = DefaultKeyPrefix
		}
		redisURL := cfg.Store.URL
		if cfg.Store.URLFile != "" {
			b, err := os.ReadFile(cfg.Store.URLFile)
			if err != nil {
				return nil, fmt.Errorf("session: store.url_file: %w", err)
			}
			redisURL = strings.TrimSpace(string(b))
		}
		rs, err := newRedisStore(redisURL, prefix, keys, cookieOpts)
		if err != nil {
			return nil, err
		}
		m.store, m.closer = rs, rs
	default:
		m.store = newCookieStore(keys, cookieOpts)
	}
	return m, nil
}

// dataKey is where stores find the serialised Data in sessions.Session.Values.
type dataKey struct{}

// errNoCookie: the request carries no session cookie at all.
var errNoCookie = errors.New("no session cookie")

// Load returns the request's session. Any problem with what the browser
// sent gives an error wrapping ErrNoSession; an unreachable redis gives
// another error (callers treat both as "not signed in"). It never panics.
// The returned Identity has Method MethodSession, its AccessToken and
// IDToken set from the Data, and Expiry set to ExpiresAt when it was zero
// or later (the identity holds no longer than its session). The Data is
// the caller's own: modifying it affects nothing else.
//
// A sealed value that opened before is not opened again: its decoded Data
// comes from a bounded cache that a hit must match with the exact sealed
// bytes (see dataCache). With redis the record is still read on every
// call, so a session deleted at sign-out ends at once; only its decoding
// is skipped.
func (m *Manager) Load(r *http.Request) (*Data, error) {
	d, err := m.View(r)
	if err != nil {
		return nil, err
	}
	return d.Clone(), nil
}

// View is Load without the copy, for the proxy's hot path: the Data is
// the decoded-session cache's, shared by every request that carries the
// same cookie, so the caller must not modify it or anything it points to.
// Call Load for a Data of one's own.
func (m *Manager) View(r *http.Request) (*Data, error) {
	var v sealedValue
	var err error
	// Both stores give the request's sealed value and the name it is
	// sealed for, read afresh on every call (for redis: the record). The
	// calls are concrete: through an interface v would escape, costing
	// every request an allocation.
	switch st := m.store.(type) {
	case *cookieStore:
		err = st.sealed(r, m.name, &v)
	case *redisStore:
		err = st.sealed(r, m.name, &v)
	default:
		return nil, errors.New("session: unknown store")
	}
	if err != nil {
		if errors.Is(err, errNoCookie) {
			return nil, ErrNoSession
		}
		if errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		m.log.DebugContext(r.Context(), "session rejected", "err", err)
		return nil, fmt.Errorf("%w: %v", ErrNoSession, err)
	}
	now := m.now()
	key := v.key()
	h := m.cache.hash(key)
	if d := m.cache.get(key, h, now); d != nil {
		if err := m.checkAlive(d, now); err != nil {
			return nil, err
		}
		return d, nil
	}
	d, err := m.keys.openData(v.name, v.parts[:v.n])
	if err != nil {
		m.log.DebugContext(r.Context(), "session rejected", "err", err)
		return nil, fmt.Errorf("%w: %v", ErrNoSession, err)
	}
	if err := m.checkAlive(d, now); err != nil {
		return nil, err
	}
	d.Identity.Method = auth.MethodSession
	d.Identity.AccessToken = auth.Secret(d.AccessToken)
	d.Identity.IDToken = auth.Secret(d.IDToken)
	if d.Identity.Expiry.IsZero() || d.ExpiresAt.Before(d.Identity.Expiry) {
		d.Identity.Expiry = d.ExpiresAt
	}
	m.cache.put(key, h, d, v.size(), now)
	return d, nil
}

// checkAlive refuses a session past its sealed expiry, or older than the
// lifetime configured now (so shortening lifetime ends old sessions too).
func (m *Manager) checkAlive(d *Data, now time.Time) error {
	if d.CreatedAt.IsZero() || d.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: no timestamps", ErrNoSession)
	}
	if !now.Before(d.ExpiresAt) || !now.Before(d.CreatedAt.Add(m.lifetime)) {
		return fmt.Errorf("%w: expired", ErrNoSession)
	}
	return nil
}

// Save seals d into the response: CreatedAt is set when zero, ExpiresAt
// when zero (CreatedAt+Lifetime, and never later than that). Cookies left
// over from a previous, larger session on r are expired. With redis, the
// record id is kept only when r already carries a session of the same
// issuer and subject, so a planted cookie cannot fixate a new sign-in.
func (m *Manager) Save(w http.ResponseWriter, r *http.Request, d *Data) error {
	if d == nil {
		return errors.New("session: save: nil data")
	}
	now := m.now()
	if d.CreatedAt.IsZero() {
		d.CreatedAt = time.Unix(now.Unix(), 0)
	}
	if max := d.CreatedAt.Add(m.lifetime); d.ExpiresAt.IsZero() || d.ExpiresAt.After(max) {
		d.ExpiresAt = max
	}
	remaining := d.ExpiresAt.Sub(now)
	if remaining < time.Second {
		return errors.New("session: save: session already expired")
	}
	b, err := encodeData(d)
	if err != nil {
		return err
	}
	s, err := m.store.New(r, m.name)
	if err != nil || s.IsNew || !sameSubject(s, d) {
		s = sessions.NewSession(m.store, m.name)
		s.IsNew = true
		s.ID = ""
		if s.Options, err = storeOptions(m.store); err != nil {
			return err
		}
	}
	s.Values[dataKey{}] = b
	s.Options.MaxAge = int(remaining / time.Second)
	return m.store.Save(r, w, s)
}

// sameSubject reports whether the session s already on the request belongs
// to the identity about to be saved.
func sameSubject(s *sessions.Session, d *Data) bool {
	b, _ := s.Values[dataKey{}].([]byte)
	old, err := decodeData(b)
	return err == nil && old.Identity.Issuer == d.Identity.Issuer && old.Identity.Subject == d.Identity.Subject
}

// Clear expires every session cookie and chunk present on r (and the base
// name); with redis it also deletes the record, so a copy of the cookie is
// dead from now on. Store errors are logged: the cookies are cleared anyway.
func (m *Manager) Clear(w http.ResponseWriter, r *http.Request) {
	s, err := m.store.New(r, m.name)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			m.log.ErrorContext(r.Context(), "session: clear: record not deleted", "err", err)
		}
		s = sessions.NewSession(m.store, m.name)
		s.Options, _ = storeOptions(m.store)
	}
	s.Options.MaxAge = -1
	if err := m.store.Save(r, w, s); err != nil {
		m.log.ErrorContext(r.Context(), "session: clear", "err", err)
	}
}

// storeOptions returns a copy of a store's cookie options.
func storeOptions(st sessions.Store) (*sessions.Options, error) {
	if o, ok := st.(interface{ options() sessions.Options }); ok {
		opts := o.options()
		return &opts, nil
	}
	return nil, errors.New("session: unknown store")
}

// CookieName returns the base name of the session cookie.
func (m *Manager) CookieName() string { return m.name }

// Secure reports whether cookies are marked Secure.
func (m *Manager) Secure() bool { return m.secure }

// RefreshAfter returns how long before token expiry tokens are refreshed.
func (m *Manager) RefreshAfter() time.Duration { return m.refreshAfter }

// Lifetime returns the configured session lifetime.
func (m *Manager) Lifetime() time.Duration { return m.lifetime }

// StoreType returns "cookie" or "redis".
func (m *Manager) StoreType() string { return m.storeType }

// Check reports whether the store can serve sessions (redis answers PING);
// it is meant for readiness probes. The cookie store is always ready.
func (m *Manager) Check(ctx context.Context) error {
	if rs, ok := m.store.(*redisStore); ok {
		return rs.ping(ctx)
	}
	return nil
}

// Close releases the redis client; it is a no-op for the cookie store.
func (m *Manager) Close() error {
	if m.closer != nil {
		return m.closer.Close()
	}
	return nil
}

// StripCookies removes from r's Cookie headers every cookie named
// CookieName or starting with CookieName+"_" (session chunks, pending
// sign-ins, the issuer's session), so they never reach an upstream. Other
// cookies are kept byte for byte; a header left empty is removed. A header
// without such cookies is not touched and costs no allocation.
func (m *Manager) StripCookies(r *http.Request) {
	hs := r.Header["Cookie"]
	if len(hs) == 1 {
		// The usual case: one header, replaced or removed whole.
		switch nh, changed := stripCookieHeader(hs[0], m.name); {
		case !changed:
		case nh == "":
			delete(r.Header, "Cookie")
		default:
			r.Header["Cookie"] = []string{nh}
		}
		return
	}
	// The header slice may be shared with another request (WithContext
	// copies share it), so it is replaced, never edited in place.
	var kept []string
	for i, h := range hs {
		nh, changed := stripCookieHeader(h, m.name)
		if changed && kept == nil {
			kept = make([]string, i, len(hs))
			copy(kept, hs[:i])
		}
		if kept != nil && nh != "" {
			kept = append(kept, nh)
		}
	}
	switch {
	case kept == nil:
		// Nothing of ours: leave the header as it is.
	case len(kept) == 0:
		r.Header.Del("Cookie")
	default:
		r.Header["Cookie"] = kept
	}
}

// stripCookieHeader drops our cookies from one Cookie header value. A
// first pass only looks (and sizes the result), so the common case — none
// of ours — allocates nothing and the other allocates once.
func stripCookieHeader(h, base string) (string, bool) {
	if !strings.Contains(h, base) {
		return h, false
	}
	found, size := false, 0
	for part := range strings.SplitSeq(h, ";") {
		p := strings.Trim(part, " \t")
		if isOurs(cookiePartName(p), base) {
			found = true
		} else if p != "" {
			size += len(p) + 2
		}
	}
	if !found {
		return h, false
	}
	var b strings.Builder
	b.Grow(size)
	for part := range strings.SplitSeq(h, ";") {
		p := strings.Trim(part, " \t")
		if p == "" || isOurs(cookiePartName(p), base) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p)
	}
	return b.String(), true
}

// cookiePartName returns the name of one "name=value" part of a Cookie
// header, trimmed the way servers trim it.
func cookiePartName(part string) string {
	name, _, _ := strings.Cut(part, "=")
	return strings.Trim(name, " \t")
}

// isOurs reports whether a cookie name belongs to Portcullis.
func isOurs(name, base string) bool {
	return strings.HasPrefix(name, base) && (len(name) == len(base) || name[len(base)] == '_')
}
