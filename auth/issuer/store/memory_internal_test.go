package store

import (
	"errors"
	"testing"
	"time"
)

// TestMemorySweep drives the background sweep with a hand-made tick: the
// second send is received only after the first sweep has finished.
func TestMemorySweep(t *testing.T) {
	tick := make(chan time.Time)
	m := newMemory(Options{Now: func() time.Time { return sweepClock }}, tick, nil)
	testSweep(t, m, tick)
	if len(m.families) != 0 {
		t.Errorf("families after sweep = %v, want none", m.families)
	}
}

var (
	sweepBase  = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	sweepClock = sweepBase.Add(time.Hour)
)

// testSweep fills m, sweeps at sweepClock through tick and closes m.
func testSweep(t *testing.T, m Store, tick chan time.Time) {
	ctx := t.Context()
	base, clock := sweepBase, sweepClock

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.CreateCode(ctx, Code{ID: "gone", ExpiresAt: base.Add(time.Minute)}))
	must(m.CreateCode(ctx, Code{ID: "kept", ExpiresAt: base.Add(2 * time.Hour)}))
	must(m.CreateRefresh(ctx, RefreshToken{ID: "rt", FamilyID: "fam", ExpiresAt: base.Add(time.Minute)}))
	must(m.Revoke(ctx, "jti", base.Add(time.Minute)))
	must(m.PutLoginSession(ctx, LoginSession{ID: "ls", ExpiresAt: base.Add(time.Minute)}))
	must(m.PutAuthRequest(ctx, AuthRequest{ID: "ar", ExpiresAt: base.Add(time.Minute)}))
	must(m.PutKey(ctx, Key{ID: "k", CreatedAt: base, ExpiresAt: base.Add(time.Minute)}))
	if _, err := m.RecordFailure(ctx, "user:a", base, time.Minute); err != nil {
		t.Fatal(err)
	}

	tick <- clock
	tick <- clock

	// Asked with a now before expiry, only a deleted record is missing.
	if _, err := m.GetCode(ctx, "gone", base); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetCode(gone) after sweep = %v, want ErrNotFound", err)
	}
	if _, err := m.GetCode(ctx, "kept", base); err != nil {
		t.Errorf("GetCode(kept) after sweep = %v, want nil", err)
	}
	if _, err := m.GetRefresh(ctx, "rt", base); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRefresh(rt) after sweep = %v, want ErrNotFound", err)
	}
	if revoked, _ := m.IsRevoked(ctx, "jti", base); revoked {
		t.Errorf("IsRevoked(jti) after sweep = true, want false")
	}
	if _, err := m.GetLoginSession(ctx, "ls", base); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetLoginSession(ls) after sweep = %v, want ErrNotFound", err)
	}
	if _, err := m.GetAuthRequest(ctx, "ar", base); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetAuthRequest(ar) after sweep = %v, want ErrNotFound", err)
	}
	if th, _ := m.GetThrottle(ctx, "user:a", base, time.Minute); th.Failures != 0 {
		t.Errorf("GetThrottle(user:a) after sweep = %+v, want zero", th)
	}
	if keys, _ := m.ListKeys(ctx); len(keys) != 1 {
		t.Errorf("ListKeys() after sweep = %d keys, want 1 (keys are never swept)", len(keys))
	}

	// Close waits for the sweeper goroutine, and may be repeated.
	must(m.Close())
	must(m.Close())
}

func TestMemorySweepIsBounded(t *testing.T) {
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m := newMemory(Options{}, nil, nil)
	defer m.Close()
	for i := range 50 {
		m.codes[string(rune('a'+i))] = Code{ExpiresAt: base}
	}
	m.sweep(base, 20)
	if got := len(m.codes); got != 30 {
		t.Errorf("codes after a sweep examining 20 = %d, want 30", got)
	}
}
