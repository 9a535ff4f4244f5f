package proctest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/hsm"
	"github.com/phantom-perimeter/phantom/internal/hsm/hsmtest"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// TestKeysInToken: STS signs session tokens with a key in a PKCS#11 token (SoftHSM2) and
// STS and the gateway sign their audit chains with keys there, each process running as
// the threat model says (its key file, no master key). A session the AWS SDK gets from
// STS works through an endpoint and the gateway; the store holds the token key's public
// half only; the chains verify with phantom audit verify, and a tampered record is found.
// The writers' keys are in the token while their processes run and gone after.
func TestKeysInToken(t *testing.T) {
	tok := hsmtest.SoftHSM(t)
	postgresDSN(t)
	dsn, _ := storetest.PostgresSchema(t, "cluster_hsm")
	pin := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pin, []byte(tok.PIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := func(keys string) []string {
		return []string{"--pkcs11-module", tok.Module, "--pkcs11-token", tok.TokenLabel, "--pkcs11-pin-file", pin, "--pkcs11-keys", keys}
	}
	mk := bytes.Repeat([]byte{0x26}, 32)
	c := startClusterOn(t, dsn, Config{Gateways: 1, Endpoints: 1, LeastPrivilege: true, masterKey: mk,
		Args: map[string][]string{"sts": flags("token-signing,audit"), "gateway": flags("audit")}})
	ctx := t.Context()

	user, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	session, err := c.AssumeRole(ctx, user, "in-token")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(session.SessionToken)
	if err != nil || len(raw) == 0 || raw[0] != 3 {
		t.Fatalf("the session token is not version 3 (signed in the token): %v", err)
	}
	if r := c.Call(ctx, 0, session); r.Status != 200 {
		t.Fatalf("a session signed in the token, through the gateway: %d %s", r.Status, r.ErrorType)
	}

	// The store: the current key's public half, no seed, even for the master key.
	owner, err := store.OpenPostgres(ctx, store.PostgresConfig{DSN: dsn, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	sealing, err := owner.ListSealingKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur := sealing[0]
	if !cur.SignerInToken || cur.SigningSeed != nil || len(cur.PublicKey) != ed25519.PublicKeySize {
		t.Fatalf("current sealing key %s: in token %v, seed stored %v", cur.ID, cur.SignerInToken, cur.SigningSeed != nil)
	}
	// The keys are in the token (found only if sensitive and not extractable).
	token, err := hsm.Open(tok)
	if err != nil {
		t.Fatal(err)
	}
	defer token.Close()
	if _, err := token.TokenSigningKey(ctx, cur.PublicKey); err != nil {
		t.Fatalf("the token-signing key: %v", err)
	}
	writers := map[string]ed25519.PublicKey{}
	for _, chain := range []string{"sts", "gateway-1"} {
		writers[chain] = writerKey(t, filepath.Join(c.AuditDir(), chain))
		if _, err := token.FindEd25519Key(ctx, hsm.AuditLabel+chain, writers[chain]); err != nil {
			t.Fatalf("the %s chain's writer key: %v", chain, err)
		}
	}

	// The operator rotates the token key: without the token it refuses (a key in the
	// store would take the token out of use); with it the new key is made there, STS
	// signs with it within a poll, and the session of the old key keeps working.
	if out, err := c.Phantom(ctx, "keys", "rotate"); err == nil || !strings.Contains(err.Error(), "PKCS#11 token") {
		t.Fatalf("keys rotate without the token: %v\n%s", err, out)
	}
	if out, err := c.Phantom(ctx, append([]string{"keys", "rotate"}, flags("")[:6]...)...); err != nil {
		t.Fatalf("keys rotate with the token: %v\n%s", err, out)
	}
	if sealing, err = owner.ListSealingKeys(ctx); err != nil {
		t.Fatal(err)
	}
	next := sealing[0]
	if next.ID == cur.ID || !next.SignerInToken || next.SigningSeed != nil {
		t.Fatalf("after rotation the current key is %s (in token %v, seed %v)", next.ID, next.SignerInToken, next.SigningSeed != nil)
	}
	waitFor(t, 10*time.Second, "STS to sign with the rotated key", func() bool {
		s, err := c.AssumeRole(ctx, user, "in-token-2")
		if err != nil {
			return false
		}
		b, _ := base64.RawURLEncoding.DecodeString(s.SessionToken)
		return len(b) > 2+len(next.ID) && b[0] == 3 && string(b[2:2+int(b[1])]) == next.ID && c.Call(ctx, 0, s).Status == 200
	})
	if r := c.Call(ctx, 0, session); r.Status != 200 {
		t.Fatalf("the old key's session after rotation: %d %s", r.Status, r.ErrorType)
	}

	c.Close()
	for chain, pub := range writers {
		if _, err := token.FindEd25519Key(ctx, hsm.AuditLabel+chain, pub); err == nil {
			t.Errorf("the %s chain's writer key is still in the token after its process stopped", chain)
		}
	}
	// STS without the token does not fall back to a key in the store: it refuses to start.
	c.cfg.Args = nil
	plain, err := c.component(ctx, "sts-plain", "", "sts", "sts", "--listen", "127.0.0.1:0", "--audit-chain", "sts-plain")
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Start(ctx); err == nil {
		plain.Stop()
		t.Fatal("STS started without the token that holds the current token-signing key")
	} else if !strings.Contains(err.Error(), "PKCS#11 token") {
		t.Fatalf("STS without the token: %v", err)
	}

	// Pinned to the perimeter CA, with the store's anchors: the full check.
	verify := func() (string, error) {
		out, err := exec.Command(c.cfg.Bin, "audit", "verify", "--ca", filepath.Join(c.cfg.Dir, "data", "sts", "ca.pem"), "--store", dsn, "--chain", "sts", "--chain", "gateway-1", c.AuditDir()).CombinedOutput()
		return string(out), err
	}
	out, err := verify()
	if err != nil || strings.Contains(out, "not checked") || strings.Contains(out, "warning") {
		t.Fatalf("phantom audit verify: %v\n%s", err, out)
	}
	t.Logf("phantom audit verify:\n%s", out)
	// A digest the token's key signed, its signature changed: refused.
	dig := filepath.Join(c.AuditDir(), "sts", "00000001.digest")
	d, err := os.ReadFile(dig)
	if err != nil {
		t.Fatal(err)
	}
	j := bytes.Index(d, []byte(`"sig":"`)) + len(`"sig":"`) + 10
	orig := d[j]
	d[j] = 'A'
	if orig == 'A' {
		d[j] = 'B'
	}
	if err := os.WriteFile(dig, d, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err = verify(); err == nil || !strings.Contains(out, "sts") {
		t.Fatalf("phantom audit verify accepted a digest signature changed (%v):\n%s", err, out)
	}
	t.Logf("digest signature changed: phantom audit verify: %v\n%s", err, out)
	d[j] = orig
	if err := os.WriteFile(dig, d, 0o600); err != nil {
		t.Fatal(err)
	}
	// One byte of a gateway record changed: refused.
	seg := firstSegment(t, filepath.Join(c.AuditDir(), "gateway-1"))
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`"eventName":"`))
	if i < 0 {
		t.Fatalf("no event in %s", seg)
	}
	b[i+len(`"eventName":"`)] ^= 0x01
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = verify()
	if err == nil || !strings.Contains(out, "gateway-1") {
		t.Fatalf("phantom audit verify accepted a tampered gateway chain (%v):\n%s", err, out)
	}
	t.Logf("tampered %s: phantom audit verify: %v\n%s", filepath.Base(seg), err, out)
}

// writerKey is the public key of the last writer certificate in a chain's signers.pem.
func writerKey(t *testing.T, dir string) ed25519.PublicKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "signers.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var pub ed25519.PublicKey
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ = cert.PublicKey.(ed25519.PublicKey)
	}
	if pub == nil {
		t.Fatalf("no writer certificate in %s", dir)
	}
	return pub
}

// firstSegment is the chain's first record segment.
func firstSegment(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".log") || strings.HasSuffix(e.Name(), ".jsonl") {
			return filepath.Join(dir, e.Name())
		}
	}
	t.Fatalf("no segment in %s", dir)
	return ""
}
