package issuer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
)

// metadata is the OpenID Provider / RFC 8414 authorization server metadata.
// It lists only what is served and enabled by the current clients.
type metadata struct {
	Issuer                        string   `json:"issuer"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	UserinfoEndpoint              string   `json:"userinfo_endpoint"`
	JWKSURI                       string   `json:"jwks_uri"`
	IntrospectionEndpoint         string   `json:"introspection_endpoint"`
	RevocationEndpoint            string   `json:"revocation_endpoint"`
	EndSessionEndpoint            string   `json:"end_session_endpoint"`
	ResponseTypes                 []string `json:"response_types_supported"`
	ResponseModes                 []string `json:"response_modes_supported"`
	GrantTypes                    []string `json:"grant_types_supported"`
	SubjectTypes                  []string `json:"subject_types_supported"`
	IDTokenAlgs                   []string `json:"id_token_signing_alg_values_supported"`
	Scopes                        []string `json:"scopes_supported"`
	Claims                        []string `json:"claims_supported"`
	CodeChallengeMethods          []string `json:"code_challenge_methods_supported"`
	TokenAuthMethods              []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionAuthMethods      []string `json:"introspection_endpoint_auth_methods_supported"`
	RevocationAuthMethods         []string `json:"revocation_endpoint_auth_methods_supported"`
	PromptValues                  []string `json:"prompt_values_supported"`
	ClaimsParameter               bool     `json:"claims_parameter_supported"`
	RequestParameter              bool     `json:"request_parameter_supported"`
	RequestURIParameter           bool     `json:"request_uri_parameter_supported"`
	AuthorizationResponseIssParam bool     `json:"authorization_response_iss_parameter_supported"`
	AccessTokenAlgs               []string `json:"access_token_signing_alg_values_supported,omitempty"`
	BackchannelLogoutSupported    bool     `json:"backchannel_logout_supported"`
	FrontchannelLogoutSupported   bool     `json:"frontchannel_logout_supported"`
}

// discoveryJSON renders the metadata for state s.
func (i *Issuer) discoveryJSON(s *state) ([]byte, error) {
	m := metadata{
		Issuer:                        i.iss,
		AuthorizationEndpoint:         i.iss + pathAuthorize,
		TokenEndpoint:                 i.iss + pathToken,
		UserinfoEndpoint:              i.iss + pathUserinfo,
		JWKSURI:                       i.iss + pathKeys,
		IntrospectionEndpoint:         i.iss + pathIntrospect,
		RevocationEndpoint:            i.iss + pathRevoke,
		EndSessionEndpoint:            i.iss + pathEndSession,
		ResponseTypes:                 []string{},
		ResponseModes:                 []string{},
		GrantTypes:                    []string{},
		SubjectTypes:                  []string{"public"},
		IDTokenAlgs:                   []string{s.alg},
		AccessTokenAlgs:               []string{s.alg},
		Scopes:                        []string{},
		Claims:                        []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "azp", "preferred_username", "name", "email", "email_verified", "groups"},
		CodeChallengeMethods:          []string{"S256"},
		TokenAuthMethods:              []string{},
		IntrospectionAuthMethods:      []string{},
		RevocationAuthMethods:         []string{},
		PromptValues:                  []string{"none", "login", "consent"},
		AuthorizationResponseIssParam: true,
	}
	add := func(list *[]string, v ...string) {
		for _, x := range v {
			if !slices.Contains(*list, x) {
				*list = append(*list, x)
			}
		}
	}
	ids := make([]string, 0, len(s.clients))
	for id := range s.clients {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		c := s.clients[id]
		for _, g := range knownGrants {
			if !c.allows(g) {
				continue
			}
			switch g {
			case GrantImplicit:
				// The implicit grant has no grant_type of its own at the
				// token endpoint, but RFC 8414 lists it here.
				add(&m.GrantTypes, "implicit")
				add(&m.ResponseTypes, "id_token", "id_token token")
				add(&m.ResponseModes, "fragment")
			case GrantAuthorizationCode:
				add(&m.GrantTypes, g)
				add(&m.ResponseTypes, "code")
				add(&m.ResponseModes, "query")
			default:
				add(&m.GrantTypes, g)
			}
		}
		add(&m.Scopes, c.Scopes...)
		if c.Public {
			add(&m.TokenAuthMethods, "none")
			add(&m.RevocationAuthMethods, "none")
		} else {
			add(&m.TokenAuthMethods, "client_secret_basic", "client_secret_post")
			add(&m.IntrospectionAuthMethods, "client_secret_basic", "client_secret_post")
			add(&m.RevocationAuthMethods, "client_secret_basic", "client_secret_post")
		}
	}
	if !slices.Contains(m.Scopes, ScopeOpenID) {
		// OpenID discovery requires openid among the supported scopes.
		m.Scopes = append([]string{ScopeOpenID}, m.Scopes...)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("issuer: encoding metadata: %w", err)
	}
	return b, nil
}

func (i *Issuer) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	s := i.state.Load()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(s.discovery)
}

func (i *Issuer) handleKeys(w http.ResponseWriter, r *http.Request) {
	set, err := i.keys.jwks(r.Context())
	if err != nil {
		i.log.ErrorContext(r.Context(), "issuer: loading keys", "err", err)
		http.Error(w, "keys unavailable", http.StatusInternalServerError)
		return
	}
	b, err := json.Marshal(set)
	if err != nil {
		i.log.ErrorContext(r.Context(), "issuer: encoding keys", "err", err)
		http.Error(w, "keys unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short, so that relying parties see a rotation soon after it happens.
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(b)
}
