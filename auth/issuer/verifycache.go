package issuer

import (
	"hash/maphash"
	"sync"
	"time"
)

// Bounds of the verified-access-token cache. Checking an RS256 signature
// and decoding the claims twice costs tens of microseconds; a bearer
// client sends the same token on every request until it expires. The
// cache remembers only that a token's signature, typ, iss and required
// claims were good: VerifyAccessToken still checks exp, nbf and iat,
// revocation of the jti and its family, and that the client and user
// still exist, on every call, so revocation is exact.
const (
	verifiedMaxEntries = 1024
	verifiedMaxAge     = 5 * time.Minute
)

// verified is a token whose signature and claims passed checkSigned.
type verified struct {
	token   string // the exact token: a hit must match it byte for byte
	claims  jwtClaims
	all     map[string]any // never modified once cached
	kid     string         // its signing key: a hit needs the key still published
	expires time.Time      // min(exp, signing key's ExpiresAt, cached+maxAge)
}

// verifiedCache maps a token to its verified claims: entries are indexed
// by a seeded maphash and a hit must match the stored token byte for byte.
// Only tokens that verified are stored, so a forged or altered token never
// hits. Safe for concurrent use.
type verifiedCache struct {
	maxEntries int
	maxAge     time.Duration

	seed    maphash.Seed // per cache: outsiders cannot aim collisions
	mu      sync.RWMutex
	entries map[uint64]verified
}

func newVerifiedCache(maxEntries int, maxAge time.Duration) *verifiedCache {
	return &verifiedCache{maxEntries: maxEntries, maxAge: maxAge, seed: maphash.MakeSeed(), entries: map[uint64]verified{}}
}

func (c *verifiedCache) get(token string, now time.Time) (verified, bool) {
	k := maphash.String(c.seed, token)
	c.mu.RLock()
	v, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok || v.token != token {
		return verified{}, false
	}
	if !now.Before(v.expires) {
		c.mu.Lock()
		if cur, ok := c.entries[k]; ok && cur.expires.Equal(v.expires) {
			delete(c.entries, k)
		}
		c.mu.Unlock()
		return verified{}, false
	}
	return v, true
}

// put stores v until min(v.expires, now+maxAge).
func (c *verifiedCache) put(token string, v verified, now time.Time) {
	k := maphash.String(c.seed, token)
	v.token = token
	if limit := now.Add(c.maxAge); limit.Before(v.expires) {
		v.expires = limit
	}
	if !now.Before(v.expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.maxEntries {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		// Still full: drop arbitrary entries (map order is random).
		for k := range c.entries {
			if len(c.entries) < c.maxEntries {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[k] = v
}

func (c *verifiedCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
