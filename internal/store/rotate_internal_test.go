package store

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

func rawAccessKey(t *testing.T, s *SQLite, id string) []byte {
	t.Helper()
	var v []byte
	if err := s.r.QueryRowContext(t.Context(), `SELECT secret_sealed FROM access_keys WHERE id = ?`, id).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// accessKeyStates lists the access keys' generations as "generation state".
func accessKeyStates(t *testing.T, s *SQLite) []string {
	t.Helper()
	list, err := s.StorageKeyGenerations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kg := range list {
		if kg.Purpose == keys.StoreAccessKeys {
			out = append(out, fmt.Sprintf("%d %s", kg.Generation, kg.State))
		}
	}
	return out
}

func genOf(t *testing.T, v []byte) keys.Generation {
	t.Helper()
	g, ok := sealedGeneration(v)
	if !ok {
		t.Fatalf("sealed value of version %d names no generation", v[0])
	}
	return g
}

// A storage purpose rotates while processes read: values keep opening under the
// generation that sealed them, new ones are sealed under the new one (also by a handle
// that learns of the rotation from Version), the re-seal is idempotent, retirement waits
// for the overlap, and after it a value under the retired generation is refused by every
// holder, the master key included. A component's key file rotates nothing.
func TestStorageKeyRotation(t *testing.T) {
	dir := t.TempDir()
	master := testMaster(5)
	ctx := t.Context()
	op, err := OpenSQLite(ctx, Config{DataDir: dir, MasterKey: master})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	other, err := OpenSQLite(ctx, Config{DataDir: dir, MasterKey: master}) // another replica
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	a := AccessKey{ID: "AKIAAAAAAAAAAAAAAAAA", User: "alice", Secret: "0123456789012345678901234567890123456789", Status: StatusActive}
	if err := op.PutAccessKey(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := op.PutSecretIfAbsent(ctx, "pki/issuing/1", []byte("issuing key")); err != nil {
		t.Fatal(err)
	}
	before := rawAccessKey(t, op, a.ID)
	if g := genOf(t, before); g != 1 {
		t.Fatalf("before any rotation the value is under generation %d", g)
	}
	gw1, err := OpenSQLite(ctx, Config{DataDir: dir, Keys: ring(t, master, keys.Gateway)})
	if err != nil {
		t.Fatal(err)
	}
	defer gw1.Close()

	// Staged: carried by key files exported now, sealing nothing yet; staging again
	// names the same generation, and the rotation promotes it.
	for range 2 {
		if g, err := op.StageStorageKey(ctx, keys.StoreAccessKeys); err != nil || g != 2 {
			t.Fatalf("stage: generation %d, %v", g, err)
		}
	}
	if got := accessKeyStates(t, op); !slices.Equal(got, []string{"1 " + genCurrent, "2 " + genStaged}) {
		t.Fatalf("generations while staged: %v", got)
	}
	d := AccessKey{ID: "AKIADDDDDDDDDDDDDDDD", User: "dave", Secret: "5555555555666666666677777777778888888888", Status: StatusActive}
	if err := op.PutAccessKey(ctx, d); err != nil {
		t.Fatal(err)
	}
	if g := genOf(t, rawAccessKey(t, op, d.ID)); g != 1 {
		t.Fatalf("a value written while generation 2 is staged is under generation %d", g)
	}
	g, err := op.RotateStorageKey(ctx, keys.StoreAccessKeys)
	if err != nil || g != 2 {
		t.Fatalf("rotate: generation %d, %v", g, err)
	}
	// A key file exported now carries both generations and opens at once (its check
	// is recorded).
	both, err := keys.ForComponentGenerations(master, keys.Gateway, map[keys.Purpose][]keys.Generation{keys.StoreAccessKeys: {1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	gw12, err := OpenSQLite(ctx, Config{DataDir: dir, Keys: both})
	if err != nil {
		t.Fatal(err)
	}
	defer gw12.Close()

	b := AccessKey{ID: "AKIABBBBBBBBBBBBBBBB", User: "bob", Secret: "9876543210987654321098765432109876543210", Status: StatusActive}
	if err := op.PutAccessKey(ctx, b); err != nil {
		t.Fatal(err)
	}
	if g := genOf(t, rawAccessKey(t, op, b.ID)); g != 2 {
		t.Fatalf("a key written after the rotation is under generation %d", g)
	}
	// The other replica seals under generation 1 until a poll tells it.
	c := AccessKey{ID: "AKIACCCCCCCCCCCCCCCC", User: "carol", Secret: "1111111111222222222233333333334444444444", Status: StatusActive}
	if _, err := other.Version(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.PutAccessKey(ctx, c); err != nil {
		t.Fatal(err)
	}
	if g := genOf(t, rawAccessKey(t, op, c.ID)); g != 2 {
		t.Fatalf("a replica that polled Version sealed under generation %d", g)
	}
	for _, s := range []*SQLite{op, gw12} {
		for _, k := range []AccessKey{a, b} {
			if got, err := s.GetAccessKey(ctx, k.ID); err != nil || got.Secret != k.Secret {
				t.Fatalf("%s reads %s during the overlap: %v", s.seal.keys().Component(), k.ID, err)
			}
		}
	}
	if _, err := gw1.GetAccessKey(ctx, a.ID); err != nil {
		t.Fatalf("a gateway holding generation 1 only stops reading what it sealed: %v", err)
	}
	var missing *MissingKeyError
	if _, err := gw1.GetAccessKey(ctx, b.ID); !errors.As(err, &missing) || missing.Generation != 2 {
		t.Fatalf("a gateway holding generation 1 only read a generation 2 value: %v", err)
	}

	// The gateway takes a new export of its key file without reopening; not another
	// component's file, nor does a process holding the master key swap it for a file.
	if err := gw1.SetKeys(ctx, ring(t, master, keys.Console)); err == nil {
		t.Error("a gateway took a console's key file")
	}
	if err := op.SetKeys(ctx, both); err == nil {
		t.Error("a process holding the master key took a key file")
	}
	if err := gw1.SetKeys(ctx, both); err != nil {
		t.Fatal(err)
	}
	if got, err := gw1.GetAccessKey(ctx, b.ID); err != nil || got.Secret != b.Secret {
		t.Fatalf("after taking the new key file the gateway reads b: %v", err)
	}

	// Re-seal: two values (a, d) left under generation 1; a second run finds none.
	if n, err := op.ResealStorageKey(ctx, keys.StoreAccessKeys); err != nil || n != 2 {
		t.Fatalf("re-seal: %d values, %v", n, err)
	}
	if n, err := op.ResealStorageKey(ctx, keys.StoreAccessKeys); err != nil || n != 0 {
		t.Fatalf("re-seal again: %d values, %v (want 0: it is idempotent)", n, err)
	}
	if g := genOf(t, rawAccessKey(t, op, a.ID)); g != 2 {
		t.Fatalf("after the re-seal a is under generation %d", g)
	}
	if got, err := gw12.GetSecret(ctx, "pki/issuing/1"); err == nil {
		t.Fatalf("a gateway read the CA's issuing key: %q", got)
	}
	if got, err := op.GetSecret(ctx, "pki/issuing/1"); err != nil || string(got) != "issuing key" {
		t.Fatalf("another purpose's value after the re-seal: %q, %v", got, err)
	}

	// A component's key file rotates, re-seals and retires nothing.
	sts, err := OpenSQLite(ctx, Config{DataDir: dir, Keys: ring(t, master, keys.STS)})
	if err != nil {
		t.Fatal(err)
	}
	defer sts.Close()
	if _, err := sts.RotateStorageKey(ctx, keys.StoreAccessKeys); !errors.Is(err, keys.ErrNotHeld) {
		t.Errorf("STS's key file rotated a storage key: %v", err)
	}
	if _, err := sts.ResealStorageKey(ctx, keys.StoreAccessKeys); !errors.Is(err, keys.ErrNotHeld) {
		t.Errorf("STS's key file re-sealed: %v", err)
	}
	if _, _, err := sts.RetireStorageKeys(ctx, keys.StoreAccessKeys, 0); !errors.Is(err, keys.ErrNotHeld) {
		t.Errorf("STS's key file retired a generation: %v", err)
	}

	// Retirement waits for the overlap, then refuses generation 1 everywhere.
	var overlap *OverlapError
	if gens, _, err := op.RetireStorageKeys(ctx, keys.StoreAccessKeys, time.Hour); !errors.As(err, &overlap) || len(gens) != 0 {
		t.Fatalf("retire within the overlap: %v, %v", gens, err)
	}
	if gens, _, err := op.RetireStorageKeys(ctx, keys.StoreAccessKeys, 0); err != nil || !slices.Equal(gens, []keys.Generation{1}) {
		t.Fatalf("retire: %v, %v", gens, err)
	}
	if got := accessKeyStates(t, op); !slices.Equal(got, []string{"1 " + genRetired, "2 " + genCurrent}) {
		t.Fatalf("generations after retirement: %v", got)
	}
	// The value sealed under generation 1 before, put back: refused by the master key
	// and by a key file that still carries generation 1.
	if _, err := op.w.ExecContext(ctx, `UPDATE access_keys SET secret_sealed = ? WHERE id = ?`, before, a.ID); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*SQLite{op, gw12, gw1} {
		if _, err := s.Version(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetAccessKey(ctx, a.ID); !errors.Is(err, ErrRetiredKey) {
			t.Errorf("%s opened a value sealed under the retired generation: %v", s.seal.keys().Component(), err)
		}
	}
	reopened, err := OpenSQLite(ctx, Config{DataDir: dir, MasterKey: master})
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	if _, err := reopened.GetAccessKey(ctx, a.ID); !errors.Is(err, ErrRetiredKey) {
		t.Errorf("a fresh open with the master key opened a value under the retired generation: %v", err)
	}
	// A key file exported after retirement holds generation 2 only, and opens the store.
	after, err := keys.ForComponentGenerations(master, keys.Gateway, map[keys.Purpose][]keys.Generation{keys.StoreAccessKeys: {2}})
	if err != nil {
		t.Fatal(err)
	}
	data, err := after.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := keys.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed.Generations(keys.StoreAccessKeys); !slices.Equal(got, []keys.Generation{2}) {
		t.Fatalf("the key file round trip holds generations %v", got)
	}
	gw2, err := OpenSQLite(ctx, Config{DataDir: dir, Keys: parsed})
	if err != nil {
		t.Fatal(err)
	}
	defer gw2.Close()
	if got, err := gw2.GetAccessKey(ctx, b.ID); err != nil || got.Secret != b.Secret {
		t.Fatalf("a key file of generation 2 reads b: %v", err)
	}
}

// Whatever bytes a sealed column holds, open does not panic, and it opens only what
// this sealer sealed for that row, under a live generation.
func FuzzOpenSealed(f *testing.F) {
	s, err := sealerFor(nil, testMaster(9))
	if err != nil {
		f.Fatal(err)
	}
	if err := s.loadGenerations([]genRow{{p: keys.StoreAccessKeys, g: 1, state: genRetiring}, {p: keys.StoreAccessKeys, g: 2, state: genCurrent}}, -1); err != nil {
		f.Fatal(err)
	}
	v2, _ := s.seal(kindAccessKey, "AKIAFUZZ", []byte("secret"))
	f.Add(v2)
	st := s.gens.Load()
	v1, _ := sealGen(st.aeads[purposeGen{keys.StoreAccessKeys, 1}], 1, kindAccessKey, "AKIAFUZZ", []byte("secret"))
	f.Add(v1)
	f.Add([]byte{3, 0, 0, 0, 1})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		pt, err := s.open(kindAccessKey, "AKIAFUZZ", data)
		if err == nil && string(pt) != "secret" {
			t.Fatalf("opened %q from bytes it did not seal", pt)
		}
		if g, ok := sealedGeneration(data); err == nil && (!ok || (g != 1 && g != 2)) {
			t.Fatalf("opened a value naming generation %d (%v)", g, ok)
		}
	})
}
