package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

// authRequestTTL is how long a parked authorization request waits for the
// user to sign in or consent.
const authRequestTTL = 10 * time.Minute

// authRequest is a validated authorization request (OIDC Core §3.1.2.1).
// It is parked in the store as JSON while the user signs in or consents.
type authRequest struct {
	ClientID      string   `json:"client_id"`
	RedirectURI   string   `json:"redirect_uri"`
	ResponseType  string   `json:"response_type"` // "code", "id_token" or "id_token token"
	Scopes        []string `json:"scopes"`
	State         string   `json:"state,omitempty"`
	Nonce         string   `json:"nonce,omitempty"`
	CodeChallenge string   `json:"code_challenge,omitempty"`
	Prompt        []string `json:"prompt,omitempty"`
	MaxAge        int64    `json:"max_age"` // -1: not requested; 0 acts as prompt=login (OIDC Core §3.1.2.1)

	// Set once the user has signed in, while consent is pending.
	Subject   string    `json:"sub,omitempty"`
	AuthTime  time.Time `json:"auth_time,omitzero"`
	SessionID string    `json:"sid,omitempty"`
}

// fragment reports whether the response goes in the URL fragment (every
// response type that returns a token from this endpoint).
func (ar *authRequest) fragment() bool { return ar.ResponseType != "code" }

func (ar *authRequest) hasPrompt(p string) bool { return slices.Contains(ar.Prompt, p) }

// needsConsent reports whether the user must see the allow/deny page.
func (ar *authRequest) needsConsent(c *client) bool { return c.Consent || ar.hasPrompt("consent") }

// handleAuthorize is the authorization endpoint (GET and POST).
func (i *Issuer) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		i.errorPage(w, r, http.StatusMethodNotAllowed, "This address only accepts GET and POST.", nil)
		return
	}
	if err := r.ParseForm(); err != nil {
		i.metrics.tokenError("authorize", errInvalidRequest, unknownClient)
		i.errorPage(w, r, http.StatusBadRequest, "The sign-in request is malformed.", err)
		return
	}
	s := i.state.Load()
	q := r.Form

	// Until client_id and redirect_uri are known good, nothing may be sent
	// to redirect_uri: an open redirector would hand out codes.
	clientID := q.Get("client_id")
	c, ok := s.clients[clientID]
	if !ok || len(q["client_id"]) != 1 {
		i.metrics.tokenError("authorize", errInvalidClient, unknownClient)
		i.errorPage(w, r, http.StatusBadRequest, "The application that sent you here is not registered.", fmt.Errorf("unknown client_id %q", clientID))
		return
	}
	redirectURI := q.Get("redirect_uri")
	if len(q["redirect_uri"]) != 1 || !c.redirectAllowed(redirectURI) {
		i.metrics.tokenError("authorize", errInvalidRequest, c.ID)
		i.errorPage(w, r, http.StatusBadRequest, "The application sent you here with a return address it has not registered.", fmt.Errorf("client %q: unregistered redirect_uri", clientID))
		return
	}

	ar, err := i.parseAuthRequest(q, c, redirectURI)
	if err != nil {
		i.redirectError(w, r, ar, err)
		return
	}
	i.continueAuthorize(w, r, s, c, ar)
}

// parseAuthRequest validates the rest of the request. The returned
// authRequest is usable for an error redirect even when err is set.
func (i *Issuer) parseAuthRequest(q url.Values, c *client, redirectURI string) (*authRequest, error) {
	ar := &authRequest{ClientID: c.ID, RedirectURI: redirectURI, ResponseType: "code", State: q.Get("state"), MaxAge: -1}
	bad := func(desc string) error { return newErr(http.StatusBadRequest, errInvalidRequest, desc) }

	rt := strings.Fields(q.Get("response_type"))
	slices.Sort(rt)
	switch strings.Join(rt, " ") {
	case "code":
	case "id_token":
		ar.ResponseType = "id_token"
	case "id_token token":
		ar.ResponseType = "id_token token"
	default:
		if q.Get("response_type") == "" {
			return ar, bad("response_type is missing")
		}
		return ar, newErr(http.StatusBadRequest, errUnsupportedResponseType, "response_type must be code, id_token or id_token token")
	}
	for k, vs := range q {
		if len(vs) > 1 {
			return ar, bad(fmt.Sprintf("parameter %s is repeated", k))
		}
	}
	if q.Has("request") || q.Has("request_uri") {
		return ar, newErr(http.StatusBadRequest, "request_not_supported", "request objects are not supported")
	}
	switch rm := q.Get("response_mode"); {
	case rm == "":
	case rm == "query" && !ar.fragment(), rm == "fragment" && ar.fragment():
	default:
		return ar, bad(fmt.Sprintf("response_mode %q is not supported for this response_type", rm))
	}

	grant := GrantAuthorizationCode
	if ar.fragment() {
		grant = GrantImplicit
	}
	if !c.allows(grant) {
		return ar, newErr(http.StatusBadRequest, errUnauthorizedClient, fmt.Sprintf("client may not use the %s grant", grant))
	}

	ar.Scopes = strings.Fields(q.Get("scope"))
	for _, sc := range ar.Scopes {
		if !slices.Contains(c.Scopes, sc) {
			return ar, newErr(http.StatusBadRequest, errInvalidScope, fmt.Sprintf("scope %q is not allowed for this client", sc))
		}
	}
	ar.Scopes = dedupe(ar.Scopes)
	ar.Nonce = q.Get("nonce")

	if ar.fragment() {
		if !slices.Contains(ar.Scopes, ScopeOpenID) {
			return ar, newErr(http.StatusBadRequest, errInvalidScope, "the implicit flow needs scope openid")
		}
		if ar.Nonce == "" {
			return ar, bad("nonce is required for the implicit flow")
		}
	} else {
		// RFC 9700 §2.1.1: PKCE for every client, and only S256: plain
		// (also what a missing method means, RFC 7636 §4.3) is refused.
		ch, method := q.Get("code_challenge"), q.Get("code_challenge_method")
		if ch == "" {
			return ar, bad("code_challenge is required (PKCE with S256)")
		}
		if method != "S256" {
			return ar, bad("code_challenge_method must be S256")
		}
		if !validChallenge(ch) {
			return ar, bad("code_challenge must be 43 base64url characters")
		}
		ar.CodeChallenge = ch
	}

	if p := strings.Fields(q.Get("prompt")); len(p) > 0 {
		for _, v := range p {
			switch v {
			case "none", "login", "consent", "select_account":
			default:
				return ar, bad(fmt.Sprintf("prompt %q is not supported", v))
			}
		}
		if slices.Contains(p, "none") && len(p) > 1 {
			return ar, bad("prompt none cannot be combined with other values")
		}
		ar.Prompt = p
	}
	if v := q.Get("max_age"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return ar, bad("max_age must be a non-negative integer")
		}
		ar.MaxAge = n
	}
	return ar, nil
}

// continueAuthorize decides between answering at once, asking the user to
// sign in, and asking for consent.
func (i *Issuer) continueAuthorize(w http.ResponseWriter, r *http.Request, s *state, c *client, ar *authRequest) {
	ctx := r.Context()
	now := i.now()
	sess, sessID, err := i.loginSession(ctx, r)
	if err != nil {
		i.redirectError(w, r, ar, internalErr(err))
		return
	}
	var user *UserConfig
	if sess != nil {
		// A user removed from the config no longer counts as signed in.
		if u, ok := s.users.lookup(ctx, sess.Subject); ok {
			user = u
		}
	}
	needLogin := user == nil || ar.hasPrompt("login") || ar.hasPrompt("select_account") ||
		ar.MaxAge == 0 || (ar.MaxAge > 0 && now.Sub(sess.AuthTime) > time.Duration(ar.MaxAge)*time.Second)
	if ar.hasPrompt("none") {
		switch {
		case needLogin:
			i.redirectError(w, r, ar, newErr(http.StatusBadRequest, errLoginRequired, "the user is not signed in"))
			return
		case ar.needsConsent(c):
			i.redirectError(w, r, ar, newErr(http.StatusBadRequest, errConsentRequired, "the user must consent"))
			return
		}
	}
	if !needLogin {
		ar.Subject, ar.AuthTime, ar.SessionID = user.Username, sess.AuthTime, sessID
		if !ar.needsConsent(c) {
			i.finishAuthorize(w, r, s, c, ar, user)
			return
		}
	}
	id, err := i.parkAuthRequest(ctx, ar)
	if err != nil {
		i.redirectError(w, r, ar, internalErr(err))
		return
	}
	next := pathLogin
	if !needLogin {
		next = pathConsent
	}
	noStore(w)
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	http.Redirect(w, r, i.path+next+"?req="+url.QueryEscape(id), status)
}

// parkAuthRequest stores ar and returns its new id.
func (i *Issuer) parkAuthRequest(ctx context.Context, ar *authRequest) (string, error) {
	data, err := json.Marshal(ar)
	if err != nil {
		return "", fmt.Errorf("issuer: encoding auth request: %w", err)
	}
	id := randomToken()
	if err := i.st.PutAuthRequest(ctx, store.AuthRequest{ID: hashID(id), Data: data, ExpiresAt: i.now().Add(authRequestTTL)}); err != nil {
		return "", fmt.Errorf("issuer: parking auth request: %w", err)
	}
	return id, nil
}

// updateAuthRequest rewrites a parked request under the same id.
func (i *Issuer) updateAuthRequest(ctx context.Context, id string, ar *authRequest) error {
	data, err := json.Marshal(ar)
	if err != nil {
		return fmt.Errorf("issuer: encoding auth request: %w", err)
	}
	if err := i.st.PutAuthRequest(ctx, store.AuthRequest{ID: hashID(id), Data: data, ExpiresAt: i.now().Add(authRequestTTL)}); err != nil {
		return fmt.Errorf("issuer: updating auth request: %w", err)
	}
	return nil
}

// errRequestGone means a parked request is unknown or expired.
var errRequestGone = errors.New("issuer: authorization request expired or unknown")

// loadAuthRequest fetches a parked request and its client, still registered.
func (i *Issuer) loadAuthRequest(ctx context.Context, s *state, id string) (*authRequest, *client, error) {
	if id == "" || len(id) > 100 {
		return nil, nil, errRequestGone
	}
	rec, err := i.st.GetAuthRequest(ctx, hashID(id), i.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, errRequestGone
	}
	if err != nil {
		return nil, nil, fmt.Errorf("issuer: loading auth request: %w", err)
	}
	var ar authRequest
	if err := json.Unmarshal(rec.Data, &ar); err != nil {
		return nil, nil, fmt.Errorf("issuer: decoding auth request: %w", err)
	}
	c, ok := s.clients[ar.ClientID]
	if !ok || !c.redirectAllowed(ar.RedirectURI) {
		// The client or its redirect_uri was removed by a reload meanwhile.
		return nil, nil, errRequestGone
	}
	return &ar, c, nil
}

// finishAuthorize answers a request whose user is signed in (and has
// consented where needed): a code, or the implicit flow's tokens.
func (i *Issuer) finishAuthorize(w http.ResponseWriter, r *http.Request, s *state, c *client, ar *authRequest, user *UserConfig) {
	ctx := r.Context()
	now := i.now()
	if ar.ResponseType == "code" {
		code := randomToken()
		rec := store.Code{
			ID:             hashID(code),
			ClientID:       c.ID,
			RedirectURI:    ar.RedirectURI,
			Subject:        user.Username,
			Scopes:         ar.Scopes,
			Nonce:          ar.Nonce,
			CodeChallenge:  ar.CodeChallenge,
			AuthTime:       ar.AuthTime,
			LoginSessionID: ar.SessionID,
			ExpiresAt:      now.Add(s.tokens.CodeTTL),
			FamilyID:       randomToken(),
			AccessJTI:      randomToken(),
		}
		if err := i.st.CreateCode(ctx, rec); err != nil {
			i.redirectError(w, r, ar, internalErr(fmt.Errorf("issuer: storing code: %w", err)))
			return
		}
		i.redirectResponse(w, r, ar, url.Values{"code": {code}})
		return
	}

	g := grantInfo{client: c, subject: user.Username, user: user, scopes: ar.Scopes, authTime: ar.AuthTime, nonce: ar.Nonce}
	v := url.Values{}
	var at string
	if ar.ResponseType == "id_token token" {
		var exp time.Time
		var err error
		if at, exp, err = i.mintAccess(ctx, s, g); err != nil {
			i.redirectError(w, r, ar, internalErr(err))
			return
		}
		v.Set("access_token", at)
		v.Set("token_type", "Bearer")
		v.Set("expires_in", strconv.FormatInt(int64(exp.Sub(now).Seconds()), 10))
		v.Set("scope", strings.Join(ar.Scopes, " "))
	}
	idt, err := i.mintID(ctx, s, g, at)
	if err != nil {
		i.redirectError(w, r, ar, internalErr(err))
		return
	}
	v.Set("id_token", idt)
	i.tokenGranted(ctx, r, GrantImplicit, c.ID, user.Username)
	i.redirectResponse(w, r, ar, v)
}

// redirectAllowed matches redirect_uri against the registered ones as
// exact strings; only a native (public, loopback IP) client may vary the
// port, RFC 8252 §7.3.
func (c *client) redirectAllowed(got string) bool {
	if got == "" {
		return false
	}
	if slices.Contains(c.RedirectURIs, got) {
		return true
	}
	if !c.Public {
		return false
	}
	gu, err := url.Parse(got)
	if err != nil || gu.Scheme != "http" || gu.User != nil || gu.Fragment != "" || strings.Contains(got, "#") {
		return false
	}
	gh := gu.Hostname()
	if gh != "127.0.0.1" && gh != "::1" {
		return false
	}
	if p := gu.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return false
		}
	}
	for _, reg := range c.RedirectURIs {
		ru, err := url.Parse(reg)
		if err != nil || ru.Scheme != "http" || ru.Hostname() != gh {
			continue
		}
		if ru.EscapedPath() == gu.EscapedPath() && ru.RawQuery == gu.RawQuery {
			return true
		}
	}
	return false
}

// validChallenge checks an S256 challenge: base64url of 32 bytes.
func validChallenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isB64URL(s[i]) {
			return false
		}
	}
	return true
}

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
