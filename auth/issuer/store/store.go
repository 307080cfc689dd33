// Package store keeps the built-in issuer's state: authorization codes,
// refresh-token families, revoked token ids, signing keys, login sessions,
// pending authorization requests and sign-in throttle counters.
//
// One Store interface has three implementations: Memory (one process),
// Bolt (an embedded file; a restart keeps keys and refresh tokens) and Redis
// (several replicas share it). Package storetest holds the conformance suite
// every implementation passes. The store knows nothing about OAuth rules; it
// only promises the atomic steps the issuer builds them from.
//
// Secrets are never stored in the clear where a hash suffices: IDs of codes,
// refresh tokens and login sessions are SHA-256 hashes chosen by the caller.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors callers branch on with errors.Is.
var (
	// ErrNotFound means no live record: unknown, expired, or deleted.
	ErrNotFound = errors.New("store: not found")
	// ErrReused means a single-use record (code or refresh token) was
	// presented again after it was used. RedeemCode and RotateRefresh return
	// the record alongside it so the caller can revoke what it issued.
	ErrReused = errors.New("store: already used")
	// ErrAlreadyExists means a record with that ID is already stored.
	ErrAlreadyExists = errors.New("store: already exists")
)

// Store is what the built-in issuer needs from storage. Every method is safe
// for concurrent use, also across processes for shared implementations.
// A record past its ExpiresAt (now >= ExpiresAt) is treated as absent
// (ErrNotFound) and is eventually deleted. Methods taking now use it to decide expiry, so tests
// never sleep.
type Store interface {
	// CreateCode stores a new authorization code; ErrAlreadyExists if c.ID is taken.
	CreateCode(ctx context.Context, c Code) error
	// GetCode returns the code without changing it (Used tells whether it was redeemed).
	GetCode(ctx context.Context, id string, now time.Time) (Code, error)
	// RedeemCode atomically marks the code used and returns it. A code
	// already used returns the code and ErrReused; exactly one of any number
	// of concurrent callers succeeds.
	RedeemCode(ctx context.Context, id string, now time.Time) (Code, error)

	// CreateRefresh stores the first refresh token of a family.
	CreateRefresh(ctx context.Context, t RefreshToken) error
	// GetRefresh returns a refresh token without changing it. A token whose
	// family is revoked is ErrNotFound.
	GetRefresh(ctx context.Context, id string, now time.Time) (RefreshToken, error)
	// RotateRefresh atomically marks oldID used and stores next (same family).
	// If oldID was already used, the whole family is revoked (until the
	// family's latest expiry) and the old token is returned with ErrReused;
	// exactly one of any number of concurrent callers succeeds.
	//
	// On success it returns the old token, now marked used. An unknown or
	// expired oldID, or an unused one whose family is revoked, is
	// ErrNotFound; a next.ID already stored is ErrAlreadyExists; a next in
	// another family is an error. None of these changes anything.
	RotateRefresh(ctx context.Context, oldID string, next RefreshToken, now time.Time) (RefreshToken, error)

	// Revoke records id (an access-token jti or a refresh family id) as
	// revoked until expiresAt, after which the record may be forgotten.
	Revoke(ctx context.Context, id string, expiresAt time.Time) error
	// IsRevoked reports whether id was revoked and the revocation is live.
	IsRevoked(ctx context.Context, id string, now time.Time) (bool, error)

	// PutKey stores or replaces a signing key.
	PutKey(ctx context.Context, k Key) error
	// ListKeys returns every stored key, newest CreatedAt first.
	ListKeys(ctx context.Context) ([]Key, error)
	// DeleteKey removes a key; deleting a missing key is not an error.
	DeleteKey(ctx context.Context, id string) error

	// PutLoginSession stores or replaces a user's session at the issuer.
	PutLoginSession(ctx context.Context, s LoginSession) error
	// GetLoginSession returns a live login session.
	GetLoginSession(ctx context.Context, id string, now time.Time) (LoginSession, error)
	// DeleteLoginSession ends a login session; a missing one is not an error.
	DeleteLoginSession(ctx context.Context, id string) error

	// PutAuthRequest stores an authorization request waiting for the user
	// to sign in or consent.
	PutAuthRequest(ctx context.Context, r AuthRequest) error
	// GetAuthRequest returns a live pending authorization request.
	GetAuthRequest(ctx context.Context, id string, now time.Time) (AuthRequest, error)
	// DeleteAuthRequest removes it; a missing one is not an error.
	DeleteAuthRequest(ctx context.Context, id string) error

	// RecordFailure counts one failed sign-in for key (e.g. "user:alice" or
	// "ip:192.0.2.1") and returns the updated counter. The counter starts
	// over when window has passed since its First failure.
	RecordFailure(ctx context.Context, key string, now time.Time, window time.Duration) (Throttle, error)
	// GetThrottle returns the live counter for key, or a zero Throttle.
	GetThrottle(ctx context.Context, key string, now time.Time, window time.Duration) (Throttle, error)
	// ClearThrottle forgets key's failures (after a successful sign-in).
	ClearThrottle(ctx context.Context, key string) error

	// Close releases files and connections.
	Close() error
}

// Code is an authorization code waiting to be redeemed at the token endpoint.
type Code struct {
	// ID is the SHA-256 (hex) of the code; the code itself is never stored.
	ID          string   `json:"id"`
	ClientID    string   `json:"client_id"`
	RedirectURI string   `json:"redirect_uri"`
	Subject     string   `json:"sub"`
	Scopes      []string `json:"scopes"`
	Nonce       string   `json:"nonce,omitempty"`
	// CodeChallenge is the PKCE S256 challenge.
	CodeChallenge string    `json:"code_challenge"`
	AuthTime      time.Time `json:"auth_time"`
	// LoginSessionID ties the grant to the login session it came from.
	LoginSessionID string    `json:"sid,omitempty"`
	ExpiresAt      time.Time `json:"expires_at"`
	// FamilyID and AccessJTI are chosen when the code is created, so that a
	// replayed code can revoke exactly what its first redemption issued.
	FamilyID  string `json:"family_id"`
	AccessJTI string `json:"access_jti"`
	// Used is set by RedeemCode.
	Used bool `json:"used"`
}

// RefreshToken is one member of a rotation family. Only the newest unused
// member of a live family may be exchanged.
type RefreshToken struct {
	// ID is the SHA-256 (hex) of the token.
	ID        string    `json:"id"`
	FamilyID  string    `json:"family_id"`
	ClientID  string    `json:"client_id"`
	Subject   string    `json:"sub"`
	Scopes    []string  `json:"scopes"`
	AuthTime  time.Time `json:"auth_time"`
	IssuedAt  time.Time `json:"iat"`
	ExpiresAt time.Time `json:"expires_at"`
	// Used is set when the token is rotated out.
	Used bool `json:"used"`
}

// Key is a signing key of the issuer.
type Key struct {
	// ID is the JWK kid.
	ID string `json:"kid"`
	// Algorithm is the JWS alg (RS256, ES256).
	Algorithm string `json:"alg"`
	// Private is the private key, PKCS#8 DER.
	Private   []byte    `json:"private"`
	CreatedAt time.Time `json:"created_at"`
	// RetiredAt is when the key stopped signing; zero while it is current.
	RetiredAt time.Time `json:"retired_at,omitzero"`
	// ExpiresAt is when every token the key signed has expired, so it can
	// leave the JWKS; zero while it is current.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// LoginSession is a user's signed-in state at the issuer itself (what lets
// a second client sign in without the password again, and what end_session ends).
type LoginSession struct {
	// ID is the SHA-256 (hex) of the session cookie's random value.
	ID        string    `json:"id"`
	Subject   string    `json:"sub"`
	AuthTime  time.Time `json:"auth_time"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AuthRequest is a validated authorization request parked while the user
// signs in or consents.
type AuthRequest struct {
	ID string `json:"id"`
	// Data is the issuer's own encoding of the request; opaque here.
	Data      []byte    `json:"data"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Throttle counts failed sign-ins for one key within a window.
type Throttle struct {
	Failures int       `json:"failures"`
	First    time.Time `json:"first,omitzero"`
	Last     time.Time `json:"last,omitzero"`
}
