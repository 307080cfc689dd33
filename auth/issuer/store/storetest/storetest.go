// Package storetest is the conformance suite every store.Store
// implementation passes: Run proves expiry, single use under concurrency,
// refresh-family revocation, throttling and that bad input changes nothing.
//
// Times used by the suite lie in the real future (an hour from now), because
// an implementation may forget a record once its ExpiresAt has really passed
// (Redis key TTLs, background sweeps); expiry as seen by callers is always
// decided by the now the suite passes.
package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

// racers is how many goroutines race on one record in the atomicity tests.
const racers = 16

// Run runs the suite. newStore returns a fresh, empty store for each
// subtest; Run closes it when the subtest ends.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store, base time.Time)
	}{
		{"CodeCreateGet", testCodeCreateGet},
		{"CodeCreateDuplicate", testCodeCreateDuplicate},
		{"CodeUnknown", testCodeUnknown},
		{"CodeExpiry", testCodeExpiry},
		{"CodeRedeemOnce", testCodeRedeemOnce},
		{"CodeRedeemRace", testCodeRedeemRace},
		{"RefreshCreateGet", testRefreshCreateGet},
		{"RefreshCreateDuplicate", testRefreshCreateDuplicate},
		{"RefreshExpiry", testRefreshExpiry},
		{"RefreshRotate", testRefreshRotate},
		{"RefreshRotateReuseRevokesFamily", testRefreshReuse},
		{"RefreshRotateRace", testRefreshRotateRace},
		{"RefreshRotateUnknown", testRefreshRotateUnknown},
		{"RefreshRotateExpired", testRefreshRotateExpired},
		{"RefreshRotateWrongFamily", testRefreshRotateWrongFamily},
		{"RefreshRotateNextExists", testRefreshRotateNextExists},
		{"RefreshRevokedFamily", testRefreshRevokedFamily},
		{"Revoke", testRevoke},
		{"Keys", testKeys},
		{"LoginSession", testLoginSession},
		{"AuthRequest", testAuthRequest},
		{"Throttle", testThrottle},
		{"ThrottleRace", testThrottleRace},
		{"EmptyID", testEmptyID},
		{"CallerCannotMutateStoredData", testNoAliasing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close() = %v, want nil", err)
				}
			})
			// Whole seconds an hour ahead: in the real future, and exact
			// through any encoding.
			base := time.Now().UTC().Truncate(time.Second).Add(time.Hour)
			tt.run(t, s, base)
		})
	}
}

// same fails the test unless got and want have the same JSON encoding,
// which is the stored form and compares times by instant.
func same[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("marshal %s: %v", what, err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatalf("marshal %s: %v", what, err)
	}
	if string(g) != string(w) {
		t.Errorf("%s = %s, want %s", what, g, w)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s error = %v, want %v", what, err, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s = %v, want nil", what, err)
	}
}

func newCode(id string, base time.Time) store.Code {
	return store.Code{
		ID:             id,
		ClientID:       "client-a",
		RedirectURI:    "https://app.example/cb",
		Subject:        "alice",
		Scopes:         []string{"openid", "email", "offline_access"},
		Nonce:          "n-0S6_WzA2Mj",
		CodeChallenge:  "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		AuthTime:       base.Add(-time.Minute),
		LoginSessionID: "sid-" + id,
		ExpiresAt:      base.Add(time.Minute),
		FamilyID:       "fam-" + id,
		AccessJTI:      "jti-" + id,
	}
}

func newRefresh(id, family string, base time.Time, ttl time.Duration) store.RefreshToken {
	return store.RefreshToken{
		ID:        id,
		FamilyID:  family,
		ClientID:  "client-a",
		Subject:   "alice",
		Scopes:    []string{"openid", "offline_access"},
		AuthTime:  base.Add(-time.Hour),
		IssuedAt:  base,
		ExpiresAt: base.Add(ttl),
	}
}

func used[T store.Code | store.RefreshToken](r T) T {
	switch v := any(&r).(type) {
	case *store.Code:
		v.Used = true
	case *store.RefreshToken:
		v.Used = true
	}
	return r
}

func testCodeCreateGet(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	c := newCode("code-1", base)
	must(t, "CreateCode", s.CreateCode(ctx, c))
	got, err := s.GetCode(ctx, c.ID, base)
	must(t, "GetCode", err)
	same(t, "GetCode(code-1)", got, c)
	// Getting does not use it up.
	got, err = s.GetCode(ctx, c.ID, base)
	must(t, "GetCode again", err)
	same(t, "GetCode(code-1) again", got, c)
}

func testCodeCreateDuplicate(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	c := newCode("code-1", base)
	must(t, "CreateCode", s.CreateCode(ctx, c))
	other := newCode("code-1", base)
	other.Subject = "mallory"
	other.ExpiresAt = base.Add(time.Hour)
	wantErr(t, "CreateCode(duplicate)", s.CreateCode(ctx, other), store.ErrAlreadyExists)
	got, err := s.GetCode(ctx, c.ID, base)
	must(t, "GetCode", err)
	same(t, "GetCode after duplicate create", got, c)
	// Also once used: the duplicate must not reset Used.
	_, err = s.RedeemCode(ctx, c.ID, base)
	must(t, "RedeemCode", err)
	wantErr(t, "CreateCode(duplicate of used)", s.CreateCode(ctx, other), store.ErrAlreadyExists)
	got, err = s.GetCode(ctx, c.ID, base)
	must(t, "GetCode", err)
	same(t, "GetCode after duplicate create of used code", got, used(c))
}

func testCodeUnknown(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	must(t, "CreateCode", s.CreateCode(ctx, newCode("code-1", base)))
	_, err := s.GetCode(ctx, "nope", base)
	wantErr(t, "GetCode(nope)", err, store.ErrNotFound)
	_, err = s.RedeemCode(ctx, "nope", base)
	wantErr(t, "RedeemCode(nope)", err, store.ErrNotFound)
	_, err = s.GetCode(ctx, "nope", base)
	wantErr(t, "GetCode(nope) after RedeemCode(nope)", err, store.ErrNotFound)
}

func testCodeExpiry(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	c := newCode("code-1", base)
	must(t, "CreateCode", s.CreateCode(ctx, c))
	_, err := s.GetCode(ctx, c.ID, c.ExpiresAt.Add(-time.Nanosecond))
	if err != nil {
		t.Errorf("GetCode(1ns before expiry) = %v, want nil", err)
	}
	_, err = s.GetCode(ctx, c.ID, c.ExpiresAt)
	wantErr(t, "GetCode(at expiry)", err, store.ErrNotFound)
	_, err = s.RedeemCode(ctx, c.ID, c.ExpiresAt)
	wantErr(t, "RedeemCode(at expiry)", err, store.ErrNotFound)
	// The failed redeem changed nothing.
	got, err := s.GetCode(ctx, c.ID, base)
	must(t, "GetCode(before expiry)", err)
	same(t, "GetCode after expired redeem", got, c)
	// A used code is just as gone once expired.
	_, err = s.RedeemCode(ctx, c.ID, base)
	must(t, "RedeemCode", err)
	_, err = s.RedeemCode(ctx, c.ID, c.ExpiresAt.Add(time.Second))
	wantErr(t, "RedeemCode(used, expired)", err, store.ErrNotFound)
}

func testCodeRedeemOnce(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	c := newCode("code-1", base)
	must(t, "CreateCode", s.CreateCode(ctx, c))
	got, err := s.RedeemCode(ctx, c.ID, base)
	must(t, "RedeemCode", err)
	same(t, "RedeemCode(code-1)", got, used(c))
	got, err = s.RedeemCode(ctx, c.ID, base.Add(time.Second))
	wantErr(t, "RedeemCode(again)", err, store.ErrReused)
	same(t, "RedeemCode(again) record", got, used(c))
	got, err = s.GetCode(ctx, c.ID, base)
	must(t, "GetCode", err)
	same(t, "GetCode(redeemed)", got, used(c))
}

func testCodeRedeemRace(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	c := newCode("code-1", base)
	must(t, "CreateCode", s.CreateCode(ctx, c))
	got := make([]store.Code, racers)
	errs := make([]error, racers)
	race(func(i int) { got[i], errs[i] = s.RedeemCode(ctx, c.ID, base) })
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, store.ErrReused):
		default:
			t.Errorf("racer %d: RedeemCode error = %v, want nil or ErrReused", i, err)
			continue
		}
		same(t, fmt.Sprintf("racer %d: RedeemCode record", i), got[i], used(c))
	}
	if wins != 1 {
		t.Errorf("%d of %d concurrent RedeemCode calls succeeded, want exactly 1", wins, racers)
	}
}

// race runs f(0..racers-1) in goroutines released at the same moment.
func race(f func(i int)) {
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range racers {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			f(i)
		}()
	}
	start.Done()
	done.Wait()
}

func testRefreshCreateGet(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r := newRefresh("rt-1", "fam-1", base, time.Hour)
	must(t, "CreateRefresh", s.CreateRefresh(ctx, r))
	got, err := s.GetRefresh(ctx, r.ID, base)
	must(t, "GetRefresh", err)
	same(t, "GetRefresh(rt-1)", got, r)
	_, err = s.GetRefresh(ctx, "nope", base)
	wantErr(t, "GetRefresh(nope)", err, store.ErrNotFound)
	if revoked, err := s.IsRevoked(ctx, r.FamilyID, base); err != nil || revoked {
		t.Errorf("IsRevoked(fam-1) = %v, %v, want false, nil", revoked, err)
	}
}

func testRefreshCreateDuplicate(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r := newRefresh("rt-1", "fam-1", base, time.Hour)
	must(t, "CreateRefresh", s.CreateRefresh(ctx, r))
	other := newRefresh("rt-1", "fam-2", base, 2*time.Hour)
	other.Subject = "mallory"
	wantErr(t, "CreateRefresh(duplicate)", s.CreateRefresh(ctx, other), store.ErrAlreadyExists)
	got, err := s.GetRefresh(ctx, r.ID, base)
	must(t, "GetRefresh", err)
	same(t, "GetRefresh after duplicate create", got, r)
	_, err = s.GetRefresh(ctx, r.ID, r.ExpiresAt)
	wantErr(t, "GetRefresh(at original expiry)", err, store.ErrNotFound)
}

func testRefreshExpiry(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r := newRefresh("rt-1", "fam-1", base, time.Hour)
	must(t, "CreateRefresh", s.CreateRefresh(ctx, r))
	if _, err := s.GetRefresh(ctx, r.ID, r.ExpiresAt.Add(-time.Nanosecond)); err != nil {
		t.Errorf("GetRefresh(1ns before expiry) = %v, want nil", err)
	}
	_, err := s.GetRefresh(ctx, r.ID, r.ExpiresAt)
	wantErr(t, "GetRefresh(at expiry)", err, store.ErrNotFound)
}

func testRefreshRotate(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r1 := newRefresh("rt-1", "fam-1", base, time.Hour)
	r2 := newRefresh("rt-2", "fam-1", base.Add(time.Minute), time.Hour)
	r3 := newRefresh("rt-3", "fam-1", base.Add(2*time.Minute), time.Hour)
	must(t, "CreateRefresh", s.CreateRefresh(ctx, r1))
	got, err := s.RotateRefresh(ctx, r1.ID, r2, base.Add(time.Minute))
	must(t, "RotateRefresh(rt-1 -> rt-2)", err)
	same(t, "RotateRefresh(rt-1 -> rt-2) record", got, used(r1))
	got, err = s.GetRefresh(ctx, r1.ID, base.Add(time.Minute))
	must(t, "GetRefresh(rt-1)", err)
	same(t, "GetRefresh(rt-1) after rotation", got, used(r1))
	got, err = s.GetRefresh(ctx, r2.ID, base.Add(time.Minute))
	must(t, "GetRefresh(rt-2)", err)
	same(t, "GetRefresh(rt-2)", got, r2)
	got, err = s.RotateRefresh(ctx, r2.ID, r3, base.Add(2*time.Minute))
	must(t, "RotateRefresh(rt-2 -> rt-3)", err)
	same(t, "RotateRefresh(rt-2 -> rt-3) record", got, used(r2))
	got, err = s.GetRefresh(ctx, r3.ID, base.Add(2*time.Minute))
	must(t, "GetRefresh(rt-3)", err)
	same(t, "GetRefresh(rt-3)", got, r3)
	if revoked, err := s.IsRevoked(ctx, "fam-1", base.Add(2*time.Minute)); err != nil || revoked {
		t.Errorf("IsRevoked(fam-1) = %v, %v, want false, nil", revoked, err)
	}
}

func testRefreshReuse(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r1 := newRefresh("rt-1", "fam-1", base, time.Hour)
	// The newest member lives longest: the revocation must cover it.
	r2 := newRefresh("rt-2", "fam-1", base.Add(time.Minute), 3*time.Hour)
	r3 := newRefresh("rt-3", "fam-1", base.Add(2*time.Minute), 3*time.Hour)
	must(t, "CreateRefresh", s.CreateRefresh(ctx, r1))
	if _, err := s.RotateRefresh(ctx, r1.ID, r2, base.Add(time.Minute)); err != nil {
		t.Fatalf("RotateRefresh(rt-1 -> rt-2) = %v, want nil", err)
	}
	now := base.Add(2 * time.Minute)
	got, err := s.RotateRefresh(ctx, r1.ID, r3, now)
	wantErr(t, "RotateRefresh(rt-1 again)", err, store.ErrReused)
	same(t, "RotateRefresh(rt-1 again) record", got, used(r1))

	for _, id := range []string{r1.ID, r2.ID, r3.ID} {
		_, err := s.GetRefresh(ctx, id, now)
		wantErr(t, "GetRefresh("+id+") after reuse", err, store.ErrNotFound)
	}
	// The live newest member cannot be rotated either.
	r4 := newRefresh("rt-4", "fam-1", now, time.Hour)
	_, err = s.RotateRefresh(ctx, r2.ID, r4, now)
	wantErr(t, "RotateRefresh(rt-2) after reuse", err, store.ErrNotFound)

	latest := r2.ExpiresAt
	checks := []struct {
		at   time.Time
		want bool
	}{
		{now, true},
		{r1.ExpiresAt, true},
		{latest.Add(-time.Nanosecond), true},
		{latest, false},
	}
	for _, c := range checks {
		revoked, err := s.IsRevoked(ctx, "fam-1", c.at)
		if err != nil || revoked != c.want {
			t.Errorf("IsRevoked(fam-1, base%+v) = %v, %v, want %v, nil", c.at.Sub(base), revoked, err, c.want)
		}
	}
	// rt-3 was never stored: after the revocation lapses it is still unknown.
	_, err = s.GetRefresh(ctx, r3.ID, latest.Add(-time.Nanosecond))
	wantErr(t, "GetRefresh(rt-3)", err, store.ErrNotFound)
}

func testRefreshRotateRace(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r1 := newRefresh("rt-1", "fam-1", base, time.Hour)
	must(t, "CreateRefresh", s.CreateRefresh(ctx, r1))
	got := make([]store.RefreshToken, racers)
	errs := make([]error, racers)
	race(func(i int) {
		next := newRefresh(fmt.Sprintf("rt-next-%d", i), "fam-1", base, time.Hour)
		got[i], errs[i] = s.RotateRefresh(ctx, r1.ID, next, base)
	})
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, store.ErrReused):
		default:
			t.Errorf("racer %d: RotateRefresh error = %v, want nil or ErrReused", i, err)
			continue
		}
		same(t, fmt.Sprintf("racer %d: RotateRefresh record", i), got[i], used(r1))
	}
	if wins != 1 {
		t.Errorf("%d of %d concurrent RotateRefresh calls succeeded, want exactly 1", wins, racers)
	}
	// Every loser presented a used token: the family is revoked.
	if revoked, err := s.IsRevoked(ctx, "fam-1", base); err != nil || !revoked {
		t.Errorf("IsRevoked(fam-1) after racing rotations = %v, %v, want true, nil", revoked, err)
	}
}

func testRefreshRotateUnknown(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	next := newRefresh("rt-2", "fam-1", base, time.Hour)
	_, err := s.RotateRefresh(ctx, "nope", next, base)
	wantErr(t, "RotateRefresh(nope)", err, store.ErrNotFound)
	_, err = s.GetRefresh(ctx, next.ID, base)
	wantErr(t, "GetRefresh(next of unknown)", err, store.ErrNotFound)
	if revoked, err := s.IsRevoked(ctx, "fam-1", base); err != nil || revoked {
		t.Errorf("IsRevoked(fam-1) = %v, %v, want false, nil", revoked, err)
	}
}

func testRefreshRotateExpired(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r1 := newRefresh("rt-1", "fam-1", base, time.Hour)
	must(t, "CreateRefresh", s.CreateRefresh(ctx, r1))
	next := newRefresh("rt-2", "fam-1", r1.ExpiresAt, time.Hour)
	_, err := s.RotateRefresh(ctx, r1.ID, next, r1.ExpiresAt)
	wantErr(t, "RotateRefresh(expired)", err, store.ErrNotFound)
	got, err := s.GetRefresh(ctx, r1.ID, base)
	must(t, "GetRefresh(rt-1)", err)
	same(t, "GetRefresh(rt-1) after expired rotation", got, r1)
	_, err = s.GetRefresh(ctx, next.ID, r1.ExpiresAt)
	wantErr(t, "GetRefresh(next of expired)", err, store.ErrNotFound)
	// Expired and used: still not found, and no revocation.
	if _, err := s.RotateRefresh(ctx, r1.ID, newRefresh("rt-3", "fam-1", base, time.Hour), base); err != nil {
		t.Fatalf("RotateRefresh(rt-1 -> rt-3) = %v, want nil", err)
	}
	_, err = s.RotateRefresh(ctx, r1.ID, next, r1.ExpiresAt)
	wantErr(t, "RotateRefresh(used and expired)", err, store.ErrNotFound)
	if revoked, err := s.IsRevoked(ctx, "fam-1", base); err != nil || revoked {
		t.Errorf("IsRevoked(fam-1) = %v, %v, want false, nil", revoked, err)
	}
}

func testRefreshRotateWrongFamily(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r1 := newRefresh("rt-1", "fam-1", base, time.Hour)
	must(t, "CreateRefresh", s.CreateRefresh(ctx, r1))
	next := newRefresh("rt-2", "fam-2", base, time.Hour)
	got, err := s.RotateRefresh(ctx, r1.ID, next, base)
	if err == nil || errors.Is(err, store.ErrReused) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("RotateRefresh(next in another family) = %+v, %v, want a family mismatch error", got, err)
	}
	gotOld, err := s.GetRefresh(ctx, r1.ID, base)
	must(t, "GetRefresh(rt-1)", err)
	same(t, "GetRefresh(rt-1) after wrong-family rotation", gotOld, r1)
	_, err = s.GetRefresh(ctx, next.ID, base)
	wantErr(t, "GetRefresh(wrong-family next)", err, store.ErrNotFound)
	for _, fam := range []string{"fam-1", "fam-2"} {
		if revoked, err := s.IsRevoked(ctx, fam, base); err != nil || revoked {
			t.Errorf("IsRevoked(%s) = %v, %v, want false, nil", fam, revoked, err)
		}
	}
	// The old token still rotates normally afterwards.
	if _, err := s.RotateRefresh(ctx, r1.ID, newRefresh("rt-3", "fam-1", base, time.Hour), base); err != nil {
		t.Errorf("RotateRefresh(rt-1 -> rt-3) = %v, want nil", err)
	}
}

func testRefreshRotateNextExists(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r1 := newRefresh("rt-1", "fam-1", base, time.Hour)
	taken := newRefresh("rt-taken", "fam-1", base, 2*time.Hour)
	must(t, "CreateRefresh", s.CreateRefresh(ctx, r1))
	must(t, "CreateRefresh", s.CreateRefresh(ctx, taken))
	next := newRefresh("rt-taken", "fam-1", base, 3*time.Hour)
	next.Subject = "mallory"
	_, err := s.RotateRefresh(ctx, r1.ID, next, base)
	wantErr(t, "RotateRefresh(next id taken)", err, store.ErrAlreadyExists)
	got, err := s.GetRefresh(ctx, r1.ID, base)
	must(t, "GetRefresh(rt-1)", err)
	same(t, "GetRefresh(rt-1) after failed rotation", got, r1)
	got, err = s.GetRefresh(ctx, taken.ID, base)
	must(t, "GetRefresh(rt-taken)", err)
	same(t, "GetRefresh(rt-taken)", got, taken)
	// Rotating to itself is the same mistake.
	_, err = s.RotateRefresh(ctx, r1.ID, r1, base)
	wantErr(t, "RotateRefresh(rt-1 -> rt-1)", err, store.ErrAlreadyExists)
	got, err = s.GetRefresh(ctx, r1.ID, base)
	must(t, "GetRefresh(rt-1)", err)
	same(t, "GetRefresh(rt-1) after self rotation", got, r1)
}

func testRefreshRevokedFamily(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r1 := newRefresh("rt-1", "fam-1", base, time.Hour)
	must(t, "CreateRefresh", s.CreateRefresh(ctx, r1))
	until := base.Add(10 * time.Minute)
	must(t, "Revoke(fam-1)", s.Revoke(ctx, "fam-1", until))
	_, err := s.GetRefresh(ctx, r1.ID, base)
	wantErr(t, "GetRefresh(revoked family)", err, store.ErrNotFound)
	next := newRefresh("rt-2", "fam-1", base, time.Hour)
	_, err = s.RotateRefresh(ctx, r1.ID, next, base)
	wantErr(t, "RotateRefresh(revoked family)", err, store.ErrNotFound)
	// Once the revocation lapses, nothing had changed.
	got, err := s.GetRefresh(ctx, r1.ID, until)
	must(t, "GetRefresh(rt-1) after revocation lapsed", err)
	same(t, "GetRefresh(rt-1) after revocation lapsed", got, r1)
	_, err = s.GetRefresh(ctx, next.ID, until)
	wantErr(t, "GetRefresh(next of revoked family)", err, store.ErrNotFound)
}

func testRevoke(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	isRevoked := func(id string, at time.Time, want bool) {
		t.Helper()
		got, err := s.IsRevoked(ctx, id, at)
		if err != nil || got != want {
			t.Errorf("IsRevoked(%s, base%+v) = %v, %v, want %v, nil", id, at.Sub(base), got, err, want)
		}
	}
	isRevoked("jti-1", base, false)
	until := base.Add(5 * time.Minute)
	must(t, "Revoke(jti-1)", s.Revoke(ctx, "jti-1", until))
	isRevoked("jti-1", base, true)
	isRevoked("jti-1", until.Add(-time.Nanosecond), true)
	isRevoked("jti-1", until, false)
	isRevoked("jti-2", base, false)
	// Revoking again never shortens a revocation.
	must(t, "Revoke(jti-1, earlier)", s.Revoke(ctx, "jti-1", base.Add(time.Minute)))
	isRevoked("jti-1", base.Add(2*time.Minute), true)
	must(t, "Revoke(jti-1, later)", s.Revoke(ctx, "jti-1", base.Add(10*time.Minute)))
	isRevoked("jti-1", base.Add(9*time.Minute), true)
	isRevoked("jti-1", base.Add(10*time.Minute), false)
}

func testKeys(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	list := func(want ...store.Key) {
		t.Helper()
		got, err := s.ListKeys(ctx)
		if err != nil {
			t.Fatalf("ListKeys() = %v, want nil", err)
		}
		if want == nil {
			want = []store.Key{}
		}
		if got == nil {
			got = []store.Key{}
		}
		same(t, "ListKeys()", got, want)
	}
	list()
	old := store.Key{ID: "k-old", Algorithm: "RS256", Private: []byte{1, 2, 3}, CreatedAt: base.Add(-48 * time.Hour),
		// Expired in the real past: keys never disappear on their own.
		RetiredAt: time.Now().UTC().Truncate(time.Second).Add(-2 * time.Hour),
		ExpiresAt: time.Now().UTC().Truncate(time.Second).Add(-time.Hour)}
	mid := store.Key{ID: "k-mid", Algorithm: "ES256", Private: []byte{4, 5}, CreatedAt: base.Add(-24 * time.Hour)}
	cur := store.Key{ID: "k-cur", Algorithm: "RS256", Private: []byte{6}, CreatedAt: base}
	for _, k := range []store.Key{mid, cur, old} {
		must(t, "PutKey("+k.ID+")", s.PutKey(ctx, k))
	}
	list(cur, mid, old)
	// Replacing retires mid in place.
	mid.RetiredAt = base
	mid.ExpiresAt = base.Add(time.Hour)
	must(t, "PutKey(k-mid, retired)", s.PutKey(ctx, mid))
	list(cur, mid, old)
	must(t, "DeleteKey(k-old)", s.DeleteKey(ctx, old.ID))
	list(cur, mid)
	must(t, "DeleteKey(k-old) again", s.DeleteKey(ctx, old.ID))
	must(t, "DeleteKey(nope)", s.DeleteKey(ctx, "nope"))
	list(cur, mid)
}

func testLoginSession(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	ls := store.LoginSession{ID: "ls-1", Subject: "alice", AuthTime: base, ExpiresAt: base.Add(time.Hour)}
	_, err := s.GetLoginSession(ctx, ls.ID, base)
	wantErr(t, "GetLoginSession(missing)", err, store.ErrNotFound)
	must(t, "PutLoginSession", s.PutLoginSession(ctx, ls))
	got, err := s.GetLoginSession(ctx, ls.ID, base)
	must(t, "GetLoginSession", err)
	same(t, "GetLoginSession(ls-1)", got, ls)
	_, err = s.GetLoginSession(ctx, ls.ID, ls.ExpiresAt)
	wantErr(t, "GetLoginSession(at expiry)", err, store.ErrNotFound)
	// Replace extends it.
	ls.ExpiresAt = base.Add(2 * time.Hour)
	ls.AuthTime = base.Add(time.Minute)
	must(t, "PutLoginSession(replace)", s.PutLoginSession(ctx, ls))
	got, err = s.GetLoginSession(ctx, ls.ID, base.Add(90*time.Minute))
	must(t, "GetLoginSession(replaced)", err)
	same(t, "GetLoginSession(replaced)", got, ls)
	other := store.LoginSession{ID: "ls-2", Subject: "bob", AuthTime: base, ExpiresAt: base.Add(time.Hour)}
	must(t, "PutLoginSession(ls-2)", s.PutLoginSession(ctx, other))
	must(t, "DeleteLoginSession", s.DeleteLoginSession(ctx, ls.ID))
	_, err = s.GetLoginSession(ctx, ls.ID, base)
	wantErr(t, "GetLoginSession(deleted)", err, store.ErrNotFound)
	must(t, "DeleteLoginSession(missing)", s.DeleteLoginSession(ctx, ls.ID))
	got, err = s.GetLoginSession(ctx, other.ID, base)
	must(t, "GetLoginSession(ls-2)", err)
	same(t, "GetLoginSession(ls-2)", got, other)
}

func testAuthRequest(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	r := store.AuthRequest{ID: "ar-1", Data: []byte(`{"client_id":"a","state":"xyz"}`), ExpiresAt: base.Add(10 * time.Minute)}
	_, err := s.GetAuthRequest(ctx, r.ID, base)
	wantErr(t, "GetAuthRequest(missing)", err, store.ErrNotFound)
	must(t, "PutAuthRequest", s.PutAuthRequest(ctx, r))
	got, err := s.GetAuthRequest(ctx, r.ID, base)
	must(t, "GetAuthRequest", err)
	same(t, "GetAuthRequest(ar-1)", got, r)
	_, err = s.GetAuthRequest(ctx, r.ID, r.ExpiresAt)
	wantErr(t, "GetAuthRequest(at expiry)", err, store.ErrNotFound)
	r.Data = []byte{0, 1, 2, 0xff}
	must(t, "PutAuthRequest(replace)", s.PutAuthRequest(ctx, r))
	got, err = s.GetAuthRequest(ctx, r.ID, base)
	must(t, "GetAuthRequest(replaced)", err)
	same(t, "GetAuthRequest(replaced)", got, r)
	must(t, "DeleteAuthRequest", s.DeleteAuthRequest(ctx, r.ID))
	_, err = s.GetAuthRequest(ctx, r.ID, base)
	wantErr(t, "GetAuthRequest(deleted)", err, store.ErrNotFound)
	must(t, "DeleteAuthRequest(missing)", s.DeleteAuthRequest(ctx, r.ID))
}

func testThrottle(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	const window = 15 * time.Minute
	get := func(key string, at time.Time, want store.Throttle) {
		t.Helper()
		got, err := s.GetThrottle(ctx, key, at, window)
		if err != nil {
			t.Fatalf("GetThrottle(%s) = %v, want nil", key, err)
		}
		same(t, fmt.Sprintf("GetThrottle(%s, base%+v)", key, at.Sub(base)), got, want)
	}
	record := func(key string, at time.Time, want store.Throttle) {
		t.Helper()
		got, err := s.RecordFailure(ctx, key, at, window)
		if err != nil {
			t.Fatalf("RecordFailure(%s) = %v, want nil", key, err)
		}
		same(t, fmt.Sprintf("RecordFailure(%s, base%+v)", key, at.Sub(base)), got, want)
	}
	get("user:alice", base, store.Throttle{})
	record("user:alice", base, store.Throttle{Failures: 1, First: base, Last: base})
	record("user:alice", base.Add(time.Minute), store.Throttle{Failures: 2, First: base, Last: base.Add(time.Minute)})
	last := base.Add(window - time.Nanosecond)
	record("user:alice", last, store.Throttle{Failures: 3, First: base, Last: last})
	get("user:alice", last, store.Throttle{Failures: 3, First: base, Last: last})
	get("user:alice", base.Add(window), store.Throttle{})
	get("ip:192.0.2.1", base, store.Throttle{})
	// The window has passed since First: the count starts over.
	restart := base.Add(window)
	record("user:alice", restart, store.Throttle{Failures: 1, First: restart, Last: restart})
	record("user:alice", restart.Add(time.Second), store.Throttle{Failures: 2, First: restart, Last: restart.Add(time.Second)})
	record("ip:192.0.2.1", restart, store.Throttle{Failures: 1, First: restart, Last: restart})
	must(t, "ClearThrottle(user:alice)", s.ClearThrottle(ctx, "user:alice"))
	get("user:alice", restart.Add(time.Second), store.Throttle{})
	must(t, "ClearThrottle(user:alice) again", s.ClearThrottle(ctx, "user:alice"))
	get("ip:192.0.2.1", restart, store.Throttle{Failures: 1, First: restart, Last: restart})
	record("user:alice", restart.Add(2*time.Second), store.Throttle{Failures: 1, First: restart.Add(2 * time.Second), Last: restart.Add(2 * time.Second)})
}

func testThrottleRace(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	const window = 15 * time.Minute
	errs := make([]error, racers)
	race(func(i int) {
		_, errs[i] = s.RecordFailure(ctx, "ip:192.0.2.7", base.Add(time.Duration(i)*time.Millisecond), window)
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("racer %d: RecordFailure = %v, want nil", i, err)
		}
	}
	got, err := s.GetThrottle(ctx, "ip:192.0.2.7", base.Add(time.Second), window)
	if err != nil || got.Failures != racers {
		t.Errorf("GetThrottle after %d concurrent failures = %+v, %v, want Failures %d", racers, got, err, racers)
	}
}

func testEmptyID(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	calls := []struct {
		name string
		err  error
	}{
		{"CreateCode", s.CreateCode(ctx, newCode("", base))},
		{"CreateRefresh", s.CreateRefresh(ctx, newRefresh("", "fam-1", base, time.Hour))},
		{"PutKey", s.PutKey(ctx, store.Key{Algorithm: "RS256", CreatedAt: base})},
		{"PutLoginSession", s.PutLoginSession(ctx, store.LoginSession{Subject: "alice", ExpiresAt: base.Add(time.Hour)})},
		{"PutAuthRequest", s.PutAuthRequest(ctx, store.AuthRequest{ExpiresAt: base.Add(time.Hour)})},
		{"Revoke", s.Revoke(ctx, "", base.Add(time.Hour))},
	}
	for _, c := range calls {
		if c.err == nil {
			t.Errorf("%s(empty id) = nil, want an error", c.name)
		}
	}
	if keys, err := s.ListKeys(ctx); err != nil || len(keys) != 0 {
		t.Errorf("ListKeys() after PutKey(empty id) = %d keys, %v, want 0, nil", len(keys), err)
	}
}

func testNoAliasing(t *testing.T, s store.Store, base time.Time) {
	ctx := t.Context()
	c := newCode("code-1", base)
	want := newCode("code-1", base)
	must(t, "CreateCode", s.CreateCode(ctx, c))
	c.Scopes[0] = "admin"
	got, err := s.GetCode(ctx, c.ID, base)
	must(t, "GetCode", err)
	same(t, "GetCode after caller changed its Scopes", got, want)
	got.Scopes[0] = "admin"
	got, err = s.GetCode(ctx, c.ID, base)
	must(t, "GetCode", err)
	same(t, "GetCode after caller changed a returned Scopes", got, want)

	k := store.Key{ID: "k", Algorithm: "RS256", Private: []byte{1, 2, 3}, CreatedAt: base}
	must(t, "PutKey", s.PutKey(ctx, k))
	k.Private[0] = 9
	keys, err := s.ListKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("ListKeys() = %d keys, %v, want 1, nil", len(keys), err)
	}
	if keys[0].Private[0] != 1 {
		t.Errorf("ListKeys()[0].Private[0] = %d after caller changed its slice, want 1", keys[0].Private[0])
	}
}
