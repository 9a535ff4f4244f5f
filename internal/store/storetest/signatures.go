package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The replay guard's record of used signatures.
func signatureCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"UsedSignatures", testUsedSignatures},
	}
}

func signatureID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// testUsedSignatures: the replay guard's record. A signature is claimed once while it is
// valid; of concurrent claims exactly one wins (the replicas sharing a store share the
// guard); an expired record is taken over and can be deleted; claims leave Version alone.
func testUsedSignatures(t *testing.T, s Store) {
	now := time.Now()
	v := version(t, s)
	id := signatureID("a")
	for i, want := range []bool{true, false, false} {
		first, err := s.ClaimSignature(ctx(t), id, now.Add(time.Hour))
		must(t, err)
		if first != want {
			t.Fatalf("claim %d: first %v, want %v", i, first, want)
		}
	}
	// A record past its expiry no longer guards anything: the next claim takes it.
	old := signatureID("old")
	for range 2 {
		first, err := s.ClaimSignature(ctx(t), old, now.Add(-time.Second))
		must(t, err)
		if !first {
			t.Fatal("a claim over an expired record was refused")
		}
	}
	n, err := s.DeleteExpiredSignatures(ctx(t), now)
	must(t, err)
	if n != 1 {
		t.Errorf("deleted %d expired signatures, want 1", n)
	}
	if first, err := s.ClaimSignature(ctx(t), id, now.Add(time.Hour)); err != nil || first {
		t.Errorf("a live signature after deleting expired ones: first %v, %v", first, err)
	}
	for _, bad := range []string{"", "A" + id[1:], id + "0", "zz"} {
		if _, err := s.ClaimSignature(ctx(t), bad, now.Add(time.Hour)); err == nil {
			t.Errorf("claim of id %q accepted", bad)
		}
	}
	if got := version(t, s); got != v {
		t.Errorf("claims moved Version from %d to %d", v, got)
	}

	const racers = 16
	race := signatureID("race")
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range racers {
		wg.Go(func() {
			<-start
			first, err := s.ClaimSignature(ctx(t), race, now.Add(time.Hour))
			if err != nil {
				t.Error(err)
			}
			if first {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d of %d concurrent claims won, want exactly 1", wins.Load(), racers)
	}
}
