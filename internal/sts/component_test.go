package sts

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/enroll"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// componentEnv is STS with the component API over a real store and CA (pki.Authority).
type componentEnv struct {
	ca     *pki.Authority
	tokens *pki.Tokens
	audit  *memAudit
	srv    *httptest.Server
}

func newComponentEnv(t *testing.T) *componentEnv {
	t.Helper()
	ctx := context.Background()
	spec, err := config.Load(filepath.Join("testdata", "node_spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mk := make([]byte, 32)
	rand.Read(mk)
	db, err := store.OpenSQLite(ctx, store.Config{DataDir: t.TempDir(), MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, err := identity.New(identity.Config{Account: testAccount, Logger: quiet}, identity.Deps{AccessKeys: db, SealingKeys: db, Revocations: db, Changes: db})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.OpenAuthority(ctx, pki.AuthorityConfig{Config: pki.Config{Account: testAccount}, Issue: true, Root: true}, db)
	if err != nil {
		t.Fatal(err)
	}
	e := &componentEnv{ca: ca, tokens: pki.NewTokens(pki.TokensConfig{}, db), audit: &memAudit{}}
	id := NewIdentity(svc)
	h, err := New(Config{
		Account: testAccount, Region: "us-east-1", Directory: func() Directory { return spec }, Logger: quiet,
		Components: &ComponentConfig{CA: ca, Tokens: e.tokens, Verifier: ca.Verifier(), CertValidity: time.Hour},
	}, id, id, e.audit)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(h)
	srvCert, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "sts"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*srvCert}, ClientAuth: tls.RequestClientCert}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *componentEnv) grant(t *testing.T, g pki.Grant) string {
	t.Helper()
	tok, _, err := e.tokens.CreateGrant(context.Background(), g, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *componentEnv) open(t *testing.T, dir, token string, kind pki.Kind) (*enroll.Client, error) {
	t.Helper()
	return enroll.Open(t.Context(), enroll.Config{STS: e.srv.URL, CABundle: e.ca.BundlePEM(), StateDir: dir, JoinToken: token, Kind: kind})
}

// A gateway host holding no CA key enrolls with its join token, gets exactly the grant's
// identity, names and audit chains, renews, has an audit writer certified for its own
// chain and for no other, and is refused once its identity is revoked.
func TestComponentAPI(t *testing.T) {
	e := newComponentEnv(t)
	g := pki.Grant{
		Identity:    pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "gateway"},
		IPs:         []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		AuditChains: []string{"gateway-1"},
	}
	dir := t.TempDir()
	c, err := e.open(t, dir, e.grant(t, g), pki.KindGateway)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.Certificate(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ca.Verifier().Verify([]*x509.Certificate{cert.Leaf}, x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatal(err)
	}
	got, err := pki.GrantOf(cert.Leaf)
	if err != nil || got.Identity != g.Identity || len(got.AuditChains) != 1 || len(cert.Certificate) != 2 {
		t.Fatalf("grant %+v (%v), chain of %d", got, err, len(cert.Certificate))
	}
	// Restarted from its state directory: no token needed.
	again, err := e.open(t, dir, "", pki.KindGateway)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := again.Certificate(t.Context()); !a.Leaf.Equal(cert.Leaf) {
		t.Fatal("the restarted component has another certificate")
	}
	// Audit writers: its chain, not another's.
	pub, _, _ := ed25519.GenerateKey(nil)
	aw, err := c.Sign(pub, pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindAudit, Name: "gateway-1"}, AuditSigning: true})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := e.ca.Verifier().VerifyAuditSigner(aw.Raw); err != nil || s.Chain != "gateway-1" {
		t.Fatalf("audit writer: %+v %v", s, err)
	}
	var ae *enroll.Error
	if _, err := c.Sign(pub, pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindAudit, Name: "sts"}, AuditSigning: true}); !errors.As(err, &ae) || ae.Code != "AccessDenied" {
		t.Fatalf("another chain's writer: %v", err)
	}
	// Past half its life the certificate is renewed: the same grant, a new key.
	later, err := enroll.Open(t.Context(), enroll.Config{STS: e.srv.URL, CABundle: e.ca.BundlePEM(), StateDir: dir, Kind: pki.KindGateway,
		Now: func() time.Time { return time.Now().Add(40 * time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := later.Certificate(t.Context())
	if err != nil || renewed.Leaf.Equal(cert.Leaf) {
		t.Fatalf("renewal: %v", err)
	}
	if rg, err := pki.GrantOf(renewed.Leaf); err != nil || rg.Identity != g.Identity || rg.AuditChains[0] != "gateway-1" || !rg.IPs[0].Is4() {
		t.Fatalf("renewed grant %+v %v", rg, err)
	}
	if err := e.ca.Revoke(t.Context(), pki.Revocation{Identity: g.Identity, IssuedBefore: time.Now().Add(time.Second), RevokedAt: time.Now(), Reason: "host compromised"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sign(pub, pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindAudit, Name: "gateway-1"}, AuditSigning: true}); !errors.As(err, &ae) || ae.Code != "InvalidClientCertificate" {
		t.Fatalf("a revoked component's request: %v", err)
	}
	// A token is spent once; a node's token enrolls no component; the token's kind must
	// be the component's.
	if _, err := e.open(t, t.TempDir(), strings.Repeat("x", 10), pki.KindGateway); !errors.As(err, &ae) || ae.Code != "InvalidClientTokenId" {
		t.Fatalf("a malformed token: %v", err)
	}
	nodeTok, _, _ := e.tokens.Create(t.Context(), "service-a-1", time.Hour)
	if _, err := e.open(t, t.TempDir(), nodeTok, pki.KindGateway); !errors.As(err, &ae) || ae.Code != "InvalidClientTokenId" {
		t.Fatalf("a node's token: %v", err)
	}
	ep := e.grant(t, pki.Grant{Identity: pki.Identity{Account: testAccount, Kind: pki.KindEndpoint, Name: "vpce-0123456789abcdef0"}})
	if _, err := e.open(t, t.TempDir(), ep, pki.KindGateway); err == nil {
		t.Fatal("an endpoint's token made a gateway")
	}
	for _, ev := range e.audit.all() {
		if strings.Contains(ev.ErrorMessage, "phjt_") || strings.Contains(ev.ErrorMessage, "-----BEGIN") {
			t.Fatalf("audit event carries a secret: %+v", ev)
		}
	}
}
