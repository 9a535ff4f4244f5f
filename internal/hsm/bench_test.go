package hsm_test

import (
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/hsm/hsmtest"
	"github.com/phantom-perimeter/phantom/internal/identity"
)

// BenchmarkSeal measures what a token-signing key in a PKCS#11 token (SoftHSM2) costs STS
// per session against a key in memory (file), and what opening costs a gateway (the same
// AES-GCM and one Ed25519 verification, cached after the first: measured uncached here).
// Compare the sub-benchmarks of one run: go test -bench Seal -count 5 ./internal/hsm/.
func BenchmarkSeal(b *testing.B) {
	cfg := hsmtest.SoftHSM(b)
	tok := open(b, cfg)
	now := time.Now()
	claims := func() *identity.Claims {
		return &identity.Claims{AccessKeyID: "ASIAQ2B3C4D5E6F7G2H3", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
			Principal: "arn:aws:sts::123456789012:assumed-role/app/s", Role: "arn:aws:iam::123456789012:role/app", IssuedAt: now, Expires: now.Add(time.Hour)}
	}
	fileKey, err := identity.NewSealingKey(nil, now)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := tok.NewTokenSigningKey(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	tokenKey, err := identity.NewSealingKeyInToken(nil, now, signer)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  identity.SealingKey
	}{{"file", fileKey}, {"pkcs11", tokenKey}} {
		s, err := identity.NewSealer(identity.SealerConfig{TokenKeys: tok})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SetKeys([]identity.SealingKey{tc.key}); err != nil {
			b.Fatal(err)
		}
		b.Run("seal/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Seal(claims()); err != nil {
					b.Fatal(err)
				}
			}
		})
		open := tc.key
		open.SigningSeed = nil
		b.Run("open/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				gw, _ := identity.NewSealer(identity.SealerConfig{}) // a fresh verified-token cache
				if err := gw.SetKeys([]identity.SealingKey{open}); err != nil {
					b.Fatal(err)
				}
				token, err := s.Seal(claims())
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := gw.Open(token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
