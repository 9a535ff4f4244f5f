package storetest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

func caCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"CACertificatesAndRevocations", testCACertificates},
		{"AuthorityOverTheStore", testAuthorityOverStore},
	}
}

func testCACertificates(t *testing.T, s Store) {
	v0, _ := s.Version(ctx(t))
	c := pki.CACertificate{Serial: "a1", DER: []byte{1, 2, 3}, Role: pki.RoleRoot, NotBefore: t0, NotAfter: t0.Add(time.Hour)}
	must(t, s.PutCACertificate(ctx(t), c))
	again := c
	again.DER = []byte{9}
	must(t, s.PutCACertificate(ctx(t), again)) // first one stays
	must(t, s.PutCACertificate(ctx(t), pki.CACertificate{Serial: "b2", DER: []byte{4}, Role: pki.RoleIssuing, NotBefore: t0.Add(time.Minute), NotAfter: t0.Add(time.Hour)}))
	if err := s.PutCACertificate(ctx(t), pki.CACertificate{Serial: "c3", DER: []byte{4}, Role: "leaf", NotBefore: t0, NotAfter: t0}); err == nil {
		t.Error("a CA certificate of role leaf was stored")
	}
	got, err := s.ListCACertificates(ctx(t))
	if err != nil || len(got) != 2 || got[0].Serial != "a1" || string(got[0].DER) != "\x01\x02\x03" || got[1].Role != pki.RoleIssuing || !got[0].NotBefore.Equal(t0) {
		t.Fatalf("ListCACertificates = %+v, %v", got, err)
	}
	must(t, s.DistrustCACertificate(ctx(t), "b2", t0.Add(2*time.Minute)))
	must(t, s.DistrustCACertificate(ctx(t), "b2", t0.Add(time.Hour))) // the first time counts
	if err := s.DistrustCACertificate(ctx(t), "zz", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("distrust an unknown CA: %v", err)
	}
	got, _ = s.ListCACertificates(ctx(t))
	if !got[1].DistrustedAt.Equal(t0.Add(2*time.Minute)) || !got[0].DistrustedAt.IsZero() {
		t.Fatalf("after distrust: %+v", got)
	}
	id := pki.Identity{Account: "123456789012", Kind: pki.KindEndpoint, Name: "vpce-0123456789abcdef0"}
	must(t, s.PutCertificateRevocation(ctx(t), pki.Revocation{Serial: "ff", RevokedAt: t0, Reason: "key compromise"}))
	must(t, s.PutCertificateRevocation(ctx(t), pki.Revocation{Identity: id, IssuedBefore: t0.Add(time.Hour), RevokedAt: t0, Reason: "host"}))
	must(t, s.PutCertificateRevocation(ctx(t), pki.Revocation{Identity: id, IssuedBefore: t0, RevokedAt: t0, Reason: "older"})) // never back
	if err := s.PutCertificateRevocation(ctx(t), pki.Revocation{Serial: "XY", RevokedAt: t0}); err == nil {
		t.Error("a malformed revocation was stored")
	}
	revs, err := s.ListCertificateRevocations(ctx(t))
	if err != nil || len(revs) != 2 {
		t.Fatalf("ListCertificateRevocations = %+v, %v", revs, err)
	}
	for _, r := range revs {
		switch r.ID() {
		case "serial:ff":
			if r.Reason != "key compromise" {
				t.Errorf("serial revocation %+v", r)
			}
		case "identity:" + id.String():
			if r.Identity != id || !r.IssuedBefore.Equal(t0.Add(time.Hour)) || r.Reason != "host" {
				t.Errorf("identity revocation %+v", r)
			}
		default:
			t.Errorf("unexpected revocation %+v", r)
		}
	}
	if v1, _ := s.Version(ctx(t)); v1 <= v0 {
		t.Error("CA certificates and revocations did not bump the version")
	}
}

// The CA over a real store: created with a root, issuing, rotated, revoked; a second
// authority over the same store agrees.
func testAuthorityOverStore(t *testing.T, s Store) {
	cfg := pki.AuthorityConfig{Config: pki.Config{Account: "123456789012"}, Issue: true, Root: true}
	a, err := pki.OpenAuthority(ctx(t), cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.OpenAuthority(ctx(t), cfg, s)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(a *pki.Authority) *tls.Certificate {
		ca, err := a.CA()
		if err != nil {
			t.Fatal(err)
		}
		c, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: "123456789012", Kind: pki.KindGateway, Name: "gateway"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := issue(a)
	if _, err := a.Rotate(ctx(t), false); err != nil {
		t.Fatal(err)
	}
	must(t, b.Refresh(ctx(t)))
	second := issue(b)
	for _, c := range []*tls.Certificate{first, second} {
		if _, err := b.Verifier().Verify([]*x509.Certificate{c.Leaf}, x509.ExtKeyUsageServerAuth); err != nil {
			t.Fatal(err)
		}
	}
	must(t, a.Revoke(ctx(t), pki.Revocation{Serial: first.Leaf.SerialNumber.Text(16), RevokedAt: time.Now(), Reason: "test"}))
	must(t, b.Refresh(ctx(t)))
	if _, err := b.Verifier().Verify([]*x509.Certificate{first.Leaf}, x509.ExtKeyUsageServerAuth); !errors.Is(err, pki.ErrRevoked) {
		t.Fatalf("revoked certificate: %v", err)
	}
}
