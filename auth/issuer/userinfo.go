package issuer

import (
	"net/http"
	"slices"
	"strings"
)

// handleUserinfo is OIDC Core §5.3: the claims of the access token's user
// that its scopes allow.
func (i *Issuer) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	fail := func(status int, code, desc string) {
		w.Header().Set("WWW-Authenticate", `Bearer error="`+code+`", error_description="`+desc+`"`)
		writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
	}
	raw, ok := bearerToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": errInvalidRequest, "error_description": "an access token is required"})
		return
	}
	at, err := i.VerifyAccessToken(ctx, raw)
	if err != nil {
		i.log.DebugContext(ctx, "issuer: userinfo refused a token", "err", err)
		fail(http.StatusUnauthorized, errInvalidToken, "the access token is invalid")
		return
	}
	if !slices.Contains(at.Scopes, ScopeOpenID) {
		fail(http.StatusForbidden, "insufficient_scope", "the access token lacks scope openid")
		return
	}
	s := i.state.Load()
	u, ok := s.users.lookup(ctx, at.Subject)
	if !ok {
		fail(http.StatusUnauthorized, errInvalidToken, "the access token is invalid")
		return
	}
	claims := userClaims(u, at.Scopes)
	claims["sub"] = u.Username
	writeJSON(w, http.StatusOK, claims)
}

// bearerToken reads an RFC 6750 §2.1 Authorization header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
