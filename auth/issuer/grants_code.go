package issuer

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

// grantCode redeems an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6).
func (i *Issuer) grantCode(ctx context.Context, r *http.Request, s *state, c *client) (*tokenResponse, error) {
	f := r.PostForm
	code, redirectURI, verifier := f.Get("code"), f.Get("redirect_uri"), f.Get("code_verifier")
	invalid := func(desc string) error { return newErr(http.StatusBadRequest, errInvalidGrant, desc) }
	if code == "" || len(code) > 100 {
		return nil, newErr(http.StatusBadRequest, errInvalidRequest, "code is missing")
	}
	if verifier == "" {
		return nil, newErr(http.StatusBadRequest, errInvalidRequest, "code_verifier is missing (PKCE is required)")
	}
	if !validVerifier(verifier) {
		return nil, newErr(http.StatusBadRequest, errInvalidRequest, "code_verifier must be 43 to 128 unreserved characters")
	}
	now := i.now()
	id := hashID(code)
	rec, err := i.st.GetCode(ctx, id, now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, invalid("the code is invalid or expired")
	}
	if err != nil {
		return nil, internalErr(err)
	}
	if rec.Used {
		return nil, i.codeReplayed(ctx, s, rec, clientIP(r))
	}
	// The code is bound to client, redirect_uri and challenge; a mismatch
	// does not burn it, so a stolen code cannot be used to lock out the
	// legitimate client either.
	if rec.ClientID != c.ID {
		return nil, invalid("the code was issued to another client")
	}
	if redirectURI != rec.RedirectURI {
		return nil, invalid("redirect_uri does not match the authorization request")
	}
	if !pkceMatches(verifier, rec.CodeChallenge) {
		return nil, invalid("code_verifier does not match the code_challenge")
	}
	rec, err = i.st.RedeemCode(ctx, id, now)
	switch {
	case errors.Is(err, store.ErrReused):
		return nil, i.codeReplayed(ctx, s, rec, clientIP(r))
	case errors.Is(err, store.ErrNotFound):
		return nil, invalid("the code is invalid or expired")
	case err != nil:
		return nil, internalErr(err)
	}
	u, ok := s.users.lookup(ctx, rec.Subject)
	if !ok {
		return nil, invalid("the user no longer exists")
	}
	scopes := rec.Scopes
	g := grantInfo{client: c, subject: u.Username, user: u, scopes: scopes, authTime: rec.AuthTime,
		nonce: rec.Nonce, familyID: rec.FamilyID, jti: rec.AccessJTI}
	return i.issueWithRefresh(ctx, s, g, now)
}

// issueWithRefresh issues the tokens of a user grant and, when the scopes
// include offline_access and the client may refresh, the first refresh
// token of the family g.familyID.
func (i *Issuer) issueWithRefresh(ctx context.Context, s *state, g grantInfo, now time.Time) (*tokenResponse, error) {
	resp, err := i.issue(ctx, s, g, true)
	if err != nil {
		return nil, err
	}
	if slices.Contains(g.scopes, ScopeOfflineAccess) && g.client.allows(GrantRefreshToken) {
		rt := randomToken()
		err := i.st.CreateRefresh(ctx, store.RefreshToken{
			ID: hashID(rt), FamilyID: g.familyID, ClientID: g.client.ID, Subject: g.subject, Scopes: g.scopes,
			AuthTime: g.authTime, IssuedAt: now, ExpiresAt: now.Add(s.tokens.RefreshTTL),
		})
		if err != nil {
			return nil, internalErr(err)
		}
		resp.RefreshToken = rt
	}
	return resp, nil
}

// codeReplayed revokes what the first redemption issued (RFC 6749
// §4.1.2: the code was probably stolen) and refuses. ip is the replaying
// request's.
func (i *Issuer) codeReplayed(ctx context.Context, s *state, rec store.Code, ip string) error {
	now := i.now()
	if err := i.st.Revoke(ctx, rec.FamilyID, now.Add(s.tokens.familyRevocationTTL())); err != nil {
		return internalErr(err)
	}
	if err := i.st.Revoke(ctx, rec.AccessJTI, now.Add(s.tokens.AccessTTL)); err != nil {
		return internalErr(err)
	}
	i.metrics.revoked(revokeCodeReplay)
	i.audit(ctx, slog.LevelWarn, "code_replay_detected", "issuer: authorization code replayed; revoked the tokens it issued",
		slog.String("client_id", rec.ClientID), slog.String("sub", rec.Subject), slog.String("ip", ip))
	return newErr(http.StatusBadRequest, errInvalidGrant, "the code was already used")
}

// validVerifier follows RFC 7636 §4.1: 43–128 characters of
// [A-Z] [a-z] [0-9] - . _ ~.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isB64URL(c) && c != '.' && c != '~' {
			return false
		}
	}
	return true
}

// pkceMatches checks S256(verifier) against the stored challenge.
func pkceMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return challenge != "" && subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}
