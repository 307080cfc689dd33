package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

// JWT header typ values. RFC 9068 §2.1 gives access tokens their own type
// so that an ID token can never pass for one.
const (
	typJWT      = "JWT"
	typAccessJW = "at+jwt"
)

const (
	// keyReloadEvery bounds how stale the in-process copy of the key list
	// may get when several replicas share a store.
	keyReloadEvery = 10 * time.Second
	// keyRetireSlack covers tokens a replica signed with a key in the
	// moments before it noticed another replica had retired it.
	keyRetireSlack = time.Minute
)

// signingKey is a parsed store.Key.
type signingKey struct {
	rec     store.Key
	alg     jose.SignatureAlgorithm
	private crypto.Signer
	public  jose.JSONWebKey
	signers map[string]jose.Signer // by typ
}

// keyring owns the signing keys: it creates the first one, rotates, retires
// and deletes them in the store, and keeps a parsed copy for signing and
// verifying.
type keyring struct {
	st      store.Store
	now     func() time.Time
	log     *slog.Logger
	metrics *Metrics

	mu          sync.Mutex
	alg         string
	rotateEvery time.Duration
	retain      time.Duration // longest lifetime of a token a key signs
	keys        []*signingKey // newest first, including retired ones still published
	loadedAt    time.Time
}

func newKeyring(ctx context.Context, st store.Store, kc KeysConfig, retain time.Duration, now func() time.Time, log *slog.Logger, m *Metrics) (*keyring, error) {
	kr := &keyring{st: st, now: now, log: log, metrics: m}
	kr.configure(kc, retain)
	if _, err := kr.current(ctx); err != nil {
		return nil, err
	}
	return kr, nil
}

// configure applies (possibly reloaded) settings; a changed algorithm
// takes effect at the next signature by rotating.
func (kr *keyring) configure(kc KeysConfig, retain time.Duration) {
	kc = kc.withDefaults()
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.alg = kc.Algorithm
	kr.rotateEvery = kc.RotateEvery
	kr.retain = retain
}

// load re-reads the keys from the store; kr.mu is held.
func (kr *keyring) load(ctx context.Context, now time.Time) error {
	recs, err := kr.st.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("issuer: listing signing keys: %w", err)
	}
	keys := make([]*signingKey, 0, len(recs))
	for _, rec := range recs {
		if !rec.ExpiresAt.IsZero() && !now.Before(rec.ExpiresAt) {
			// Every token it signed has expired: it may leave the JWKS.
			if err := kr.st.DeleteKey(ctx, rec.ID); err != nil {
				return fmt.Errorf("issuer: deleting expired key %q: %w", rec.ID, err)
			}
			continue
		}
		k, err := parseKey(rec)
		if err != nil {
			// A key we cannot parse cannot verify anything; say so and go on.
			kr.log.ErrorContext(ctx, "issuer: ignoring unusable signing key", "kid", rec.ID, "err", err)
			continue
		}
		keys = append(keys, k)
	}
	slices.SortStableFunc(keys, func(a, b *signingKey) int { return b.rec.CreatedAt.Compare(a.rec.CreatedAt) })
	kr.keys = keys
	kr.loadedAt = now
	return nil
}

// current returns the key that signs now, rotating when it is due.
func (kr *keyring) current(ctx context.Context) (*signingKey, error) {
	now := kr.now()
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.keys == nil || now.Sub(kr.loadedAt) >= keyReloadEvery || now.Before(kr.loadedAt) {
		if err := kr.load(ctx, now); err != nil {
			return nil, err
		}
	}
	cur := kr.currentLocked()
	if cur != nil && cur.rec.Algorithm == kr.alg && now.Sub(cur.rec.CreatedAt) < kr.rotateEvery && !kr.expiredLocked(now) {
		return cur, nil
	}
	return kr.rotateLocked(ctx, now)
}

func (kr *keyring) currentLocked() *signingKey {
	for _, k := range kr.keys {
		if k.rec.RetiredAt.IsZero() {
			return k
		}
	}
	return nil
}

// expiredLocked reports whether a published retired key has outlived its
// tokens (the list needs pruning).
func (kr *keyring) expiredLocked(now time.Time) bool {
	for _, k := range kr.keys {
		if !k.rec.ExpiresAt.IsZero() && !now.Before(k.rec.ExpiresAt) {
			return true
		}
	}
	return false
}

// rotateLocked creates a new current key if none is usable and retires the
// others; kr.mu is held.
func (kr *keyring) rotateLocked(ctx context.Context, now time.Time) (*signingKey, error) {
	cur := kr.currentLocked()
	if cur == nil || cur.rec.Algorithm != kr.alg || now.Sub(cur.rec.CreatedAt) >= kr.rotateEvery {
		rec, err := generateKey(kr.alg, now)
		if err != nil {
			return nil, err
		}
		if err := kr.st.PutKey(ctx, rec); err != nil {
			return nil, fmt.Errorf("issuer: storing new signing key: %w", err)
		}
		kr.metrics.rotated()
		kr.log.LogAttrs(ctx, slog.LevelInfo, "issuer: new signing key",
			slog.String("audit", "key_rotated"), slog.String("kid", rec.ID), slog.String("alg", rec.Algorithm))
		for _, k := range kr.keys {
			if k.rec.RetiredAt.IsZero() {
				k.rec.RetiredAt = now
				k.rec.ExpiresAt = now.Add(kr.retain + keyRetireSlack)
				if err := kr.st.PutKey(ctx, k.rec); err != nil {
					return nil, fmt.Errorf("issuer: retiring signing key %q: %w", k.rec.ID, err)
				}
			}
		}
	}
	if err := kr.load(ctx, now); err != nil {
		return nil, err
	}
	cur = kr.currentLocked()
	if cur == nil {
		return nil, errors.New("issuer: no current signing key after rotation")
	}
	return cur, nil
}

// lookup returns the published key with id kid, re-reading the store once
// when it is unknown (another replica may have rotated).
//
// expires is the key's ExpiresAt as read under kr.mu (rotation updates it
// in place): zero while the key is current.
func (kr *keyring) lookup(ctx context.Context, kid string) (k *signingKey, expires time.Time, err error) {
	now := kr.now()
	kr.mu.Lock()
	defer kr.mu.Unlock()
	find := func() *signingKey {
		for _, k := range kr.keys {
			if k.rec.ID == kid && (k.rec.ExpiresAt.IsZero() || now.Before(k.rec.ExpiresAt)) {
				return k
			}
		}
		return nil
	}
	if k := find(); k != nil {
		return k, k.rec.ExpiresAt, nil
	}
	// Bounded so that a flood of made-up kids cannot hammer the store.
	if now.Sub(kr.loadedAt) >= time.Second || now.Before(kr.loadedAt) {
		if err := kr.load(ctx, now); err != nil {
			return nil, time.Time{}, err
		}
		if k := find(); k != nil {
			return k, k.rec.ExpiresAt, nil
		}
	}
	return nil, time.Time{}, fmt.Errorf("issuer: unknown key id %q", kid)
}

// published reports whether key kid is still published, as last loaded
// (the store is re-read every few seconds): a verified-token cache entry
// must not outlive the removal of its key.
func (kr *keyring) published(kid string, now time.Time) bool {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	for _, k := range kr.keys {
		if k.rec.ID == kid && (k.rec.ExpiresAt.IsZero() || now.Before(k.rec.ExpiresAt)) {
			return true
		}
	}
	return false
}

// jwks returns the public keys of every key whose tokens may still be live.
func (kr *keyring) jwks(ctx context.Context) (jose.JSONWebKeySet, error) {
	if _, err := kr.current(ctx); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	now := kr.now()
	kr.mu.Lock()
	defer kr.mu.Unlock()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range kr.keys {
		if k.rec.ExpiresAt.IsZero() || now.Before(k.rec.ExpiresAt) {
			set.Keys = append(set.Keys, k.public)
		}
	}
	return set, nil
}

// algorithms lists the algorithms of the published keys, for parsing.
func (kr *keyring) algorithms() []jose.SignatureAlgorithm {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	algs := []jose.SignatureAlgorithm{jose.SignatureAlgorithm(kr.alg)}
	for _, k := range kr.keys {
		if !slices.Contains(algs, k.alg) {
			algs = append(algs, k.alg)
		}
	}
	return algs
}

// sign serialises claims as a compact JWS with header typ.
func (kr *keyring) sign(ctx context.Context, typ string, claims any) (string, error) {
	k, err := kr.current(ctx)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("issuer: encoding claims: %w", err)
	}
	s, ok := k.signers[typ]
	if !ok {
		return "", fmt.Errorf("issuer: no signer for typ %q", typ)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("issuer: signing: %w", err)
	}
	return jws.CompactSerialize()
}

// verify checks raw's signature against our published keys and returns
// the payload and the header typ. It does not look at the claims.
func (kr *keyring) verify(ctx context.Context, raw string) (payload []byte, typ string, err error) {
	payload, typ, _, _, err = kr.verifyKey(ctx, raw)
	return payload, typ, err
}

// verifyKey is verify that also returns when the signing key stops being
// published (zero while it is current and not yet retired): no token it
// signed is valid after that.
func (kr *keyring) verifyKey(ctx context.Context, raw string) (payload []byte, typ, kid string, keyExpires time.Time, err error) {
	jws, err := jose.ParseSignedCompact(raw, kr.algorithms())
	if err != nil {
		return nil, "", "", time.Time{}, fmt.Errorf("issuer: malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, "", "", time.Time{}, errors.New("issuer: token must have exactly one signature")
	}
	h := jws.Signatures[0].Protected
	k, keyExpires, err := kr.lookup(ctx, h.KeyID)
	if err != nil {
		return nil, "", "", time.Time{}, err
	}
	if h.Algorithm != string(k.alg) {
		return nil, "", "", time.Time{}, fmt.Errorf("issuer: token alg %q does not match key %q", h.Algorithm, k.alg)
	}
	payload, err = jws.Verify(k.public)
	if err != nil {
		return nil, "", "", time.Time{}, fmt.Errorf("issuer: bad token signature: %w", err)
	}
	typ, _ = h.ExtraHeaders[jose.HeaderType].(string)
	return payload, typ, h.KeyID, keyExpires, nil
}

// isAccessTokenTyp accepts "at+jwt" and its full media type (RFC 9068 §4).
func isAccessTokenTyp(typ string) bool {
	return strings.EqualFold(typ, typAccessJW) || strings.EqualFold(typ, "application/"+typAccessJW)
}

// generateKey makes a new private key for alg.
func generateKey(alg string, now time.Time) (store.Key, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return store.Key{}, fmt.Errorf("issuer: unknown key algorithm %q", alg)
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("issuer: generating %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.Key{}, fmt.Errorf("issuer: encoding key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: priv.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return store.Key{}, fmt.Errorf("issuer: key thumbprint: %w", err)
	}
	return store.Key{
		ID:        base64.RawURLEncoding.EncodeToString(tp),
		Algorithm: alg,
		Private:   der,
		CreatedAt: now,
	}, nil
}

// parseKey turns a stored key into signers and a public JWK.
func parseKey(rec store.Key) (*signingKey, error) {
	p, err := x509.ParsePKCS8PrivateKey(rec.Private)
	if err != nil {
		return nil, fmt.Errorf("issuer: parsing key: %w", err)
	}
	priv, ok := p.(crypto.Signer)
	if !ok {
		return nil, errors.New("issuer: key is not a signer")
	}
	alg := jose.SignatureAlgorithm(rec.Algorithm)
	switch {
	case alg == jose.RS256:
		if _, ok := priv.(*rsa.PrivateKey); !ok {
			return nil, errors.New("issuer: RS256 key is not RSA")
		}
	case alg == jose.ES256:
		if k, ok := priv.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
			return nil, errors.New("issuer: ES256 key is not P-256")
		}
	default:
		return nil, fmt.Errorf("issuer: unknown key algorithm %q", rec.Algorithm)
	}
	k := &signingKey{
		rec:     rec,
		alg:     alg,
		private: priv,
		public:  jose.JSONWebKey{Key: priv.Public(), KeyID: rec.ID, Algorithm: rec.Algorithm, Use: "sig"},
		signers: map[string]jose.Signer{},
	}
	for _, typ := range []string{typJWT, typAccessJW} {
		s, err := jose.NewSigner(
			jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: priv, KeyID: rec.ID}},
			(&jose.SignerOptions{}).WithType(jose.ContentType(typ)),
		)
		if err != nil {
			return nil, fmt.Errorf("issuer: making signer: %w", err)
		}
		k.signers[typ] = s
	}
	return k, nil
}
