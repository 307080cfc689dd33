package store

import (
	"context"
	"sync"
	"time"
)

// Memory is a Store held in this process's memory: fast, lost on restart
// and not shared between replicas. One mutex serialises all access, which
// makes every compound step (redeem, rotate, count) trivially atomic.
type Memory struct {
	mu        sync.Mutex
	codes     map[string]Code
	refresh   map[string]RefreshToken
	families  map[string]time.Time // family id -> latest ExpiresAt of its members
	revoked   map[string]time.Time // id -> end of the revocation
	keys      map[string]Key
	logins    map[string]LoginSession
	authReqs  map[string]AuthRequest
	throttles map[string]memThrottle

	sweeper *sweeper
}

type memThrottle struct {
	Throttle
	// expires is First plus the window of the last RecordFailure: only for
	// sweeping, as getters decide with the window they are given.
	expires time.Time
}

// NewMemory returns an empty Memory store whose background sweep runs until
// Close.
func NewMemory(opts Options) *Memory {
	t := time.NewTicker(sweepInterval)
	return newMemory(opts, t.C, t.Stop)
}

// newMemory lets tests drive the sweep with their own tick channel.
func newMemory(opts Options, tick <-chan time.Time, stopTick func()) *Memory {
	m := &Memory{
		codes:     make(map[string]Code),
		refresh:   make(map[string]RefreshToken),
		families:  make(map[string]time.Time),
		revoked:   make(map[string]time.Time),
		keys:      make(map[string]Key),
		logins:    make(map[string]LoginSession),
		authReqs:  make(map[string]AuthRequest),
		throttles: make(map[string]memThrottle),
	}
	m.sweeper = startSweeper(tick, stopTick, opts.now(), func(now time.Time) error {
		m.sweep(now, sweepBatch)
		return nil
	}, opts.logger())
	return m
}

// CreateCode implements Store.
func (m *Memory) CreateCode(_ context.Context, c Code) error {
	if c.ID == "" {
		return errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.codes[c.ID]; ok {
		return ErrAlreadyExists
	}
	m.codes[c.ID] = cloneCode(c)
	return nil
}

// GetCode implements Store.
func (m *Memory) GetCode(_ context.Context, id string, now time.Time) (Code, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.codes[id]
	if !ok || !live(c.ExpiresAt, now) {
		return Code{}, ErrNotFound
	}
	return cloneCode(c), nil
}

// RedeemCode implements Store.
func (m *Memory) RedeemCode(_ context.Context, id string, now time.Time) (Code, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.codes[id]
	if !ok || !live(c.ExpiresAt, now) {
		return Code{}, ErrNotFound
	}
	if c.Used {
		return cloneCode(c), ErrReused
	}
	c.Used = true
	m.codes[id] = c
	return cloneCode(c), nil
}

// CreateRefresh implements Store.
func (m *Memory) CreateRefresh(_ context.Context, t RefreshToken) error {
	if t.ID == "" {
		return errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.refresh[t.ID]; ok {
		return ErrAlreadyExists
	}
	m.refresh[t.ID] = cloneRefresh(t)
	m.families[t.FamilyID] = laterOf(m.families[t.FamilyID], t.ExpiresAt)
	return nil
}

// GetRefresh implements Store.
func (m *Memory) GetRefresh(_ context.Context, id string, now time.Time) (RefreshToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.liveRefreshLocked(id, now)
	if !ok {
		return RefreshToken{}, ErrNotFound
	}
	return cloneRefresh(t), nil
}

func (m *Memory) liveRefreshLocked(id string, now time.Time) (RefreshToken, bool) {
	t, ok := m.refresh[id]
	if !ok || !live(t.ExpiresAt, now) || m.isRevokedLocked(t.FamilyID, now) {
		return RefreshToken{}, false
	}
	return t, true
}

// RotateRefresh implements Store. On success it returns the old token, now
// marked used. A used token is ErrReused even when its family is revoked
// already, so that all racing callers but one see ErrReused.
func (m *Memory) RotateRefresh(_ context.Context, oldID string, next RefreshToken, now time.Time) (RefreshToken, error) {
	if next.ID == "" {
		return RefreshToken{}, errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.refresh[oldID]
	if !ok || !live(old.ExpiresAt, now) {
		return RefreshToken{}, ErrNotFound
	}
	if next.FamilyID != old.FamilyID {
		return RefreshToken{}, errFamilyMismatch
	}
	if old.Used {
		// Also when the family is revoked already: every caller presenting
		// a used token learns it was reused.
		m.revokeLocked(old.FamilyID, laterOf(m.families[old.FamilyID], old.ExpiresAt))
		return cloneRefresh(old), ErrReused
	}
	if m.isRevokedLocked(old.FamilyID, now) {
		return RefreshToken{}, ErrNotFound
	}
	if _, ok := m.refresh[next.ID]; ok {
		return RefreshToken{}, ErrAlreadyExists
	}
	old.Used = true
	m.refresh[oldID] = old
	next = cloneRefresh(next)
	next.Used = false
	m.refresh[next.ID] = next
	m.families[next.FamilyID] = laterOf(m.families[next.FamilyID], next.ExpiresAt)
	return cloneRefresh(old), nil
}

// Revoke implements Store. A revocation is never shortened: revoking an id
// again with an earlier expiresAt keeps the later one.
func (m *Memory) Revoke(_ context.Context, id string, expiresAt time.Time) error {
	if id == "" {
		return errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.revokeLocked(id, expiresAt)
	return nil
}

func (m *Memory) revokeLocked(id string, expiresAt time.Time) {
	m.revoked[id] = laterOf(m.revoked[id], expiresAt)
}

// IsRevoked implements Store.
func (m *Memory) IsRevoked(_ context.Context, id string, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.isRevokedLocked(id, now), nil
}

func (m *Memory) isRevokedLocked(id string, now time.Time) bool {
	exp, ok := m.revoked[id]
	return ok && live(exp, now)
}

// PutKey implements Store.
func (m *Memory) PutKey(_ context.Context, k Key) error {
	if k.ID == "" {
		return errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys[k.ID] = cloneKey(k)
	return nil
}

// ListKeys implements Store.
func (m *Memory) ListKeys(_ context.Context) ([]Key, error) {
	m.mu.Lock()
	keys := make([]Key, 0, len(m.keys))
	for _, k := range m.keys {
		keys = append(keys, cloneKey(k))
	}
	m.mu.Unlock()
	sortKeys(keys)
	return keys, nil
}

// DeleteKey implements Store.
func (m *Memory) DeleteKey(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.keys, id)
	return nil
}

// PutLoginSession implements Store.
func (m *Memory) PutLoginSession(_ context.Context, s LoginSession) error {
	if s.ID == "" {
		return errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.logins[s.ID] = s
	return nil
}

// GetLoginSession implements Store.
func (m *Memory) GetLoginSession(_ context.Context, id string, now time.Time) (LoginSession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.logins[id]
	if !ok || !live(s.ExpiresAt, now) {
		return LoginSession{}, ErrNotFound
	}
	return s, nil
}

// DeleteLoginSession implements Store.
func (m *Memory) DeleteLoginSession(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.logins, id)
	return nil
}

// PutAuthRequest implements Store.
func (m *Memory) PutAuthRequest(_ context.Context, r AuthRequest) error {
	if r.ID == "" {
		return errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.authReqs[r.ID] = cloneAuthRequest(r)
	return nil
}

// GetAuthRequest implements Store.
func (m *Memory) GetAuthRequest(_ context.Context, id string, now time.Time) (AuthRequest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.authReqs[id]
	if !ok || !live(r.ExpiresAt, now) {
		return AuthRequest{}, ErrNotFound
	}
	return cloneAuthRequest(r), nil
}

// DeleteAuthRequest implements Store.
func (m *Memory) DeleteAuthRequest(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.authReqs, id)
	return nil
}

// RecordFailure implements Store.
func (m *Memory) RecordFailure(_ context.Context, key string, now time.Time, window time.Duration) (Throttle, error) {
	if key == "" {
		return Throttle{}, errEmptyID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := nextThrottle(m.throttles[key].Throttle, now, window)
	m.throttles[key] = memThrottle{Throttle: t, expires: t.First.Add(window)}
	return t, nil
}

// GetThrottle implements Store.
func (m *Memory) GetThrottle(_ context.Context, key string, now time.Time, window time.Duration) (Throttle, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return liveThrottle(m.throttles[key].Throttle, now, window), nil
}

// ClearThrottle implements Store.
func (m *Memory) ClearThrottle(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.throttles, key)
	return nil
}

// Close stops the background sweep. The maps stay usable, so a late call
// after Close does not panic; it is safe to call Close more than once.
func (m *Memory) Close() error {
	m.sweeper.close()
	return nil
}

// sweep deletes records that expired by now, examining at most limit
// entries of each map. Go randomises where map iteration starts, so
// successive sweeps reach every entry of a map larger than limit.
func (m *Memory) sweep(now time.Time, limit int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sweepMap(m.codes, limit, func(c Code) bool { return !live(c.ExpiresAt, now) })
	sweepMap(m.refresh, limit, func(t RefreshToken) bool { return !live(t.ExpiresAt, now) })
	sweepMap(m.families, limit, func(exp time.Time) bool { return !live(exp, now) })
	sweepMap(m.revoked, limit, func(exp time.Time) bool { return !live(exp, now) })
	sweepMap(m.logins, limit, func(s LoginSession) bool { return !live(s.ExpiresAt, now) })
	sweepMap(m.authReqs, limit, func(r AuthRequest) bool { return !live(r.ExpiresAt, now) })
	sweepMap(m.throttles, limit, func(t memThrottle) bool { return !live(t.expires, now) })
}

func sweepMap[V any](m map[string]V, limit int, expired func(V) bool) {
	n := 0
	for k, v := range m {
		if n >= limit {
			return
		}
		n++
		if expired(v) {
			delete(m, k)
		}
	}
}

var _ Store = (*Memory)(nil)
