package store_test

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/auth/issuer/store"
)

func benchStores(b *testing.B) map[string]func(b *testing.B) store.Store {
	return map[string]func(b *testing.B) store.Store{
		"memory": func(b *testing.B) store.Store { return store.NewMemory(store.Options{}) },
		"bolt": func(b *testing.B) store.Store {
			s, err := store.OpenBolt(filepath.Join(b.TempDir(), "bench.db"), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
}

func BenchmarkRedeemCode(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			defer s.Close()
			ctx := b.Context()
			now := time.Now()
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = strconv.Itoa(i)
				c := store.Code{ID: ids[i], ClientID: "c", Subject: "alice", Scopes: []string{"openid"}, ExpiresAt: now.Add(time.Hour)}
				if err := s.CreateCode(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := s.RedeemCode(ctx, ids[i], now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkIsRevoked(b *testing.B) {
	for name, open := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			defer s.Close()
			ctx := b.Context()
			now := time.Now()
			for i := range 1000 {
				if err := s.Revoke(ctx, "jti-"+strconv.Itoa(i), now.Add(time.Hour)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				revoked, err := s.IsRevoked(ctx, "jti-"+strconv.Itoa(i%2000), now)
				if err != nil || revoked != (i%2000 < 1000) {
					b.Fatalf("IsRevoked = %v, %v", revoked, err)
				}
			}
		})
	}
}
