package bearer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
)

// entry is a verified token: who it is for, which audiences it carries,
// and until when it may be trusted without asking again. It never holds
// the token itself, and is not modified once built.
type entry struct {
	identity  auth.Identity // AccessToken left empty
	audiences []string
	// ownClient marks an introspected token without aud that was issued to
	// Options.ClientID: accepted whatever the audience list.
	ownClient bool
	// until is the token's exp, or earlier (JWT: 5m, introspection: CacheTTL).
	until time.Time
}

// evictScan is how many entries an insert into a full cache looks at for
// an expired one before evicting an arbitrary one.
const evictScan = 8

// cache remembers verified tokens by the SHA-256 of the token, so that a
// memory dump or a debugger shows no usable credential. Only successes are
// cached: a refused token is checked again next time. Eviction is random
// (Go's map iteration starts at a random place), preferring expired
// entries, which costs O(1) and needs no list to maintain on hits.
type cache struct {
	size int

	mu       sync.RWMutex
	entries  map[[32]byte]*entry
	inflight map[[32]byte]*call
}

// call is one verification in progress that concurrent requests for the
// same token wait for instead of repeating it.
type call struct {
	done chan struct{}
	e    *entry
	err  error
}

func newCache(size int) *cache {
	return &cache{
		size:     size,
		entries:  make(map[[32]byte]*entry, min(size, 1024)),
		inflight: map[[32]byte]*call{},
	}
}

func hashToken(raw string) [32]byte { return sha256.Sum256([]byte(raw)) }

// get returns the live entry for key, or nil.
func (c *cache) get(key [32]byte, now time.Time) *entry {
	c.mu.RLock()
	e := c.entries[key]
	c.mu.RUnlock()
	if e == nil || !now.Before(e.until) {
		return nil
	}
	return e
}

// put stores e, evicting one entry when the cache is full.
func (c *cache) put(key [32]byte, e *entry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.size {
		c.evictLocked(now)
	}
	c.entries[key] = e
}

func (c *cache) evictLocked(now time.Time) {
	var victim [32]byte
	n := 0
	for k, e := range c.entries {
		if !now.Before(e.until) {
			victim = k
			break
		}
		if n == 0 {
			victim = k
		}
		if n++; n >= evictScan {
			break
		}
	}
	delete(c.entries, victim)
}

// do runs verify once for concurrent callers with the same key. A waiter
// whose leader gave up because its own request ended verifies by itself.
func (c *cache) do(ctx context.Context, key [32]byte, verify func() (*entry, error)) (*entry, error) {
	c.mu.Lock()
	if cl, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-cl.done:
			if cl.err != nil && (errors.Is(cl.err, context.Canceled) || errors.Is(cl.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				return verify()
			}
			return cl.e, cl.err
		case <-ctx.Done():
			return nil, invalidCtx(ctx.Err())
		}
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[key] = cl
	c.mu.Unlock()

	defer func() {
		c.mu.Lock()
		delete(c.inflight, key)
		c.mu.Unlock()
		close(cl.done)
	}()
	cl.e, cl.err = verify()
	return cl.e, cl.err
}

func invalidCtx(err error) error {
	return fmt.Errorf("%w: the request ended while the token was being checked: %w", auth.ErrInvalidToken, err)
}
