package session

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
)

func TestDataCacheExpiry(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	tests := []struct {
		name      string
		expiresAt time.Duration // session ExpiresAt after now; 0: none
		at        time.Duration // lookup after now
		hit       bool
	}{
		{"fresh", time.Hour, 0, true},
		{"just before max age", time.Hour, time.Minute - time.Nanosecond, true},
		{"at max age", time.Hour, time.Minute, false},
		{"just before session expiry", 30 * time.Second, 30*time.Second - time.Nanosecond, true},
		{"at session expiry, before max age", 30 * time.Second, 30 * time.Second, false},
		{"already expired session is not cached", -time.Second, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newDataCache(10, 1<<20, time.Minute)
			d := &Data{Identity: auth.Identity{Subject: "s"}, ExpiresAt: now.Add(tt.expiresAt)}
			k := newCacheKey("n", "sealed")
			c.store(k, d, 10, now)
			got := c.lookup(k, now.Add(tt.at))
			if (got != nil) != tt.hit {
				t.Fatalf("get(at now+%s) = %v, want hit %v", tt.at, got, tt.hit)
			}
			if got != nil && got != d {
				t.Error("get() returned a copy, want the cached Data itself (Manager.Load copies; View shares)")
			}
			if !tt.hit && c.len() != 0 {
				t.Errorf("len() after a miss on an expired entry = %d, want 0", c.len())
			}
		})
	}
}

func TestDataCacheBounds(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	d := &Data{ExpiresAt: now.Add(time.Hour)}
	t.Run("entries", func(t *testing.T) {
		c := newDataCache(8, 1<<20, time.Minute)
		for i := range 100 {
			c.store(newCacheKey("n", fmt.Sprint(i)), d, 10, now)
			if c.len() > 8 {
				t.Fatalf("len() after %d puts = %d, want at most 8", i+1, c.len())
			}
		}
		if k := newCacheKey("n", "99"); c.lookup(k, now) == nil {
			t.Error("get(last put) = nil, want the entry just stored")
		}
	})
	t.Run("bytes", func(t *testing.T) {
		c := newDataCache(1000, 100, time.Minute)
		for i := range 50 {
			c.store(newCacheKey("n", fmt.Sprint(i)), d, 30, now)
			if c.bytes > 100 || c.len() > 3 {
				t.Fatalf("after %d puts of 30 bytes: %d bytes in %d entries, want at most 100 bytes", i+1, c.bytes, c.len())
			}
		}
		c.store(newCacheKey("n", "big"), d, 101, now)
		if c.lookup(newCacheKey("n", "big"), now) != nil {
			t.Error("an entry larger than the whole budget was cached")
		}
	})
	t.Run("expired go first", func(t *testing.T) {
		c := newDataCache(2, 1<<20, time.Minute)
		c.store(newCacheKey("n", "old"), d, 10, now)
		c.store(newCacheKey("n", "young"), d, 10, now.Add(30*time.Second))
		later := now.Add(time.Minute) // "old" has expired, "young" has not
		c.store(newCacheKey("n", "new"), d, 10, later)
		if c.lookup(newCacheKey("n", "young"), later) == nil || c.lookup(newCacheKey("n", "new"), later) == nil {
			t.Error("a live entry was evicted while an expired one could go")
		}
	})
	t.Run("replace keeps the byte count", func(t *testing.T) {
		c := newDataCache(10, 1<<20, time.Minute)
		k := newCacheKey("n", "x")
		for range 5 {
			c.store(k, d, 40, now)
		}
		if c.len() != 1 || c.bytes != 40 {
			t.Errorf("after 5 puts of one key: %d entries, %d bytes, want 1, 40", c.len(), c.bytes)
		}
	})
}

// TestCacheKey pins what the key covers: the exact sealed bytes and the
// name they were sealed for.
func TestCacheKey(t *testing.T) {
	base := newCacheKey("_portcullis", "abc")
	for _, tt := range []struct{ name, sealed string }{
		{"_portcullis", "abd"},
		{"_portcullis", "abc "},
		{"_portcullix", "abc"},
		{"_portcullisa", "bc"},
	} {
		if newCacheKey(tt.name, tt.sealed) == base {
			t.Errorf("newCacheKey(%q, %q) = newCacheKey(\"_portcullis\", \"abc\"), want different keys", tt.name, tt.sealed)
		}
	}
}

// TestLoadCachesOnlyGoodSessions checks the Manager's use of the cache:
// a good session is decoded once, and nothing that fails to open (tampered,
// unknown key) or has expired is ever stored.
func TestLoadCachesOnlyGoodSessions(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	clock := func() time.Time { return now }
	m, err := New(Config{Secrets: []auth.Secret{auth.Secret(secret(1, 32))}}, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	other, err := New(Config{Secrets: []auth.Secret{auth.Secret(secret(100, 32))}}, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	cookieOf := func(m *Manager, d *Data) string {
		rec := httptest.NewRecorder()
		if err := m.Save(rec, httptest.NewRequest(http.MethodGet, "/", nil), d); err != nil {
			t.Fatal(err)
		}
		return rec.Result().Cookies()[0].Value
	}
	load := func(v string) error {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: m.name, Value: v})
		_, err := m.Load(r)
		return err
	}
	good := cookieOf(m, &Data{Identity: auth.Identity{Subject: "s"}})
	tampered := []byte(good)
	tampered[len(tampered)/2] ^= 1
	for _, bad := range []string{string(tampered), cookieOf(other, &Data{Identity: auth.Identity{Subject: "s"}}), "garbage"} {
		if err := load(bad); err == nil {
			t.Fatalf("Load(bad cookie) = nil, want an error")
		}
	}
	if n := m.cache.len(); n != 0 {
		t.Fatalf("cache entries after bad cookies = %d, want 0", n)
	}
	for range 3 {
		if err := load(good); err != nil {
			t.Fatalf("Load(good cookie) = %v", err)
		}
	}
	if n := m.cache.len(); n != 1 {
		t.Errorf("cache entries after 3 Loads of one cookie = %d, want 1", n)
	}
}

// A hit needs the exact sealed bytes, not just the hash: an entry filed
// under another value's hash (as a collision would) is never returned.
func TestCacheHitNeedsExactBytes(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newDataCache(10, 1<<20, time.Minute)
	d := &Data{Identity: auth.Identity{Subject: "victim"}, ExpiresAt: now.Add(time.Hour)}
	victim := newCacheKey("_portcullis", "sealed-value-of-the-victim")
	c.store(victim, d, 30, now)

	attacker := newCacheKey("_portcullis", "garbage-that-collides")
	c.mu.Lock()
	c.entries[c.hash(attacker)] = c.entries[c.hash(victim)]
	c.mu.Unlock()
	if got := c.lookup(attacker, now); got != nil {
		t.Fatalf("a value with other bytes got the entry of %q", got.Identity.Subject)
	}
	if got := c.lookup(newCacheKey("_other", "sealed-value-of-the-victim"), now); got != nil {
		t.Fatal("the same bytes sealed for another name hit")
	}
	// The same bytes in two chunks are the same value.
	chunked := &sealedValue{name: "_portcullis", n: 2}
	chunked.parts[0], chunked.parts[1] = "sealed-value-of", "-the-victim"
	if got := c.lookup(chunked.key(), now); got == nil || got.Identity.Subject != "victim" {
		t.Fatal("the same bytes in chunks missed")
	}
}

// TestCacheHashIgnoresSplit: the index of a value does not depend on how
// it is cut into parts, and differs when a byte at either end differs.
func TestCacheHashIgnoresSplit(t *testing.T) {
	c := newDataCache(8, 1<<20, time.Minute)
	for _, whole := range []string{"short", strings.Repeat("0123456789", 20)} {
		want := c.hash(newCacheKey("n", whole))
		for cut1 := 1; cut1 < len(whole); cut1 += 3 {
			for cut2 := cut1; cut2 < len(whole); cut2 += 7 {
				v := &sealedValue{name: "n", n: 3}
				v.parts[0], v.parts[1], v.parts[2] = whole[:cut1], whole[cut1:cut2], whole[cut2:]
				if got := c.hash(v.key()); got != want {
					t.Fatalf("%q cut at %d and %d: hash differs", whole, cut1, cut2)
				}
			}
		}
		for _, i := range []int{0, len(whole) - 1} {
			b := []byte(whole)
			b[i] ^= 1
			if c.hash(newCacheKey("n", string(b))) == want {
				t.Errorf("%q with byte %d changed: same hash", whole, i)
			}
		}
	}
}

// TestCloneData: a copy shares nothing the caller could change: appending
// to or editing its groups never reaches the original, however many there
// are.
func TestCloneData(t *testing.T) {
	for _, n := range []int{0, 1, 8, 9, 40} {
		d := &Data{IDToken: "it"}
		for i := range n {
			d.Identity.Groups = append(d.Identity.Groups, fmt.Sprint("g", i))
		}
		c := d.Clone()
		if len(c.Identity.Groups) != n || (n == 0) != (c.Identity.Groups == nil) || c.IDToken != "it" {
			t.Fatalf("%d groups: copy has %v", n, c.Identity.Groups)
		}
		c.Identity.Groups = append(c.Identity.Groups, "added")
		if n > 0 {
			c.Identity.Groups[0] = "changed"
		}
		if len(d.Identity.Groups) != n || (n > 0 && d.Identity.Groups[0] != "g0") {
			t.Fatalf("%d groups: changing the copy changed the original to %v", n, d.Identity.Groups)
		}
	}
}

// lookup is get, hashing k itself as the Manager does.
func (c *dataCache) lookup(k cacheKey, now time.Time) *Data { return c.get(k, c.hash(k), now) }

// store is put, hashing k itself as the Manager does.
func (c *dataCache) store(k cacheKey, d *Data, size int, now time.Time) {
	c.put(k, c.hash(k), d, size, now)
}
