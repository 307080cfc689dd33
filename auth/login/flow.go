package login

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/session"
)

const (
	// pendingTTL is how long a sign-in attempt may take at the issuer.
	pendingTTL = 10 * time.Minute
	// maxPending caps the pending-sign-in cookies one browser carries, so
	// many tabs (or a loop) cannot grow the Cookie header without bound.
	maxPending = 5
	// pendingPath is "/" so that every request a browser makes — the gate
	// starts sign-in from any protected path — carries the pending cookies
	// and the maxPending cap can see them all. The proxy strips every
	// _portcullis* cookie before forwarding, so they never reach upstreams.
	pendingPath = "/"
	// idLen is the length of the cookie-name id carried in state.
	idLen = 10
)

// pending is one sign-in attempt, sealed into `<cookie>_login_<id>`.
type pending struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	RD       string `json:"r"`
	Created  int64  `json:"c"` // unix seconds
}

func (c *Client) pendingPrefix() string { return c.sessions.CookieName() + "_login_" }

// Start handles GET /oauth2/start?rd=.
func (c *Client) Start(w http.ResponseWriter, r *http.Request) {
	c.Redirect(w, r, r.FormValue("rd"))
}

// Redirect begins a sign-in: it creates a fresh state, nonce and PKCE S256
// verifier, stores them with the cleaned rd in a new pending cookie and sends
// the browser to the issuer's authorization endpoint. Before discovery has
// succeeded it answers 503.
func (c *Client) Redirect(w http.ResponseWriter, r *http.Request, rd string) {
	noStore(w)
	d := c.disc.Load()
	if d == nil {
		c.notReady(w, "")
		return
	}
	// rand.Text is 26 base32 characters (130 bits) from crypto/rand.
	id := rand.Text()[:idLen]
	p := pending{
		State:    id + "." + rand.Text(),
		Nonce:    rand.Text(),
		Verifier: oauth2.GenerateVerifier(),
		RD:       CleanReturnTarget(rd, c.allowedHosts),
		Created:  c.now().Unix(),
	}
	name := c.pendingPrefix() + id
	val, err := c.sessions.Seal(name, p)
	if err != nil {
		c.log.ErrorContext(r.Context(), "login: sealing pending sign-in", "err", err)
		c.page(w, http.StatusInternalServerError, "Sign-in failed",
			"Portcullis could not start the sign-in. Please try again.", "")
		return
	}
	c.prunePending(w, r)
	http.SetCookie(w, c.pendingCookie(name, val, int(pendingTTL/time.Second)))
	u := d.oauth.AuthCodeURL(p.State, oauth2.S256ChallengeOption(p.Verifier), oidc.Nonce(p.Nonce))
	http.Redirect(w, r, u, http.StatusFound)
}

// prunePending expires unreadable pending cookies on r and the oldest
// readable ones, so that with the one about to be set at most maxPending
// remain. It only sees cookies sent to r's path, which is why the gate
// should send browsers through /oauth2/start.
func (c *Client) prunePending(w http.ResponseWriter, r *http.Request) {
	type seen struct {
		name    string
		created int64
	}
	var all []seen
	prefix := c.pendingPrefix()
	for _, ck := range r.Cookies() {
		if !strings.HasPrefix(ck.Name, prefix) || slices.ContainsFunc(all, func(s seen) bool { return s.name == ck.Name }) {
			continue
		}
		var p pending
		if err := c.sessions.Open(ck.Name, ck.Value, &p, pendingTTL); err != nil {
			// Expired, forged or sealed with a retired key: useless.
			http.SetCookie(w, c.pendingCookie(ck.Name, "", -1))
			continue
		}
		all = append(all, seen{ck.Name, p.Created})
	}
	if len(all) < maxPending {
		return
	}
	slices.SortStableFunc(all, func(a, b seen) int { return cmp.Compare(a.created, b.created) })
	for _, s := range all[:len(all)-maxPending+1] {
		http.SetCookie(w, c.pendingCookie(s.name, "", -1))
	}
}

func (c *Client) pendingCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     pendingPath,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   c.sessions.Secure(),
		SameSite: http.SameSiteLaxMode,
	}
}

// stateID extracts the cookie id from a state value, refusing anything that
// could not have come from Redirect (so it cannot name another cookie).
func stateID(state string) (string, bool) {
	id, rest, ok := strings.Cut(state, ".")
	if !ok || len(id) != idLen || rest == "" {
		return "", false
	}
	for _, r := range id {
		if !('A' <= r && r <= 'Z' || '2' <= r && r <= '7') {
			return "", false
		}
	}
	return id, true
}

// Callback handles GET /oauth2/callback: it checks state against the pending
// cookie, exchanges the code with the PKCE verifier, verifies the ID token
// and nonce, saves the session and redirects to the stored return target.
// Every failure is an HTML page that creates no session; the pending cookie
// is expired whatever the outcome, so a callback URL works at most once.
func (c *Client) Callback(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	// The callback URL carries the code; keep it out of Referer headers
	// (RFC 9700 §4.2.4).
	w.Header().Set("Referrer-Policy", "no-referrer")
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")

	var p pending
	havePending := false
	if id, ok := stateID(state); ok {
		name := c.pendingPrefix() + id
		http.SetCookie(w, c.pendingCookie(name, "", -1))
		if ck, err := r.Cookie(name); err == nil {
			if err := c.sessions.Open(name, ck.Value, &p, pendingTTL); err == nil {
				havePending = true
			} else {
				c.log.WarnContext(ctx, "login: callback: pending sign-in cookie unreadable", "err", err)
			}
		}
	}
	retry := c.retryURL("")
	if havePending {
		retry = c.retryURL(p.RD)
	}

	d := c.disc.Load()
	if d == nil {
		c.signInFailed(r, reasonUnavailable, slog.LevelWarn, "status", http.StatusServiceUnavailable)
		c.notReady(w, retry)
		return
	}
	if q.Has("error") {
		code := q.Get("error")
		c.signInFailed(r, reasonIssuerError, slog.LevelWarn,
			"status", http.StatusForbidden, "err", code, "error_description", q.Get("error_description"))
		msg := "The identity provider did not sign you in"
		if isErrorCode(code) {
			msg += " (" + code + ")"
		}
		c.page(w, http.StatusForbidden, "Sign-in was refused", msg+".", retry)
		return
	}
	if state == "" {
		c.fail(w, r, http.StatusBadRequest, reasonState, "The sign-in answer is missing its state parameter.", retry, errors.New("missing state"))
		return
	}
	if !havePending {
		c.fail(w, r, http.StatusBadRequest, reasonState,
			"This sign-in attempt has expired or was started in another browser.", retry, errors.New("no pending sign-in cookie for state"))
		return
	}
	if subtle.ConstantTimeCompare([]byte(p.State), []byte(state)) != 1 {
		c.fail(w, r, http.StatusBadRequest, reasonState, "The sign-in answer does not belong to this browser.", retry, errors.New("state mismatch"))
		return
	}
	if age := c.now().Sub(time.Unix(p.Created, 0)); age > pendingTTL || age < -time.Minute {
		c.fail(w, r, http.StatusBadRequest, reasonExpired, "This sign-in attempt has expired.", retry, errors.New("pending sign-in too old"))
		return
	}
	// RFC 9207: an iss parameter, when present or promised, must name our
	// issuer; this stops mix-up attacks between several issuers.
	if iss, ok := q["iss"]; ok || d.issParamKnown {
		if !ok || len(iss) != 1 || iss[0] != c.issuer {
			c.fail(w, r, http.StatusBadRequest, reasonIssuerMismatch, "The sign-in answer came from an unexpected identity provider.", retry,
				errors.New("iss parameter missing or wrong"))
			return
		}
	}
	code := q.Get("code")
	if code == "" {
		c.fail(w, r, http.StatusBadRequest, reasonMissingCode, "The sign-in answer is missing its code.", retry, errors.New("missing code"))
		return
	}

	tok, err := d.oauth.Exchange(c.ctx(ctx), code, oauth2.VerifierOption(p.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		switch {
		case errors.As(err, &re):
			c.fail(w, r, http.StatusBadRequest, reasonExchange,
				"The identity provider did not accept the sign-in code. It may have expired or been used already.", retry,
				tokenError(re))
		case isNetError(err):
			c.fail(w, r, http.StatusBadGateway, reasonUnreachable, "The identity provider could not be reached. Please try again later.", retry, err)
		default:
			c.fail(w, r, http.StatusBadGateway, reasonBadResponse, "The identity provider sent an answer Portcullis could not understand.", retry, err)
		}
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		c.fail(w, r, http.StatusBadGateway, reasonBadResponse, "The identity provider did not send an ID token.", retry, errors.New("token response without id_token"))
		return
	}
	idt, err := d.verifier.Verify(c.ctx(ctx), rawID)
	if err != nil {
		c.fail(w, r, http.StatusUnauthorized, reasonIDToken, "The identity provider's answer could not be verified.", retry, err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.Nonce)) != 1 {
		c.fail(w, r, http.StatusUnauthorized, reasonNonce, "The identity provider's answer could not be verified.", retry, errors.New("nonce mismatch"))
		return
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			c.fail(w, r, http.StatusUnauthorized, reasonIDToken, "The identity provider's answer could not be verified.", retry, err)
			return
		}
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil || idt.Subject == "" {
		c.fail(w, r, http.StatusUnauthorized, reasonIDToken, "The identity provider's answer could not be verified.", retry,
			cmp.Or(err, errors.New("id token without sub")))
		return
	}
	c.addUserInfo(ctx, d, tok, idt.Subject, claims)

	created := time.Unix(c.now().Unix(), 0)
	data := &session.Data{
		Identity:     c.IdentityFromClaims(claims),
		IDToken:      rawID,
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		AccessExpiry: c.accessExpiry(tok),
		CreatedAt:    created,
		ExpiresAt:    created.Add(c.sessions.Lifetime()),
	}
	if data.RefreshToken == "" && !idt.Expiry.IsZero() && idt.Expiry.Before(data.ExpiresAt) {
		// Nothing can renew this session: it ends with its ID token.
		data.ExpiresAt = idt.Expiry
	}
	data.Identity.Expiry = data.ExpiresAt
	c.trimTokens(data)
	if err := c.sessions.Save(w, r, data); err != nil {
		c.signInFailed(r, reasonSession, slog.LevelError, "status", http.StatusInternalServerError, "err", err)
		c.page(w, http.StatusInternalServerError, "Sign-in failed", "Portcullis could not save your session. Please try again.", retry)
		return
	}
	c.metrics.signIn(reasonNone)
	c.log.LogAttrs(ctx, slog.LevelInfo, "login: signed in",
		slog.String("audit", "sign_in"), slog.String("sub", idt.Subject), slog.String("ip", remoteIP(r)))
	http.Redirect(w, r, c.local(CleanReturnTarget(p.RD, c.allowedHosts)), http.StatusFound)
}

// addUserInfo fills a missing email or groups claim from the userinfo
// endpoint. It is best effort: the ID token already proved who the user is,
// so a failure here is logged and sign-in continues with what we have.
func (c *Client) addUserInfo(ctx context.Context, d *discovered, tok *oauth2.Token, sub string, claims map[string]any) {
	_, hasEmail := lookupClaim(claims, c.claims.Email)
	_, hasGroups := lookupClaim(claims, c.claims.Groups)
	if (hasEmail && hasGroups) || d.provider.UserInfoEndpoint() == "" || tok.AccessToken == "" {
		return
	}
	ui, err := d.provider.UserInfo(c.ctx(ctx), oauth2.StaticTokenSource(tok))
	if err != nil {
		c.log.WarnContext(ctx, "login: userinfo request failed", "sub", sub, "err", err)
		return
	}
	// OIDC Core §5.3.2: a userinfo sub that differs from the ID token's
	// MUST NOT be used.
	if ui.Subject != sub {
		c.log.WarnContext(ctx, "login: userinfo sub differs from id token; ignored", "sub", sub)
		return
	}
	var extra map[string]any
	if err := ui.Claims(&extra); err != nil {
		c.log.WarnContext(ctx, "login: userinfo response unreadable", "sub", sub, "err", err)
		return
	}
	for _, name := range []string{c.claims.Email, c.claims.Groups, "email_verified"} {
		if _, ok := lookupClaim(claims, name); ok {
			continue
		}
		if v, ok := lookupClaim(extra, name); ok {
			claims[name] = v
		}
	}
}

func (c *Client) accessExpiry(tok *oauth2.Token) time.Time {
	if tok.ExpiresIn > 0 {
		return c.now().Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	return tok.Expiry
}

// fail records a failed callback and shows the user a plain page. err MUST
// NOT contain a token, code or verifier.
func (c *Client) fail(w http.ResponseWriter, r *http.Request, status int, reason, msg, retry string, err error) {
	c.signInFailed(r, reason, slog.LevelWarn, "status", status, "err", err)
	c.page(w, status, "Sign-in failed", msg, retry)
}

// signInFailed counts a failed sign-in and logs its sign_in_failed audit event;
// args are extra detail (never a token, code, verifier or cookie).
func (c *Client) signInFailed(r *http.Request, reason string, level slog.Level, args ...any) {
	c.metrics.signIn(reason)
	args = append([]any{slog.String("audit", "sign_in_failed"), slog.String("reason", reason), slog.String("ip", remoteIP(r))}, args...)
	c.log.Log(r.Context(), level, "login: callback: sign-in failed", args...)
}

// tokenError keeps only the RFC 6749 §5.2 fields of a token-endpoint error;
// the raw body is not logged in case an issuer echoes something sensitive.
func tokenError(re *oauth2.RetrieveError) error {
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	code := re.ErrorCode
	if code == "" {
		code = "unknown"
	}
	return fmt.Errorf("token endpoint refused: http %d %s: %q", status, code, re.ErrorDescription)
}

func isNetError(err error) bool {
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded)
}

// isErrorCode reports whether s looks like an RFC 6749 error code, so only
// such a word (never arbitrary query text) is shown to the user.
func isErrorCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || r == '_') {
			return false
		}
	}
	return true
}

func (c *Client) retryURL(rd string) string {
	u := c.local(PathStart)
	if rd != "" && rd != "/" {
		u += "?rd=" + url.QueryEscape(rd)
	}
	return u
}

// notReady answers 503 until discovery has succeeded.
func (c *Client) notReady(w http.ResponseWriter, retry string) {
	w.Header().Set("Retry-After", "5")
	c.page(w, http.StatusServiceUnavailable, "Sign-in is not available yet",
		"sign-in is not available yet: Portcullis is still contacting the identity provider. Please try again in a moment.", retry)
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// page writes a self-contained HTML page. Its text is ours; nothing from
// the request is shown except an RFC 6749 error word. It is built by plain
// Go code rather than html/template (whose execution keeps every exported
// method of the binary alive for reflection): every value goes through
// html.EscapeString, and the retry URL through auth.HrefValue.
func (c *Client) page(w http.ResponseWriter, status int, title, msg, retry string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	if _, err := io.WriteString(w, errorPageHTML(status, title, msg, retry)); err != nil {
		c.log.Warn("login: writing error page", "err", err)
	}
}

func errorPageHTML(status int, title, msg, retry string) string {
	var b strings.Builder
	b.Grow(len(errorPageHead) + len(errorPageStyle) + 512)
	b.WriteString(errorPageHead)
	b.WriteString(html.EscapeString(title))
	b.WriteString(" – Portcullis</title>\n")
	b.WriteString(errorPageStyle)
	b.WriteString("<h1>")
	b.WriteString(html.EscapeString(title))
	b.WriteString("</h1>\n<p>")
	b.WriteString(html.EscapeString(msg))
	b.WriteString("</p>\n")
	if retry != "" {
		b.WriteString(`<p><a class="button" href="`)
		b.WriteString(auth.HrefValue(retry))
		b.WriteString(`">Try again</a></p>` + "\n")
	}
	b.WriteString(`<p class="code">Error `)
	b.WriteString(strconv.Itoa(status))
	b.WriteString("</p>\n</main>\n</body>\n</html>\n")
	return b.String()
}

const errorPageHead = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>`

const errorPageStyle = `<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1d2433;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12);padding:2rem 2.5rem;max-width:32rem}
h1{font-size:1.35rem;margin:0 0 .75rem}
p{line-height:1.5;margin:0 0 1rem}
.code{color:#6b7385;font-size:.85rem}
a.button{display:inline-block;background:#2457c5;color:#fff;text-decoration:none;padding:.55rem 1.1rem;border-radius:5px}
a.button:hover{background:#1c469f}
</style>
</head>
<body>
<main>
`
