package issuer

import (
	"net/http"
	"net/url"
	"slices"
)

// handleEndSession is OpenID Connect RP-Initiated Logout 1.0: it ends the
// login session, then redirects to post_logout_redirect_uri only when it
// is registered (exact match) for the client named by a valid
// id_token_hint (expired hints are fine) or client_id; otherwise it shows
// a signed-out page.
func (i *Issuer) handleEndSession(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		i.errorPage(w, r, http.StatusBadRequest, "The sign-out request is malformed.", err)
		return
	}
	i.EndLoginSession(w, r)

	s := i.state.Load()
	target := r.Form.Get("post_logout_redirect_uri")
	clientID := r.Form.Get("client_id")
	if hint := r.Form.Get("id_token_hint"); hint != "" {
		claims, err := i.verifyIDToken(ctx, hint)
		if err != nil {
			i.log.DebugContext(ctx, "issuer: end_session ignored an invalid id_token_hint", "err", err)
			target = ""
		} else {
			aud := claims.Aud[0]
			if len(claims.Aud) > 1 {
				aud = "" // azp would be needed; refuse to guess
			}
			if clientID != "" && clientID != aud {
				target = ""
			}
			clientID = aud
		}
	}
	if target != "" {
		if c, ok := s.clients[clientID]; ok && slices.Contains(c.PostLogoutRedirectURIs, target) {
			u, err := url.Parse(target)
			if err == nil {
				if st := r.Form.Get("state"); st != "" {
					q := u.Query()
					q.Set("state", st)
					u.RawQuery = q.Encode()
				}
				noStore(w)
				status := http.StatusFound
				if r.Method == http.MethodPost {
					status = http.StatusSeeOther
				}
				http.Redirect(w, r, u.String(), status)
				return
			}
		}
		i.log.DebugContext(ctx, "issuer: end_session refused an unregistered post_logout_redirect_uri", "client_id", clientID)
	}
	i.render(w, http.StatusOK, signedOutHTML())
}
