// Package auth is the vocabulary every other part of Portcullis shares: who a
// request belongs to (Identity), how that travels in a context, the sentinel
// errors callers branch on, the Secret type that never prints its value, and
// the one rule for which URLs a page may link to (HrefValue).
//
// It has no HTTP handlers, no configuration and imports only the standard
// library, so every package may depend on it without creating a cycle.
package auth

import (
	"context"
	"errors"
	"time"
)

// Method says how a request proved who it is. It is used for metrics, logs
// and the access line, never for an access decision on its own.
type Method string

// The ways a request can be authenticated.
const (
	// MethodNone means the request carries no credentials at all.
	MethodNone Method = ""
	// MethodSession means an encrypted session cookie.
	MethodSession Method = "session"
	// MethodBearer means an Authorization: Bearer token.
	MethodBearer Method = "bearer"
)

// Identity is a signed-in principal as the rest of Portcullis sees it.
//
// The fields are filled from ID-token or access-token claims named in
// login.claims; a field the issuer did not send is empty. Tokens are kept as
// Secret so that logging an Identity can never leak one.
type Identity struct {
	// Issuer is the iss of the token that established the identity.
	Issuer string `json:"iss"`
	// Subject is the sub claim: the issuer's stable id for the user or client.
	Subject string `json:"sub"`
	// User is the claim named by login.claims.user (default preferred_username),
	// falling back to Subject when the issuer did not send it.
	User string `json:"user"`
	// Email is the claim named by login.claims.email.
	Email string `json:"email,omitempty"`
	// EmailVerified is the email_verified claim, when the issuer sent it.
	EmailVerified bool `json:"email_verified,omitempty"`
	// Groups is the claim named by login.claims.groups.
	Groups []string `json:"groups,omitempty"`
	// PreferredUsername is the preferred_username claim.
	PreferredUsername string `json:"preferred_username,omitempty"`
	// Name is the name claim.
	Name string `json:"name,omitempty"`
	// Expiry is when this identity stops being valid (session end or token exp).
	Expiry time.Time `json:"exp,omitzero"`
	// Method is how the request proved this identity.
	Method Method `json:"-"`
	// AccessToken is the OAuth access token, when there is one; it is only
	// forwarded upstream when a route opts in.
	AccessToken Secret `json:"-"`
	// IDToken is the raw ID token, when there is one; forwarded only on opt-in
	// and used as id_token_hint at sign-out.
	IDToken Secret `json:"-"`
}

// InGroup reports whether the identity is a member of group g.
func (id *Identity) InGroup(g string) bool {
	for _, x := range id.Groups {
		if x == g {
			return true
		}
	}
	return false
}

type identityKey struct{}

// WithIdentity returns a copy of ctx that carries id.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity stored by WithIdentity, or nil and false
// when the request is not authenticated. Callers MUST treat a nil identity as
// "not signed in".
func FromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok && id != nil
}

// Sentinel errors that decide the answer to a request; test with errors.Is.
var (
	// ErrUnauthenticated means the request carries no valid credentials:
	// browsers are sent to sign in, API callers get 401.
	ErrUnauthenticated = errors.New("auth: not signed in")
	// ErrForbidden means the identity is valid but the route's policy refuses
	// it: 403.
	ErrForbidden = errors.New("auth: access denied")
	// ErrInvalidToken means a presented token failed verification: 401 with
	// WWW-Authenticate: Bearer error="invalid_token", never a redirect.
	ErrInvalidToken = errors.New("auth: invalid token")
)
