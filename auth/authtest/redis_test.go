package authtest

import (
	"strings"
	"testing"
)

func TestRedisAnswers(t *testing.T) {
	u := Redis(t)
	if !strings.HasPrefix(u, "redis://127.0.0.1:") || !pingRedis(strings.TrimSuffix(strings.TrimPrefix(u, "redis://"), "/0")) {
		t.Fatalf("Redis() = %q, not answering", u)
	}
}
