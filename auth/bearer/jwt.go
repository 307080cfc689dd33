package bearer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// backChannelLogoutEvent marks an OIDC Back-Channel Logout token: signed by
// the issuer for our client, but a notification, never a credential.
const backChannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// jwtClaims are the registered claims checked here beyond what go-oidc does.
type jwtClaims struct {
	Sub    string          `json:"sub"`
	Exp    json.RawMessage `json:"exp"`
	Nbf    *json.Number    `json:"nbf"`
	Events map[string]any  `json:"events"`
}

// verifyJWT checks signature (go-oidc, against the issuer's JWKS, allowed
// algorithms only), iss, exp and nbf with leeway, and the claims a bearer
// token needs; the audience is left to the caller, which knows the list.
func (v *Verifier) verifyJWT(ctx context.Context, d *discovered, raw string) (*entry, error) {
	tok, err := d.verifier.Verify(ctx, raw)
	if err != nil {
		var expired *oidc.TokenExpiredError
		switch {
		case errors.As(err, &expired) && expired.Expiry.IsZero():
			return nil, invalid("exp is missing")
		case errors.As(err, &expired):
			return nil, invalid("expired at %s (leeway %s)", expired.Expiry.UTC().Format(time.RFC3339), v.leeway)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: %w", invalid("%v", err), ctx.Err())
		}
		return nil, invalid("%v", err)
	}
	// go-oidc lets Google's scheme-less issuer through; we want it exact.
	if tok.Issuer != v.issuer {
		return nil, invalid("iss %q is not %q", tok.Issuer, v.issuer)
	}
	var rc jwtClaims
	if err := tok.Claims(&rc); err != nil {
		return nil, invalid("claims: %v", err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, invalid("claims: %v", err)
	}
	if len(rc.Exp) == 0 || bytes.Equal(rc.Exp, []byte("null")) {
		return nil, invalid("exp is missing")
	}
	now := v.now()
	if rc.Nbf != nil {
		f, err := rc.Nbf.Float64()
		if err != nil {
			return nil, invalid("nbf %q is not a number", rc.Nbf.String())
		}
		if nbf := time.Unix(int64(f), 0); now.Add(v.leeway).Before(nbf) {
			return nil, invalid("not valid before %s (leeway %s)", nbf.UTC().Format(time.RFC3339), v.leeway)
		}
	}
	if rc.Sub == "" || tok.Subject == "" {
		return nil, invalid("sub is missing")
	}
	if _, ok := rc.Events[backChannelLogoutEvent]; ok {
		return nil, invalid("a logout token is not a credential")
	}
	if len(tok.Audience) == 0 {
		return nil, invalid("aud is missing")
	}
	until := earliest(tok.Expiry, now.Add(maxJWTCacheLife))
	if until.Before(now) {
		until = now // accepted within leeway: use it, but never cache it
	}
	return &entry{
		identity:  v.identity(claims, tok.Issuer, tok.Subject, tok.Expiry),
		audiences: slices.Clone(tok.Audience),
		until:     until,
	}, nil
}

// errThrottled is what the JWKS client answers instead of downloading the
// key set again too soon; go-oidc then keeps the keys it has.
var errThrottled = errors.New("bearer: JWKS was fetched less than 5s ago")

// throttle is the JWKS client's transport: at most one request per
// interval, so that tokens with made-up kids or bad signatures (each of
// which makes go-oidc refetch) cannot turn into a flood at the issuer.
type throttle struct {
	base  http.RoundTripper
	now   func() time.Time
	every time.Duration

	mu   sync.Mutex
	last time.Time
}

// RoundTrip implements http.RoundTripper.
func (t *throttle) RoundTrip(req *http.Request) (*http.Response, error) {
	now := t.now()
	t.mu.Lock()
	if !t.last.IsZero() && now.Sub(t.last) < t.every && !now.Before(t.last) {
		t.mu.Unlock()
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, errThrottled
	}
	t.last = now
	t.mu.Unlock()
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(req)
}

// earliest returns the earlier of a and b.
func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
