package store

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Errors for calls the issuer should never make; callers need not branch on
// them, so they are not exported.
var (
	errEmptyID        = errors.New("store: empty id")
	errFamilyMismatch = errors.New("store: next refresh token belongs to a different family than the one it replaces")
)

// live reports whether a record expiring at exp is still usable at now. A
// record is live strictly before its ExpiresAt.
func live(exp, now time.Time) bool { return now.Before(exp) }

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// The clone functions keep callers and the memory store from sharing
// backing arrays, so a caller mutating a slice cannot change stored data.

func cloneCode(c Code) Code {
	c.Scopes = slices.Clone(c.Scopes)
	return c
}

func cloneRefresh(t RefreshToken) RefreshToken {
	t.Scopes = slices.Clone(t.Scopes)
	return t
}

func cloneKey(k Key) Key {
	k.Private = slices.Clone(k.Private)
	return k
}

func cloneAuthRequest(r AuthRequest) AuthRequest {
	r.Data = slices.Clone(r.Data)
	return r
}

// sortKeys orders keys newest CreatedAt first; ties by ID keep the order
// stable across implementations.
func sortKeys(keys []Key) {
	slices.SortFunc(keys, func(a, b Key) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
}

// nextThrottle is the counter after one more failure at now.
func nextThrottle(cur Throttle, now time.Time, window time.Duration) Throttle {
	if cur.Failures == 0 || now.Sub(cur.First) >= window {
		return Throttle{Failures: 1, First: now, Last: now}
	}
	cur.Failures++
	cur.Last = now
	return cur
}

// liveThrottle is cur as seen at now, or zero once its window has passed.
func liveThrottle(cur Throttle, now time.Time, window time.Duration) Throttle {
	if cur.Failures == 0 || now.Sub(cur.First) >= window {
		return Throttle{}
	}
	return cur
}

// Background sweeps: every sweepInterval the store deletes records that
// expired by its clock, examining at most sweepBatch records of each kind,
// so one sweep never holds a lock or a write transaction for long.
const (
	sweepInterval = time.Minute
	sweepBatch    = 10000
)

// sweeper runs sweep on every tick until close.
type sweeper struct {
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	stopTick func()
}

// startSweeper calls sweep(now()) on every tick. stopTick (may be nil) is
// called on close, to release a time.Ticker.
func startSweeper(tick <-chan time.Time, stopTick func(), now func() time.Time, sweep func(time.Time) error, log *slog.Logger) *sweeper {
	s := &sweeper{stop: make(chan struct{}), done: make(chan struct{}), stopTick: stopTick}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-tick:
				if err := sweep(now()); err != nil {
					log.Error("store: sweeping expired records failed", "err", err)
				}
			}
		}
	}()
	return s
}

// close stops the goroutine and waits until it has returned; it is safe to
// call more than once.
func (s *sweeper) close() {
	s.once.Do(func() {
		if s.stopTick != nil {
			s.stopTick()
		}
		close(s.stop)
	})
	<-s.done
}
