package store

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

func testMaster(b byte) []byte { return bytes.Repeat([]byte{b}, keys.MasterSize) }

func ring(t *testing.T, master []byte, c keys.Component) *keys.Ring {
	t.Helper()
	var r *keys.Ring
	var err error
	if c == keys.Operator {
		r, err = keys.FromMaster(master)
	} else {
		r, err = keys.ForComponent(master, c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A database written before per-purpose keys (every secret sealed as version 1 under
// the one legacy key) is rewrapped the first time a holder of the master key opens it;
// until then a component's key file reads none of it.
func TestLegacySecretsRewrapped(t *testing.T) {
	dir := t.TempDir()
	master := testMaster(3)
	s, err := OpenSQLite(t.Context(), Config{DataDir: dir, MasterKey: master})
	if err != nil {
		t.Fatal(err)
	}
	ak := AccessKey{ID: "AKIAAAAAAAAAAAAAAAAA", User: "alice", Secret: "0123456789012345678901234567890123456789", Status: StatusActive}
	if err := s.PutAccessKey(t.Context(), ak); err != nil {
		t.Fatal(err)
	}
	// Turn the stored secret into what an older Phantom wrote.
	legacy, err := sealWith(s.seal.legacy, []byte{sealVersionLegacy}, aadPrefixLegacy, kindAccessKey, ak.ID, []byte(ak.Secret))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(t.Context(), `UPDATE access_keys SET secret_sealed = ? WHERE id = ?`, legacy, ak.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()

	gw, err := OpenSQLite(t.Context(), Config{DataDir: dir, Keys: ring(t, master, keys.Gateway)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.GetAccessKey(t.Context(), ak.ID); err == nil {
		t.Fatal("a gateway's key file opened a value sealed under the legacy master-key derivation")
	}
	gw.Close()

	s, err = OpenSQLite(t.Context(), Config{DataDir: dir, MasterKey: master})
	if err != nil {
		t.Fatal(err)
	}
	var sealed []byte
	if err := s.r.QueryRowContext(t.Context(), `SELECT secret_sealed FROM access_keys WHERE id = ?`, ak.ID).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if sealed[0] != sealVersion {
		t.Fatalf("after an open with the master key the secret is still version %d", sealed[0])
	}
	s.Close()
	gw, err = OpenSQLite(t.Context(), Config{DataDir: dir, Keys: ring(t, master, keys.Gateway)})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	got, err := gw.GetAccessKey(t.Context(), ak.ID)
	if err != nil || got.Secret != ak.Secret {
		t.Fatalf("gateway read %q, %v after the rewrap", got.Secret, err)
	}
}

// Each component reads the kinds of secret its purposes cover and no other; the edge
// reads none. The checks in the database refuse a key file of another perimeter.
func TestComponentKeysReadOnlyTheirSecrets(t *testing.T) {
	dir := t.TempDir()
	master := testMaster(5)
	// Before any open with the master key, a key file finds no check to trust.
	if _, err := OpenSQLite(t.Context(), Config{DataDir: t.TempDir(), Keys: ring(t, master, keys.Gateway)}); err == nil {
		t.Fatal("a gateway key file opened a store the master key never opened")
	}
	op, err := OpenSQLite(t.Context(), Config{DataDir: dir, MasterKey: master})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	pub, seed, _ := ed25519.GenerateKey(nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(op.PutAccessKey(ctx, AccessKey{ID: "AKIAAAAAAAAAAAAAAAAB", User: "alice", Secret: "0123456789012345678901234567890123456789", Status: StatusActive}))
	must(op.PutSealingKey(ctx, SealingKey{ID: "k1", Key: bytes.Repeat([]byte{9}, 32), SigningSeed: seed.Seed(), PublicKey: pub, CreatedAt: time.Unix(1, 0)}))
	must(op.PutMFADevice(ctx, MFADevice{Serial: "arn:aws:iam::123456789012:mfa/alice", Seed: bytes.Repeat([]byte{4}, 20)}))
	if _, err := op.PutSecretIfAbsent(ctx, "pki/ca/123456789012", []byte("ca")); err != nil {
		t.Fatal(err)
	}
	op.Close()

	type reads struct{ accessKeys, tokenKeys, signing, mfa, secrets bool }
	for _, tc := range []struct {
		c    keys.Component
		want reads
	}{
		{keys.STS, reads{true, true, true, true, true}},
		{keys.Gateway, reads{accessKeys: true, tokenKeys: true}},
		{keys.Console, reads{accessKeys: true, tokenKeys: true}},
		{keys.Endpoint, reads{}},
		{keys.Egress, reads{}},
		{keys.Detector, reads{}},
	} {
		t.Run(string(tc.c), func(t *testing.T) {
			s, err := OpenSQLite(ctx, Config{DataDir: dir, Keys: ring(t, master, tc.c)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.ListAccessKeys(ctx, "")
			check(t, "access keys", tc.want.accessKeys, err)
			ks, err := s.ListSealingKeys(ctx)
			check(t, "token keys", tc.want.tokenKeys, err)
			if err == nil && (ks[0].SigningSeed != nil) != tc.want.signing {
				t.Errorf("signing seed read: %v, want %v", ks[0].SigningSeed != nil, tc.want.signing)
			}
			if err == nil && !bytes.Equal(ks[0].PublicKey, pub) {
				t.Error("the public key did not come back")
			}
			_, err = s.ListMFADevices(ctx, "")
			check(t, "MFA seeds", tc.want.mfa, err)
			_, err = s.GetSecret(ctx, "pki/ca/123456789012")
			check(t, "named secrets", tc.want.secrets, err)
			// Nor can it write what it cannot read: a signed sealing key needs the
			// token-signing key.
			err = s.PutSealingKey(ctx, SealingKey{ID: "k-" + string(tc.c), Key: bytes.Repeat([]byte{8}, 32), SigningSeed: seed.Seed(), PublicKey: pub})
			check(t, "new signing key", tc.want.signing, err)
		})
	}
	// A key file of another perimeter (another master key) is refused at open.
	if _, err := OpenSQLite(ctx, Config{DataDir: dir, Keys: ring(t, testMaster(6), keys.Gateway)}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("a foreign gateway key file: err %v, want ErrWrongKey", err)
	}
	if _, err := OpenSQLite(ctx, Config{DataDir: dir, MasterKey: testMaster(6)}); !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("a foreign master key: err %v, want ErrWrongMasterKey", err)
	}
}

func check(t *testing.T, what string, allowed bool, err error) {
	t.Helper()
	switch {
	case allowed && err != nil:
		t.Errorf("%s refused: %v", what, err)
	case !allowed && err == nil:
		t.Errorf("%s read without the key", what)
	case !allowed && !errors.Is(err, keys.ErrNotHeld):
		t.Errorf("%s: err %v, want one wrapping keys.ErrNotHeld", what, err)
	}
}
