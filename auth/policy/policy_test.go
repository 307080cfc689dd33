package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/auth"
)

var checkTests = []struct {
	name  string
	cfg   Config
	id    auth.Identity
	allow bool
}{
	{"open allows anyone", Config{}, auth.Identity{User: "x"}, true},
	{"user match", Config{Users: []string{"alice"}}, auth.Identity{User: "alice"}, true},
	{"user mismatch", Config{Users: []string{"alice"}}, auth.Identity{User: "alicia"}, false},
	{"empty user never matches", Config{Users: []string{"alice"}}, auth.Identity{}, false},
	{"email case-insensitive", Config{Emails: []string{"Bob@Example.com"}}, auth.Identity{Email: "bob@EXAMPLE.com", EmailVerified: true}, true},
	{"email mismatch", Config{Emails: []string{"bob@example.com"}}, auth.Identity{Email: "bob@example.co", EmailVerified: true}, false},
	{"domain exact", Config{Domains: []string{"example.com"}}, auth.Identity{Email: "a@example.com", EmailVerified: true}, true},
	{"domain does not cover subdomain", Config{Domains: []string{"example.com"}}, auth.Identity{Email: "a@dev.example.com", EmailVerified: true}, false},
	{"wildcard covers subdomain", Config{Domains: []string{"*.example.com"}}, auth.Identity{Email: "a@dev.example.com", EmailVerified: true}, true},
	{"wildcard not the apex", Config{Domains: []string{"*.example.com"}}, auth.Identity{Email: "a@example.com", EmailVerified: true}, false},
	{"wildcard boundary", Config{Domains: []string{"*.example.com"}}, auth.Identity{Email: "a@evilexample.com", EmailVerified: true}, false},
	{"suffix attack", Config{Domains: []string{"example.com"}}, auth.Identity{Email: "a@example.com.evil.org", EmailVerified: true}, false},
	{"two @ refused", Config{Domains: []string{"example.com"}}, auth.Identity{Email: "a@evil.org@example.com", EmailVerified: true}, false},
	{"two @ refused for emails", Config{Emails: []string{"a@example.com"}}, auth.Identity{Email: "a@example.com@", EmailVerified: true}, false},
	{"no @", Config{Domains: []string{"example.com"}}, auth.Identity{Email: "example.com", EmailVerified: true}, false},
	{"unverified email never matches an email rule", Config{Emails: []string{"ceo@example.com"}}, auth.Identity{Email: "ceo@example.com"}, false},
	{"unverified email never matches a domain rule", Config{Domains: []string{"example.com"}}, auth.Identity{Email: "a@example.com"}, false},
	{"group match", Config{Groups: []string{"admins"}}, auth.Identity{Groups: []string{"users", "admins"}}, true},
	{"group case-sensitive", Config{Groups: []string{"admins"}}, auth.Identity{Groups: []string{"Admins"}}, false},
	{"any list suffices", Config{Users: []string{"z"}, Groups: []string{"g"}}, auth.Identity{User: "a", Groups: []string{"g"}}, true},
	{"none of several", Config{Users: []string{"z"}, Groups: []string{"g"}}, auth.Identity{User: "a"}, false},
}

func TestCheck(t *testing.T) {
	for _, tt := range checkTests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			id := tt.id
			err = p.Check(&id)
			if (err == nil) != tt.allow {
				t.Fatalf("Check(%+v) = %v, want allow=%v", tt.id, err, tt.allow)
			}
			if err != nil && !errors.Is(err, auth.ErrForbidden) {
				t.Errorf("Check error %v is not auth.ErrForbidden", err)
			}
		})
	}
}

func TestCheckNilIdentity(t *testing.T) {
	p, _ := New(Config{})
	if err := p.Check(nil); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("Check(nil) = %v, want ErrUnauthenticated", err)
	}
}

func TestDeniedSaysWhatNotWho(t *testing.T) {
	p, _ := New(Config{Users: []string{"secret-admin"}, Groups: []string{"hidden-group"}})
	err := p.Check(&auth.Identity{User: "eve"})
	msg := err.Error()
	if strings.Contains(msg, "secret-admin") || strings.Contains(msg, "hidden-group") {
		t.Fatalf("denial %q reveals who is allowed", msg)
	}
	if !strings.Contains(msg, "allowed user") || !strings.Contains(msg, "allowed group") {
		t.Fatalf("denial %q does not say what was missing", msg)
	}
}

func TestValidate(t *testing.T) {
	err := Config{Emails: []string{"nope"}, Domains: []string{"*.", "a@b.com"}, Groups: []string{""}}.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad entries")
	}
	for _, want := range []string{`emails[0]: "nope"`, `domains[0]: "*."`, `domains[1]: "a@b.com"`, "groups[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %q lacks %q", err, want)
		}
	}
	if err := (Config{Domains: []string{"example.com", "*.corp.example.com"}}).Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}

func BenchmarkCheck(b *testing.B) {
	p, _ := New(Config{Domains: []string{"example.com"}, Groups: []string{"admins", "ops"}})
	id := &auth.Identity{User: "alice", Email: "alice@example.org", EmailVerified: true, Groups: []string{"dev", "users", "ops"}}
	b.ReportAllocs()
	for b.Loop() {
		if p.Check(id) != nil {
			b.Fatal("denied")
		}
	}
}
