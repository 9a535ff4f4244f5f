package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func testCSR(t *testing.T) *x509.CertificateRequest {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	return csr
}

// A component's token enrolls exactly its grant (identity, names, audit chains), once; a
// node's token enrolls no component and a component's no node; the certificate carries
// the grant, so a renewal reads it back unchanged.
func TestComponentEnrollment(t *testing.T) {
	ca := newTestCA(t, nil)
	tokens := NewTokens(TokensConfig{}, NewMemoryTokenStore())
	g := Grant{
		Identity:    Identity{testAccount, KindGateway, "gateway"},
		DNSNames:    []string{"gw.internal", "localhost"},
		IPs:         []netip.Addr{netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("::1")},
		AuditChains: []string{"gateway-1"},
	}
	tok, _, err := tokens.CreateGrant(t.Context(), g, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.Enroll(t.Context(), tokens, tok, testCSR(t)); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("a component's token enrolled a node: %v", err)
	}
	tok, _, _ = tokens.CreateGrant(t.Context(), g, time.Hour)
	cert, got, err := ca.EnrollComponent(t.Context(), tokens, tok, testCSR(t), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got.Identity != g.Identity {
		t.Fatalf("grant %+v", got)
	}
	back, err := GrantOf(cert)
	if err != nil {
		t.Fatal(err)
	}
	if back.Identity != g.Identity || !slices.Equal(back.DNSNames, g.DNSNames) || !slices.Equal(back.IPs, g.IPs) || !slices.Equal(back.AuditChains, g.AuditChains) {
		t.Fatalf("GrantOf = %+v, want %+v", back, g)
	}
	if _, _, err := ca.EnrollComponent(t.Context(), tokens, tok, testCSR(t), time.Hour); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("a token enrolled twice: %v", err)
	}
	nodeTok, _, _ := tokens.Create(t.Context(), "n1", time.Hour)
	if _, _, err := ca.EnrollComponent(t.Context(), tokens, nodeTok, testCSR(t), time.Hour); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("a node's token enrolled a component: %v", err)
	}
	for name, bad := range map[string]Grant{
		"node kind":      {Identity: Identity{testAccount, KindNode, "n1"}},
		"audit kind":     {Identity: Identity{testAccount, KindAudit, "gateway"}},
		"bad DNS name":   {Identity: g.Identity, DNSNames: []string{"a..b"}},
		"bad chain":      {Identity: g.Identity, AuditChains: []string{"Gateway"}},
		"zoned address":  {Identity: g.Identity, IPs: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}},
		"other identity": {Identity: Identity{"1", KindGateway, "g"}},
	} {
		if _, _, err := tokens.CreateGrant(t.Context(), bad, time.Hour); err == nil {
			t.Errorf("%s: token created", name)
		}
	}
	s, err := MarshalGrant(g)
	if err != nil {
		t.Fatal(err)
	}
	if rt, err := ParseGrant(s); err != nil || rt.Identity != g.Identity || !slices.Equal(rt.IPs, g.IPs) {
		t.Fatalf("ParseGrant(MarshalGrant) = %+v, %v", rt, err)
	}
	if _, err := ca.Issue(Request{Identity: Identity{testAccount, KindNode, "n1"}, Client: true, AuditChains: []string{"x"}}); err == nil {
		t.Fatal("a node certificate names audit chains")
	}
}
