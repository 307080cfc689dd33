package session

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

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

// HKDF info strings: one secret gives independent keys for the AEAD of
// the current sealed form and the MAC and cipher of the legacy one.
const (
	infoAEAD  = "portcullis session aes-256-gcm v2"
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

// Sealed forms. Version 2, written now: sealedV2Prefix followed by the
// unpadded URL base64 of a 12-byte random nonce and the AES-256-GCM
// ciphertext and tag of the payload, with the name it is sealed for (the
// cookie name, or the redis key) as additional data, so a value moved to
// another name does not open. It replaced securecookie's form (AES-CTR,
// HMAC-SHA256 over a second base64 layer), which made every cookie a
// third larger and a cache miss cost two base64 passes and an HMAC (over
// 5 µs for a 2 KB session); values in that form, sealed by earlier
// releases, still open (see legacyOpener), so an upgrade signs nobody out.
// '.' is not in the base64 alphabet, so the two forms cannot be confused.
const (
	sealedV2Prefix = "2."
	gcmNonceLen    = 12
	gcmTagLen      = 16
	aadPrefix      = "portcullis session v2|"
)

// keyring seals with the first secret's key and opens with any.
type keyring struct {
	aeads  []cipher.AEAD   // in the order of the secrets, current first
	legacy []*legacyOpener // the same secrets' keys for the securecookie form
}

func newKeyring(secrets []auth.Secret) (*keyring, error) {
	k := &keyring{}
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
		var keys [3][]byte
		for j, info := range []string{infoAEAD, infoHash, infoBlock} {
			if keys[j], err = hkdf.Key(sha256.New, raw, nil, info, 32); err != nil {
				return nil, fmt.Errorf("session: derive keys: %w", err)
			}
		}
		block, err := aes.NewCipher(keys[0])
		if err != nil {
			return nil, fmt.Errorf("session: derive keys: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("session: derive keys: %w", err)
		}
		lo, err := newLegacyOpener(keys[1], keys[2])
		if err != nil {
			return nil, fmt.Errorf("session: derive keys: %w", err)
		}
		k.aeads = append(k.aeads, aead)
		k.legacy = append(k.legacy, lo)
	}
	if len(k.aeads) == 0 {
		return nil, errors.New("session: no secret configured " + secretHint)
	}
	return k, nil
}

// seal encrypts and authenticates b for name with the current key.
func (k *keyring) seal(name string, b []byte) (string, error) {
	enc := base64.RawURLEncoding
	raw := make([]byte, gcmNonceLen, gcmNonceLen+len(b)+gcmTagLen)
	rand.Read(raw) // never fails (Go ≥ 1.24 crashes the program instead)
	raw = k.aeads[0].Seal(raw, raw[:gcmNonceLen], b, []byte(aadPrefix+name))
	out := make([]byte, len(sealedV2Prefix)+enc.EncodedLen(len(raw)))
	copy(out, sealedV2Prefix)
	enc.Encode(out[len(sealedV2Prefix):], raw)
	if len(out) > maxSealedLen {
		return "", fmt.Errorf("session: seal: %d bytes sealed, more than %d", len(out), maxSealedLen)
	}
	return string(out), nil
}

// open reverses seal with any key in rotation (and opens the securecookie
// form of earlier releases) and returns a copy of the plaintext.
func (k *keyring) open(name, value string) ([]byte, error) {
	var b []byte
	err := k.openParts(name, []string{value}, func(p []byte) error {
		b = bytes.Clone(p)
		return nil
	})
	return b, err
}

// openData opens a session's sealed value, given as its parts, and
// decodes the Data straight from the scratch plaintext.
func (k *keyring) openData(name string, parts []string) (*Data, error) {
	var d *Data
	err := k.openParts(name, parts, func(p []byte) error {
		var err error
		d, err = decodeData(p)
		return err
	})
	return d, err
}

// openParts opens the sealed value made of parts (joined in order) for
// name and calls use with the plaintext, which is pooled scratch memory:
// use must copy what it keeps. Errors never contain the value.
func (k *keyring) openParts(name string, parts []string, use func([]byte) error) error {
	total := 0
	for _, p := range parts {
		total += len(p)
	}
	if total == 0 {
		return errors.New("empty value")
	}
	if total > maxSealedLen {
		return errors.New("value of " + strconv.Itoa(total) + " bytes is too long")
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	if !strings.HasPrefix(parts[0], sealedV2Prefix) {
		return openLegacy(k.legacy, name, sc.join(parts, 0), sc, use)
	}
	text := sc.join(parts, len(sealedV2Prefix))
	// Strict, and no line breaks (which base64 skips even then): exactly
	// one string is the sealed form of a given ciphertext.
	if bytes.ContainsAny(text, "\r\n") {
		return errors.New("not base64")
	}
	enc := base64.RawURLEncoding.Strict()
	aadLen := len(aadPrefix) + len(name)
	// Decryption needs room of its own: a failed Open clears its output,
	// and the ciphertext must survive for the next key in rotation.
	decLen := enc.DecodedLen(len(text))
	buf := sc.grow(aadLen + 2*decLen)
	aad := append(buf[:0], aadPrefix...)
	aad = append(aad, name...)
	raw := buf[aadLen : aadLen+decLen]
	out := buf[aadLen+decLen:]
	n, err := enc.Decode(raw, text)
	if err != nil {
		return errors.New("not base64")
	}
	raw = raw[:n]
	if len(raw) < gcmNonceLen+gcmTagLen {
		return errors.New("too short")
	}
	nonce, sealed := raw[:gcmNonceLen], raw[gcmNonceLen:]
	for _, aead := range k.aeads {
		if plain, err := aead.Open(out[:0], nonce, sealed, aad); err == nil {
			return use(plain)
		}
	}
	return errMacInvalid
}

// scratch is the pooled working memory of one open: the joined sealed
// value, and its decodings in buf, so that opening allocates nothing of
// its size.
type scratch struct {
	text []byte
	buf  []byte
	sum  [sha256.Size]byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// join copies parts, in order and without the first skip bytes of the
// first, into s.text and returns it.
func (s *scratch) join(parts []string, skip int) []byte {
	t := s.text[:0]
	for i, p := range parts {
		if i == 0 {
			p = p[skip:]
		}
		t = append(t, p...)
	}
	s.text = t
	return t
}

// grow returns s.buf with length n, reallocated only when too small.
func (s *scratch) grow(n int) []byte {
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	return s.buf[:n]
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
