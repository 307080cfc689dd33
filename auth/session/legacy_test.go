package session

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/securecookie"

	"github.com/portcullis-proxy/portcullis/auth"
)

// testKeyring returns a keyring of n secrets and securecookie codecs with
// the same secrets' legacy keys, configured as earlier releases sealed.
func testKeyring(t testing.TB, n int) (*keyring, []securecookie.Codec) {
	t.Helper()
	var secrets []auth.Secret
	for i := range n {
		secrets = append(secrets, auth.Secret(secret(byte('a'+i), 32)))
	}
	k, err := newKeyring(secrets)
	if err != nil {
		t.Fatal(err)
	}
	var codecs []securecookie.Codec
	for _, s := range secrets {
		codecs = append(codecs, legacySealer(t, s))
	}
	return k, codecs
}

// legacySealer is the securecookie codec earlier releases sealed with.
func legacySealer(t testing.TB, s auth.Secret) *securecookie.SecureCookie {
	t.Helper()
	raw, err := decodeSecret(s.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	hashKey, _ := hkdf.Key(sha256.New, raw, nil, infoHash, 32)
	blockKey, _ := hkdf.Key(sha256.New, raw, nil, infoBlock, 32)
	sc := securecookie.New(hashKey, blockKey)
	sc.MaxAge(0)
	sc.MaxLength(maxSealedLen)
	sc.SetSerializer(securecookie.NopEncoder{})
	return sc
}

// referenceOpen is securecookie's own DecodeMulti.
func referenceOpen(codecs []securecookie.Codec, name, value string) ([]byte, bool) {
	if value == "" || len(value) > maxSealedLen {
		return nil, false
	}
	var b []byte
	if err := securecookie.DecodeMulti(name, value, &b, codecs...); err != nil {
		return nil, false
	}
	return b, true
}

// TestLegacyMatchesSecurecookie: what securecookie seals opens with every
// key in rotation, and for thousands of damaged values our opener accepts
// exactly what securecookie's DecodeMulti accepts, with the same plaintext.
func TestLegacyMatchesSecurecookie(t *testing.T) {
	k, codecs := testKeyring(t, 3)
	plain := []byte("\x01" + strings.Repeat("session bytes ", 40))
	var sealed []string
	for _, c := range codecs {
		v, err := c.Encode("_portcullis", bytes.Clone(plain)) // it encrypts in place
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, v)
		got, err := k.open("_portcullis", v)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("open of a value sealed with a key in rotation: %q, %v", got, err)
		}
		if _, err := k.open("_other", v); err == nil {
			t.Fatal("a value sealed for _portcullis opened as _other")
		}
	}
	foreign, err := legacySealer(t, auth.Secret(secret('z', 32))).Encode("_portcullis", bytes.Clone(plain))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.open("_portcullis", foreign); err == nil {
		t.Fatal("a value sealed with an unknown key opened")
	}

	rng := rand.New(rand.NewPCG(1, 2))
	check := func(v string) {
		t.Helper()
		want, wantOK := referenceOpen(codecs, "_portcullis", v)
		got, err := k.open("_portcullis", v)
		if (err == nil) != wantOK || !bytes.Equal(got, want) {
			t.Fatalf("value %.60q…: ours (%q, %v), securecookie (%q, %v)", v, got, err, want, wantOK)
		}
	}
	outer := base64.URLEncoding
	for _, v := range sealed {
		raw, _ := outer.DecodeString(v)
		parts := bytes.SplitN(raw, []byte("|"), 3)
		variants := []string{"", v[:len(v)-1], v + "=", v[:4], "====", strings.Repeat("A", maxSealedLen+4),
			v[:len(v)/2] + "\n" + v[len(v)/2:], v + v,
			outer.EncodeToString([]byte("1|2")), outer.EncodeToString([]byte("||")),
			outer.EncodeToString(append([]byte("+1|"), raw[len(parts[0])+1:]...)),
			outer.EncodeToString(append([]byte("9223372036854775808|"), raw[len(parts[0])+1:]...)),
			outer.EncodeToString(raw[:len(raw)-1])}
		for _, x := range variants {
			check(x)
		}
		for range 3000 {
			b := []byte(v)
			switch rng.IntN(4) {
			case 0: // flip a character of the base64
				b[rng.IntN(len(b))] = "ABCxyz019-_=|"[rng.IntN(13)]
			case 1: // damage the decoded value, then re-encode it
				d := bytes.Clone(raw)
				d[rng.IntN(len(d))] ^= byte(1 + rng.IntN(255))
				b = []byte(outer.EncodeToString(d))
			case 2: // truncate
				b = b[:rng.IntN(len(b))]
			case 3: // replace the date
				d := append([]byte(strings.Repeat("7", rng.IntN(22))+"|"), raw[len(parts[0])+1:]...)
				b = []byte(outer.EncodeToString(d))
			}
			check(string(b))
		}
	}
}

func TestValidTimestamp(t *testing.T) {
	for _, s := range []string{"0", "1", "+1", "-1", "1700000000", "9223372036854775807", "-9223372036854775808",
		"", "+", "-", "1_000", "0x10", " 1", "1 ", "9223372036854775808", "-9223372036854775809", "99999999999999999999", "١"} {
		_, err := parseInt10(s)
		if got := validTimestamp([]byte(s)); got != (err == nil) {
			t.Errorf("validTimestamp(%q) = %v, strconv.ParseInt says %v", s, got, err)
		}
	}
}

func parseInt10(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }
