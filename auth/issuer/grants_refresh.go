package issuer

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

// grantRefresh exchanges a refresh token (RFC 6749 §6), rotating it with
// no grace window (RFC 9700 §4.14.2): presenting a rotated-out token
// revokes the whole family.
func (i *Issuer) grantRefresh(ctx context.Context, r *http.Request, s *state, c *client) (*tokenResponse, error) {
	raw := r.PostForm.Get("refresh_token")
	invalid := func(desc string) error { return newErr(http.StatusBadRequest, errInvalidGrant, desc) }
	if raw == "" || len(raw) > 100 {
		return nil, newErr(http.StatusBadRequest, errInvalidRequest, "refresh_token is missing")
	}
	now := i.now()
	id := hashID(raw)
	rec, err := i.st.GetRefresh(ctx, id, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalid("the refresh token is invalid, expired or revoked")
	}
	if err != nil {
		return nil, internalErr(err)
	}
	if rec.ClientID != c.ID {
		return nil, invalid("the refresh token was issued to another client")
	}
	if rec.Used {
		return nil, i.refreshReused(ctx, s, rec, clientIP(r))
	}
	// A reload may have taken scopes away from the client since.
	for _, sc := range rec.Scopes {
		if !slices.Contains(c.Scopes, sc) {
			return nil, invalid("the grant's scopes are no longer allowed for this client")
		}
	}
	scopes, err := requestedScopes(r.PostForm.Get("scope"), rec.Scopes, rec.Scopes)
	if err != nil {
		// Widening is refused, never granted (RFC 6749 §6).
		return nil, err
	}
	u, ok := s.users.lookup(ctx, rec.Subject)
	if !ok {
		return nil, invalid("the user no longer exists")
	}
	rt := randomToken()
	// The new token keeps the whole original grant; a narrower scope
	// applies to the tokens issued now.
	next := store.RefreshToken{
		ID: hashID(rt), FamilyID: rec.FamilyID, ClientID: c.ID, Subject: rec.Subject, Scopes: rec.Scopes,
		AuthTime: rec.AuthTime, IssuedAt: now, ExpiresAt: now.Add(s.tokens.RefreshTTL),
	}
	old, err := i.st.RotateRefresh(ctx, id, next, now)
	switch {
	case errors.Is(err, store.ErrReused):
		return nil, i.refreshReused(ctx, s, old, clientIP(r))
	case errors.Is(err, store.ErrNotFound):
		return nil, invalid("the refresh token is invalid, expired or revoked")
	case err != nil:
		return nil, internalErr(err)
	}
	g := grantInfo{client: c, subject: u.Username, user: u, scopes: scopes, authTime: rec.AuthTime, familyID: rec.FamilyID}
	resp, err := i.issue(ctx, s, g, true)
	if err != nil {
		return nil, err
	}
	resp.RefreshToken = rt
	return resp, nil
}

// refreshReused revokes the family of a rotated-out token presented again;
// ip is the presenting request's.
func (i *Issuer) refreshReused(ctx context.Context, s *state, rec store.RefreshToken, ip string) error {
	if err := i.st.Revoke(ctx, rec.FamilyID, i.now().Add(s.tokens.familyRevocationTTL())); err != nil {
		return internalErr(err)
	}
	i.metrics.revoked(revokeRefreshReuse)
	i.audit(ctx, slog.LevelWarn, "refresh_reuse_detected", "issuer: rotated-out refresh token presented again; revoked its family",
		slog.String("client_id", rec.ClientID), slog.String("sub", rec.Subject), slog.String("ip", ip))
	return newErr(http.StatusBadRequest, errInvalidGrant, "the refresh token was already used")
}
