package issuer

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// maxFormBytes bounds request bodies at the back-channel endpoints.
const maxFormBytes = 64 << 10

// tokenResponse is RFC 6749 §5.1 plus OIDC's id_token.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	Scope        string `json:"scope,omitempty"`

	// sub is whom the tokens are about, for the token_granted audit event.
	sub string
}

// tokenAudit is what the token endpoint learnt about a request before it
// succeeded or failed: the grant type once known to be one of ours, and the
// configured client it names.
type tokenAudit struct{ grant, clientID string }

// parseBackChannelForm reads a POSTed form body for the token,
// introspection and revocation endpoints; parameters in the URL are
// ignored and repeated parameters refused (RFC 6749 §3.2).
func parseBackChannelForm(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return newErr(http.StatusMethodNotAllowed, errInvalidRequest, "use POST")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return newErr(http.StatusBadRequest, errInvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return newErr(http.StatusBadRequest, errInvalidRequest, "the form could not be parsed")
	}
	for k, vs := range r.PostForm {
		if len(vs) > 1 {
			return newErr(http.StatusBadRequest, errInvalidRequest, fmt.Sprintf("parameter %s is repeated", k))
		}
	}
	return nil
}

// authenticateClient identifies the caller by client_secret_basic,
// client_secret_post or (public clients, when allowed) none.
func (i *Issuer) authenticateClient(r *http.Request, s *state, allowPublic bool) (*client, error) {
	unauthorized := func(desc string) error { return newErr(http.StatusUnauthorized, errInvalidClient, desc) }
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 §2.3.1: both parts are form-encoded before Basic.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, unauthorized("malformed Basic credentials")
		}
		if r.PostForm.Has("client_secret") {
			return nil, newErr(http.StatusBadRequest, errInvalidRequest, "use only one client authentication method")
		}
		if f := r.PostForm.Get("client_id"); f != "" && f != id {
			return nil, newErr(http.StatusBadRequest, errInvalidRequest, "client_id does not match the Basic credentials")
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" {
		return nil, unauthorized("client authentication is required")
	}
	c, ok := s.clients[id]
	if !ok {
		return nil, unauthorized("unknown client or bad credentials")
	}
	if c.Public {
		if secret != "" {
			return nil, unauthorized("a public client has no secret")
		}
		if !allowPublic {
			return nil, unauthorized("a public client cannot authenticate here")
		}
		return c, nil
	}
	if secret == "" || !c.secretMatches(secret) {
		return nil, unauthorized("unknown client or bad credentials")
	}
	return c, nil
}

// secretMatches compares in constant time (hashes first, so the length of
// the secret does not leak either).
func (c *client) secretMatches(secret string) bool {
	if c.hasPlain {
		sum := sha256.Sum256([]byte(secret))
		return subtle.ConstantTimeCompare(sum[:], c.secretSum[:]) == 1
	}
	if c.secretHash != nil {
		return bcrypt.CompareHashAndPassword(c.secretHash, []byte(secret)) == nil
	}
	return false
}

// handleToken is the token endpoint.
func (i *Issuer) handleToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var a tokenAudit
	resp, err := i.token(ctx, w, r, &a)
	if err != nil {
		e := asOAuth(err)
		i.audit(ctx, slog.LevelWarn, "token_refused", "issuer: token request refused",
			slog.String("error", e.code), optional("client_id", a.clientID), optional("grant", a.grant),
			slog.String("ip", clientIP(r)), slog.Int("status", e.status), optional("description", e.desc))
		i.writeTokenError(w, r, err)
		return
	}
	i.tokenGranted(ctx, r, a.grant, a.clientID, resp.sub)
	writeJSON(w, http.StatusOK, resp)
}

// tokenGranted counts a token response and logs its audit event.
func (i *Issuer) tokenGranted(ctx context.Context, r *http.Request, grant, clientID, sub string) {
	i.metrics.tokenIssued(grant, clientID)
	i.audit(ctx, slog.LevelInfo, "token_granted", "issuer: tokens issued",
		slog.String("grant", grant), slog.String("client_id", clientID), slog.String("sub", sub), slog.String("ip", clientIP(r)))
}

func (i *Issuer) token(ctx context.Context, w http.ResponseWriter, r *http.Request, a *tokenAudit) (*tokenResponse, error) {
	if err := parseBackChannelForm(w, r); err != nil {
		return nil, err
	}
	s := i.state.Load()
	a.clientID = knownClientID(r, s)
	gt := r.PostForm.Get("grant_type")
	if gt == "" {
		return nil, newErr(http.StatusBadRequest, errInvalidRequest, "grant_type is missing")
	}
	if gt == GrantImplicit || !slices.Contains(knownGrants, gt) {
		return nil, newErr(http.StatusBadRequest, errUnsupportedGrantType, fmt.Sprintf("grant_type %q is not supported", gt))
	}
	a.grant = gt
	c, err := i.authenticateClient(r, s, true)
	if err != nil {
		return nil, err
	}
	if !c.allows(gt) {
		return nil, newErr(http.StatusBadRequest, errUnauthorizedClient, fmt.Sprintf("client may not use grant_type %s", gt))
	}
	switch gt {
	case GrantAuthorizationCode:
		return i.grantCode(ctx, r, s, c)
	case GrantRefreshToken:
		return i.grantRefresh(ctx, r, s, c)
	case GrantClientCredentials:
		return i.grantClientCredentials(ctx, r, s, c)
	default: // GrantPassword
		return i.grantPassword(ctx, r, s, c)
	}
}

// issue mints the access token and, when openid was granted, the ID
// token; the grant adds the refresh token itself.
func (i *Issuer) issue(ctx context.Context, s *state, g grantInfo, withID bool) (*tokenResponse, error) {
	at, exp, err := i.mintAccess(ctx, s, g)
	if err != nil {
		return nil, internalErr(err)
	}
	resp := &tokenResponse{
		sub:         g.subject,
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   int64(exp.Sub(i.now()).Round(time.Second).Seconds()),
		Scope:       strings.Join(g.scopes, " "),
	}
	if withID && g.user != nil && slices.Contains(g.scopes, ScopeOpenID) {
		if resp.IDToken, err = i.mintID(ctx, s, g, at); err != nil {
			return nil, internalErr(err)
		}
	}
	return resp, nil
}

// requestedScopes parses the scope parameter; every scope must be in
// allowed. Empty means def.
func requestedScopes(raw string, allowed, def []string) ([]string, error) {
	req := dedupe(strings.Fields(raw))
	if len(req) == 0 {
		return slices.Clone(def), nil
	}
	for _, sc := range req {
		if !slices.Contains(allowed, sc) {
			return nil, newErr(http.StatusBadRequest, errInvalidScope, fmt.Sprintf("scope %q is not allowed", sc))
		}
	}
	return req, nil
}

// familyRevocationTTL is how long a revoked family is remembered: past the
// last refresh token and the last access token it can have produced.
func (t TokensConfig) familyRevocationTTL() time.Duration { return max(t.RefreshTTL, t.AccessTTL) }
