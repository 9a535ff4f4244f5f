// Package storetest is the contract every store.Store backend must meet. A backend's test
// calls Run with a function that returns a fresh, empty store wrapped in the few hooks the
// suite needs to look beneath the interface (raw rows, reopening, a future schema):
//
//	func TestSQLite(t *testing.T) { storetest.Run(t, newSQLiteHarness) }
//
// The SQLite and PostgreSQL stores both run it.
package storetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// Kind names a kind of row that holds a secret.
type Kind string

// Kinds of rows that hold secrets.
const (
	KindAccessKey  Kind = "access-key"
	KindSealingKey Kind = "sealing-key"
	KindSecret     Kind = "secret" // PutSecretIfAbsent's rows, by name
	KindMFADevice  Kind = "mfa-device"
)

// Store is a backend under test plus the hooks the suite needs beneath the interface.
type Store interface {
	store.Store
	// MasterKey returns the master key the store was opened with.
	MasterKey() []byte
	// Reopen closes the store and opens the same database with masterKey.
	Reopen(t *testing.T, masterKey []byte) (Store, error)
	// RawRow returns every column of the row of kind with this id exactly as stored,
	// concatenated, read without going through the store.
	RawRow(t *testing.T, kind Kind, id string) []byte
	// SwapSecrets exchanges the stored ciphertexts of two rows of kind.
	SwapSecrets(t *testing.T, kind Kind, a, b string)
	// AddFutureMigration records, beneath the store, a migration newer than the
	// backend knows, as a newer Phantom would have.
	AddFutureMigration(t *testing.T)
	// ExecRaw runs a statement beneath the store, with the store's own login, as
	// someone holding its database file or credentials would.
	ExecRaw(t *testing.T, stmt string) error
	// Backend is "sqlite" or "postgres".
	Backend() string
}

// Run runs the contract suite; open must return a new, empty store each time, and
// close it in a t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"AccessKeyCRUD", testAccessKeyCRUD},
		{"AccessKeyNotFound", testAccessKeyNotFound},
		{"AccessKeyDuplicate", testAccessKeyDuplicate},
		{"AccessKeyInvalid", testAccessKeyInvalid},
		{"AccessKeyConcurrentPuts", testAccessKeyConcurrentPuts},
		{"SealingKeys", testSealingKeys},
		{"SealingKeyInvalid", testSealingKeyInvalid},
		{"SealingKeySigners", testSealingKeySigners},
		{"Revocations", testRevocations},
		{"JoinTokens", testJoinTokens},
		{"JoinTokenSingleUse", testJoinTokenSingleUse},
		{"JoinTokenRedeemWithPKI", testJoinTokenRedeemWithPKI},
		{"Nodes", testNodes},
		{"Version", testVersion},
		{"EncryptedAtRest", testEncryptedAtRest},
		{"SwappedCiphertextRejected", testSwappedCiphertext},
		{"WrongMasterKey", testWrongMasterKey},
		{"ReopenIdempotent", testReopenIdempotent},
		{"NewerSchemaRefused", testNewerSchema},
	}
	tests = append(tests, findingCases()...)
	tests = append(tests, secretCases()...)
	tests = append(tests, cursorCases()...)
	tests = append(tests, leaseCases()...)
	tests = append(tests, notifyCases()...)
	tests = append(tests, signatureCases()...)
	tests = append(tests, mfaCases()...)
	tests = append(tests, anchorCases()...)
	tests = append(tests, caCases()...)
	tests = append(tests, consoleCases()...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// Times with nanoseconds, in a non-UTC zone, to catch precision and zone loss.
var (
	zone = time.FixedZone("UTC+2", 2*3600)
	t0   = time.Date(2026, 11, 29, 1, 30, 0, 123456789, zone)
)

func ctx(t *testing.T) context.Context { return t.Context() }

// secretFor returns a 40-character secret unique to id that shares no text with it.
func secretFor(id string) string {
	sum := sha256.Sum256([]byte("secret for " + id))
	return base64.StdEncoding.EncodeToString(sum[:])[:40]
}

func newKey(id, user string, created time.Time) store.AccessKey {
	return store.AccessKey{ID: id, User: user, Secret: secretFor(id), Status: store.StatusActive, CreatedAt: created}
}

func sameKey(t *testing.T, got, want store.AccessKey) {
	t.Helper()
	if got.ID != want.ID || got.User != want.User || got.Secret != want.Secret || got.Status != want.Status ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.LastUsedAt.Equal(want.LastUsedAt) {
		t.Errorf("access key = {%s %s secret-equal:%v %s %s %s}, want {%s %s %s %s}",
			got.ID, got.User, got.Secret == want.Secret, got.Status, got.CreatedAt, got.LastUsedAt,
			want.ID, want.User, want.Status, want.CreatedAt)
	}
	if got.LastUsedAt.IsZero() != want.LastUsedAt.IsZero() {
		t.Errorf("LastUsedAt zero = %v, want %v", got.LastUsedAt.IsZero(), want.LastUsedAt.IsZero())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testAccessKeyCRUD(t *testing.T, s Store) {
	a1 := newKey("AKIAAAAAAAAAAAAAAAA1", "alice", t0)
	a1.LastUsedAt = t0.Add(time.Hour)
	a2 := newKey("AKIAAAAAAAAAAAAAAAA2", "alice", t0.Add(time.Second))
	b1 := newKey("AKIAAAAAAAAAAAAAAAB1", "bob", t0.Add(-time.Hour))
	for _, k := range []store.AccessKey{a2, b1, a1} {
		must(t, s.PutAccessKey(ctx(t), k))
	}

	got, err := s.GetAccessKey(ctx(t), a1.ID)
	must(t, err)
	sameKey(t, got, a1)

	alice, err := s.ListAccessKeys(ctx(t), "alice")
	must(t, err)
	if len(alice) != 2 {
		t.Fatalf("ListAccessKeys(alice) returned %d keys, want 2", len(alice))
	}
	sameKey(t, alice[0], a1) // ordered by creation time
	sameKey(t, alice[1], a2)

	all, err := s.ListAccessKeys(ctx(t), "")
	must(t, err)
	if len(all) != 3 || all[0].ID != a1.ID || all[1].ID != a2.ID || all[2].ID != b1.ID {
		t.Fatalf("ListAccessKeys(\"\") = %v, want alice's two then bob's", ids(all))
	}
	none, err := s.ListAccessKeys(ctx(t), "carol")
	must(t, err)
	if len(none) != 0 {
		t.Errorf("ListAccessKeys(carol) = %v, want none", ids(none))
	}

	must(t, s.UpdateAccessKeyStatus(ctx(t), a1.ID, store.StatusInactive))
	got, err = s.GetAccessKey(ctx(t), a1.ID)
	must(t, err)
	if got.Status != store.StatusInactive {
		t.Errorf("status after update = %q, want Inactive", got.Status)
	}
	// Setting the status it already has is not an error.
	must(t, s.UpdateAccessKeyStatus(ctx(t), a1.ID, store.StatusInactive))
	must(t, s.UpdateAccessKeyStatus(ctx(t), a1.ID, store.StatusActive))
	got, err = s.GetAccessKey(ctx(t), a1.ID)
	must(t, err)
	if got.Status != store.StatusActive {
		t.Errorf("status after reactivation = %q, want Active", got.Status)
	}

	must(t, s.DeleteAccessKey(ctx(t), a1.ID))
	if _, err := s.GetAccessKey(ctx(t), a1.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAccessKey after delete: err = %v, want ErrNotFound", err)
	}
	alice, err = s.ListAccessKeys(ctx(t), "alice")
	must(t, err)
	if len(alice) != 1 || alice[0].ID != a2.ID {
		t.Errorf("ListAccessKeys(alice) after delete = %v, want [%s]", ids(alice), a2.ID)
	}
}

func ids(ks []store.AccessKey) []string {
	var out []string
	for _, k := range ks {
		out = append(out, k.ID)
	}
	return out
}

func testAccessKeyNotFound(t *testing.T, s Store) {
	const id = "AKIAMISSINGMISSING00"
	if _, err := s.GetAccessKey(ctx(t), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAccessKey: err = %v, want ErrNotFound", err)
	}
	if err := s.UpdateAccessKeyStatus(ctx(t), id, store.StatusInactive); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateAccessKeyStatus: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteAccessKey(ctx(t), id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteAccessKey: err = %v, want ErrNotFound", err)
	}
}

func testAccessKeyDuplicate(t *testing.T, s Store) {
	k := newKey("AKIADUPLICATEDUPLICA", "alice", t0)
	must(t, s.PutAccessKey(ctx(t), k))
	dup := k
	dup.User = "mallory"
	dup.Secret = secretFor("mallory")
	err := s.PutAccessKey(ctx(t), dup)
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second PutAccessKey: err = %v, want ErrExists", err)
	}
	if strings.Contains(err.Error(), dup.Secret) {
		t.Errorf("error %q contains the secret", err)
	}
	got, err := s.GetAccessKey(ctx(t), k.ID)
	must(t, err)
	sameKey(t, got, k) // the original is untouched
}

func testAccessKeyInvalid(t *testing.T, s Store) {
	good := newKey("AKIAINVALIDINVALID00", "alice", t0)
	tests := []struct {
		name string
		edit func(*store.AccessKey)
	}{
		{"empty id", func(k *store.AccessKey) { k.ID = "" }},
		{"id with newline", func(k *store.AccessKey) { k.ID = "AKIA\nX" }},
		{"empty user", func(k *store.AccessKey) { k.User = "" }},
		{"empty secret", func(k *store.AccessKey) { k.Secret = "" }},
		{"empty status", func(k *store.AccessKey) { k.Status = "" }},
		{"lower-case status", func(k *store.AccessKey) { k.Status = "active" }},
		{"unknown status", func(k *store.AccessKey) { k.Status = "Disabled" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := good
			tc.edit(&k)
			err := s.PutAccessKey(ctx(t), k)
			if err == nil {
				t.Fatal("PutAccessKey accepted it")
			}
			if k.Secret != "" && strings.Contains(err.Error(), k.Secret) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
	all, err := s.ListAccessKeys(ctx(t), "")
	must(t, err)
	if len(all) != 0 {
		t.Errorf("invalid keys were stored: %v", ids(all))
	}
	must(t, s.PutAccessKey(ctx(t), good))
	for _, status := range []string{"", "active", "INACTIVE", "Deleted"} {
		if err := s.UpdateAccessKeyStatus(ctx(t), good.ID, status); err == nil {
			t.Errorf("UpdateAccessKeyStatus(%q) accepted it", status)
		}
	}
	got, err := s.GetAccessKey(ctx(t), good.ID)
	must(t, err)
	if got.Status != store.StatusActive {
		t.Errorf("status after refused updates = %q, want Active", got.Status)
	}
}

func testAccessKeyConcurrentPuts(t *testing.T, s Store) {
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.PutAccessKey(ctx(t), newKey(fmt.Sprintf("AKIACONCURRENT%06d", i), "alice", t0))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	all, err := s.ListAccessKeys(ctx(t), "alice")
	must(t, err)
	if len(all) != n {
		t.Errorf("stored %d keys, want %d", len(all), n)
	}
}

func randomKey(t *testing.T) []byte {
	k := make([]byte, store.SealingKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func testSealingKeys(t *testing.T, s Store) {
	old := store.SealingKey{ID: "k1", Key: randomKey(t), CreatedAt: t0}
	cur := store.SealingKey{ID: "k2", Key: randomKey(t), CreatedAt: t0.Add(24 * time.Hour)}
	must(t, s.PutSealingKey(ctx(t), old))
	must(t, s.PutSealingKey(ctx(t), cur))

	if err := s.PutSealingKey(ctx(t), store.SealingKey{ID: "k1", Key: randomKey(t), CreatedAt: t0}); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate PutSealingKey: err = %v, want ErrExists", err)
	}

	retire := cur.CreatedAt.Add(12 * time.Hour)
	must(t, s.RetireSealingKey(ctx(t), "k1", retire))
	if err := s.RetireSealingKey(ctx(t), "nope", retire); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RetireSealingKey(missing): err = %v, want ErrNotFound", err)
	}
	if err := s.RetireSealingKey(ctx(t), "k2", time.Time{}); err == nil {
		t.Error("RetireSealingKey with a zero time accepted it")
	}

	keys, err := s.ListSealingKeys(ctx(t))
	must(t, err)
	if len(keys) != 2 {
		t.Fatalf("ListSealingKeys returned %d keys, want 2", len(keys))
	}
	if keys[0].ID != "k2" || keys[1].ID != "k1" {
		t.Fatalf("ListSealingKeys order = [%s %s], want newest first [k2 k1]", keys[0].ID, keys[1].ID)
	}
	if !bytes.Equal(keys[0].Key, cur.Key) || !bytes.Equal(keys[1].Key, old.Key) {
		t.Error("sealing key bytes did not round-trip")
	}
	if !keys[0].CreatedAt.Equal(cur.CreatedAt) || !keys[1].CreatedAt.Equal(old.CreatedAt) {
		t.Errorf("CreatedAt = %s, %s; want %s, %s", keys[0].CreatedAt, keys[1].CreatedAt, cur.CreatedAt, old.CreatedAt)
	}
	if !keys[0].RetireAfter.IsZero() {
		t.Errorf("current key RetireAfter = %s, want zero", keys[0].RetireAfter)
	}
	if !keys[1].RetireAfter.Equal(retire) {
		t.Errorf("retired key RetireAfter = %s, want %s", keys[1].RetireAfter, retire)
	}
}

// testSealingKeySigners: the three kinds of token keys come back as they went in: from
// before signed tokens (no public key), signing with a stored seed, signing in a token
// (public key, no seed); a token-signed key with a seed, or without its public key, is
// refused.
func testSealingKeySigners(t *testing.T, s Store) {
	pub, priv, err := ed25519.GenerateKey(nil)
	must(t, err)
	want := []store.SealingKey{
		{ID: "token", Key: randomKey(t), PublicKey: pub, SignerInToken: true, CreatedAt: t0.Add(2 * time.Hour)},
		{ID: "file", Key: randomKey(t), PublicKey: pub, SigningSeed: priv.Seed(), CreatedAt: t0.Add(time.Hour)},
		{ID: "legacy", Key: randomKey(t), CreatedAt: t0},
	}
	for _, k := range want {
		must(t, s.PutSealingKey(ctx(t), k))
	}
	for _, bad := range []store.SealingKey{
		{ID: "token-seed", Key: randomKey(t), PublicKey: pub, SigningSeed: priv.Seed(), SignerInToken: true},
		{ID: "token-nopub", Key: randomKey(t), SignerInToken: true},
	} {
		if err := s.PutSealingKey(ctx(t), bad); err == nil {
			t.Errorf("PutSealingKey accepted %s", bad.ID)
		}
	}
	got, err := s.ListSealingKeys(ctx(t))
	must(t, err)
	if len(got) != len(want) {
		t.Fatalf("%d keys, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.ID || g.SignerInToken != w.SignerInToken || !bytes.Equal(g.PublicKey, w.PublicKey) || (g.SigningSeed != nil) != (w.SigningSeed != nil) {
			t.Errorf("key %s came back as {id %s inToken %v pub %x seed %v}", w.ID, g.ID, g.SignerInToken, g.PublicKey, g.SigningSeed != nil)
		}
	}
}

func testSealingKeyInvalid(t *testing.T, s Store) {
	tests := []struct {
		name string
		key  store.SealingKey
	}{
		{"empty id", store.SealingKey{ID: "", Key: randomKey(t)}},
		{"id too long", store.SealingKey{ID: strings.Repeat("a", 33), Key: randomKey(t)}},
		{"id with slash", store.SealingKey{ID: "a/b", Key: randomKey(t)}},
		{"short key", store.SealingKey{ID: "short", Key: make([]byte, 16)}},
		{"long key", store.SealingKey{ID: "long", Key: make([]byte, 33)}},
		{"no key", store.SealingKey{ID: "none"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.PutSealingKey(ctx(t), tc.key); err == nil {
				t.Error("PutSealingKey accepted it")
			}
		})
	}
	keys, err := s.ListSealingKeys(ctx(t))
	must(t, err)
	if len(keys) != 0 {
		t.Errorf("invalid sealing keys were stored: %d", len(keys))
	}
}

func testRevocations(t *testing.T, s Store) {
	// identity compares session issue times at millisecond precision or better.
	first := t0
	later := t0.Add(time.Millisecond)
	must(t, s.PutRevocation(ctx(t), store.Revocation{Role: "deploy", Before: first}))
	must(t, s.PutRevocation(ctx(t), store.Revocation{Role: "admin", Before: first}))
	must(t, s.PutRevocation(ctx(t), store.Revocation{Role: "deploy", Before: later}))
	// An older revocation arriving late does not lower the bar.
	must(t, s.PutRevocation(ctx(t), store.Revocation{Role: "deploy", Before: first.Add(-time.Hour)}))

	got, err := s.ListRevocations(ctx(t))
	must(t, err)
	if len(got) != 2 {
		t.Fatalf("ListRevocations returned %d, want one per role (2)", len(got))
	}
	if got[0].Role != "admin" || !got[0].Before.Equal(first) {
		t.Errorf("revocation[0] = %s %s, want admin %s", got[0].Role, got[0].Before, first)
	}
	if got[1].Role != "deploy" || !got[1].Before.Equal(later) {
		t.Errorf("revocation[1] = %s %s, want deploy %s (the latest)", got[1].Role, got[1].Before, later)
	}
	if err := s.PutRevocation(ctx(t), store.Revocation{Role: "", Before: t0}); err == nil {
		t.Error("PutRevocation with no role accepted it")
	}
	if err := s.PutRevocation(ctx(t), store.Revocation{Role: "x"}); err == nil {
		t.Error("PutRevocation with a zero time accepted it")
	}

	// Node revocations: one per node, the latest kept, listed after the roles'; a node
	// named like a role is a different thing.
	must(t, s.PutRevocation(ctx(t), store.Revocation{Node: "web-1", Before: later}))
	must(t, s.PutRevocation(ctx(t), store.Revocation{Node: "web-1", Before: first}))
	must(t, s.PutRevocation(ctx(t), store.Revocation{Node: "admin", Before: first}))
	got, err = s.ListRevocations(ctx(t))
	must(t, err)
	want := []store.Revocation{{Role: "admin", Before: first}, {Role: "deploy", Before: later}, {Node: "admin", Before: first}, {Node: "web-1", Before: later}}
	if len(got) != len(want) {
		t.Fatalf("ListRevocations = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Role != want[i].Role || got[i].Node != want[i].Node || !got[i].Before.Equal(want[i].Before) {
			t.Errorf("revocation[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if err := s.PutRevocation(ctx(t), store.Revocation{Role: "r", Node: "n", Before: t0}); err == nil {
		t.Error("PutRevocation naming both a role and a node accepted it")
	}
}

func joinToken(id, node string) pki.JoinToken {
	var h [32]byte
	copy(h[:], "hash-of-"+id)
	return pki.JoinToken{ID: id, Hash: h, Node: node, Created: t0, Expires: t0.Add(time.Hour)}
}

func testJoinTokens(t *testing.T, s Store) {
	tok := joinToken("00112233445566778899aabbccddeeff", "web-1")
	must(t, s.PutJoinToken(ctx(t), tok))
	if err := s.PutJoinToken(ctx(t), joinToken(tok.ID, "other")); !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate PutJoinToken: err = %v, want ErrExists", err)
	}
	got, err := s.GetJoinToken(ctx(t), tok.ID)
	must(t, err) // and the original is untouched:
	if got.ID != tok.ID || got.Hash != tok.Hash || got.Node != tok.Node || !got.Created.Equal(tok.Created) || !got.Expires.Equal(tok.Expires) {
		t.Errorf("GetJoinToken = %+v, want %+v", got, tok)
	}
	if _, err := s.GetJoinToken(ctx(t), "ffffffffffffffffffffffffffffffff"); !errors.Is(err, pki.ErrTokenNotFound) {
		t.Errorf("GetJoinToken(missing): err = %v, want pki.ErrTokenNotFound", err)
	}
	ok, err := s.DeleteJoinToken(ctx(t), tok.ID)
	must(t, err)
	if !ok {
		t.Error("DeleteJoinToken = false for a stored token")
	}
	ok, err = s.DeleteJoinToken(ctx(t), tok.ID)
	must(t, err)
	if ok {
		t.Error("second DeleteJoinToken = true")
	}
	if _, err := s.GetJoinToken(ctx(t), tok.ID); !errors.Is(err, pki.ErrTokenNotFound) {
		t.Errorf("GetJoinToken after delete: err = %v, want pki.ErrTokenNotFound", err)
	}
	if err := s.PutJoinToken(ctx(t), pki.JoinToken{ID: "abc", Node: "web-1", Created: t0}); err == nil {
		t.Error("PutJoinToken without an expiry accepted it")
	}

	// Expired tokens are swept.
	live := joinToken("live0000000000000000000000000000", "web-2")
	dead := joinToken("dead0000000000000000000000000000", "web-3")
	dead.Expires = t0.Add(-time.Minute)
	must(t, s.PutJoinToken(ctx(t), live))
	must(t, s.PutJoinToken(ctx(t), dead))
	n, err := s.DeleteExpiredJoinTokens(ctx(t), t0)
	must(t, err)
	if n != 1 {
		t.Errorf("DeleteExpiredJoinTokens removed %d, want 1", n)
	}
	if _, err := s.GetJoinToken(ctx(t), live.ID); err != nil {
		t.Errorf("live token gone: %v", err)
	}
	if _, err := s.GetJoinToken(ctx(t), dead.ID); !errors.Is(err, pki.ErrTokenNotFound) {
		t.Errorf("expired token kept: err = %v", err)
	}
}

func testJoinTokenSingleUse(t *testing.T, s Store) {
	const goroutines = 20
	for round := range 5 {
		tok := joinToken(fmt.Sprintf("%032x", round), "web-1")
		must(t, s.PutJoinToken(ctx(t), tok))
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range goroutines {
			wg.Go(func() {
				<-start
				ok, err := s.DeleteJoinToken(ctx(t), tok.ID)
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if w := wins.Load(); w != 1 {
			t.Errorf("round %d: %d of %d concurrent DeleteJoinToken calls saw true, want exactly 1", round, w, goroutines)
		}
	}
}

// testJoinTokenRedeemWithPKI drives the store through pki's own issuance and redemption:
// of 20 concurrent redemptions of one token exactly one enrolls.
func testJoinTokenRedeemWithPKI(t *testing.T, s Store) {
	tokens := pki.NewTokens(pki.TokensConfig{}, s)
	token, _, err := tokens.Create(ctx(t), "web-1", time.Hour)
	must(t, err)
	const goroutines = 20
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range goroutines {
		wg.Go(func() {
			<-start
			rec, err := tokens.Redeem(ctx(t), token)
			switch {
			case err == nil:
				wins.Add(1)
				if rec.Node != "web-1" {
					t.Errorf("redeemed token names node %q, want web-1", rec.Node)
				}
			case !errors.Is(err, pki.ErrTokenInvalid):
				t.Errorf("Redeem: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if w := wins.Load(); w != 1 {
		t.Errorf("%d of %d concurrent redemptions succeeded, want exactly 1", w, goroutines)
	}
}

func testNodes(t *testing.T, s Store) {
	web := store.Node{Name: "web-1", Role: "web", CertSerial: "0a1b2c", EnrolledAt: t0}
	db := store.Node{Name: "db-1", Role: "db", CertSerial: "ff00", EnrolledAt: t0.Add(time.Minute)}
	must(t, s.PutNode(ctx(t), web))
	must(t, s.PutNode(ctx(t), db))
	got, err := s.GetNode(ctx(t), "web-1")
	must(t, err)
	if got.Name != web.Name || got.Role != web.Role || got.CertSerial != web.CertSerial || !got.EnrolledAt.Equal(web.EnrolledAt) {
		t.Errorf("GetNode = %+v, want %+v", got, web)
	}
	// Re-enrollment replaces the record.
	re := store.Node{Name: "web-1", Role: "web", CertSerial: "0a1b2d", EnrolledAt: t0.Add(time.Hour)}
	must(t, s.PutNode(ctx(t), re))
	got, err = s.GetNode(ctx(t), "web-1")
	must(t, err)
	if got.CertSerial != re.CertSerial || !got.EnrolledAt.Equal(re.EnrolledAt) {
		t.Errorf("after re-enrollment GetNode = %+v, want %+v", got, re)
	}
	all, err := s.ListNodes(ctx(t))
	must(t, err)
	if len(all) != 2 || all[0].Name != "db-1" || all[1].Name != "web-1" {
		t.Errorf("ListNodes = %+v, want db-1 then web-1", all)
	}
	must(t, s.DeleteNode(ctx(t), "db-1"))
	if _, err := s.GetNode(ctx(t), "db-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetNode after delete: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteNode(ctx(t), "db-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteNode: err = %v, want ErrNotFound", err)
	}
	if err := s.PutNode(ctx(t), store.Node{Name: "", CertSerial: "01"}); err == nil {
		t.Error("PutNode with no name accepted it")
	}
	if err := s.PutNode(ctx(t), store.Node{Name: "x"}); err == nil {
		t.Error("PutNode with no certificate serial accepted it")
	}

	// The certificate's expiry is kept; contacts keep the latest and do not bump the
	// version (a node touches its row on every call).
	exp := t0.Add(24 * time.Hour)
	must(t, s.PutNode(ctx(t), store.Node{Name: "web-1", Role: "web", CertSerial: "0a1b2e", EnrolledAt: t0, CertNotAfter: exp}))
	v, err := s.Version(ctx(t))
	must(t, err)
	must(t, s.TouchNode(ctx(t), "web-1", t0.Add(2*time.Minute), "10.0.1.15"))
	must(t, s.TouchNode(ctx(t), "web-1", t0.Add(time.Minute), "10.9.9.9"))
	if v2, err := s.Version(ctx(t)); err != nil || v2 != v {
		t.Errorf("Version after TouchNode = %d (%v), want %d unchanged", v2, err, v)
	}
	got, err = s.GetNode(ctx(t), "web-1")
	must(t, err)
	if !got.CertNotAfter.Equal(exp) || !got.LastContact.Equal(t0.Add(2*time.Minute)) || got.LastContactIP != "10.0.1.15" {
		t.Errorf("GetNode = %+v, want expiry %s and the latest contact %s from 10.0.1.15", got, exp, t0.Add(2*time.Minute))
	}
	all, err = s.ListNodes(ctx(t))
	must(t, err)
	if len(all) != 1 || !all[0].LastContact.Equal(got.LastContact) || !all[0].CertNotAfter.Equal(exp) {
		t.Errorf("ListNodes = %+v, want web-1 with its contact and expiry", all)
	}
	// Re-enrollment keeps the contact (it is about the node, not the certificate).
	must(t, s.PutNode(ctx(t), store.Node{Name: "web-1", Role: "web", CertSerial: "0a1b2f", EnrolledAt: t0.Add(3 * time.Hour)}))
	got, err = s.GetNode(ctx(t), "web-1")
	must(t, err)
	if !got.CertNotAfter.IsZero() || got.LastContactIP != "10.0.1.15" {
		t.Errorf("after re-enrollment without an expiry GetNode = %+v, want no expiry and the contact kept", got)
	}
	if err := s.TouchNode(ctx(t), "", t0, "10.0.0.1"); err == nil {
		t.Error("TouchNode with no name accepted it")
	}
}

func testVersion(t *testing.T, s Store) {
	last, err := s.Version(ctx(t))
	must(t, err)
	bumped := func(what string) {
		t.Helper()
		v, err := s.Version(ctx(t))
		must(t, err)
		if v <= last {
			t.Errorf("Version after %s = %d, want more than %d", what, v, last)
		}
		last = v
	}
	same := func(what string) {
		t.Helper()
		v, err := s.Version(ctx(t))
		must(t, err)
		if v != last {
			t.Errorf("Version after %s = %d, want unchanged %d", what, v, last)
		}
	}
	k := newKey("AKIAVERSIONVERSION00", "alice", t0)
	must(t, s.PutAccessKey(ctx(t), k))
	bumped("PutAccessKey")
	_, err = s.GetAccessKey(ctx(t), k.ID)
	must(t, err)
	_, err = s.ListAccessKeys(ctx(t), "")
	must(t, err)
	same("reads")
	must(t, s.UpdateAccessKeyStatus(ctx(t), k.ID, store.StatusInactive))
	bumped("UpdateAccessKeyStatus")
	must(t, s.DeleteAccessKey(ctx(t), k.ID))
	bumped("DeleteAccessKey")
	must(t, s.PutSealingKey(ctx(t), store.SealingKey{ID: "v1", Key: randomKey(t), CreatedAt: t0}))
	bumped("PutSealingKey")
	must(t, s.RetireSealingKey(ctx(t), "v1", t0.Add(time.Hour)))
	bumped("RetireSealingKey")
	must(t, s.PutRevocation(ctx(t), store.Revocation{Role: "r", Before: t0}))
	bumped("PutRevocation")
	must(t, s.PutRevocation(ctx(t), store.Revocation{Role: "r", Before: t0.Add(time.Second)}))
	bumped("PutRevocation (later)")
	must(t, s.PutRevocation(ctx(t), store.Revocation{Node: "n", Before: t0}))
	bumped("PutRevocation (node)")
	must(t, s.PutJoinToken(ctx(t), joinToken("0123456789abcdef0123456789abcdef", "n")))
	bumped("PutJoinToken")
	_, err = s.DeleteJoinToken(ctx(t), "0123456789abcdef0123456789abcdef")
	must(t, err)
	bumped("DeleteJoinToken")
	must(t, s.PutNode(ctx(t), store.Node{Name: "n", Role: "r", CertSerial: "01", EnrolledAt: t0}))
	bumped("PutNode")
	must(t, s.DeleteNode(ctx(t), "n"))
	bumped("DeleteNode")
	// Failed writes change nothing.
	_ = s.PutAccessKey(ctx(t), store.AccessKey{})
	_ = s.DeleteAccessKey(ctx(t), "AKIAMISSINGMISSING00")
	same("failed writes")

	// The counter survives a restart and never goes back.
	s2, err := s.Reopen(t, s.MasterKey())
	must(t, err)
	v, err := s2.Version(ctx(t))
	must(t, err)
	if v < last {
		t.Errorf("Version after reopen = %d, went back from %d", v, last)
	}
}

func testEncryptedAtRest(t *testing.T, s Store) {
	k := newKey("AKIAATRESTATREST0000", "alice", t0)
	must(t, s.PutAccessKey(ctx(t), k))
	sk := store.SealingKey{ID: "atrest", Key: randomKey(t), CreatedAt: t0}
	must(t, s.PutSealingKey(ctx(t), sk))

	row := s.RawRow(t, KindAccessKey, k.ID)
	if !bytes.Contains(row, []byte(k.ID)) {
		t.Fatalf("raw access key row does not hold its id: the hook reads the wrong row")
	}
	if bytes.Contains(row, []byte(k.Secret)) {
		t.Error("access key secret is stored in plain text")
	}
	// Not even a recognizable part of it.
	if bytes.Contains(row, []byte(k.Secret[10:30])) {
		t.Error("part of the access key secret is stored in plain text")
	}
	row = s.RawRow(t, KindSealingKey, sk.ID)
	if !bytes.Contains(row, []byte(sk.ID)) {
		t.Fatalf("raw sealing key row does not hold its id: the hook reads the wrong row")
	}
	if bytes.Contains(row, sk.Key[:16]) || bytes.Contains(row, sk.Key[16:]) {
		t.Error("sealing key is stored in plain text")
	}
	// Equal secrets do not give equal ciphertexts (random nonces).
	k2 := newKey("AKIAATRESTATREST0001", "alice", t0)
	k2.Secret = k.Secret
	must(t, s.PutAccessKey(ctx(t), k2))
	if bytes.Equal(stripID(s.RawRow(t, KindAccessKey, k.ID), k.ID), stripID(s.RawRow(t, KindAccessKey, k2.ID), k2.ID)) {
		t.Error("equal secrets were stored as equal rows")
	}
}

func stripID(row []byte, id string) []byte {
	return bytes.ReplaceAll(row, []byte(id), nil)
}

func testSwappedCiphertext(t *testing.T, s Store) {
	a := newKey("AKIASWAPSWAPSWAPSWA1", "alice", t0)
	b := newKey("AKIASWAPSWAPSWAPSWA2", "mallory", t0)
	must(t, s.PutAccessKey(ctx(t), a))
	must(t, s.PutAccessKey(ctx(t), b))
	s.SwapSecrets(t, KindAccessKey, a.ID, b.ID)
	for _, k := range []store.AccessKey{a, b} {
		got, err := s.GetAccessKey(ctx(t), k.ID)
		if !errors.Is(err, store.ErrDecrypt) {
			t.Errorf("GetAccessKey(%s) after swap: err = %v (secret returned: %v), want ErrDecrypt", k.ID, err, got.Secret != "")
			continue
		}
		if got.Secret != "" {
			t.Error("a secret was returned alongside the error")
		}
		if strings.Contains(err.Error(), a.Secret) || strings.Contains(err.Error(), b.Secret) {
			t.Errorf("error %q contains a secret", err)
		}
	}
	if _, err := s.ListAccessKeys(ctx(t), ""); !errors.Is(err, store.ErrDecrypt) {
		t.Errorf("ListAccessKeys after swap: err = %v, want ErrDecrypt", err)
	}

	must(t, s.PutSealingKey(ctx(t), store.SealingKey{ID: "s1", Key: randomKey(t), CreatedAt: t0}))
	must(t, s.PutSealingKey(ctx(t), store.SealingKey{ID: "s2", Key: randomKey(t), CreatedAt: t0.Add(time.Second)}))
	s.SwapSecrets(t, KindSealingKey, "s1", "s2")
	if keys, err := s.ListSealingKeys(ctx(t)); !errors.Is(err, store.ErrDecrypt) {
		t.Errorf("ListSealingKeys after swap: err = %v (%d keys), want ErrDecrypt", err, len(keys))
	}
}

func testWrongMasterKey(t *testing.T, s Store) {
	k := newKey("AKIAMASTERMASTER0000", "alice", t0)
	must(t, s.PutAccessKey(ctx(t), k))
	good := s.MasterKey()
	wrong := bytes.Clone(good)
	wrong[0] ^= 1
	bad, err := s.Reopen(t, wrong)
	if !errors.Is(err, store.ErrWrongMasterKey) {
		if bad != nil {
			got, gerr := bad.GetAccessKey(ctx(t), k.ID)
			t.Errorf("reading with the wrong key: secret matches %v, err %v", got.Secret == k.Secret, gerr)
		}
		t.Fatalf("Reopen with a wrong master key: err = %v, want ErrWrongMasterKey", err)
	}
	for _, short := range [][]byte{nil, good[:16], append(bytes.Clone(good), 0)} {
		if _, err := s.Reopen(t, short); err == nil {
			t.Errorf("Reopen with a %d-byte master key succeeded", len(short))
		}
	}
	s2, err := s.Reopen(t, good)
	must(t, err)
	got, err := s2.GetAccessKey(ctx(t), k.ID)
	must(t, err)
	sameKey(t, got, k)
}

func testReopenIdempotent(t *testing.T, s Store) {
	v1, err := s.SchemaVersion(ctx(t))
	must(t, err)
	if v1 < 1 {
		t.Fatalf("SchemaVersion = %d on a new store, want at least 1", v1)
	}
	k := newKey("AKIAREOPENREOPEN0000", "alice", t0)
	must(t, s.PutAccessKey(ctx(t), k))
	must(t, s.PutRevocation(ctx(t), store.Revocation{Role: "deploy", Before: t0}))
	cur := s
	for i := range 3 {
		next, err := cur.Reopen(t, s.MasterKey())
		if err != nil {
			t.Fatalf("reopen %d: %v", i+1, err)
		}
		cur = next
		v, err := cur.SchemaVersion(ctx(t))
		must(t, err)
		if v != v1 {
			t.Errorf("reopen %d: SchemaVersion = %d, want %d", i+1, v, v1)
		}
		got, err := cur.GetAccessKey(ctx(t), k.ID)
		must(t, err)
		sameKey(t, got, k)
		revs, err := cur.ListRevocations(ctx(t))
		must(t, err)
		if len(revs) != 1 || !revs[0].Before.Equal(t0) {
			t.Errorf("reopen %d: revocations = %+v", i+1, revs)
		}
	}
}

func testNewerSchema(t *testing.T, s Store) {
	k := newKey("AKIANEWERNEWERNEWER0", "alice", t0)
	must(t, s.PutAccessKey(ctx(t), k))
	s.AddFutureMigration(t)
	_, err := s.Reopen(t, s.MasterKey())
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Reopen after a newer migration: err = %v, want ErrSchemaTooNew", err)
	}
}
