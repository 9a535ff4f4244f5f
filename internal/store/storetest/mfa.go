package storetest

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// Cases for virtual MFA devices (issue 27).
func mfaCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"MFADeviceLifecycle", testMFALifecycle},
		{"MFACodeTakenOnce", testMFACodeOnce},
		{"MFAAttemptsCounted", testMFAAttempts},
		{"MFASeedEncryptedAndBound", testMFAAtRest},
		{"MFADeviceInvalid", testMFAInvalid},
	}
}

const (
	serialA = "arn:aws:iam::123456789012:mfa/alice-phone"
	serialB = "arn:aws:iam::123456789012:mfa/bob-phone"
)

func seedFor(serial string) []byte { return []byte(secretFor(serial))[:20] }

func testMFALifecycle(t *testing.T, s Store) {
	v0 := version(t, s)
	must(t, s.PutMFADevice(ctx(t), store.MFADevice{Serial: serialA, Seed: seedFor(serialA), CreatedAt: t0}))
	if err := s.PutMFADevice(ctx(t), store.MFADevice{Serial: serialA, Seed: seedFor(serialB)}); !errors.Is(err, store.ErrExists) {
		t.Errorf("PutMFADevice(duplicate): err = %v, want ErrExists", err)
	}
	d, err := s.GetMFADevice(ctx(t), serialA)
	must(t, err)
	if d.User != "" || !d.EnabledAt.IsZero() || !bytes.Equal(d.Seed, seedFor(serialA)) || !d.CreatedAt.Equal(t0) || d.LastStep != 0 {
		t.Fatalf("new device = %+v", d)
	}
	if _, err := s.GetMFADevice(ctx(t), serialB); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetMFADevice(missing): err = %v, want ErrNotFound", err)
	}
	// Codes cannot be taken on a device that is not enabled.
	if _, err := s.CountMFAAttempt(ctx(t), serialA, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CountMFAAttempt(not enabled): err = %v, want ErrNotFound", err)
	}
	if ok, err := s.AcceptMFACode(ctx(t), serialA, "alice", 5); err != nil || ok {
		t.Errorf("AcceptMFACode(not enabled) = %v, %v; want false", ok, err)
	}

	must(t, s.EnableMFADevice(ctx(t), serialA, "alice", 100, t0))
	if err := s.EnableMFADevice(ctx(t), serialA, "bob", 101, t0); !errors.Is(err, store.ErrConflict) {
		t.Errorf("EnableMFADevice(enabled already): err = %v, want ErrConflict", err)
	}
	if err := s.EnableMFADevice(ctx(t), serialB, "bob", 101, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EnableMFADevice(missing): err = %v, want ErrNotFound", err)
	}
	d, err = s.GetMFADevice(ctx(t), serialA)
	must(t, err)
	if d.User != "alice" || !d.EnabledAt.Equal(t0) || d.LastStep != 100 {
		t.Fatalf("enabled device = %+v", d)
	}
	must(t, s.PutMFADevice(ctx(t), store.MFADevice{Serial: serialB, Seed: seedFor(serialB)}))
	list, err := s.ListMFADevices(ctx(t), "alice")
	must(t, err)
	if len(list) != 1 || list[0].Serial != serialA {
		t.Errorf("ListMFADevices(alice) = %+v", list)
	}
	all, err := s.ListMFADevices(ctx(t), "")
	must(t, err)
	if len(all) != 2 || all[0].Serial != serialB || all[1].Serial != serialA {
		t.Errorf("ListMFADevices(all) ordered by user then serial = %+v", all)
	}

	if err := s.DeleteMFADevice(ctx(t), serialA); !errors.Is(err, store.ErrConflict) {
		t.Errorf("DeleteMFADevice(enabled): err = %v, want ErrConflict", err)
	}
	if err := s.DeactivateMFADevice(ctx(t), serialA, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeactivateMFADevice(another user's): err = %v, want ErrNotFound", err)
	}
	must(t, s.ResyncMFADevice(ctx(t), serialA, "alice", 50))
	if d, _ := s.GetMFADevice(ctx(t), serialA); d.LastStep != 100 {
		t.Errorf("resync moved the last step back to %d", d.LastStep)
	}
	must(t, s.DeactivateMFADevice(ctx(t), serialA, "alice"))
	d, err = s.GetMFADevice(ctx(t), serialA)
	must(t, err)
	if d.User != "" || !d.EnabledAt.IsZero() || d.LastStep != 100 {
		t.Errorf("deactivated device = %+v (the last step must stay: re-enabling must not reopen old codes)", d)
	}
	must(t, s.DeleteMFADevice(ctx(t), serialA))
	if err := s.DeleteMFADevice(ctx(t), serialA); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteMFADevice(missing): err = %v, want ErrNotFound", err)
	}
	if v := version(t, s); v != v0 {
		t.Errorf("MFA writes bumped the version %d -> %d; nothing is snapshotted from them", v0, v)
	}
}

// testMFACodeOnce: of concurrent callers accepting the same step, exactly one wins; an
// earlier step is refused after a later one.
func testMFACodeOnce(t *testing.T, s Store) {
	must(t, s.PutMFADevice(ctx(t), store.MFADevice{Serial: serialA, Seed: seedFor(serialA)}))
	must(t, s.EnableMFADevice(ctx(t), serialA, "alice", 10, t0))
	var won atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.AcceptMFACode(ctx(t), serialA, "alice", 11)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d callers took step 11, want exactly 1", won.Load())
	}
	if ok, _ := s.AcceptMFACode(ctx(t), serialA, "alice", 10); ok {
		t.Error("an earlier step was accepted after a later one")
	}
	if ok, _ := s.AcceptMFACode(ctx(t), serialA, "bob", 12); ok {
		t.Error("a code was taken on a device of another user")
	}
	if ok, _ := s.AcceptMFACode(ctx(t), serialA, "alice", 12); !ok {
		t.Error("a later step was refused")
	}
}

func testMFAAttempts(t *testing.T, s Store) {
	must(t, s.PutMFADevice(ctx(t), store.MFADevice{Serial: serialA, Seed: seedFor(serialA)}))
	must(t, s.EnableMFADevice(ctx(t), serialA, "alice", 10, t0))
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.CountMFAAttempt(ctx(t), serialA, "alice"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	n, err := s.CountMFAAttempt(ctx(t), serialA, "alice")
	must(t, err)
	if n != 6 {
		t.Fatalf("failures after 6 attempts = %d (concurrent attempts lost)", n)
	}
	if _, err := s.CountMFAAttempt(ctx(t), serialA, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CountMFAAttempt(another user's): err = %v, want ErrNotFound", err)
	}
	ok, err := s.AcceptMFACode(ctx(t), serialA, "alice", 11)
	must(t, err)
	if d, _ := s.GetMFADevice(ctx(t), serialA); !ok || d.Failures != 0 {
		t.Errorf("accepted code left failures at %d", d.Failures)
	}
	for range 3 {
		_, err := s.CountMFAAttempt(ctx(t), serialA, "alice")
		must(t, err)
	}
	must(t, s.ResyncMFADevice(ctx(t), serialA, "alice", 20))
	if d, _ := s.GetMFADevice(ctx(t), serialA); d.Failures != 0 || d.LastStep != 20 {
		t.Errorf("resync left %+v", d)
	}
}

func testMFAAtRest(t *testing.T, s Store) {
	a := []byte("MFA-SEED-OF-ALICE-20")
	b := []byte("MFA-SEED-OF-BOB---20")
	must(t, s.PutMFADevice(ctx(t), store.MFADevice{Serial: serialA, Seed: a}))
	must(t, s.PutMFADevice(ctx(t), store.MFADevice{Serial: serialB, Seed: b}))
	row := s.RawRow(t, KindMFADevice, serialA)
	if !bytes.Contains(row, []byte(serialA)) {
		t.Fatal("raw row does not hold its serial: the hook reads the wrong row")
	}
	if bytes.Contains(row, []byte("MFA-SEED")) {
		t.Error("MFA seed stored in plain text")
	}
	s.SwapSecrets(t, KindMFADevice, serialA, serialB)
	for _, serial := range []string{serialA, serialB} {
		if _, err := s.GetMFADevice(ctx(t), serial); !errors.Is(err, store.ErrDecrypt) {
			t.Errorf("GetMFADevice(%s) after swap: err = %v, want ErrDecrypt", serial, err)
		}
	}
}

func testMFAInvalid(t *testing.T, s Store) {
	for name, d := range map[string]store.MFADevice{
		"empty serial": {Seed: seedFor(serialA)},
		"short seed":   {Serial: serialA, Seed: []byte("short")},
		"no seed":      {Serial: serialA},
		"space":        {Serial: "arn:aws:iam::123456789012:mfa/a b", Seed: seedFor(serialA)},
	} {
		if err := s.PutMFADevice(ctx(t), d); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	must(t, s.PutMFADevice(ctx(t), store.MFADevice{Serial: serialA, Seed: seedFor(serialA)}))
	if err := s.EnableMFADevice(ctx(t), serialA, "", 1, t0); err == nil {
		t.Error("enabled for an empty user name")
	}
	if err := s.EnableMFADevice(ctx(t), serialA, "alice", -1, t0); err == nil {
		t.Error("enabled with a negative step")
	}
}
