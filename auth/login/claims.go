package login

import (
	"strings"

	"github.com/portcullis-proxy/portcullis/auth"
)

// IdentityFromClaims maps verified token claims to an Identity using
// login.claims. The user claim falls back to sub; groups may be a single
// string or a list (non-string members are ignored); email_verified may be a
// bool or the string "true". Expiry, Method and the tokens are left for the
// caller. The claims MUST come from a verified token. They are only read,
// and the Identity shares no slice or map with them (groups are copied), so
// claims shared with a cache may be passed as they are.
func (c *Client) IdentityFromClaims(claims map[string]any) auth.Identity {
	id := auth.Identity{
		Issuer:            stringClaim(claims, "iss"),
		Subject:           stringClaim(claims, "sub"),
		User:              stringClaim(claims, c.claims.User),
		Email:             stringClaim(claims, c.claims.Email),
		Groups:            listClaim(claims, c.claims.Groups),
		PreferredUsername: stringClaim(claims, "preferred_username"),
		Name:              stringClaim(claims, "name"),
	}
	if id.User == "" {
		id.User = id.Subject
	}
	switch v := claims["email_verified"].(type) {
	case bool:
		id.EmailVerified = v
	case string:
		id.EmailVerified = strings.EqualFold(v, "true")
	case nil:
		id.EmailVerified = c.trustUnverifiedEmail && id.Email != ""
	}
	if c.claims.User == c.claims.Email && !id.EmailVerified {
		// claims.user names the email claim: an address the issuer did not
		// verify must not become the user name either.
		id.User = id.Subject
	}
	return id
}

// lookupClaim finds a claim by its exact name, or else by a dotted path into
// nested objects (Keycloak's "realm_access.roles").
func lookupClaim(claims map[string]any, name string) (any, bool) {
	if name == "" {
		return nil, false
	}
	if v, ok := claims[name]; ok {
		return v, v != nil
	}
	if !strings.Contains(name, ".") {
		return nil, false
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

func stringClaim(claims map[string]any, name string) string {
	v, _ := lookupClaim(claims, name)
	s, _ := v.(string)
	return s
}

func listClaim(claims map[string]any, name string) []string {
	v, _ := lookupClaim(claims, name)
	switch v := v.(type) {
	case string:
		if v == "" {
			return nil
		}
		return []string{v}
	case []string:
		return append([]string(nil), v...)
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
