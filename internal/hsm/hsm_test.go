package hsm_test

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/hsm"
	"github.com/phantom-perimeter/phantom/internal/hsm/hsmtest"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

const account = "123456789012"

func softHSM(t *testing.T) hsm.Config { return hsmtest.SoftHSM(t) }

func open(t testing.TB, cfg hsm.Config) *hsm.Token {
	t.Helper()
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	return tok
}

// TestRootInToken: a perimeter whose root key is made and kept in a PKCS#11 token
// (SoftHSM2): the store holds no root key; issuing CAs are signed in the token, also by
// a later process with a new session; a new root goes there too; a process with neither
// the token nor the store's root key cannot make an issuing CA.
func TestRootInToken(t *testing.T) {
	cfg := softHSM(t)
	tok := open(t, cfg)
	st, err := store.Open(t.Context(), store.OpenConfig{DataDir: t.TempDir(), MasterKey: make32()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	withToken := func(tok *hsm.Token) pki.AuthorityConfig {
		return pki.AuthorityConfig{Config: pki.Config{Account: account}, Issue: true, RootSigner: tok.RootSigner, NewRootKey: tok.NewRootKey}
	}
	a, err := pki.OpenAuthority(t.Context(), withToken(tok), st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetSecret(t.Context(), "pki/root/"+account); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the store holds a root key: %v", err)
	}
	leaf := issue(t, a)
	roots := rootsOf(t, a)
	if len(roots) != 1 {
		t.Fatalf("%d roots", len(roots))
	}
	if _, err := tok.RootSigner(t.Context(), roots[0]); err != nil {
		t.Fatal(err)
	}

	// Another process, another session: rotates the issuing CA with the token's root.
	tok2 := open(t, cfg)
	b, err := pki.OpenAuthority(t.Context(), withToken(tok2), st)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := b.Rotate(t.Context(), false)
	if err != nil {
		t.Fatalf("rotate with the token's root: %v", err)
	}
	if err := cert.CheckSignatureFrom(roots[0]); err != nil {
		t.Fatalf("the new issuing CA is not signed by the token's root: %v", err)
	}
	if _, err := b.Verifier().Verify([]*x509.Certificate{leaf}, x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatalf("a leaf of the old issuing CA after rotation: %v", err)
	}
	// A new root is made in the token too.
	if _, err := b.Rotate(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	if n := len(rootsOf(t, b)); n != 2 {
		t.Fatalf("%d roots after a root rotation", n)
	}
	for _, r := range rootsOf(t, b) {
		if _, err := tok2.RootSigner(t.Context(), r); err != nil {
			t.Errorf("root %s: %v", r.SerialNumber.Text(16), err)
		}
	}

	// Without the token (and without the store's root key) no issuing CA is made.
	c, err := pki.OpenAuthority(t.Context(), pki.AuthorityConfig{Config: pki.Config{Account: account}, Issue: true}, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rotate(t.Context(), false); err == nil {
		t.Fatal("a process without the token made an issuing CA")
	}
	// With the master key's store root key but a token root: the store has none.
	d, err := pki.OpenAuthority(t.Context(), pki.AuthorityConfig{Config: pki.Config{Account: account}, Issue: true, Root: true}, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Rotate(t.Context(), false); err == nil {
		t.Fatal("an issuing CA was made without the token's root key")
	}
}

// TestOpenRefuses: a wrong PIN, an unknown token, a missing module, an empty config.
func TestOpenRefuses(t *testing.T) {
	cfg := softHSM(t)
	for name, c := range map[string]hsm.Config{
		"wrong PIN":      {Module: cfg.Module, TokenLabel: cfg.TokenLabel, PIN: "9999"},
		"unknown token":  {Module: cfg.Module, TokenLabel: "nope", PIN: cfg.PIN},
		"missing module": {Module: "/nonexistent/libpkcs11.so", TokenLabel: cfg.TokenLabel, PIN: cfg.PIN},
		"no PIN":         {Module: cfg.Module, TokenLabel: cfg.TokenLabel},
	} {
		t.Run(name, func(t *testing.T) {
			if tok, err := hsm.Open(c); err == nil {
				tok.Close()
				t.Fatal("opened")
			}
		})
	}
}

func make32() []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i + 1)
	}
	return k
}

func issue(t *testing.T, a *pki.Authority) *x509.Certificate {
	t.Helper()
	c, err := a.Issue(pki.Request{Identity: pki.Identity{Account: account, Kind: pki.KindGateway, Name: "gateway"}, DNSNames: []string{"localhost"}, Server: true, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

func rootsOf(t *testing.T, a *pki.Authority) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, c := range a.Certificates() {
		if c.Role != pki.RoleRoot {
			continue
		}
		x, err := x509.ParseCertificate(c.DER)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

// TestIssuingInToken: with the issuing CAs' keys in the token too, the store holds no key
// of the CA at all; STS (a process with the token, without the root) issues; a process
// with neither cannot.
func TestIssuingInToken(t *testing.T) {
	cfg := softHSM(t)
	tok := open(t, cfg)
	st, err := store.Open(t.Context(), store.OpenConfig{DataDir: t.TempDir(), MasterKey: make32()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	op, err := pki.OpenAuthority(t.Context(), pki.AuthorityConfig{Config: pki.Config{Account: account}, Issue: true,
		RootSigner: tok.RootSigner, NewRootKey: tok.NewRootKey, IssuingSigner: tok.IssuingSigner, NewIssuingKey: tok.NewIssuingKey}, st)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := op.CA()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetSecret(t.Context(), "pki/issuing/"+ca.Certificate().SerialNumber.Text(16)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the store holds the issuing key: %v", err)
	}
	sts, err := pki.OpenAuthority(t.Context(), pki.AuthorityConfig{Config: pki.Config{Account: account}, Issue: true, IssuingSigner: open(t, cfg).IssuingSigner}, st)
	if err != nil {
		t.Fatal(err)
	}
	leaf := issue(t, sts)
	if err := leaf.CheckSignatureFrom(ca.Certificate()); err != nil {
		t.Fatalf("STS's leaf is not signed by the token's issuing CA: %v", err)
	}
	if _, err := op.Verifier().Verify([]*x509.Certificate{leaf}, x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatal(err)
	}
	// A rotation makes the next issuing key in the token as well; STS takes it.
	next, err := op.Rotate(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := sts.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c, _ := sts.CA(); !c.Certificate().Equal(next) {
		t.Fatal("STS does not issue from the rotated issuing CA")
	}
	if a, err := pki.OpenAuthority(t.Context(), pki.AuthorityConfig{Config: pki.Config{Account: account}, Issue: true}, st); err == nil {
		if _, err := a.CA(); err == nil {
			t.Fatal("a process without the token issues")
		}
	}
}
