package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
)

// issueAuditSigner has ca certify a fresh Ed25519 key as the writer of chain.
func issueAuditSigner(t *testing.T, ca *CA, chain string) (ed25519.PrivateKey, *x509.Certificate) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Sign(pub, Request{Identity: Identity{Account: testAccount, Kind: KindAudit, Name: chain}, AuditSigning: true})
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// TestAuditSigner: a writer certificate vouches for its key and chain; one from another
// CA, a TLS certificate, or another account's is refused.
func TestAuditSigner(t *testing.T) {
	ca := newTestCA(t, nil)
	key, cert := issueAuditSigner(t, ca, "sts")
	s, err := ca.Verifier().VerifyAuditSigner(cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if s.Chain != "sts" || !s.Key.Equal(key.Public()) || !s.NotAfter.Equal(cert.NotAfter) {
		t.Fatalf("VerifyAuditSigner = %+v", s)
	}

	other := newTestCA(t, nil)
	_, foreign := issueAuditSigner(t, other, "sts")
	tlsCert, err := ca.Issue(Request{Identity: Identity{Account: testAccount, Kind: KindGateway, Name: "sts"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{
		"another CA's":      foreign.Raw,
		"a TLS certificate": tlsCert.Leaf.Raw,
		"not a certificate": []byte("junk"),
	} {
		if _, err := ca.Verifier().VerifyAuditSigner(der); err == nil {
			t.Errorf("%s was accepted as an audit writer", name)
		}
	}
}

// TestAuditSignerIssueRules: audit identities get only the audit usage, on an Ed25519
// key; other identities never get it.
func TestAuditSignerIssueRules(t *testing.T) {
	ca := newTestCA(t, nil)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	audit := Identity{Account: testAccount, Kind: KindAudit, Name: "gateway"}
	for _, tc := range []struct {
		name string
		pub  any
		req  Request
		want string
	}{
		{"TLS usage for an audit writer", edPub, Request{Identity: audit, AuditSigning: true, Server: true}, "no TLS usage"},
		{"audit identity without audit signing", edPub, Request{Identity: audit, Client: true}, "audit writer identities only"},
		{"audit signing for a gateway", edPub, Request{Identity: Identity{Account: testAccount, Kind: KindGateway, Name: "gw"}, AuditSigning: true}, "audit writer identities only"},
		{"an ECDSA key", &ecKey.PublicKey, Request{Identity: audit, AuditSigning: true}, "Ed25519"},
		{"a bad chain name", edPub, Request{Identity: Identity{Account: testAccount, Kind: KindAudit, Name: "Gateway"}, AuditSigning: true}, "not [a-z0-9-]+"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ca.Sign(tc.pub, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sign = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestAuditSignerRefusedForTLS: an audit writer's certificate authenticates no TLS
// server or client, whatever kinds the verifier allows.
func TestAuditSignerRefusedForTLS(t *testing.T) {
	ca := newTestCA(t, nil)
	key, cert := issueAuditSigner(t, ca, "gateway")
	auditTLS := &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	v := ca.Verifier()
	if _, err := v.Verify([]*x509.Certificate{cert}, x509.ExtKeyUsageServerAuth); err == nil {
		t.Fatal("an audit writer certificate verified as a TLS server")
	}
	if _, err := v.Verify([]*x509.Certificate{cert}, x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("an audit writer certificate verified as a TLS client")
	}
	server, err := ca.Issue(Request{Identity: Identity{Account: testAccount, Kind: KindGateway, Name: "gw"}, Server: true, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	addr, result := serveOnce(t, v, v.ServerConfig(server))
	dial(addr, v.ClientConfig(auditTLS, "localhost"))
	if r := <-result; r.err == nil {
		t.Fatalf("a TLS server accepted an audit writer certificate as its client: %v", r.id)
	}
}
