package hsm_test

import (
	"crypto"
	"crypto/ed25519"
	"encoding/asn1"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/phantom-perimeter/phantom/internal/hsm"
	"github.com/phantom-perimeter/phantom/internal/hsm/hsmtest"
)

// rawSession is a session of another application on the token (the test's own load of
// the module), to look at what Phantom made the way any PKCS#11 client could.
func rawSession(t *testing.T, cfg hsm.Config) (*pkcs11.Ctx, pkcs11.SessionHandle) {
	t.Helper()
	mod := pkcs11.New(cfg.Module)
	if err := mod.Initialize(); err != nil && !strings.Contains(err.Error(), "CKR_CRYPTOKI_ALREADY_INITIALIZED") {
		t.Fatal(err)
	}
	slots, err := mod.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if info, err := mod.GetTokenInfo(s); err == nil && info.Label == cfg.TokenLabel {
			h, err := mod.OpenSession(s, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
			if err != nil {
				t.Fatal(err)
			}
			if err := mod.Login(h, pkcs11.CKU_USER, cfg.PIN); err != nil && !strings.Contains(err.Error(), "ALREADY_LOGGED_IN") {
				t.Fatal(err)
			}
			t.Cleanup(func() { mod.CloseSession(h); mod.Destroy() })
			return mod, h
		}
	}
	t.Fatalf("no token %q", cfg.TokenLabel)
	return nil, 0
}

func findByLabel(t *testing.T, mod *pkcs11.Ctx, h pkcs11.SessionHandle, class uint, label string) []pkcs11.ObjectHandle {
	t.Helper()
	if err := mod.FindObjectsInit(h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
		t.Fatal(err)
	}
	objs, _, err := mod.FindObjects(h, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := mod.FindObjectsFinal(h); err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestEd25519InToken: a token-signing key made in the token signs pure Ed25519 that the
// standard library verifies; another process finds it by its public key; it refuses
// Ed25519ctx and Ed25519ph rather than sign pure Ed25519 under their name; and its private
// half cannot be read or wrapped out of the token.
func TestEd25519InToken(t *testing.T) {
	cfg := hsmtest.SoftHSM(t)
	tok := open(t, cfg)
	k, err := tok.NewEd25519Key(t.Context(), hsm.TokenSigningLabel)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(ed25519.PublicKey)
	msg := []byte("phantom test message")
	sig, err := k.Sign(nil, msg, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, msg, sig) {
		t.Fatal("the token's signature does not verify")
	}
	if _, err := k.Sign(nil, msg, &ed25519.Options{Context: "phantom session token v2"}); err == nil {
		t.Fatal("an Ed25519ctx signature was asked for and given")
	}
	if _, err := k.Sign(nil, msg, &ed25519.Options{Hash: crypto.SHA512}); err == nil {
		t.Fatal("an Ed25519ph signature was asked for and given")
	}
	if _, err := k.Sign(nil, msg, crypto.SHA256); err == nil {
		t.Fatal("a pre-hashed signature was asked for and given")
	}
	// Concurrent signers share the bounded session pool.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if s, err := k.Sign(nil, msg, crypto.Hash(0)); err != nil || !ed25519.Verify(pub, msg, s) {
				t.Error("concurrent sign:", err)
			}
		})
	}
	wg.Wait()

	// Another process, another session, finds it by its public key; not another's.
	tok2 := open(t, cfg)
	k2, err := tok2.TokenSigningKey(t.Context(), pub)
	if err != nil {
		t.Fatal(err)
	}
	if sig2, err := k2.Sign(nil, msg, crypto.Hash(0)); err != nil || !ed25519.Verify(pub, msg, sig2) {
		t.Fatalf("found key: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if _, err := tok2.TokenSigningKey(t.Context(), other); err == nil {
		t.Fatal("found a key the token does not hold")
	}
	if _, err := tok2.FindEd25519Key(t.Context(), hsm.AuditLabel+"sts", pub); err == nil {
		t.Fatal("found the token-signing key under an audit label")
	}

	// What any application logged in to the token sees: no value, no wrapping.
	mod, h := rawSession(t, cfg)
	privs := findByLabel(t, mod, h, pkcs11.CKO_PRIVATE_KEY, hsm.TokenSigningLabel)
	if len(privs) != 1 {
		t.Fatalf("%d private keys labelled %s", len(privs), hsm.TokenSigningLabel)
	}
	attrs, err := mod.GetAttributeValue(h, privs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if attrs[0].Value[0] == 0 || attrs[1].Value[0] != 0 {
		t.Fatalf("CKA_SENSITIVE %v, CKA_EXTRACTABLE %v: want true, false", attrs[0].Value, attrs[1].Value)
	}
	if _, err := mod.GetAttributeValue(h, privs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); err == nil || !strings.Contains(err.Error(), "CKR_ATTRIBUTE_SENSITIVE") {
		t.Fatalf("read CKA_VALUE of the private key: %v, want CKR_ATTRIBUTE_SENSITIVE", err)
	}
	wrapKey, err := mod.GenerateKey(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32), pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.WrapKey(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}, wrapKey, privs[0]); err == nil {
		t.Fatal("the private key was wrapped out of the token")
	}
	// Setting it extractable afterwards is refused too (CKA_EXTRACTABLE only goes to false).
	if err := mod.SetAttributeValue(h, privs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)}); err == nil {
		t.Fatal("the private key was made extractable")
	}

	// Destroyed, it is gone for every process.
	if err := k.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := tok2.TokenSigningKey(t.Context(), pub); err == nil {
		t.Fatal("a destroyed key was found")
	}
}

// TestEd25519ExtractableRefused: a key pair under Phantom's label whose private half
// could leave the token (made by someone else, extractable) is refused, not used.
func TestEd25519ExtractableRefused(t *testing.T) {
	cfg := hsmtest.SoftHSM(t)
	tok := open(t, cfg)
	mod, h := rawSession(t, cfg)
	oid, _ := asn1.Marshal(asn1.ObjectIdentifier{1, 3, 101, 112})
	id := []byte("planted")
	pubH, _, err := mod.GenerateKeyPair(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(0x1055, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, oid),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, hsm.TokenSigningLabel), pkcs11.NewAttribute(pkcs11.CKA_ID, id), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, hsm.TokenSigningLabel), pkcs11.NewAttribute(pkcs11.CKA_ID, id)})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := mod.GetAttributeValue(h, pubH, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		t.Fatal(err)
	}
	var pub []byte
	if _, err := asn1.Unmarshal(attrs[0].Value, &pub); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.TokenSigningKey(t.Context(), pub); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("an extractable key was used: %v", err)
	}
}
