package bearer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
)

// maxIntrospectionBody bounds what is read of an introspection answer.
const maxIntrospectionBody = 1 << 20

// introspect asks the issuer about an opaque token (RFC 7662) and checks
// the answer: active, not expired, our issuer, and an audience (or, with
// none, our client id). Refresh tokens are refused even when active.
func (v *Verifier) introspect(ctx context.Context, d *discovered, raw string) (*entry, error) {
	if d.introspection == "" {
		return nil, invalid("not a JWT, and the issuer has no introspection endpoint")
	}
	if v.clientID == "" || v.clientSecret.IsZero() {
		return nil, invalid("not a JWT, and no client credentials to introspect it with")
	}
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.introspection, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, v.unavailable(ctx, "building the introspection request", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: both parts are form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(v.clientID), url.QueryEscape(v.clientSecret.Reveal()))
	resp, err := v.http.Do(req)
	if err != nil {
		return nil, v.unavailable(ctx, "introspection request", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBody+1))
	if err != nil {
		return nil, v.unavailable(ctx, "reading the introspection answer", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, v.unavailable(ctx, "introspection", fmt.Errorf("status %s", resp.Status))
	}
	if len(body) > maxIntrospectionBody {
		return nil, v.unavailable(ctx, "introspection", fmt.Errorf("answer is larger than %d bytes", maxIntrospectionBody))
	}
	var claims map[string]any
	if err := json.Unmarshal(body, &claims); err != nil || claims == nil {
		return nil, v.unavailable(ctx, "introspection", fmt.Errorf("answer is not a JSON object: %v", err))
	}
	return v.checkIntrospection(claims)
}

// checkIntrospection turns an introspection answer into a cache entry.
func (v *Verifier) checkIntrospection(claims map[string]any) (*entry, error) {
	if active, ok := claims["active"].(bool); !ok || !active {
		return nil, invalid("the issuer says the token is not active")
	}
	if kind := refreshMarker(claims); kind != "" {
		return nil, invalid("the issuer says this is a refresh token (%s), not an access token", kind)
	}
	now := v.now()
	expF, ok := claims["exp"].(float64)
	if !ok {
		return nil, invalid("the introspection answer has no numeric exp")
	}
	exp := time.Unix(int64(expF), 0)
	if !exp.After(now) {
		return nil, invalid("expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if raw, present := claims["nbf"]; present {
		nbfF, ok := raw.(float64)
		if !ok {
			return nil, invalid("nbf is not a number")
		}
		if nbf := time.Unix(int64(nbfF), 0); now.Add(v.leeway).Before(nbf) {
			return nil, invalid("not valid before %s (leeway %s)", nbf.UTC().Format(time.RFC3339), v.leeway)
		}
	}
	iss := v.issuer
	if raw, present := claims["iss"]; present {
		s, ok := raw.(string)
		if !ok || s != v.issuer {
			return nil, invalid("iss %v is not %q", raw, v.issuer)
		}
	}
	e := &entry{until: earliest(exp, now.Add(v.cacheTTL))}
	if raw, present := claims["aud"]; present {
		switch a := raw.(type) {
		case string:
			e.audiences = []string{a}
		case []any:
			for _, x := range a {
				s, ok := x.(string)
				if !ok {
					return nil, invalid("aud %v is not a list of strings", raw)
				}
				e.audiences = append(e.audiences, s)
			}
		default:
			return nil, invalid("aud %v is not a string or a list", raw)
		}
		if len(e.audiences) == 0 {
			return nil, invalid("aud is empty")
		}
	} else {
		// Without aud, a token issued to this very client is meant for us
		// (RFC 7662 leaves aud optional; many issuers omit it).
		if cid, _ := claims["client_id"].(string); cid == "" || cid != v.clientID {
			return nil, invalid("no aud, and client_id %q is not ours", cid)
		}
		e.ownClient = true
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		sub, _ = claims["username"].(string)
	}
	if sub == "" {
		return nil, invalid("the introspection answer has neither sub nor username")
	}
	e.identity = v.identity(claims, iss, sub, exp)
	return e, nil
}

// refreshMarker returns the field that marks an introspected token as a
// refresh token, in the spellings issuers use: token_type (the built-in
// issuer, RFC 8693 style names), token_use (Ory Hydra), typ (Keycloak).
func refreshMarker(claims map[string]any) string {
	for _, k := range []string{"token_type", "token_use", "typ"} {
		s, _ := claims[k].(string)
		switch strings.ToLower(s) {
		case "refresh_token", "refresh", "urn:ietf:params:oauth:token-type:refresh_token":
			return k + "=" + s
		}
	}
	return ""
}

// unavailable reports a failure to ask the issuer: the token is refused,
// but the log should blame the issuer (or the request's end), not the caller.
func (v *Verifier) unavailable(ctx context.Context, what string, err error) error {
	if ctx.Err() == nil {
		v.log.WarnContext(ctx, "bearer: "+what+" failed", "issuer", v.issuer, "err", err)
	}
	return fmt.Errorf("%w: %w: %s: %w", auth.ErrInvalidToken, ErrUnavailable, what, err)
}
