package identity

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// Seal and Open cost per token; the JSON benchmarks are the baseline the binary claims
// encoding was chosen against (one `go test -bench .` run gives the ratio).

func BenchmarkSeal(b *testing.B) {
	c := newClock(t0)
	s := newTestSealer(b, c, testKey("k1", 1, t0))
	cl := fullClaims(t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Seal(cl); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	c := newClock(t0)
	s := newTestSealer(b, c, testKey("k1", 1, t0))
	tok, err := s.Seal(fullClaims(t0))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(tok)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenFirstUse is a token's first open: the Ed25519 signature is verified (later
// opens of the same token find it verified, BenchmarkOpen). BenchmarkOpenLegacy is an
// unsigned token of before, the baseline both compare with.
func BenchmarkOpenFirstUse(b *testing.B) {
	c := newClock(t0)
	s := newTestSealer(b, c, testKey("k1", 1, t0))
	tok, err := s.Seal(fullClaims(t0))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.verifiedMu.Lock()
		clear(s.verified)
		s.verifiedMu.Unlock()
		if _, err := s.Open(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenLegacy(b *testing.B) {
	c := newClock(t0)
	k := legacyKey(testKey("k1", 1, t0))
	s := newTestSealer(b, c, k)
	tok := sealLegacy(b, k, fullClaims(t0))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenTampered is the cost of refusing a forged token (it stops at GCM).
func BenchmarkOpenTampered(b *testing.B) {
	c := newClock(t0)
	s := newTestSealer(b, c, testKey("k1", 1, t0))
	tok, _ := s.Seal(fullClaims(t0))
	raw := tokenBytes(b, tok)
	raw[len(raw)-1] ^= 1
	bad := retoken(raw)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(bad); err == nil {
			b.Fatal("accepted")
		}
	}
}

// BenchmarkLookupSession is the gateway's per-request cost for ASIA credentials: open the
// token, match the access key id, check revocations.
func BenchmarkLookupSession(b *testing.B) {
	ctx := context.Background()
	c := newClock(t0)
	s := newTestService(b, newFakeStore(), c)
	cl, tok, err := s.NewSession(*fullClaims(t0), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.RevokeSessions(ctx, "some-other-role"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.LookupCredential(ctx, cl.AccessKeyID, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupLongTerm is the same for AKIA credentials (a map lookup in the snapshot).
func BenchmarkLookupLongTerm(b *testing.B) {
	ctx := context.Background()
	c := newClock(t0)
	s := newTestService(b, newFakeStore(), c)
	k, err := s.CreateAccessKey(ctx, "alice")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.LookupCredential(ctx, k.ID, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClaimsEncode(b *testing.B) {
	cl := fullClaims(t0)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendClaims(buf[:0], cl)
	}
}

func BenchmarkClaimsDecode(b *testing.B) {
	enc := appendClaims(nil, fullClaims(t0))
	b.ReportAllocs()
	for b.Loop() {
		var c Claims
		if err := decodeClaims(string(enc), &c); err != nil {
			b.Fatal(err)
		}
	}
}

// Baselines: the same claims through encoding/json.
func BenchmarkClaimsEncodeJSON(b *testing.B) {
	cl := fullClaims(t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(cl); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClaimsDecodeJSON(b *testing.B) {
	enc, _ := json.Marshal(fullClaims(t0))
	b.ReportAllocs()
	for b.Loop() {
		var c Claims
		if err := json.Unmarshal(enc, &c); err != nil {
			b.Fatal(err)
		}
	}
}
