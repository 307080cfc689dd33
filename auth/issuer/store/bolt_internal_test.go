package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestBoltSweep(t *testing.T) {
	tick := make(chan time.Time)
	path := filepath.Join(t.TempDir(), "i.db")
	b, err := openBolt(path, Options{Now: func() time.Time { return sweepClock }}, tick, nil)
	if err != nil {
		t.Fatal(err)
	}
	testSweep(t, b, tick)
	// testSweep closed b; count what the file kept.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for _, name := range []string{bucketFamilies, bucketRevoked, bucketThrottles, bucketLogins, bucketAuthReqs, bucketRefresh} {
			if n := tx.Bucket([]byte(name)).Stats().KeyN; n != 0 {
				t.Errorf("bucket %s after sweep holds %d records, want 0", name, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBoltSweepIsBounded checks that one sweep examines at most limit
// records per bucket and the next resumes where it stopped.
func TestBoltSweepIsBounded(t *testing.T) {
	ctx := t.Context()
	b, err := openBolt(filepath.Join(t.TempDir(), "i.db"), Options{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 50 {
		exp := sweepBase // expired at sweepClock
		if i%10 == 0 {
			exp = sweepClock.Add(time.Hour) // live
		}
		if err := b.CreateCode(ctx, Code{ID: fmt.Sprintf("c%02d", i), ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int {
		n := 0
		_ = b.db.View(func(tx *bolt.Tx) error {
			n = tx.Bucket([]byte(bucketCodes)).Stats().KeyN
			return nil
		})
		return n
	}
	// 5 live codes, 45 expired; 18 expired among c00..c19, 18 among c20..c39.
	for i, want := range []int{32, 14, 5, 5} {
		if err := b.sweep(sweepClock, 20); err != nil {
			t.Fatal(err)
		}
		if got := count(); got != want {
			t.Errorf("codes after sweep %d = %d, want %d", i+1, got, want)
		}
	}
}
