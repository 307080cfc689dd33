package session

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
)

// TestSealV2: values open with every key in rotation, for their own name
// only; a changed character anywhere, a truncation, a foreign key or the
// wrong name never opens; and sealing leaves its input as it was.
func TestSealV2(t *testing.T) {
	k, _ := testKeyring(t, 3)
	plain := []byte("\x01" + strings.Repeat("session bytes ", 40))
	keep := bytes.Clone(plain)
	v, err := k.seal("_portcullis", plain)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, keep) {
		t.Fatal("seal modified its input")
	}
	if !strings.HasPrefix(v, sealedV2Prefix) || strings.ContainsAny(v, "=|+/") {
		t.Fatalf("sealed value %.20q…: want the %q prefix and unpadded URL base64", v, sealedV2Prefix)
	}
	if v2, _ := k.seal("_portcullis", plain); v2 == v {
		t.Fatal("two seals of the same bytes are equal: the nonce is not fresh")
	}
	if got, err := k.open("_portcullis", v); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q, %v", got, err)
	}
	if _, err := k.open("_portcullis_1", v); err == nil {
		t.Fatal("opened under another name")
	}
	// Rotation: a value sealed with an older secret (now second) opens.
	older, _ := newKeyring([]auth.Secret{auth.Secret(secret('b', 32))})
	ov, _ := older.seal("_portcullis", plain)
	if got, err := k.open("_portcullis", ov); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("value sealed with a key in rotation: %v", err)
	}
	stranger, _ := newKeyring([]auth.Secret{auth.Secret(secret('z', 32))})
	sv, _ := stranger.seal("_portcullis", plain)
	if _, err := k.open("_portcullis", sv); err == nil {
		t.Fatal("value sealed with an unknown key opened")
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
	for i := range len(v) {
		for _, c := range []byte{alphabet[i%len(alphabet)], alphabet[(i+7)%len(alphabet)]} {
			if c == v[i] {
				continue
			}
			bad := v[:i] + string(c) + v[i+1:]
			if _, err := k.open("_portcullis", bad); err == nil {
				t.Fatalf("changing byte %d to %q still opens", i, c)
			}
		}
	}
	for _, bad := range []string{"", sealedV2Prefix, v[:len(v)-1], v[:len(sealedV2Prefix)+20], v + "A", v + "=",
		v[len(sealedV2Prefix):], strings.Repeat("A", maxSealedLen+1), v[:40] + "\n" + v[40:], v[:40] + "\r" + v[40:]} {
		if _, err := k.open("_portcullis", bad); err == nil {
			t.Fatalf("%.30q… opened", bad)
		}
	}
}

// TestOpenParts: chunks open as the value they join to, in order only.
func TestOpenParts(t *testing.T) {
	k, _ := testKeyring(t, 1)
	plain := bytes.Repeat([]byte("z"), 3*chunkLen)
	v, err := k.seal("_portcullis", plain)
	if err != nil {
		t.Fatal(err)
	}
	parts := []string{v[:chunkLen], v[chunkLen : 2*chunkLen], v[2*chunkLen:]}
	var got []byte
	if err := k.openParts("_portcullis", parts, func(p []byte) error { got = bytes.Clone(p); return nil }); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("chunks: %v", err)
	}
	swapped := []string{parts[1], parts[0], parts[2]}
	if err := k.openParts("_portcullis", swapped, func([]byte) error { return nil }); err == nil {
		t.Fatal("chunks in the wrong order opened")
	}
}

// TestLoadLegacySession: a session cookie sealed by an earlier release
// (securecookie's form around the JSON wire form) still signs its browser
// in after the upgrade, and the next Save writes the current form.
func TestLoadLegacySession(t *testing.T) {
	s := auth.Secret(secret('a', 32))
	m, err := New(Config{Secrets: []auth.Secret{s}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	payload := `{"u":{"iss":"https://issuer.example","sub":"s-1","user":"alice","email":"a@example.com","email_verified":true,"groups":["g1","g2"]},"rt":"refresh","c":` +
		itoa(now.Add(-time.Hour).Unix()) + `,"e":` + itoa(now.Add(time.Hour).Unix()) + `}`
	v, err := legacySealer(t, s).Encode("_portcullis", []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: "_portcullis", Value: v})
	d, err := m.Load(r)
	if err != nil {
		t.Fatalf("legacy session: %v", err)
	}
	if d.Identity.User != "alice" || !d.Identity.EmailVerified || len(d.Identity.Groups) != 2 || d.RefreshToken != "refresh" {
		t.Fatalf("legacy session decoded as %+v", d.Identity)
	}
	rec := httptest.NewRecorder()
	if err := m.Save(rec, r, d); err != nil {
		t.Fatal(err)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == "_portcullis" && !strings.HasPrefix(c.Value, sealedV2Prefix) {
			t.Fatalf("re-saved in the old form: %.20q…", c.Value)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
