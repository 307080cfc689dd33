package session

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth"
)

// fullData sets every field of Data and of the stored part of its
// Identity to a distinct non-zero value, by reflection, so a field added
// later and forgotten by the binary form fails TestWireRoundTrip.
func fullData(t testing.TB) *Data {
	t.Helper()
	d := &Data{}
	n := 0
	var fill func(v reflect.Value, path string)
	fill = func(v reflect.Value, path string) {
		n++
		switch v.Kind() {
		case reflect.String:
			v.SetString(strings.Repeat(string(rune('a'+n%26)), n) + "-" + path)
		case reflect.Bool:
			v.SetBool(true)
		case reflect.Int:
			v.SetInt(int64(n))
		case reflect.Slice:
			v.Set(reflect.ValueOf([]string{"g1-" + path, "", "g3 with spaces,;|"}))
		case reflect.Struct:
			if v.Type() == reflect.TypeFor[time.Time]() {
				v.Set(reflect.ValueOf(time.Unix(1_900_000_000+int64(n)*1000, 0)))
				return
			}
			for i := range v.NumField() {
				f := v.Type().Field(i)
				if f.Tag.Get("json") == "-" {
					continue // not stored: Load fills Method and the tokens
				}
				fill(v.Field(i), path+"."+f.Name)
			}
		default:
			t.Fatalf("%s: kind %s: teach fullData (and the wire form) about it", path, v.Kind())
		}
	}
	fill(reflect.ValueOf(d).Elem(), "Data")
	d.Identity.Expiry = time.Unix(1_900_000_123, 456_789_000)
	return d
}

func TestWireRoundTrip(t *testing.T) {
	for _, d := range []*Data{fullData(t), {}, {Identity: auth.Identity{User: "u", Groups: []string{}}}} {
		b, err := encodeData(d)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != wireV1 {
			t.Fatalf("first byte %#x, want version %d", b[0], wireV1)
		}
		got, err := decodeData(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Identity.Groups) == 0 {
			d.Identity.Groups = nil // an empty list decodes as none
		}
		if !dataEqual(got, d) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", *got, *d)
		}
	}
}

// dataEqual compares times by instant: decoding gives local times.
func dataEqual(a, b *Data) bool {
	norm := func(d *Data) Data {
		c := *d
		for _, p := range []*time.Time{&c.Identity.Expiry, &c.AccessExpiry, &c.CreatedAt, &c.ExpiresAt} {
			if !p.IsZero() {
				*p = p.UTC()
			}
		}
		return c
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// TestWireLegacyJSON: sessions sealed as JSON by earlier releases still
// decode, field for field.
func TestWireLegacyJSON(t *testing.T) {
	d := fullData(t)
	b, err := json.Marshal(wireData{Identity: d.Identity, IDToken: d.IDToken, AccessToken: d.AccessToken,
		RefreshToken: d.RefreshToken, AccessExpiry: unix(d.AccessExpiry), CreatedAt: unix(d.CreatedAt), ExpiresAt: unix(d.ExpiresAt)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeData(b)
	if err != nil {
		t.Fatal(err)
	}
	if !dataEqual(got, d) {
		t.Fatalf("legacy JSON:\n got %#v\nwant %#v", *got, *d)
	}
}

// TestWireRejects: every strict prefix of a valid encoding, trailing
// bytes, unknown versions and flags, and impossible counts are refused.
func TestWireRejects(t *testing.T) {
	b, _ := encodeData(fullData(t))
	for i := range len(b) {
		if _, err := decodeData(b[:i]); err == nil {
			t.Fatalf("prefix of %d of %d bytes decoded", i, len(b))
		}
	}
	bad := map[string][]byte{
		"trailing byte":    append(append([]byte{}, b...), 0),
		"version 2":        append([]byte{2}, b[1:]...),
		"unknown flag":     mustEncode(t, &Data{}, func(w []byte) []byte { w[1+9+1] = 0x80; return w }),
		"huge group count": append([]byte{wireV1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"overlong varint":  append([]byte{wireV1}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02),
		"bad nanoseconds": mustEncode(t, &Data{}, func(w []byte) []byte {
			return append(append(w[:1+9+1], flagExpiry, 2), 0x80, 0x94, 0xeb, 0xdc, 0x03, 0, 0, 0)
		}),
	}
	for name, w := range bad {
		if _, err := decodeData(w); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func mustEncode(t *testing.T, d *Data, edit func([]byte) []byte) []byte {
	t.Helper()
	b, err := encodeData(d)
	if err != nil {
		t.Fatal(err)
	}
	return edit(b)
}

// FuzzDecodeData: no input panics, and whatever decodes encodes back to
// something that decodes to the same Data.
func FuzzDecodeData(f *testing.F) {
	b, _ := encodeData(fullData(f))
	f.Add(b)
	e, _ := encodeData(&Data{})
	f.Add(e)
	f.Add([]byte(`{"u":{"sub":"x"},"c":1,"e":2}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := decodeData(in)
		if err != nil {
			return
		}
		again, err := encodeData(d)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := decodeData(again)
		if err != nil || !dataEqual(d, d2) {
			t.Fatalf("re-encoding changed the data: %v", err)
		}
	})
}
