package issuer

import "net/http"

// routes mounts every endpoint at its full path; GET patterns also answer HEAD.
func (i *Issuer) routes() *http.ServeMux {
	mux := http.NewServeMux()
	p := i.path
	mux.HandleFunc("GET "+p+pathDiscovery, i.handleDiscovery)
	mux.HandleFunc("GET "+pathRFC8414+p, i.handleDiscovery)
	mux.HandleFunc("GET "+p+pathKeys, i.handleKeys)
	mux.HandleFunc(p+pathAuthorize, i.handleAuthorize)
	mux.HandleFunc("GET "+p+pathLogin, i.handleLoginForm)
	mux.HandleFunc("POST "+p+pathLogin, i.handleLoginSubmit)
	mux.HandleFunc("GET "+p+pathConsent, i.handleConsentForm)
	mux.HandleFunc("POST "+p+pathConsent, i.handleConsentSubmit)
	mux.HandleFunc(p+pathToken, i.handleToken)
	mux.HandleFunc("GET "+p+pathUserinfo, i.handleUserinfo)
	mux.HandleFunc("POST "+p+pathUserinfo, i.handleUserinfo)
	mux.HandleFunc(p+pathIntrospect, i.handleIntrospect)
	mux.HandleFunc(p+pathRevoke, i.handleRevoke)
	mux.HandleFunc("GET "+p+pathEndSession, i.handleEndSession)
	mux.HandleFunc("POST "+p+pathEndSession, i.handleEndSession)
	return mux
}
