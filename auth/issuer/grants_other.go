package issuer

import (
	"context"
	"errors"
	"net/http"
	"slices"
)

// grantClientCredentials issues an access token to a confidential client
// for itself (RFC 6749 §4.4): sub is the client id, no refresh token and
// no ID token.
func (i *Issuer) grantClientCredentials(ctx context.Context, r *http.Request, s *state, c *client) (*tokenResponse, error) {
	if c.Public {
		return nil, newErr(http.StatusBadRequest, errUnauthorizedClient, "a public client cannot use client_credentials")
	}
	scopes, err := requestedScopes(r.PostForm.Get("scope"), c.Scopes, nil)
	if err != nil {
		return nil, err
	}
	if slices.Contains(scopes, ScopeOfflineAccess) || slices.Contains(scopes, ScopeOpenID) {
		return nil, newErr(http.StatusBadRequest, errInvalidScope, "openid and offline_access need a user")
	}
	return i.issue(ctx, s, grantInfo{client: c, subject: c.ID, scopes: scopes}, false)
}

// grantPassword is the resource owner password credentials grant (RFC 6749
// §4.3), throttled like the login form.
func (i *Issuer) grantPassword(ctx context.Context, r *http.Request, s *state, c *client) (*tokenResponse, error) {
	f := r.PostForm
	if f.Get("username") == "" || f.Get("password") == "" {
		return nil, newErr(http.StatusBadRequest, errInvalidRequest, "username and password are required")
	}
	scopes, err := requestedScopes(f.Get("scope"), c.Scopes, nil)
	if err != nil {
		return nil, err
	}
	u, err := i.authenticateUser(ctx, s, f.Get("username"), f.Get("password"), clientIP(r), c.ID)
	var te *throttledError
	switch {
	case errors.As(err, &te):
		return nil, &oauthError{status: http.StatusTooManyRequests, code: errInvalidGrant,
			desc: "too many failed sign-in attempts; retry later", retryAfter: te.retryAfter}
	case errors.Is(err, errBadCredentials):
		return nil, newErr(http.StatusBadRequest, errInvalidGrant, "incorrect username or password")
	case err != nil:
		return nil, internalErr(err)
	}
	now := i.now()
	g := grantInfo{client: c, subject: u.Username, user: u, scopes: scopes, authTime: now, familyID: randomToken()}
	return i.issueWithRefresh(ctx, s, g, now)
}
