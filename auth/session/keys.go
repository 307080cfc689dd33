package session

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/portcullis-proxy/portcullis/auth"
)

// Cookie budget. Browsers keep at most 4096 bytes of name+value per cookie;
// chunkLen leaves room for the name, so a sealed value longer than that is
// split. maxChunks bounds what a client can make us join and decode.
const (
	chunkLen     = 3800
	maxChunks    = 12
	maxSealedLen = chunkLen * maxChunks
	secretLen    = 32
)

// HKDF info strings: one secret gives independent MAC and cipher keys.
const (
	infoHash  = "portcullis session hmac-sha256 v1"
	infoBlock = "portcullis session aes-256-ctr v1"
)

// decodeSecret accepts standard or URL base64, padded or not, of exactly
// 32 bytes. Its errors never contain the secret.
func decodeSecret(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64")
	}
	if len(b) != secretLen {
		return nil, fmt.Errorf("decodes to %d bytes, want %d", len(b), secretLen)
	}
	return b, nil
}

// readSecretsFile reads one secret per line; blank lines and # comments
// are skipped.
func readSecretsFile(path string) ([]auth.Secret, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("session: secrets_file: %w", err)
	}
	var out []auth.Secret
	sc := bufio.NewScanner(bytes.NewReader(raw))
	line := 0
	var errs []error
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if _, err := decodeSecret(s); err != nil {
			errs = append(errs, fmt.Errorf("session: secrets_file: %q line %d: %w %s", path, line, err, secretHint))
			continue
		}
		out = append(out, auth.Secret(s))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("session: secrets_file: %q: %w", path, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("session: secrets_file: %q: no secret in file %s", path, secretHint)
	}
	return out, nil
}

// keyring seals with the first secret's keys and opens with any.
type keyring struct {
	current securecookie.Codec
	all     []securecookie.Codec
}

func newKeyring(secrets []auth.Secret) (*keyring, error) {
	var pairs [][]byte
	seen := map[string]bool{}
	for i, s := range secrets {
		if s.IsZero() {
			continue
		}
		raw, err := decodeSecret(s.Reveal())
		if err != nil {
			return nil, fmt.Errorf("session: secrets[%d]: %w %s", i, err, secretHint)
		}
		if seen[string(raw)] {
			continue
		}
		seen[string(raw)] = true
		hashKey, err := hkdf.Key(sha256.New, raw, nil, infoHash, 32)
		if err != nil {
			return nil, fmt.Errorf("session: derive keys: %w", err)
		}
		blockKey, err := hkdf.Key(sha256.New, raw, nil, infoBlock, 32)
		if err != nil {
			return nil, fmt.Errorf("session: derive keys: %w", err)
		}
		pairs = append(pairs, hashKey, blockKey)
	}
	if len(pairs) == 0 {
		return nil, errors.New("session: no secret configured " + secretHint)
	}
	codecs := securecookie.CodecsFromPairs(pairs...)
	for _, c := range codecs {
		sc := c.(*securecookie.SecureCookie)
		// Age is checked against the injected clock from timestamps inside
		// the sealed value; securecookie's own check uses the wall clock.
		sc.MaxAge(0)
		sc.MaxLength(maxSealedLen)
		// We hand securecookie JSON bytes we encoded ourselves.
		sc.SetSerializer(securecookie.NopEncoder{})
	}
	return &keyring{current: codecs[0], all: codecs}, nil
}

// seal encrypts and authenticates b for name with the current key only:
// securecookie.EncodeMulti would fall back to an older key on error.
func (k *keyring) seal(name string, b []byte) (string, error) {
	s, err := k.current.Encode(name, b)
	if err != nil {
		return "", fmt.Errorf("session: seal: %w", err)
	}
	return s, nil
}

// open reverses seal with any key in rotation.
func (k *keyring) open(name, value string) ([]byte, error) {
	if value == "" {
		return nil, errors.New("empty value")
	}
	if len(value) > maxSealedLen {
		return nil, fmt.Errorf("value of %d bytes is too long", len(value))
	}
	var b []byte
	if err := securecookie.DecodeMulti(name, value, &b, k.all...); err != nil {
		return nil, errors.New("tampered with or sealed with an unknown key")
	}
	return b, nil
}

// envelope carries the sealing time of a Seal'ed value, so Open can apply
// maxAge against the injected clock.
type envelope struct {
	T int64 `json:"t"`
	V any   `json:"v"`
}

type openEnvelope struct {
	T int64           `json:"t"`
	V json.RawMessage `json:"v"`
}

// Seal encrypts and authenticates v (as JSON) for a cookie called name,
// with the current key. The result fits in one cookie, or Seal fails. It is
// for other packages' short-lived cookies, such as pending sign-ins.
func (m *Manager) Seal(name string, v any) (string, error) {
	payload, err := json.Marshal(envelope{T: m.now().Unix(), V: v})
	if err != nil {
		return "", fmt.Errorf("session: seal %q: %w", name, err)
	}
	s, err := m.keys.seal(name, payload)
	if err != nil {
		return "", err
	}
	if len(s) > chunkLen {
		return "", fmt.Errorf("session: seal %q: %d bytes, more than one cookie holds (%d)", name, len(s), chunkLen)
	}
	return s, nil
}

// Open reverses Seal: it authenticates and decrypts value (sealed for
// name, with any key in rotation), refuses it when older than maxAge (which
// must be positive) or dated in the future, and decodes it into v. Every
// error wraps ErrInvalid and none contains the value.
func (m *Manager) Open(name, value string, v any, maxAge time.Duration) error {
	if maxAge <= 0 {
		return fmt.Errorf("%w: open %q: maxAge %s is not positive", ErrInvalid, name, maxAge)
	}
	if len(value) > chunkLen {
		return fmt.Errorf("%w: open %q: %d bytes is longer than one cookie", ErrInvalid, name, len(value))
	}
	b, err := m.keys.open(name, value)
	if err != nil {
		return fmt.Errorf("%w: open %q: %v", ErrInvalid, name, err)
	}
	var env openEnvelope
	if err := json.Unmarshal(b, &env); err != nil || env.T == 0 {
		return fmt.Errorf("%w: open %q: malformed payload", ErrInvalid, name)
	}
	sealed := time.Unix(env.T, 0)
	now := m.now()
	if now.Sub(sealed) > maxAge {
		return fmt.Errorf("%w: open %q: expired", ErrInvalid, name)
	}
	if sealed.Sub(now) > time.Minute {
		return fmt.Errorf("%w: open %q: sealed in the future", ErrInvalid, name)
	}
	if err := json.Unmarshal(env.V, v); err != nil {
		return fmt.Errorf("%w: open %q: decode: %v", ErrInvalid, name, err)
	}
	return nil
}
