package identity

import (
	"bytes"
	"crypto/ed25519"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is the tests' reference time.
var t0 = time.Date(2026, 11, 29, 1, 30, 0, 0, time.UTC)

// clock is a settable clock, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock        { c := new(clock); c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// testKey returns a sealing key with a fixed id and bytes derived from seed, with its
// signing key (as STS holds it).
func testKey(id string, seed byte, created time.Time) SealingKey {
	sign := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed ^ 0x5a}, ed25519.SeedSize))
	return SealingKey{ID: id, Key: bytes.Repeat([]byte{seed}, 32), SigningSeed: sign.Seed(),
		PublicKey: sign.Public().(ed25519.PublicKey), CreatedAt: created}
}

// openOnly is k as a gateway holds it: no signing key.
func openOnly(k SealingKey) SealingKey {
	k.SigningSeed = nil
	return k
}

// legacyKey is k as made before signed tokens: no signing key, no public key.
func legacyKey(k SealingKey) SealingKey {
	k.SigningSeed, k.PublicKey = nil, nil
	return k
}

func newTestSealer(t testing.TB, c *clock, keys ...SealingKey) *Sealer {
	t.Helper()
	s, err := NewSealer(SealerConfig{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 0 {
		if err := s.SetKeys(keys); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// fullClaims has every field set, as an AssumeRole from a node through an endpoint would.
func fullClaims(issued time.Time) *Claims {
	return &Claims{
		AccessKeyID:     "ASIAQ2B3C4D5E6F7G2H3",
		SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		Principal:       "arn:aws:sts::123456789012:assumed-role/app-writer/i-0abc123",
		Role:            "arn:aws:iam::123456789012:role/service/app-writer",
		SourceIdentity:  "alice@example.com",
		SessionName:     "i-0abc123",
		Tags: []Tag{
			{Key: "team", Value: "payments"},
			{Key: "env", Value: "prod"},
			{Key: "cost-center", Value: "cc-4411"},
		},
		TransitiveTagKeys: []string{"team"},
		Policy:            `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/prod/GET/orders/*"}]}`,
		PolicyARNs:        []string{"arn:aws:iam::123456789012:policy/read-only-orders"},
		IssuedAt:          issued,
		Expires:           issued.Add(time.Hour),
		MFA:               true,
		MFAAt:             issued.Add(-10 * time.Minute),
		Node:              "node-eu1-a",
		VPC:               "vpc-0a1b2c3d4e5f60718",
		PrivateIP:         netip.MustParseAddr("10.0.12.34"),
		Endpoint:          "vpce-0123456789abcdef0",
	}
}

// minimalClaims has only the required fields.
func minimalClaims(issued time.Time) *Claims {
	return &Claims{
		AccessKeyID:     "ASIAAAAAAAAAAAAAAAA2",
		SecretAccessKey: "0123456789012345678901234567890123456789",
		Principal:       "arn:aws:sts::123456789012:assumed-role/r/s",
		Role:            "arn:aws:iam::123456789012:role/r",
		IssuedAt:        issued,
		Expires:         issued.Add(15 * time.Minute),
	}
}
