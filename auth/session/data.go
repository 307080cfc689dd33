package session

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
)

// Data is what a signed-in session holds. It lives in cookies, so keep it
// small: the wire form is a compact binary encoding with Unix seconds.
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

// wireData is the JSON form of Data that earlier releases sealed (read,
// never written). Times are Unix seconds.
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

// Wire forms of a sealed Data. The first byte tells them apart: version 1
// is the compact binary form below, written since it replaced JSON
// (decoding 2 KB of JSON cost ~15 µs and dozens of allocations on every
// cache miss); '{' is the JSON form of earlier releases, still read so an
// upgrade signs nobody out.
const wireV1 = 1

// Binary form, version 1: the version byte, then, in this order, the
// strings iss, sub, user, email, preferred_username, name, id_token,
// access_token, refresh_token (each a uvarint length and its bytes), a
// uvarint count of groups and each group as a string, a flags byte (bit 0
// email_verified, bit 1 identity expiry present), the identity expiry as a
// varint of Unix seconds and a uvarint of nanoseconds (only with bit 1),
// then access expiry, creation and expiry as varints of Unix seconds (0 for
// none). Nothing may follow.
const (
	flagEmailVerified = 1 << iota
	flagExpiry
)

func encodeData(d *Data) ([]byte, error) {
	id := &d.Identity
	strs := [...]string{id.Issuer, id.Subject, id.User, id.Email, id.PreferredUsername, id.Name,
		d.IDToken, d.AccessToken, d.RefreshToken}
	size := 1 + 3*binary.MaxVarintLen64 + 2*binary.MaxVarintLen64 + 2 + binary.MaxVarintLen64
	for _, x := range strs {
		size += binary.MaxVarintLen64 + len(x)
	}
	for _, g := range id.Groups {
		size += binary.MaxVarintLen64 + len(g)
	}
	b := make([]byte, 1, size)
	b[0] = wireV1
	for _, x := range strs {
		b = appendString(b, x)
	}
	b = binary.AppendUvarint(b, uint64(len(id.Groups)))
	for _, g := range id.Groups {
		b = appendString(b, g)
	}
	var flags byte
	if id.EmailVerified {
		flags |= flagEmailVerified
	}
	if !id.Expiry.IsZero() {
		flags |= flagExpiry
	}
	b = append(b, flags)
	if !id.Expiry.IsZero() {
		b = binary.AppendVarint(b, id.Expiry.Unix())
		b = binary.AppendUvarint(b, uint64(id.Expiry.Nanosecond()))
	}
	b = binary.AppendVarint(b, unix(d.AccessExpiry))
	b = binary.AppendVarint(b, unix(d.CreatedAt))
	b = binary.AppendVarint(b, unix(d.ExpiresAt))
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeData decodes either wire form. b may be scratch memory: the Data
// keeps nothing of it (the binary form is copied into one string that
// every field is a piece of).
func decodeData(b []byte) (*Data, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("session: decode: empty")
	}
	switch b[0] {
	case wireV1:
		d, err := decodeBinary(string(b[1:]))
		if err != nil {
			return nil, fmt.Errorf("session: decode: %w", err)
		}
		return d, nil
	case '{':
		return decodeJSON(b)
	}
	return nil, fmt.Errorf("session: decode: unknown format %#x", b[0])
}

// errTruncated: the binary form ends before its last field.
var errTruncated = errors.New("truncated")

// wireReader reads the binary form; the first error sticks.
type wireReader struct {
	s   string
	err error
}

func (r *wireReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	var x uint64
	for i := 0; i < len(r.s) && i < binary.MaxVarintLen64; i++ {
		c := r.s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			r.s = r.s[i+1:]
			return x | uint64(c)<<(7*i)
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	r.err = errTruncated
	return 0
}

func (r *wireReader) varint() int64 {
	u := r.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

func (r *wireReader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.s)) {
		r.err = errTruncated
		return ""
	}
	v := r.s[:n]
	r.s = r.s[n:]
	return v
}

func (r *wireReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.s) == 0 {
		r.err = errTruncated
		return 0
	}
	c := r.s[0]
	r.s = r.s[1:]
	return c
}

func decodeBinary(s string) (*Data, error) {
	r := wireReader{s: s}
	d := &Data{}
	id := &d.Identity
	for _, p := range [...]*string{&id.Issuer, &id.Subject, &id.User, &id.Email, &id.PreferredUsername, &id.Name,
		&d.IDToken, &d.AccessToken, &d.RefreshToken} {
		*p = r.str()
	}
	// Each group takes at least its length byte, which bounds the count
	// before anything is allocated for it.
	if n := r.uvarint(); n > 0 && r.err == nil {
		if n > uint64(len(r.s)) {
			return nil, errTruncated
		}
		id.Groups = make([]string, n)
		for i := range id.Groups {
			id.Groups[i] = r.str()
		}
	}
	flags := r.byte()
	if flags&^(flagEmailVerified|flagExpiry) != 0 {
		return nil, fmt.Errorf("unknown flags %#x", flags)
	}
	id.EmailVerified = flags&flagEmailVerified != 0
	if flags&flagExpiry != 0 {
		sec, nsec := r.varint(), r.uvarint()
		if nsec >= 1e9 {
			return nil, errors.New("bad expiry")
		}
		id.Expiry = time.Unix(sec, int64(nsec))
	}
	d.AccessExpiry = fromUnix(r.varint())
	d.CreatedAt = fromUnix(r.varint())
	d.ExpiresAt = fromUnix(r.varint())
	if r.err != nil {
		return nil, r.err
	}
	if len(r.s) != 0 {
		return nil, fmt.Errorf("%d bytes after the last field", len(r.s))
	}
	return d, nil
}

// decodeJSON reads the JSON form of earlier releases.
func decodeJSON(b []byte) (*Data, error) {
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
