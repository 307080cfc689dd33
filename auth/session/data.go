package session

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
)

// Data is what a signed-in session holds. It lives in cookies, so keep it
// small: the wire form uses short JSON names and Unix seconds.
//
// Data never prints its tokens: String, GoString and LogValue leave them
// out. Do not marshal it with encoding/json yourself.
type Data struct {
	// Identity is who signed in. Its AccessToken and IDToken are not stored
	// (json:"-"); Load fills them from the fields below.
	Identity auth.Identity
	// IDToken is the raw ID token, kept for forwarding and id_token_hint.
	IDToken string
	// AccessToken is the OAuth access token.
	AccessToken string
	// RefreshToken is the OAuth refresh token, when the issuer sent one.
	RefreshToken string
	// AccessExpiry is when AccessToken expires; zero means unknown.
	AccessExpiry time.Time
	// CreatedAt is when the session began; Save sets it when zero.
	CreatedAt time.Time
	// ExpiresAt is when the session ends; Save sets it when zero to
	// CreatedAt+Lifetime (and never later than that); Load refuses a
	// session past it.
	ExpiresAt time.Time
}

// wireData is the sealed form of Data. Times are Unix seconds: RFC 3339
// strings would cost ~25 bytes each in every request's cookies.
type wireData struct {
	Identity     auth.Identity `json:"u"`
	IDToken      string        `json:"it,omitempty"`
	AccessToken  string        `json:"at,omitempty"`
	RefreshToken string        `json:"rt,omitempty"`
	AccessExpiry int64         `json:"ae,omitempty"`
	CreatedAt    int64         `json:"c"`
	ExpiresAt    int64         `json:"e"`
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

func encodeData(d *Data) ([]byte, error) {
	b, err := json.Marshal(wireData{
		Identity:     d.Identity,
		IDToken:      d.IDToken,
		AccessToken:  d.AccessToken,
		RefreshToken: d.RefreshToken,
		AccessExpiry: unix(d.AccessExpiry),
		CreatedAt:    unix(d.CreatedAt),
		ExpiresAt:    unix(d.ExpiresAt),
	})
	if err != nil {
		return nil, fmt.Errorf("session: encode: %w", err)
	}
	return b, nil
}

func decodeData(b []byte) (*Data, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("session: decode: empty")
	}
	var w wireData
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("session: decode: %w", err)
	}
	return &Data{
		Identity:     w.Identity,
		IDToken:      w.IDToken,
		AccessToken:  w.AccessToken,
		RefreshToken: w.RefreshToken,
		AccessExpiry: fromUnix(w.AccessExpiry),
		CreatedAt:    fromUnix(w.CreatedAt),
		ExpiresAt:    fromUnix(w.ExpiresAt),
	}, nil
}

// String describes the session without its tokens.
func (d Data) String() string {
	return fmt.Sprintf("session.Data{iss=%q sub=%q user=%q created=%s expires=%s tokens=[redacted]}",
		d.Identity.Issuer, d.Identity.Subject, d.Identity.User,
		d.CreatedAt.UTC().Format(time.RFC3339), d.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString makes %#v redact the tokens too.
func (d Data) GoString() string { return d.String() }

// LogValue makes slog print the session without its tokens.
func (d Data) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("iss", d.Identity.Issuer),
		slog.String("sub", d.Identity.Subject),
		slog.Time("expires", d.ExpiresAt),
	)
}
