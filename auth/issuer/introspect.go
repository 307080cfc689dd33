package issuer

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

// isJWT tells an access token (a compact JWS) from an opaque refresh token.
func isJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// backChannel reads an introspection or revocation request: the form, the
// client it authenticates as (public clients only where allowPublic) and
// the token. When it returns false it has already answered with the error.
func (i *Issuer) backChannel(w http.ResponseWriter, r *http.Request, allowPublic bool) (*client, string, bool) {
	if err := parseBackChannelForm(w, r); err != nil {
		i.writeTokenError(w, r, err)
		return nil, "", false
	}
	c, err := i.authenticateClient(r, i.state.Load(), allowPublic)
	if err != nil {
		i.writeTokenError(w, r, err)
		return nil, "", false
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		i.writeTokenError(w, r, newErr(http.StatusBadRequest, errInvalidRequest, "token is missing"))
		return nil, "", false
	}
	return c, tok, true
}

// handleIntrospect is RFC 7662. The caller must authenticate as a
// confidential client; an inactive token is {"active":false} and nothing
// more.
func (i *Issuer) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, tok, ok := i.backChannel(w, r, false)
	if !ok {
		return
	}
	inactive := map[string]any{"active": false}
	if isJWT(tok) {
		claims, _, err := i.verifyAccess(ctx, tok, false)
		if err != nil {
			writeJSON(w, http.StatusOK, inactive)
			return
		}
		resp := map[string]any{
			"active":     true,
			"token_type": "Bearer",
			"iss":        claims.Iss,
			"sub":        claims.Sub,
			"aud":        []string(claims.Aud),
			"client_id":  claims.ClientID,
			"scope":      claims.Scope,
			"exp":        *claims.Exp,
			"jti":        claims.Jti,
		}
		if claims.Iat != nil {
			resp["iat"] = *claims.Iat
		}
		if claims.Sub != claims.ClientID {
			resp["username"] = claims.Sub
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	if len(tok) > 100 {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	rec, err := i.st.GetRefresh(ctx, hashID(tok), i.now())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		i.writeTokenError(w, r, internalErr(err))
		return
	}
	// A refresh token is only described to the client that holds it.
	if err != nil || rec.Used || rec.ClientID != c.ID {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"active":     true,
		"token_type": "refresh_token",
		"iss":        i.iss,
		"sub":        rec.Subject,
		"username":   rec.Subject,
		"client_id":  rec.ClientID,
		"scope":      strings.Join(rec.Scopes, " "),
		"exp":        rec.ExpiresAt.Unix(),
		"iat":        rec.IssuedAt.Unix(),
	})
}

// handleRevoke is RFC 7009: revoking a refresh token revokes its family,
// an access token its jti. Unknown tokens, and tokens of other clients,
// get the same 200.
func (i *Issuer) handleRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, tok, ok := i.backChannel(w, r, true)
	if !ok {
		return
	}
	now := i.now()
	if isJWT(tok) {
		claims, _, err := i.verifyAccess(ctx, tok, true)
		if err == nil && claims.ClientID == c.ID {
			if exp := time.Unix(*claims.Exp, 0); exp.After(now) {
				if err := i.st.Revoke(ctx, claims.Jti, exp); err != nil {
					i.writeTokenError(w, r, internalErr(err))
					return
				}
				i.tokenRevoked(ctx, r, c.ID, claims.Sub, "access_token")
			}
		}
	} else if len(tok) <= 100 {
		rec, err := i.st.GetRefresh(ctx, hashID(tok), now)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			i.writeTokenError(w, r, internalErr(err))
			return
		}
		if err == nil && rec.ClientID == c.ID {
			if err := i.st.Revoke(ctx, rec.FamilyID, now.Add(i.state.Load().tokens.familyRevocationTTL())); err != nil {
				i.writeTokenError(w, r, internalErr(err))
				return
			}
			i.tokenRevoked(ctx, r, c.ID, rec.Subject, "refresh_token")
		}
	}
	noStore(w)
	w.WriteHeader(http.StatusOK)
}

// tokenRevoked counts a revocation at the revocation endpoint and logs its
// audit event; typ is access_token or refresh_token (its whole family).
func (i *Issuer) tokenRevoked(ctx context.Context, r *http.Request, clientID, sub, typ string) {
	i.metrics.revoked(revokeRequest)
	i.audit(ctx, slog.LevelInfo, "token_revoked", "issuer: token revoked at the client's request",
		slog.String("client_id", clientID), slog.String("sub", sub), slog.String("token_type", typ), slog.String("ip", clientIP(r)))
}
