package authtest

import (
	"encoding/json"
	"strings"
	"testing"
)

// AuditEvents parses JSON log output (slog's JSON handler) and returns, in
// order, the records that carry an audit attribute. A line that is not
// JSON fails the test.
func AuditEvents(t testing.TB, out string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for line := range strings.Lines(out) {
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		if _, ok := m["audit"]; ok {
			evs = append(evs, m)
		}
	}
	return evs
}

// FindAudit returns the first event named name, failing the test when
// there is none.
func FindAudit(t testing.TB, evs []map[string]any, name string) map[string]any {
	t.Helper()
	for _, e := range evs {
		if e["audit"] == name {
			return e
		}
	}
	t.Fatalf("no %q audit event among %v", name, evs)
	return nil
}

// WantAudit fails the test unless some event named name has every
// attribute of want.
func WantAudit(t testing.TB, evs []map[string]any, name string, want map[string]any) {
	t.Helper()
	var seen []map[string]any
	for _, e := range evs {
		if e["audit"] != name {
			continue
		}
		seen = append(seen, e)
		ok := true
		for k, v := range want {
			if e[k] != v {
				ok = false
			}
		}
		if ok {
			return
		}
	}
	t.Errorf("no %q audit event with %v; those seen: %v", name, want, seen)
}
