package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/issuer"
	"github.com/portcullis-proxy/portcullis/auth/login"
)

// IssuerBearer accepts access tokens of the built-in issuer as bearer
// tokens: RFC 9068 JWTs it signed and has not revoked (never its ID
// tokens), whose aud names one of the route's audiences. Their claims
// become the Identity exactly as a session's do.
type IssuerBearer struct {
	Issuer *issuer.Issuer
	Login  *login.Client
}

// VerifyBearer implements BearerVerifier.
//
// It reads the verified token in place (Issuer.ReadAccessToken): the
// identity is built from the cached claims without copying them first.
func (b IssuerBearer) VerifyBearer(ctx context.Context, raw string, audiences []string) (*auth.Identity, error) {
	var id *auth.Identity
	err := b.Issuer.ReadAccessToken(ctx, raw, func(at issuer.AccessToken) error {
		if !intersects(at.Audience, audiences) {
			return fmt.Errorf("%w: audience %q is not accepted here", auth.ErrInvalidToken, at.Audience)
		}
		// IdentityFromClaims only reads the claims, and copies the groups.
		v := b.Login.IdentityFromClaims(at.Claims)
		v.Issuer = b.Issuer.URL()
		v.Subject = at.Subject
		v.Expiry = at.Expiry
		v.AccessToken = auth.Secret(raw)
		id = &v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return id, nil
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// assertionTTL bounds X-Portcullis-Assertion: long enough for one request,
// short enough that a leaked one is soon useless.
const assertionTTL = 2 * time.Minute

// AssertionSigner returns the function that signs X-Portcullis-Assertion:
// a JWT with iss = public_url, aud = the upstream's name, the identity's
// sub, verified email and groups, iat and a short exp, signed with the built-in
// issuer's keys (published at /oauth2/issuer/keys).
func AssertionSigner(iss *issuer.Issuer, publicURL string) func(ctx context.Context, id *auth.Identity, audience string) (string, error) {
	return func(ctx context.Context, id *auth.Identity, audience string) (string, error) {
		if id == nil {
			return "", errors.New("proxy: no identity to assert")
		}
		now := time.Now()
		claims := map[string]any{
			"iss":  publicURL,
			"aud":  audience,
			"sub":  id.Subject,
			"iat":  now.Unix(),
			"exp":  now.Add(assertionTTL).Unix(),
			"user": id.User,
		}
		if id.EmailVerified && id.Email != "" {
			// Like X-Forwarded-Email: an unverified address is never vouched for.
			claims["email"] = id.Email
		}
		if len(id.Groups) > 0 {
			claims["groups"] = id.Groups
		}
		if id.PreferredUsername != "" {
			claims["preferred_username"] = id.PreferredUsername
		}
		return iss.Sign(ctx, claims)
	}
}
