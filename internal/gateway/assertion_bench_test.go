package gateway

import (
	"bytes"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// benchAssertion is a role session's assertion as forward makes it.
func benchAssertion() *Assertion {
	now := time.Unix(1764380000, 0)
	return &Assertion{Issuer: AssertionIssuer, Audience: testAPI,
		Subject: "arn:aws:sts::123456789012:assumed-role/app-role/session-1", Principal: "arn:aws:sts::123456789012:assumed-role/app-role/session-1",
		Account: "123456789012", AccessKeyID: "ASIAEXAMPLEKEY000001", SessionName: "session-1", Role: "arn:aws:iam::123456789012:role/app-role",
		VPCEndpoint: "vpce-0123456789abcdef0", SourceIP: "10.0.1.15", RequestID: "6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f", ID: "6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f",
		Method: "GET", Path: "/svc/orders/42", Query: "a=1", PayloadHash: UnsignedPayload,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(AssertionLifetime).Unix()}
}

// BenchmarkSignAssertion is the HS256 assertion of one call, made from scratch.
func BenchmarkSignAssertion(b *testing.B) {
	s := newMACSigner(keys.BackendKey{API: testAPI, Key: bytes.Repeat([]byte{7}, 32)})
	a := benchAssertion()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.sign(a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignAssertionHead is the same call's assertion from its session's head.
func BenchmarkSignAssertionHead(b *testing.B) {
	s := newMACSigner(keys.BackendKey{API: testAPI, Key: bytes.Repeat([]byte{7}, 32)})
	a := benchAssertion()
	var slot assertionSlot
	b.ReportAllocs()
	for b.Loop() {
		h, err := slot.head(s, a)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.signHead(h, a); err != nil {
			b.Fatal(err)
		}
	}
}
