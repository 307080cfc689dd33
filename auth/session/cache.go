package session

import (
	"crypto/sha256"
	"slices"
	"strings"
	"sync"
	"time"
)

// Bounds of the decoded-session cache. Opening a session costs an HMAC,
// AES and a JSON decode of up to 45 KB on every request; the cache turns a
// repeat request into one SHA-256 of the sealed bytes and a map lookup.
// Only values that opened and decoded successfully are cached, so a
// tampered or unknown-key cookie never hits: its bytes, and so its hash,
// differ. Entries are bounded in number, in the sealed bytes they stand
// for (about what their decoded Data keeps alive), and in age; an entry
// never outlives the session's own ExpiresAt, and checkAlive still runs on
// every hit.
const (
	cacheMaxEntries = 1024
	cacheMaxBytes   = 4 << 20
	cacheMaxAge     = 5 * time.Minute
)

// cacheKey is SHA-256 over the name a value was sealed for and the exact
// sealed bytes (every chunk, in order). The name keeps a redis record from
// matching a cookie of the same bytes, though neither could be forged.
type cacheKey [sha256.Size]byte

func newCacheKey(name, sealed string) cacheKey {
	v := sealedValue{name: name, n: 1}
	v.parts[0] = sealed
	return v.key()
}

// sealedValue is a sealed session value as it arrived, not yet joined:
// the name it is sealed for and its parts (cookie chunks; a redis record
// is one part). Hashing the parts in place spares a large session the
// copy that joining costs; only a cache miss joins them.
type sealedValue struct {
	name  string
	n     int
	parts [maxChunks]string
}

// size is the length of the joined value.
func (v *sealedValue) size() int {
	total := 0
	for _, p := range v.parts[:v.n] {
		total += len(p)
	}
	return total
}

// join returns the whole sealed value.
func (v *sealedValue) join() string {
	if v.n == 1 {
		return v.parts[0]
	}
	var b strings.Builder
	b.Grow(v.size())
	for _, p := range v.parts[:v.n] {
		b.WriteString(p)
	}
	return b.String()
}

func (v *sealedValue) key() cacheKey {
	h := sha256.New()
	// Strings are copied through one small buffer: []byte(part) would
	// copy each part whole.
	buf := make([]byte, 0, 1024)
	write := func(s string) {
		for len(s) > 0 {
			n := min(len(s), cap(buf))
			h.Write(append(buf[:0], s[:n]...))
			s = s[n:]
		}
	}
	write(v.name)
	h.Write([]byte{0})
	for _, p := range v.parts[:v.n] {
		write(p)
	}
	var k cacheKey
	h.Sum(k[:0])
	return k
}

type cacheEntry struct {
	data    *Data // never handed out: get returns a copy
	expires time.Time
	size    int
}

// dataCache maps sealed session values to what they decoded to. It is safe
// for concurrent use; lookups take a read lock only.
type dataCache struct {
	maxEntries int
	maxBytes   int
	maxAge     time.Duration

	mu      sync.RWMutex
	entries map[cacheKey]cacheEntry
	bytes   int
}

func newDataCache(maxEntries, maxBytes int, maxAge time.Duration) *dataCache {
	return &dataCache{maxEntries: maxEntries, maxBytes: maxBytes, maxAge: maxAge, entries: map[cacheKey]cacheEntry{}}
}

// get returns a private copy of the cached Data for k, or nil when there
// is none or it has expired at now.
func (c *dataCache) get(k cacheKey, now time.Time) *Data {
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok {
		return nil
	}
	if !now.Before(e.expires) {
		c.mu.Lock()
		if cur, ok := c.entries[k]; ok && cur.expires.Equal(e.expires) {
			c.deleteLocked(k, cur)
		}
		c.mu.Unlock()
		return nil
	}
	return cloneData(e.data)
}

// put remembers d (which the caller must not modify afterwards) for k until
// min(now+maxAge, d.ExpiresAt). size is the length of the sealed value.
func (c *dataCache) put(k cacheKey, d *Data, size int, now time.Time) {
	exp := now.Add(c.maxAge)
	if !d.ExpiresAt.IsZero() && d.ExpiresAt.Before(exp) {
		exp = d.ExpiresAt
	}
	if !now.Before(exp) || size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[k]; ok {
		c.deleteLocked(k, old)
	}
	if len(c.entries) >= c.maxEntries || c.bytes+size > c.maxBytes {
		c.evictLocked(now, size)
	}
	c.entries[k] = cacheEntry{data: d, expires: exp, size: size}
	c.bytes += size
}

// evictLocked makes room for one entry of size bytes: expired entries go
// first, then arbitrary ones (map order is random, so a client cannot pick
// which sessions are pushed out).
func (c *dataCache) evictLocked(now time.Time, size int) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			c.deleteLocked(k, e)
		}
	}
	for k, e := range c.entries {
		if len(c.entries) < c.maxEntries && c.bytes+size <= c.maxBytes {
			return
		}
		c.deleteLocked(k, e)
	}
}

func (c *dataCache) deleteLocked(k cacheKey, e cacheEntry) {
	delete(c.entries, k)
	c.bytes -= e.size
}

// len returns the number of entries, expired or not.
func (c *dataCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// cloneData copies d deeply enough that the copy can be modified freely:
// the only shared mutable part of a Data is its groups slice.
func cloneData(d *Data) *Data {
	c := *d
	c.Identity.Groups = slices.Clone(d.Identity.Groups)
	return &c
}
