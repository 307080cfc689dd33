package session

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"hash"
	"sync"
)

// legacyOpener verifies and decrypts values in the sealed form of earlier
// releases, made by gorilla/securecookie (HMAC-SHA256 over
// "name|date|value", AES-256-CTR, URL base64 twice), for one key pair: the
// same checks in the same order as securecookie.Decode with MaxAge(0) and
// NopEncoder, in pooled scratch memory rather than securecookie's dozen
// allocations. A test opens what securecookie seals and refuses what it
// refuses.
type legacyOpener struct {
	hashKey []byte
	block   cipher.Block
	macs    sync.Pool // of hash.Hash (HMAC-SHA256 with hashKey)
}

func newLegacyOpener(hashKey, blockKey []byte) (*legacyOpener, error) {
	block, err := aes.NewCipher(blockKey)
	if err != nil {
		return nil, err
	}
	o := &legacyOpener{hashKey: hashKey, block: block}
	o.macs.New = func() any { return hmac.New(sha256.New, o.hashKey) }
	return o, nil
}

// errMacInvalid: no key in rotation made this value's MAC.
var errMacInvalid = errors.New("tampered with or sealed with an unknown key")

// openLegacy opens raw, a whole value in securecookie's form, for name
// with the first opener whose MAC matches, and calls use with the
// plaintext (scratch memory of sc, which raw may be too).
func openLegacy(openers []*legacyOpener, name string, raw []byte, sc *scratch, use func([]byte) error) error {
	enc := base64.URLEncoding
	outerLen := enc.DecodedLen(len(raw))
	prefix := len(name) + 1
	buf := sc.grow(prefix + outerLen + enc.DecodedLen(outerLen))
	macIn := buf[:prefix+outerLen]
	copy(macIn, name)
	macIn[prefix-1] = '|'
	n, err := enc.Decode(macIn[prefix:], raw)
	if err != nil {
		return errors.New("not base64")
	}
	macIn = macIn[:prefix+n]
	// "date|value|mac": the MAC covers "name|date|value".
	decoded := macIn[prefix:]
	i := bytes.IndexByte(decoded, '|')
	if i < 0 {
		return errMacInvalid
	}
	j := bytes.IndexByte(decoded[i+1:], '|')
	if j < 0 {
		return errMacInvalid
	}
	j += i + 1
	date, value, mac := decoded[:i], decoded[i+1:j], decoded[j+1:]
	var o *legacyOpener
	for _, cand := range openers {
		if cand.verify(macIn[:prefix+j], mac, &sc.sum) {
			o = cand
			break
		}
	}
	if o == nil {
		return errMacInvalid
	}
	if !validTimestamp(date) {
		return errors.New("invalid timestamp")
	}
	inner := buf[prefix+outerLen:]
	n, err = enc.Decode(inner, value)
	if err != nil {
		return errors.New("not base64 inside")
	}
	inner = inner[:n]
	bs := o.block.BlockSize()
	if len(inner) <= bs {
		return errors.New("too short to decrypt")
	}
	plain := inner[bs:]
	cipher.NewCTR(o.block, inner[:bs]).XORKeyStream(plain, plain)
	return use(plain)
}

// verify reports in constant time whether mac is the HMAC of msg.
func (o *legacyOpener) verify(msg, mac []byte, sum *[sha256.Size]byte) bool {
	h := o.macs.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	got := h.Sum(sum[:0])
	o.macs.Put(h)
	return len(mac) == len(got) && subtle.ConstantTimeCompare(mac, got) == 1
}

// validTimestamp accepts exactly what strconv.ParseInt(s, 10, 64)
// accepts, as securecookie does for the sealing date, without the string
// conversion (and its allocation) that ParseInt needs.
func validTimestamp(b []byte) bool {
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	limit := uint64(1<<63 - 1)
	if neg {
		limit++
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
		d := uint64(c - '0')
		if n > (limit-d)/10 {
			return false
		}
		n = n*10 + d
	}
	return true
}
