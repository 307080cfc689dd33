package login

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/auth"
	"github.com/portcullis-proxy/portcullis/auth/session"
)

// ErrNotReady is returned by Refresh before Discover has succeeded.
var ErrNotReady = errors.New("login: issuer discovery has not succeeded yet")

// Refresh uses d's refresh token (refresh_token grant, RFC 6749 §6) and
// returns an updated copy of d for the caller to save; d itself is not
// changed. When the issuer sends a new ID token it is verified (signature,
// iss, aud, exp; no nonce, OIDC Core §12.2), MUST name the same issuer and
// subject, and replaces the identity claims; otherwise the claims are kept.
// The session's CreatedAt, ExpiresAt and Identity.Expiry never change.
//
// An error wrapping auth.ErrUnauthenticated means the session cannot be
// refreshed (no refresh token, the issuer refused it, or the new ID token
// is not acceptable): the caller should end the session. Other errors
// (network, ErrNotReady) are temporary.
func (c *Client) Refresh(ctx context.Context, d *session.Data) (*session.Data, error) {
	disc := c.disc.Load()
	if disc == nil {
		c.metrics.refresh(refreshError)
		return nil, ErrNotReady
	}
	if d == nil || d.RefreshToken == "" {
		err := &refusal{reason: refuseNoRefreshToken, err: fmt.Errorf("login: refresh: no refresh token: %w", auth.ErrUnauthenticated)}
		c.recordRefresh(ctx, d, err)
		return nil, err
	}
	f, leader := c.flights.join(d.RefreshToken, c.now())
	if leader {
		// The shared refresh must not die with the first caller's request.
		res, err := c.refresh(context.WithoutCancel(ctx), disc, d)
		c.flights.finish(d.RefreshToken, f, res, err, c.now())
		c.recordRefresh(ctx, d, err)
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("login: refresh: %w", ctx.Err())
	}
	if !leader {
		c.metrics.refresh(refreshShared)
	}
	if f.err != nil {
		return nil, f.err
	}
	return f.res.Clone(), nil
}

// refusal is a refresh that can never succeed (it wraps
// auth.ErrUnauthenticated); reason names why in the refresh_refused audit
// event, code is the issuer's RFC 6749 error code when it sent one.
type refusal struct {
	reason, code string
	err          error
}

func (e *refusal) Error() string { return e.err.Error() }
func (e *refusal) Unwrap() error { return e.err }

// recordRefresh counts the outcome of a refresh this process ran and logs
// the refresh_refused audit event. Temporary errors are the caller's to
// log: it decides whether the session survives them.
func (c *Client) recordRefresh(ctx context.Context, d *session.Data, err error) {
	var rf *refusal
	switch {
	case err == nil:
		c.metrics.refresh(refreshSuccess)
	case errors.As(err, &rf):
		c.metrics.refresh(refreshRefused)
		attrs := []slog.Attr{slog.String("audit", "refresh_refused"), slog.String("reason", rf.reason)}
		if d != nil {
			attrs = append(attrs, slog.String("sub", d.Identity.Subject))
		}
		if isErrorCode(rf.code) {
			attrs = append(attrs, slog.String("error", rf.code))
		}
		attrs = append(attrs, slog.Any("err", err))
		c.log.LogAttrs(ctx, slog.LevelWarn, "login: token refresh refused; the session cannot continue", attrs...)
	default:
		c.metrics.refresh(refreshError)
	}
}

// refreshGrace is how long the result of a refresh is handed to callers
// still presenting the old refresh token: parallel requests of one browser
// carry the old cookie until the new one arrives, and issuers that rotate
// refresh tokens (the built-in one, RFC 9700 §4.14.2) revoke the whole
// grant when a rotated-out token is replayed.
const refreshGrace = 30 * time.Second

// flights de-duplicates refreshes of the same refresh token within this
// process. Keys are SHA-256 hashes so the map holds no usable token.
type flights struct {
	mu sync.Mutex
	m  map[[32]byte]*flight
}

type flight struct {
	done     chan struct{}
	res      *session.Data
	err      error
	finished time.Time
}

// join returns the flight for token and whether the caller must run it.
func (fs *flights) join(token string, now time.Time) (*flight, bool) {
	key := sha256.Sum256([]byte(token))
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for k, f := range fs.m {
		if !f.finished.IsZero() && now.Sub(f.finished) > refreshGrace {
			delete(fs.m, k)
		}
	}
	if f, ok := fs.m[key]; ok {
		return f, false
	}
	if fs.m == nil {
		fs.m = map[[32]byte]*flight{}
	}
	f := &flight{done: make(chan struct{})}
	fs.m[key] = f
	return f, true
}

// finish publishes a flight's result. A failed refresh is forgotten at
// once, so the next request tries again; a successful one is kept for
// refreshGrace.
func (fs *flights) finish(token string, f *flight, res *session.Data, err error, now time.Time) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f.res, f.err, f.finished = res, err, now
	if err != nil {
		delete(fs.m, sha256.Sum256([]byte(token)))
	}
	close(f.done)
}

func (c *Client) refresh(ctx context.Context, disc *discovered, d *session.Data) (*session.Data, error) {
	ctx = c.ctx(ctx)
	tok, err := disc.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: d.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, &refusal{reason: refuseIssuer, code: re.ErrorCode,
				err: fmt.Errorf("login: refresh: %w: %w", tokenError(re), auth.ErrUnauthenticated)}
		}
		return nil, fmt.Errorf("login: refresh: %w", err)
	}
	if tok.AccessToken == "" {
		return nil, &refusal{reason: refuseNoAccessToken,
			err: fmt.Errorf("login: refresh: token response without access_token: %w", auth.ErrUnauthenticated)}
	}
	out := d.Clone()
	out.AccessToken = tok.AccessToken
	out.AccessExpiry = c.accessExpiry(tok)
	if tok.RefreshToken != "" {
		out.RefreshToken = tok.RefreshToken
	}
	if rawID, _ := tok.Extra("id_token").(string); rawID != "" {
		idt, err := disc.verifier.Verify(ctx, rawID)
		if err != nil {
			return nil, &refusal{reason: refuseIDToken, err: fmt.Errorf("login: refresh: id token: %w: %w", err, auth.ErrUnauthenticated)}
		}
		if idt.Issuer != d.Identity.Issuer || idt.Subject != d.Identity.Subject {
			return nil, &refusal{reason: refuseSubject,
				err: fmt.Errorf("login: refresh: id token is for another subject or issuer: %w", auth.ErrUnauthenticated)}
		}
		if idt.AccessTokenHash != "" {
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				return nil, &refusal{reason: refuseIDToken, err: fmt.Errorf("login: refresh: %w: %w", err, auth.ErrUnauthenticated)}
			}
		}
		var claims map[string]any
		if err := idt.Claims(&claims); err != nil {
			return nil, &refusal{reason: refuseIDToken, err: fmt.Errorf("login: refresh: id token claims: %w: %w", err, auth.ErrUnauthenticated)}
		}
		id := c.IdentityFromClaims(claims)
		id.Expiry, id.Method = d.Identity.Expiry, d.Identity.Method
		out.Identity = id
		out.IDToken = rawID
	}
	// The identity carries the fresh tokens for this request's forwarding;
	// the session keeps only what later requests need.
	out.Identity.AccessToken = auth.Secret(out.AccessToken)
	out.Identity.IDToken = auth.Secret(out.IDToken)
	c.trimTokens(out)
	return out, nil
}

// SignOut handles GET and POST /oauth2/sign_out?rd=. It clears the
// Portcullis session, then:
//   - with the built-in issuer (EndIssuerSession set) ends its login session
//     too and redirects to the cleaned rd;
//   - with an issuer that has end_session_endpoint, redirects there with
//     id_token_hint, client_id and post_logout_redirect_uri={public_url}/
//     (OpenID Connect RP-Initiated Logout 1.0);
//   - otherwise redirects to the cleaned rd.
//
// Sign-out by GET has no CSRF protection, on purpose: a forged request can
// only end a session, never create or change one, and a plain link must
// keep working. The session cookie's SameSite=Lax already stops
// cross-site POSTs carrying it.
func (c *Client) SignOut(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	rd := CleanReturnTarget(r.FormValue("rd"), c.allowedHosts)
	var idToken string
	attrs := []slog.Attr{slog.String("audit", "sign_out")}
	if d, err := c.sessions.Load(r); err == nil {
		idToken = d.IDToken
		attrs = append(attrs, slog.String("sub", d.Identity.Subject))
		if d.RefreshToken != "" {
			// A copy of the cookie must not keep refreshing after sign-out.
			c.revoke(r.Context(), d.RefreshToken)
		}
	}
	c.sessions.Clear(w, r)
	c.metrics.signOut()
	c.log.LogAttrs(r.Context(), slog.LevelInfo, "login: signed out", append(attrs, slog.String("ip", remoteIP(r)))...)
	if c.endIssuer != nil {
		c.endIssuer(w, r)
		http.Redirect(w, r, c.local(rd), http.StatusFound)
		return
	}
	if disc := c.disc.Load(); disc != nil && disc.endSession != "" {
		if u, err := url.Parse(disc.endSession); err == nil {
			q := u.Query()
			if idToken != "" {
				q.Set("id_token_hint", idToken)
			}
			q.Set("client_id", c.clientID)
			q.Set("post_logout_redirect_uri", c.local("/"))
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.String(), http.StatusFound)
			return
		}
		c.log.WarnContext(r.Context(), "login: sign-out: end_session_endpoint unusable")
	}
	http.Redirect(w, r, c.local(rd), http.StatusFound)
}

// revoke asks the issuer to revoke a refresh token (RFC 7009), when it has
// a revocation endpoint. It is best effort: sign-out goes on whatever the
// issuer answers, and a failure is logged (without the token).
func (c *Client) revoke(ctx context.Context, refreshToken string) {
	disc := c.disc.Load()
	if disc == nil || disc.revocation == "" {
		return
	}
	form := url.Values{"token": {refreshToken}, "token_type_hint": {"refresh_token"}}
	if disc.oauth.Endpoint.AuthStyle == oauth2.AuthStyleInParams {
		form.Set("client_id", c.clientID)
		if !c.clientSecret.IsZero() {
			form.Set("client_secret", c.clientSecret.Reveal())
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, disc.revocation, strings.NewReader(form.Encode()))
	if err != nil {
		c.log.WarnContext(ctx, "login: sign-out: revoking the refresh token", "err", err)
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if disc.oauth.Endpoint.AuthStyle != oauth2.AuthStyleInParams {
		req.SetBasicAuth(url.QueryEscape(c.clientID), url.QueryEscape(c.clientSecret.Reveal()))
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		c.log.WarnContext(ctx, "login: sign-out: revoking the refresh token", "err", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.log.WarnContext(ctx, "login: sign-out: the issuer refused to revoke the refresh token", "status", resp.StatusCode)
	}
}
