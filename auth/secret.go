package auth

import "crypto/subtle"

// Secret holds a credential (client secret, session key, token). Its String,
// GoString and marshalled forms are "[redacted]" so that %v, %#v, JSON and
// YAML output can never leak the value; call Reveal where the value is
// really needed.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret value itself.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether no secret is set.
func (s Secret) IsZero() bool { return s == "" }

// String returns "[redacted]" (or "" when unset, so "is it set?" stays visible).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString makes %#v redact too.
func (s Secret) GoString() string { return `auth.Secret("` + s.String() + `")` }

// MarshalText redacts the value in JSON, YAML and every other text encoding.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText accepts the value as written in config.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// Equal compares two secrets in constant time (for equal lengths).
func (s Secret) Equal(other string) bool {
	return subtle.ConstantTimeCompare([]byte(s), []byte(other)) == 1
}
