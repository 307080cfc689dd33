package bearer_test

import (
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/portcullis-proxy/portcullis/auth/bearer"
)

// BenchmarkVerifyBearer compares a full JWT verification (RS256 signature,
// claims, keys already fetched) with a cache hit (hash, map lookup,
// audience check, one Identity copy).
func BenchmarkVerifyBearer(b *testing.B) {
	rs := signingKey{kid: "rs1", alg: jose.RS256, priv: rsaKey()}
	op := newFakeOP(b, rs)
	clk := newClock()
	raw := rs.sign(b, op.claims(clk))
	for _, bc := range []struct {
		name string
		size int
	}{
		{"cold", -1},
		{"hit", 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			v := newVerifier(b, op.URL(), op.srv.Client(), clk, func(o *bearer.Options) { o.CacheSize = bc.size })
			if _, err := v.VerifyBearer(b.Context(), raw, auds); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.VerifyBearer(b.Context(), raw, auds); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
