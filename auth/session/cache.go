package session

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"
)

// Bounds of the decoded-session cache. Opening a session costs an HMAC,
// AES and a JSON decode of up to 45 KB on every request; the cache turns a
// repeat request into a fast hash, a map lookup and a byte comparison.
// Only values that opened and decoded successfully are cached, and a hit
// needs the exact bytes of one of them, so a tampered or unknown-key cookie
// never hits. Entries are bounded in number, in the sealed bytes they stand
// for (about what their decoded Data keeps alive), and in age; an entry
// never outlives the session's own ExpiresAt, and checkAlive still runs on
// every hit.
const (
	cacheMaxEntries = 1024
	cacheMaxBytes   = 4 << 20
	cacheMaxAge     = 5 * time.Minute
)

// cacheKey is the sealed value a session came from: the name it was
// sealed for and its exact bytes (every chunk, in order). The cache indexes
// entries by a seeded maphash of it and compares the bytes themselves on
// every hit, so the hash need not resist collisions (a collision only costs
// a miss). The name keeps a redis record from matching a cookie of the same
// bytes, though neither could be forged.
type cacheKey struct{ v *sealedValue }

// newCacheKey is the key of a one-part value.
func newCacheKey(name, sealed string) cacheKey {
	v := &sealedValue{name: name, n: 1}
	v.parts[0] = sealed
	return cacheKey{v}
}

// sealedValue is a sealed session value as it arrived, not yet joined:
// the name it is sealed for and its parts (cookie chunks; a redis record
// is one part). Hashing the parts in place spares a large session the
// copy that joining costs; only a cache miss joins them.
type sealedValue struct {
	name   string
	n      int
	parts  [maxChunks]string
	joined string // set by join
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
	if v.joined == "" {
		var b strings.Builder
		b.Grow(v.size())
		for _, p := range v.parts[:v.n] {
			b.WriteString(p)
		}
		v.joined = b.String()
	}
	return v.joined
}

// equals reports whether the parts, joined, are exactly s (without
// joining them).
func (v *sealedValue) equals(s string) bool {
	if len(s) != v.size() {
		return false
	}
	for _, p := range v.parts[:v.n] {
		if s[:len(p)] != p {
			return false
		}
		s = s[len(p):]
	}
	return true
}

// key is the value's cache key.
func (v *sealedValue) key() cacheKey { return cacheKey{v} }

// cacheEntry is one decoded session and the exact sealed value it came
// from, which a hit must match byte for byte.
type cacheEntry struct {
	name    string
	sealed  string
	data    *Data // never handed out: get returns a copy
	expires time.Time
	size    int
}

// matches reports whether e was decoded from exactly k.
func (e *cacheEntry) matches(k cacheKey) bool {
	return e.name == k.v.name && k.v.equals(e.sealed)
}

// dataCache maps sealed session values to what they decoded to. It is safe
// for concurrent use; lookups take a read lock only.
type dataCache struct {
	maxEntries int
	maxBytes   int
	maxAge     time.Duration

	seed    maphash.Seed // per cache: outsiders cannot aim collisions
	mu      sync.RWMutex
	entries map[uint64]cacheEntry
	bytes   int
}

func newDataCache(maxEntries, maxBytes int, maxAge time.Duration) *dataCache {
	return &dataCache{maxEntries: maxEntries, maxBytes: maxBytes, maxAge: maxAge,
		seed: maphash.MakeSeed(), entries: map[uint64]cacheEntry{}}
}

// hashSample is how many bytes at each end of a sealed value the index
// hashes. Both ends are random in every sealed value (the nonce at the
// start, the tag at the end), so distinct sessions spread well, and a hit
// costs a short hash and one comparison instead of hashing kilobytes.
// Values that agree at both ends only share a slot: the comparison of the
// exact bytes still decides every hit.
const hashSample = 32

// hash indexes k: its name, its length and hashSample bytes at each end,
// gathered in one buffer and hashed in one call (a streaming maphash.Hash
// costs more than the few bytes it would hash).
func (c *dataCache) hash(k cacheKey) uint64 {
	var buf [128 + 8 + 2*hashSample]byte
	name := k.v.name
	if len(name) > 128 {
		// Not a cookie name or redis key we make; hash it on its own.
		name = ""
	}
	n := copy(buf[:], name)
	buf[n] = 0
	n++
	// The ends of the joined value, however it is split into parts.
	size := k.v.size()
	binary.LittleEndian.PutUint64(buf[n:], uint64(size))
	n += 8
	headLen := min(size, hashSample)
	tailFrom := max(size-hashSample, 0)
	head, tail := buf[n:n+headLen], buf[n+headLen:n+headLen+size-tailFrom]
	off := 0
	for _, p := range k.v.parts[:k.v.n] {
		if off < headLen {
			copy(head[off:], p)
		}
		if end := off + len(p); end > tailFrom {
			from := max(tailFrom-off, 0)
			copy(tail[off+from-tailFrom:], p[from:])
		}
		off += len(p)
	}
	h := maphash.Bytes(c.seed, buf[:n+headLen+size-tailFrom])
	if name == "" && k.v.name != "" {
		h ^= maphash.String(c.seed, k.v.name)
	}
	return h
}

// get returns the cached Data for k, or nil when there is none or it has
// expired at now. The Data is shared: callers must not modify it.
//
// h is c.hash(k): the caller computes it once for a lookup and the put
// that follows a miss.
func (c *dataCache) get(k cacheKey, h uint64, now time.Time) *Data {
	c.mu.RLock()
	e, ok := c.entries[h]
	c.mu.RUnlock()
	if !ok || !e.matches(k) {
		return nil
	}
	if !now.Before(e.expires) {
		c.mu.Lock()
		if cur, ok := c.entries[h]; ok && cur.expires.Equal(e.expires) {
			c.deleteLocked(h, cur)
		}
		c.mu.Unlock()
		return nil
	}
	return e.data
}

// put remembers d (which the caller must not modify afterwards) for k until
// min(now+maxAge, d.ExpiresAt). size is the length of the sealed value.
// h is c.hash(k).
func (c *dataCache) put(k cacheKey, h uint64, d *Data, size int, now time.Time) {
	exp := now.Add(c.maxAge)
	if !d.ExpiresAt.IsZero() && d.ExpiresAt.Before(exp) {
		exp = d.ExpiresAt
	}
	if !now.Before(exp) || size > c.maxBytes {
		return
	}
	e := cacheEntry{name: k.v.name, sealed: k.v.join(), data: d, expires: exp, size: size}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[h]; ok {
		c.deleteLocked(h, old)
	}
	if len(c.entries) >= c.maxEntries || c.bytes+size > c.maxBytes {
		c.evictLocked(now, size)
	}
	c.entries[h] = e
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

func (c *dataCache) deleteLocked(k uint64, e cacheEntry) {
	delete(c.entries, k)
	c.bytes -= e.size
}

// len returns the number of entries, expired or not.
func (c *dataCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Clone copies d deeply enough that the copy can be modified freely: the
// only shared mutable part of a Data is its groups slice.
func (d *Data) Clone() *Data {
	c := *d
	c.Identity.Groups = slices.Clone(d.Identity.Groups)
	return &c
}
