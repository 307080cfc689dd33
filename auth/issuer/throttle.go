package issuer

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

// Sign-in throttling, shared by the login form and the password grant.
const (
	failWindow   = 15 * time.Minute
	userFailures = 5
	ipFailures   = 20
	// failBaseDelay is the wait after the limit is reached; it doubles with
	// every further failure, and the window's end caps it, so the real user
	// is slowed but never locked out for good.
	failBaseDelay = 2 * time.Second
)

// throttledError means the attempt was refused without checking the
// password.
type throttledError struct{ retryAfter time.Duration }

func (e *throttledError) Error() string {
	return fmt.Sprintf("issuer: too many failed sign-ins; retry after %s", e.retryAfter)
}

func userKey(username string) string { return "user:" + username }

// ipKey counts an IPv6 client by its /64: one host usually holds a whole
// /64, and counting single addresses would hand an attacker 2^64 fresh
// counters.
func ipKey(ip string) string {
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() && !a.Is4In6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + ip
}

// throttleWait returns how long the caller must wait before a sign-in for
// username from ip is checked at all (0 means go ahead), which counters,
// "user" and/or "ip", impose a wait, and the username's failure count as
// read (for reserveAttempt).
func (i *Issuer) throttleWait(ctx context.Context, username, ip string) (time.Duration, []string, seenFailures, error) {
	now := i.now()
	var wait time.Duration
	var keys []string
	var seen seenFailures
	for _, k := range []struct {
		name, key string
		limit     int
	}{{"user", userKey(username), userFailures}, {"ip", ipKey(ip), ipFailures}} {
		t, err := i.st.GetThrottle(ctx, k.key, now, failWindow)
		if err != nil {
			return 0, nil, seen, fmt.Errorf("issuer: reading throttle: %w", err)
		}
		if k.name == "user" {
			seen.user = t.Failures
		} else {
			seen.ip = t.Failures
		}
		if d := delayFor(t, k.limit, now); d > 0 {
			wait = max(wait, d)
			keys = append(keys, k.name)
		}
	}
	return wait, keys, seen, nil
}

// seenFailures are the counts throttleWait read.
type seenFailures struct{ user, ip int }

// checksInFlight counts password checks under way per IP key in this
// process. A check counts against the per-IP limit from the moment it
// starts, so a burst of attempts for many usernames cannot all pass a
// limit read before any of them failed. (The per-username limit needs no
// such help: reserveAttempt counts in the shared store.)
type checksInFlight struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire admits one more check for key while failures already recorded
// plus checks under way stay below limit — or, once the limit is reached
// and the caller found the wait over, one check at a time (the growing
// delay then applies after each failure, as for a username).
func (f *checksInFlight) acquire(key string, recorded, limit int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.n[key]; recorded+n >= limit && (recorded < limit || n > 0) {
		return false
	}
	if f.n == nil {
		f.n = map[string]int{}
	}
	f.n[key]++
	return true
}

func (f *checksInFlight) release(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[key] <= 1 {
		delete(f.n, key)
	} else {
		f.n[key]--
	}
}

// reserveAttempt counts this attempt as a failure of username BEFORE the
// password is checked (a success clears the count), so that attempts
// arriving together cannot all pass a check made before any of them was
// counted: the store's atomic increment hands out one count per attempt,
// also across replicas. An attempt may go ahead while the count stays
// within the limit, or when it is the first after a wait has passed (seen
// is the count throttleWait read); any other is refused with the wait.
func (i *Issuer) reserveAttempt(ctx context.Context, username string, seen int) error {
	now := i.now()
	t, err := i.st.RecordFailure(ctx, userKey(username), now, failWindow)
	if err != nil {
		return fmt.Errorf("issuer: recording sign-in attempt: %w", err)
	}
	if t.Failures <= userFailures || t.Failures == seen+1 {
		return nil
	}
	return &throttledError{retryAfter: max(delayFor(t, userFailures, now), time.Second)}
}

// delayFor is the remaining wait for a counter: none below limit, then
// failBaseDelay·2^(failures-limit) after the last failure, never past the
// window's end (when the counter starts over). Refused attempts are not
// recorded, so they cannot push the end out.
func delayFor(t store.Throttle, limit int, now time.Time) time.Duration {
	if t.Failures < limit {
		return 0
	}
	d := failBaseDelay
	for n := t.Failures - limit; n > 0 && d < failWindow; n-- {
		d *= 2
	}
	until := t.Last.Add(min(d, failWindow))
	if end := t.First.Add(failWindow); until.After(end) {
		until = end
	}
	return until.Sub(now)
}

// recordFailure counts a failed sign-in against the IP (reserveAttempt
// already counted it against the username).
func (i *Issuer) recordFailure(ctx context.Context, ip string) error {
	if _, err := i.st.RecordFailure(ctx, ipKey(ip), i.now(), failWindow); err != nil {
		return fmt.Errorf("issuer: recording failed sign-in: %w", err)
	}
	return nil
}
