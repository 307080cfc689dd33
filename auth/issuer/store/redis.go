package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// redisGrace is how long after a record's ExpiresAt Redis keeps its key.
// Callers decide expiry with the now they pass; the grace only makes sure
// clock skew between replicas and the Redis server never drops a record
// that is still live by the caller's clock.
const redisGrace = time.Minute

// Redis is a Store on a Redis server that several replicas share. Every
// key starts with the prefix given to OpenRedis. Compound steps are Lua
// scripts, which Redis runs atomically.
//
// Layout (P is the prefix, all times in the hashes are nanoseconds since the
// epoch as 20-digit strings, so Lua compares them exactly as strings):
//
//	P code:<id>     hash rec (Code JSON), used (0/1), exp
//	P refresh:<id>  hash rec (RefreshToken JSON), used, exp, fam
//	P family:<id>   string: latest exp of the family's members
//	P revoked:<id>  string: end of the revocation
//	P keys          hash kid -> Key JSON (keys never expire)
//	P login:<id>    string: LoginSession JSON
//	P authreq:<id>  string: AuthRequest JSON
//	P throttle:<k>  hash failures, first, last
//
// Every key but P keys expires (PEXPIREAT) redisGrace after its record.
type Redis struct {
	c      *redis.Client
	prefix string

	createCode, redeemCode       *redis.Script
	createRefresh, rotateRefresh *redis.Script
	revoke, recordFailure        *redis.Script
}

// OpenRedis connects to the Redis server at url and pings it with ctx. An
// empty keyPrefix means DefaultKeyPrefix. Errors name the URL with its
// password replaced.
func OpenRedis(ctx context.Context, url, keyPrefix string, opts Options) (*Redis, error) {
	if err := checkRedisURL(url); err != nil {
		return nil, fmt.Errorf("store: redis: %w", err)
	}
	shown := redactURL(url)
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("store: redis: %q: %w", shown, err)
	}
	// No CLIENT SETINFO and no maintenance-notification handshake: plain
	// servers answer them with errors the client would log.
	o.DisableIdentity = true
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	c := redis.NewClient(o)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("store: redis: ping %q: %w", shown, err)
	}
	if keyPrefix == "" {
		keyPrefix = DefaultKeyPrefix
	}
	_ = opts // Redis expires keys itself: no sweep, no clock, nothing to log
	return &Redis{
		c:             c,
		prefix:        keyPrefix,
		createCode:    redis.NewScript(luaCreateCode),
		redeemCode:    redis.NewScript(luaRedeemCode),
		createRefresh: redis.NewScript(luaCreateRefresh),
		rotateRefresh: redis.NewScript(luaRotateRefresh),
		revoke:        redis.NewScript(luaRevoke),
		recordFailure: redis.NewScript(luaRecordFailure),
	}, nil
}

func (r *Redis) key(kind, id string) string { return r.prefix + kind + ":" + id }

// nsString encodes t as 20 decimal digits of nanoseconds since the epoch,
// clamped to what an int64 holds, so that string order is time order.
func nsString(t time.Time) string {
	switch {
	case t.Before(time.Unix(0, 0)):
		return fmt.Sprintf("%020d", 0)
	case t.After(time.Unix(0, math.MaxInt64)):
		return fmt.Sprintf("%020d", int64(math.MaxInt64))
	}
	return fmt.Sprintf("%020d", t.UnixNano())
}

func parseNS(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: redis: bad stored time %q", s)
	}
	return time.Unix(0, n).UTC(), nil
}

// expireAtMS is the PEXPIREAT argument for a record expiring at exp.
func expireAtMS(exp time.Time) int64 {
	if exp.Before(time.Unix(0, 0)) {
		return 1 // long past: Redis deletes the key at once
	}
	return exp.Add(redisGrace).UnixMilli()
}

func boolFlag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func wrap(op string, err error) error { return fmt.Errorf("store: redis: %s: %w", op, err) }

const luaCreateCode = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'used', ARGV[2], 'exp', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1`

// CreateCode implements Store.
func (r *Redis) CreateCode(ctx context.Context, c Code) error {
	if c.ID == "" {
		return errEmptyID
	}
	used := c.Used
	c.Used = false // the used field of the hash is the truth
	rec, err := json.Marshal(c)
	if err != nil {
		return wrap("encode code", err)
	}
	n, err := r.createCode.Run(ctx, r.c, []string{r.key("code", c.ID)},
		rec, boolFlag(used), nsString(c.ExpiresAt), expireAtMS(c.ExpiresAt)).Int()
	if err != nil {
		return wrap("create code", err)
	}
	if n == 0 {
		return ErrAlreadyExists
	}
	return nil
}

// GetCode implements Store.
func (r *Redis) GetCode(ctx context.Context, id string, now time.Time) (Code, error) {
	v, err := r.c.HMGet(ctx, r.key("code", id), "rec", "used").Result()
	if err != nil {
		return Code{}, wrap("get code", err)
	}
	rec, ok1 := v[0].(string)
	used, ok2 := v[1].(string)
	if !ok1 || !ok2 {
		return Code{}, ErrNotFound
	}
	var c Code
	if err := json.Unmarshal([]byte(rec), &c); err != nil {
		return Code{}, wrap("decode code", err)
	}
	if !live(c.ExpiresAt, now) {
		return Code{}, ErrNotFound
	}
	c.Used = used == "1"
	return c, nil
}

// luaRedeemCode returns false (unknown or expired at ARGV[1]) or
// {rec, 1 if it was used already}.
const luaRedeemCode = `
local v = redis.call('HMGET', KEYS[1], 'rec', 'used', 'exp')
if not v[1] or not v[3] or v[3] <= ARGV[1] then return false end
if v[2] == '1' then return {v[1], 1} end
redis.call('HSET', KEYS[1], 'used', '1')
return {v[1], 0}`

// RedeemCode implements Store.
func (r *Redis) RedeemCode(ctx context.Context, id string, now time.Time) (Code, error) {
	res, err := r.redeemCode.Run(ctx, r.c, []string{r.key("code", id)}, nsString(now)).Slice()
	if errors.Is(err, redis.Nil) {
		return Code{}, ErrNotFound
	}
	if err != nil {
		return Code{}, wrap("redeem code", err)
	}
	rec, _ := res[0].(string)
	var c Code
	if err := json.Unmarshal([]byte(rec), &c); err != nil {
		return Code{}, wrap("decode code", err)
	}
	c.Used = true
	if wasUsed, _ := res[1].(int64); wasUsed == 1 {
		return c, ErrReused
	}
	return c, nil
}

// luaCreateRefresh stores a token (KEYS[1]) and extends its family's
// latest expiry (KEYS[2]).
const luaCreateRefresh = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'used', ARGV[2], 'exp', ARGV[3], 'fam', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
local f = redis.call('GET', KEYS[2])
if not f or f < ARGV[3] then
  redis.call('SET', KEYS[2], ARGV[3])
  redis.call('PEXPIREAT', KEYS[2], ARGV[5])
end
return 1`

// CreateRefresh implements Store.
func (r *Redis) CreateRefresh(ctx context.Context, t RefreshToken) error {
	if t.ID == "" {
		return errEmptyID
	}
	used := t.Used
	t.Used = false
	rec, err := json.Marshal(t)
	if err != nil {
		return wrap("encode refresh token", err)
	}
	n, err := r.createRefresh.Run(ctx, r.c, []string{r.key("refresh", t.ID), r.key("family", t.FamilyID)},
		rec, boolFlag(used), nsString(t.ExpiresAt), t.FamilyID, expireAtMS(t.ExpiresAt)).Int()
	if err != nil {
		return wrap("create refresh token", err)
	}
	if n == 0 {
		return ErrAlreadyExists
	}
	return nil
}

// GetRefresh implements Store.
func (r *Redis) GetRefresh(ctx context.Context, id string, now time.Time) (RefreshToken, error) {
	v, err := r.c.HMGet(ctx, r.key("refresh", id), "rec", "used").Result()
	if err != nil {
		return RefreshToken{}, wrap("get refresh token", err)
	}
	rec, ok1 := v[0].(string)
	used, ok2 := v[1].(string)
	if !ok1 || !ok2 {
		return RefreshToken{}, ErrNotFound
	}
	var t RefreshToken
	if err := json.Unmarshal([]byte(rec), &t); err != nil {
		return RefreshToken{}, wrap("decode refresh token", err)
	}
	if !live(t.ExpiresAt, now) {
		return RefreshToken{}, ErrNotFound
	}
	revoked, err := r.IsRevoked(ctx, t.FamilyID, now)
	if err != nil {
		return RefreshToken{}, err
	}
	if revoked {
		return RefreshToken{}, ErrNotFound
	}
	t.Used = used == "1"
	return t, nil
}

// luaRotateRefresh: KEYS old token, next token, family, family revocation;
// ARGV now, family id, next rec, next exp, next PEXPIREAT, grace in ms.
// Returns {outcome, old rec}.
const luaRotateRefresh = `
local v = redis.call('HMGET', KEYS[1], 'rec', 'used', 'exp', 'fam')
if not v[1] or not v[3] or v[3] <= ARGV[1] then return {'notfound', ''} end
if v[4] ~= ARGV[2] then return {'family', ''} end
if v[2] == '1' then
  local u = redis.call('GET', KEYS[3])
  if not u or u < v[3] then u = v[3] end
  local cur = redis.call('GET', KEYS[4])
  if not cur or cur < u then
    redis.call('SET', KEYS[4], u)
    redis.call('PEXPIREAT', KEYS[4], string.format('%.0f', math.floor(tonumber(u) / 1000000) + tonumber(ARGV[6])))
  end
  return {'reused', v[1]}
end
local cur = redis.call('GET', KEYS[4])
if cur and cur > ARGV[1] then return {'notfound', ''} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'exists', ''} end
redis.call('HSET', KEYS[1], 'used', '1')
redis.call('HSET', KEYS[2], 'rec', ARGV[3], 'used', '0', 'exp', ARGV[4], 'fam', ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[5])
local f = redis.call('GET', KEYS[3])
if not f or f < ARGV[4] then
  redis.call('SET', KEYS[3], ARGV[4])
  redis.call('PEXPIREAT', KEYS[3], ARGV[5])
end
return {'ok', v[1]}`

// RotateRefresh implements Store. On success it returns the old token, now
// marked used. A used token is ErrReused even when its family is revoked
// already, so that all racing callers but one see ErrReused.
func (r *Redis) RotateRefresh(ctx context.Context, oldID string, next RefreshToken, now time.Time) (RefreshToken, error) {
	if next.ID == "" {
		return RefreshToken{}, errEmptyID
	}
	next.Used = false
	rec, err := json.Marshal(next)
	if err != nil {
		return RefreshToken{}, wrap("encode refresh token", err)
	}
	keys := []string{r.key("refresh", oldID), r.key("refresh", next.ID),
		r.key("family", next.FamilyID), r.key("revoked", next.FamilyID)}
	res, err := r.rotateRefresh.Run(ctx, r.c, keys, nsString(now), next.FamilyID, rec,
		nsString(next.ExpiresAt), expireAtMS(next.ExpiresAt), redisGrace.Milliseconds()).StringSlice()
	if err != nil {
		return RefreshToken{}, wrap("rotate refresh token", err)
	}
	if len(res) != 2 {
		return RefreshToken{}, fmt.Errorf("store: redis: rotate refresh token: unexpected reply of %d values", len(res))
	}
	var outcome error
	switch res[0] {
	case "notfound":
		return RefreshToken{}, ErrNotFound
	case "family":
		return RefreshToken{}, errFamilyMismatch
	case "exists":
		return RefreshToken{}, ErrAlreadyExists
	case "reused":
		outcome = ErrReused
	case "ok":
	default:
		return RefreshToken{}, fmt.Errorf("store: redis: rotate refresh token: unexpected outcome %q", res[0])
	}
	var old RefreshToken
	if err := json.Unmarshal([]byte(res[1]), &old); err != nil {
		return RefreshToken{}, wrap("decode refresh token", err)
	}
	old.Used = true
	return old, outcome
}

// luaRevoke never shortens a revocation.
const luaRevoke = `
local cur = redis.call('GET', KEYS[1])
if not cur or cur < ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return 1`

// Revoke implements Store. A revocation is never shortened: revoking an id
// again with an earlier expiresAt keeps the later one.
func (r *Redis) Revoke(ctx context.Context, id string, expiresAt time.Time) error {
	if id == "" {
		return errEmptyID
	}
	err := r.revoke.Run(ctx, r.c, []string{r.key("revoked", id)}, nsString(expiresAt), expireAtMS(expiresAt)).Err()
	if err != nil {
		return wrap("revoke", err)
	}
	return nil
}

// IsRevoked implements Store.
func (r *Redis) IsRevoked(ctx context.Context, id string, now time.Time) (bool, error) {
	v, err := r.c.Get(ctx, r.key("revoked", id)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, wrap("is revoked", err)
	}
	until, err := parseNS(v)
	if err != nil {
		return false, err
	}
	return live(until, now), nil
}

// PutKey implements Store.
func (r *Redis) PutKey(ctx context.Context, k Key) error {
	if k.ID == "" {
		return errEmptyID
	}
	data, err := json.Marshal(k)
	if err != nil {
		return wrap("encode key", err)
	}
	if err := r.c.HSet(ctx, r.prefix+"keys", k.ID, data).Err(); err != nil {
		return wrap("put key", err)
	}
	return nil
}

// ListKeys implements Store.
func (r *Redis) ListKeys(ctx context.Context) ([]Key, error) {
	vals, err := r.c.HVals(ctx, r.prefix+"keys").Result()
	if err != nil {
		return nil, wrap("list keys", err)
	}
	keys := make([]Key, 0, len(vals))
	for _, v := range vals {
		var k Key
		if err := json.Unmarshal([]byte(v), &k); err != nil {
			return nil, wrap("decode key", err)
		}
		keys = append(keys, k)
	}
	sortKeys(keys)
	return keys, nil
}

// DeleteKey implements Store.
func (r *Redis) DeleteKey(ctx context.Context, id string) error {
	if err := r.c.HDel(ctx, r.prefix+"keys", id).Err(); err != nil {
		return wrap("delete key", err)
	}
	return nil
}

// putExpiring stores a JSON record that Redis forgets redisGrace after exp.
func (r *Redis) putExpiring(ctx context.Context, key string, v any, exp time.Time) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, data, 0)
		p.PExpireAt(ctx, key, time.UnixMilli(expireAtMS(exp)))
		return nil
	})
	return err
}

// getJSON decodes the string at key into v; false if absent.
func (r *Redis) getJSON(ctx context.Context, key string, v any) (bool, error) {
	data, err := r.c.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(data, v)
}

func (r *Redis) del(ctx context.Context, op, key string) error {
	if err := r.c.Del(ctx, key).Err(); err != nil {
		return wrap(op, err)
	}
	return nil
}

// PutLoginSession implements Store.
func (r *Redis) PutLoginSession(ctx context.Context, s LoginSession) error {
	if s.ID == "" {
		return errEmptyID
	}
	if err := r.putExpiring(ctx, r.key("login", s.ID), s, s.ExpiresAt); err != nil {
		return wrap("put login session", err)
	}
	return nil
}

// GetLoginSession implements Store.
func (r *Redis) GetLoginSession(ctx context.Context, id string, now time.Time) (LoginSession, error) {
	var s LoginSession
	ok, err := r.getJSON(ctx, r.key("login", id), &s)
	if err != nil {
		return LoginSession{}, wrap("get login session", err)
	}
	if !ok || !live(s.ExpiresAt, now) {
		return LoginSession{}, ErrNotFound
	}
	return s, nil
}

// DeleteLoginSession implements Store.
func (r *Redis) DeleteLoginSession(ctx context.Context, id string) error {
	return r.del(ctx, "delete login session", r.key("login", id))
}

// PutAuthRequest implements Store.
func (r *Redis) PutAuthRequest(ctx context.Context, a AuthRequest) error {
	if a.ID == "" {
		return errEmptyID
	}
	if err := r.putExpiring(ctx, r.key("authreq", a.ID), a, a.ExpiresAt); err != nil {
		return wrap("put auth request", err)
	}
	return nil
}

// GetAuthRequest implements Store.
func (r *Redis) GetAuthRequest(ctx context.Context, id string, now time.Time) (AuthRequest, error) {
	var a AuthRequest
	ok, err := r.getJSON(ctx, r.key("authreq", id), &a)
	if err != nil {
		return AuthRequest{}, wrap("get auth request", err)
	}
	if !ok || !live(a.ExpiresAt, now) {
		return AuthRequest{}, ErrNotFound
	}
	return a, nil
}

// DeleteAuthRequest implements Store.
func (r *Redis) DeleteAuthRequest(ctx context.Context, id string) error {
	return r.del(ctx, "delete auth request", r.key("authreq", id))
}

// luaRecordFailure: ARGV now, now minus window, PEXPIREAT of a new counter.
// A counter whose First is at or before now-window starts over.
const luaRecordFailure = `
local first = redis.call('HGET', KEYS[1], 'first')
if not first or first <= ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'failures', 1, 'first', ARGV[1], 'last', ARGV[1])
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
  return {1, ARGV[1], ARGV[1]}
end
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
return {n, first, ARGV[1]}`

// RecordFailure implements Store.
func (r *Redis) RecordFailure(ctx context.Context, key string, now time.Time, window time.Duration) (Throttle, error) {
	if key == "" {
		return Throttle{}, errEmptyID
	}
	res, err := r.recordFailure.Run(ctx, r.c, []string{r.key("throttle", key)},
		nsString(now), nsString(now.Add(-window)), expireAtMS(now.Add(window))).Slice()
	if err != nil {
		return Throttle{}, wrap("record failure", err)
	}
	if len(res) != 3 {
		return Throttle{}, fmt.Errorf("store: redis: record failure: unexpected reply of %d values", len(res))
	}
	n, _ := res[0].(int64)
	first, _ := res[1].(string)
	last, _ := res[2].(string)
	return throttleFrom(n, first, last)
}

func throttleFrom(n int64, first, last string) (Throttle, error) {
	f, err := parseNS(first)
	if err != nil {
		return Throttle{}, err
	}
	l, err := parseNS(last)
	if err != nil {
		return Throttle{}, err
	}
	return Throttle{Failures: int(n), First: f, Last: l}, nil
}

// GetThrottle implements Store.
func (r *Redis) GetThrottle(ctx context.Context, key string, now time.Time, window time.Duration) (Throttle, error) {
	v, err := r.c.HMGet(ctx, r.key("throttle", key), "failures", "first", "last").Result()
	if err != nil {
		return Throttle{}, wrap("get throttle", err)
	}
	ns, ok1 := v[0].(string)
	first, ok2 := v[1].(string)
	last, ok3 := v[2].(string)
	if !ok1 || !ok2 || !ok3 {
		return Throttle{}, nil
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return Throttle{}, fmt.Errorf("store: redis: bad stored failure count %q", ns)
	}
	t, err := throttleFrom(n, first, last)
	if err != nil {
		return Throttle{}, err
	}
	return liveThrottle(t, now, window), nil
}

// ClearThrottle implements Store.
func (r *Redis) ClearThrottle(ctx context.Context, key string) error {
	return r.del(ctx, "clear throttle", r.key("throttle", key))
}

// Close closes the connection pool.
func (r *Redis) Close() error {
	if err := r.c.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return wrap("close", err)
	}
	return nil
}

var _ Store = (*Redis)(nil)
