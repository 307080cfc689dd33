package issuer

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
	"golang.org/x/crypto/bcrypt"
)

// csrfCookie binds the login and consent forms to the browser that
// loaded them (double submit: the hidden field is an HMAC of the cookie).
const csrfCookie = "_portcullis_issuer_csrf"

// maxUsernameLen bounds what reaches the throttle keys and the store.
const maxUsernameLen = 256

// loginMessage maps the e parameter to a fixed message, so that the page
// never reflects input nor says whether the user exists.
func loginMessage(code string) string {
	switch code {
	case "invalid":
		return "Incorrect username or password."
	case "throttled":
		return "Too many failed sign-in attempts. Wait a little and try again."
	}
	return ""
}

// loginSession returns the live login session named by the request's
// cookie, and the session id; nil when there is none.
func (i *Issuer) loginSession(ctx context.Context, r *http.Request) (*store.LoginSession, string, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" || len(ck.Value) > 100 {
		return nil, "", nil
	}
	id := hashID(ck.Value)
	s, err := i.st.GetLoginSession(ctx, id, i.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("issuer: loading login session: %w", err)
	}
	return &s, id, nil
}

// startLoginSession replaces any session of this browser with a new one.
func (i *Issuer) startLoginSession(ctx context.Context, w http.ResponseWriter, r *http.Request, subject string) (id string, authTime time.Time, err error) {
	if ck, err := r.Cookie(CookieName); err == nil && ck.Value != "" && len(ck.Value) <= 100 {
		if err := i.st.DeleteLoginSession(ctx, hashID(ck.Value)); err != nil {
			return "", time.Time{}, fmt.Errorf("issuer: ending old login session: %w", err)
		}
	}
	now := i.now()
	val := randomToken()
	id = hashID(val)
	sess := store.LoginSession{ID: id, Subject: subject, AuthTime: now, ExpiresAt: now.Add(loginSessionTTL)}
	if err := i.st.PutLoginSession(ctx, sess); err != nil {
		return "", time.Time{}, fmt.Errorf("issuer: storing login session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: val, Path: i.cookiePath,
		MaxAge: int(loginSessionTTL.Seconds()), HttpOnly: true, Secure: i.secure, SameSite: http.SameSiteLaxMode,
	})
	return id, now, nil
}

// EndLoginSession ends the user's issuer login session if its cookie is on
// r: the store record is deleted and the cookie expired. The proxy calls it
// from /oauth2/sign_out.
func (i *Issuer) EndLoginSession(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return
	}
	if ck.Value != "" && len(ck.Value) <= 100 {
		ctx, id := r.Context(), hashID(ck.Value)
		// Read first only to name the user in the audit trail.
		sess, gerr := i.st.GetLoginSession(ctx, id, i.now())
		if err := i.st.DeleteLoginSession(ctx, id); err != nil {
			i.log.ErrorContext(ctx, "issuer: ending login session", "err", err)
		} else if gerr == nil {
			i.audit(ctx, slog.LevelInfo, "login_session_ended", "issuer: login session ended",
				slog.String("sub", sess.Subject), slog.String("ip", clientIP(r)))
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: i.cookiePath,
		MaxAge: -1, HttpOnly: true, Secure: i.secure, SameSite: http.SameSiteLaxMode,
	})
}

// csrfToken returns the form token for request id, setting the browser's
// CSRF cookie first when it has none.
func (i *Issuer) csrfToken(w http.ResponseWriter, r *http.Request, purpose, id string) string {
	val := ""
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) == 43 {
		val = ck.Value
	} else {
		val = randomToken()
		http.SetCookie(w, &http.Cookie{
			Name: csrfCookie, Value: val, Path: i.path + "/",
			HttpOnly: true, Secure: i.secure, SameSite: http.SameSiteLaxMode,
		})
	}
	return csrfMAC(val, purpose, id)
}

func csrfMAC(cookie, purpose, id string) string {
	m := hmac.New(sha256.New, []byte(cookie))
	m.Write([]byte(purpose + "\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF verifies the form's token against the browser's cookie.
func checkCSRF(r *http.Request, purpose, id string) bool {
	ck, err := r.Cookie(csrfCookie)
	if err != nil || len(ck.Value) != 43 {
		return false
	}
	return hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(csrfMAC(ck.Value, purpose, id)))
}

// handleLoginForm shows the sign-in form for a parked request.
func (i *Issuer) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	s := i.state.Load()
	id := r.URL.Query().Get("req")
	if _, _, err := i.loadAuthRequest(r.Context(), s, id); err != nil {
		i.requestGonePage(w, r, err)
		return
	}
	i.renderLogin(w, r, id, loginMessage(r.URL.Query().Get("e")), http.StatusOK)
}

func (i *Issuer) renderLogin(w http.ResponseWriter, r *http.Request, id, msg string, status int) {
	i.render(w, status, loginPage{
		Action: i.path + pathLogin,
		Req:    id,
		CSRF:   i.csrfToken(w, r, "login", id),
		Error:  msg,
	}.html())
}

// parkedForm reads a POST of the login or consent page (at most 64 KiB)
// and returns the id of the parked authorization request it continues.
// When it returns false it has already answered with an error page.
func (i *Issuer) parkedForm(w http.ResponseWriter, r *http.Request) (string, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		i.errorPage(w, r, http.StatusBadRequest, "The form could not be read.", err)
		return "", false
	}
	return r.PostForm.Get("req"), true
}

// requestGonePage explains an expired or unknown parked request.
func (i *Issuer) requestGonePage(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errRequestGone) {
		i.errorPage(w, r, http.StatusBadRequest, "This sign-in request has expired or is unknown. Go back to the application and start again.", err)
		return
	}
	i.errorPage(w, r, http.StatusInternalServerError, "Something went wrong on our side.", err)
}

// handleLoginSubmit checks the credentials; it always answers with a 303.
func (i *Issuer) handleLoginSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s := i.state.Load()
	id, ok := i.parkedForm(w, r)
	if !ok {
		return
	}
	ar, c, err := i.loadAuthRequest(ctx, s, id)
	if err != nil {
		i.requestGonePage(w, r, err)
		return
	}
	if !checkCSRF(r, "login", id) {
		i.errorPage(w, r, http.StatusForbidden, "The form expired or was not sent by this site. Go back to the application and start again.", errors.New("login csrf mismatch"))
		return
	}
	back := func(e string) {
		noStore(w)
		http.Redirect(w, r, i.path+pathLogin+"?req="+url.QueryEscape(id)+"&e="+e, http.StatusSeeOther)
	}

	user, err := i.authenticateUser(ctx, s, r.PostForm.Get("username"), r.PostForm.Get("password"), clientIP(r), c.ID)
	var te *throttledError
	switch {
	case errors.As(err, &te):
		back("throttled")
		return
	case errors.Is(err, errBadCredentials):
		back("invalid")
		return
	case err != nil:
		i.errorPage(w, r, http.StatusInternalServerError, "Something went wrong on our side.", err)
		return
	}

	sessID, authTime, err := i.startLoginSession(ctx, w, r, user.Username)
	if err != nil {
		i.errorPage(w, r, http.StatusInternalServerError, "Something went wrong on our side.", err)
		return
	}
	ar.Subject, ar.AuthTime, ar.SessionID = user.Username, authTime, sessID
	if ar.needsConsent(c) {
		if err := i.updateAuthRequest(ctx, id, ar); err != nil {
			i.errorPage(w, r, http.StatusInternalServerError, "Something went wrong on our side.", err)
			return
		}
		noStore(w)
		http.Redirect(w, r, i.path+pathConsent+"?req="+url.QueryEscape(id), http.StatusSeeOther)
		return
	}
	if err := i.st.DeleteAuthRequest(ctx, hashID(id)); err != nil {
		i.errorPage(w, r, http.StatusInternalServerError, "Something went wrong on our side.", err)
		return
	}
	i.finishAuthorize(w, r, s, c, ar, user)
}

// errBadCredentials is a wrong username or password, deliberately not
// saying which.
var errBadCredentials = errors.New("issuer: bad credentials")

// authenticateUser checks a username and password under the sign-in
// throttle shared by the login form and the password grant. clientID is
// the client the sign-in is for, for the audit trail.
func (i *Issuer) authenticateUser(ctx context.Context, s *state, username, password, ip, clientID string) (*UserConfig, error) {
	// The attempted username belongs in an audit trail; the password never.
	who := []slog.Attr{optional("username", username), slog.String("ip", ip), slog.String("client_id", clientID)}
	if username == "" || len(username) > maxUsernameLen || len(password) > 1024 {
		// Too long for bcrypt anyway; no point counting it against anyone.
		i.metrics.login(loginFailure)
		if len(username) > maxUsernameLen {
			who[0] = slog.Attr{}
		}
		i.audit(ctx, slog.LevelWarn, "login_failed", "issuer: sign-in failed", append(who, slog.String("reason", "invalid_input"))...)
		return nil, errBadCredentials
	}
	wait, keys, seen, err := i.throttleWait(ctx, username, ip)
	if err != nil {
		return nil, err
	}
	if wait == 0 {
		if !i.checking.acquire(ipKey(ip), seen.ip, ipFailures) {
			wait, keys = time.Second, []string{"ip"}
		} else {
			defer i.checking.release(ipKey(ip))
		}
	}
	if wait == 0 {
		if err := i.reserveAttempt(ctx, username, seen.user); err != nil {
			var te *throttledError
			if !errors.As(err, &te) {
				return nil, err
			}
			wait, keys = te.retryAfter, []string{"user"}
		}
	}
	if wait > 0 {
		i.metrics.login(loginThrottled, keys...)
		i.audit(ctx, slog.LevelWarn, "login_throttled", "issuer: sign-in refused: too many failed attempts",
			append(who, slog.String("reason", strings.Join(keys, ",")), slog.String("retry_after", wait.String()))...)
		return nil, &throttledError{retryAfter: wait}
	}
	u, ok := s.users.lookup(ctx, username)
	hash := s.dummyHash
	if ok {
		hash = []byte(u.PasswordHash)
	}
	// Always run bcrypt so that an unknown user takes as long as a wrong password.
	err = bcrypt.CompareHashAndPassword(hash, []byte(password))
	if !ok || err != nil {
		if rerr := i.recordFailure(ctx, ip); rerr != nil {
			return nil, rerr
		}
		i.metrics.login(loginFailure)
		// Deliberately the same reason for an unknown user and a wrong
		// password, like the page the user sees.
		i.audit(ctx, slog.LevelWarn, "login_failed", "issuer: sign-in failed", append(who, slog.String("reason", "bad_credentials"))...)
		return nil, errBadCredentials
	}
	if err := i.st.ClearThrottle(ctx, userKey(username)); err != nil {
		return nil, fmt.Errorf("issuer: clearing throttle: %w", err)
	}
	i.metrics.login(loginSuccess)
	i.audit(ctx, slog.LevelInfo, "login", "issuer: signed in", slog.String("sub", u.Username), slog.String("ip", ip), slog.String("client_id", clientID))
	return u, nil
}

// clientIP is the TCP peer's address; the proxy in front passes the
// original request, so this is the browser's or a trusted hop's address.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
