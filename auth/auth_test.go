package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	s := Secret("hunter2-very-secret")
	for _, got := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s)} {
		if strings.Contains(got, "hunter2") {
			t.Errorf("formatted secret = %q, leaks the value", got)
		}
	}
	b, _ := json.Marshal(struct{ S Secret }{s})
	if strings.Contains(string(b), "hunter2") {
		t.Errorf("json = %s, leaks the value", b)
	}
	if !s.Equal("hunter2-very-secret") || s.Equal("hunter2") {
		t.Error("Equal compares wrongly")
	}
	if s.Reveal() != "hunter2-very-secret" {
		t.Error("Reveal does not return the value")
	}
}

func TestIdentityContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("empty context has an identity")
	}
	id := &Identity{Subject: "u1", Groups: []string{"a", "b"}}
	got, ok := FromContext(WithIdentity(context.Background(), id))
	if !ok || got.Subject != "u1" || !got.InGroup("b") || got.InGroup("c") {
		t.Fatalf("FromContext = %+v, %v", got, ok)
	}
	if _, ok := FromContext(WithIdentity(context.Background(), nil)); ok {
		t.Fatal("nil identity reported as present")
	}
}
