package issuer

import (
	"context"
	"errors"
	"net/http"
)

// scopeText describes a scope on the consent page.
func scopeText(s string) string {
	switch s {
	case ScopeOpenID:
		return "" // implied by signing in
	case ScopeProfile:
		return "your username and name"
	case ScopeEmail:
		return "your email address"
	case ScopeGroups:
		return "the groups you belong to"
	case ScopeOfflineAccess:
		return "access while you are not signed in (it stays until you sign out of it)"
	}
	return "access named " + s
}

// consentRequest loads a parked request waiting for consent, checking that
// the browser asking is the one that signed in for it.
func (i *Issuer) consentRequest(ctx context.Context, r *http.Request, s *state, id string) (*authRequest, *client, *UserConfig, error) {
	ar, c, err := i.loadAuthRequest(ctx, s, id)
	if err != nil {
		return nil, nil, nil, err
	}
	_, sessID, err := i.loginSession(ctx, r)
	if err != nil {
		return nil, nil, nil, err
	}
	if ar.Subject == "" || sessID == "" || sessID != ar.SessionID {
		return nil, nil, nil, errRequestGone
	}
	u, ok := s.users.lookup(ctx, ar.Subject)
	if !ok {
		return nil, nil, nil, errRequestGone
	}
	return ar, c, u, nil
}

func (i *Issuer) handleConsentForm(w http.ResponseWriter, r *http.Request) {
	s := i.state.Load()
	id := r.URL.Query().Get("req")
	ar, c, u, err := i.consentRequest(r.Context(), r, s, id)
	if err != nil {
		i.requestGonePage(w, r, err)
		return
	}
	var scopes []string
	for _, sc := range ar.Scopes {
		if t := scopeText(sc); t != "" {
			scopes = append(scopes, t)
		}
	}
	i.render(w, http.StatusOK, consentPage{
		Action: i.path + pathConsent,
		Req:    id,
		CSRF:   i.csrfToken(w, r, "consent", id),
		Client: c.ID,
		User:   u.Username,
		Scopes: scopes,
	}.html())
}

func (i *Issuer) handleConsentSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s := i.state.Load()
	id, ok := i.parkedForm(w, r)
	if !ok {
		return
	}
	ar, c, u, err := i.consentRequest(ctx, r, s, id)
	if err != nil {
		i.requestGonePage(w, r, err)
		return
	}
	if !checkCSRF(r, "consent", id) {
		i.errorPage(w, r, http.StatusForbidden, "The form expired or was not sent by this site. Go back to the application and start again.", errors.New("consent csrf mismatch"))
		return
	}
	if err := i.st.DeleteAuthRequest(ctx, hashID(id)); err != nil {
		i.errorPage(w, r, http.StatusInternalServerError, "Something went wrong on our side.", err)
		return
	}
	if r.PostForm.Get("decision") != "allow" {
		i.redirectError(w, r, ar, newErr(http.StatusForbidden, errAccessDenied, "the user denied access"))
		return
	}
	i.finishAuthorize(w, r, s, c, ar, u)
}
