package storetest

import (
	"context"
	"testing"
	"time"
)

// Leases: detector replicas' partitions, one holder each until it expires or is
// released.
func leaseCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"Leases", testLeases},
	}
}

// A lease is one holder's until it expires or is released; renewing keeps it.
func testLeases(t *testing.T, s Store) {
	ctx := context.Background()
	ok, err := s.AcquireLease(ctx, "detector-p1", "a", 300*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("a acquires a free lease: %v, %v", ok, err)
	}
	if ok, err := s.AcquireLease(ctx, "detector-p1", "b", time.Minute); err != nil || ok {
		t.Fatalf("b acquires a's live lease: %v, %v (want refused)", ok, err)
	}
	if ok, err := s.AcquireLease(ctx, "detector-p1", "a", 300*time.Millisecond); err != nil || !ok {
		t.Fatalf("a renews: %v, %v", ok, err)
	}
	ls, err := s.ListLeases(ctx)
	if err != nil || len(ls) != 1 || ls[0].Holder != "a" {
		t.Fatalf("ListLeases = %+v, %v", ls, err)
	}
	time.Sleep(400 * time.Millisecond)
	if ls, err := s.ListLeases(ctx); err != nil || len(ls) != 0 {
		t.Fatalf("ListLeases after expiry = %+v, %v", ls, err)
	}
	if ok, err := s.AcquireLease(ctx, "detector-p1", "b", time.Minute); err != nil || !ok {
		t.Fatalf("b takes a's expired lease: %v, %v", ok, err)
	}
	if ok, err := s.AcquireLease(ctx, "detector-p1", "a", time.Minute); err != nil || ok {
		t.Fatalf("a takes back b's lease: %v, %v (want refused)", ok, err)
	}
	if err := s.ReleaseLease(ctx, "detector-p1", "a"); err != nil { // not a's: nothing
		t.Fatal(err)
	}
	if ls, _ := s.ListLeases(ctx); len(ls) != 1 || ls[0].Holder != "b" {
		t.Fatalf("a released b's lease: %+v", ls)
	}
	if err := s.ReleaseLease(ctx, "detector-p1", "b"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AcquireLease(ctx, "detector-p1", "a", time.Minute); err != nil || !ok {
		t.Fatalf("a takes a released lease: %v, %v", ok, err)
	}
	if _, err := s.AcquireLease(ctx, "detector-p1", "a", 0); err == nil {
		t.Fatal("a lease without a ttl was taken")
	}
}
