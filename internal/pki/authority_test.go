package pki

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memCAStore is an in-memory CAStore.
type memCAStore struct {
	mu      sync.Mutex
	secrets map[string][]byte
	certs   []CACertificate
	revs    map[string]Revocation
}

func newMemCAStore() *memCAStore {
	return &memCAStore{secrets: map[string][]byte{}, revs: map[string]Revocation{}}
}

var errNoSecret = errors.New("not found")

func (m *memCAStore) PutSecretIfAbsent(_ context.Context, name string, v []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.secrets[name]; ok {
		return cur, nil
	}
	m.secrets[name] = v
	return v, nil
}

func (m *memCAStore) GetSecret(_ context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.secrets[name]; ok {
		return v, nil
	}
	return nil, errNoSecret
}

func (m *memCAStore) PutCACertificate(_ context.Context, c CACertificate) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range m.certs {
		if x.Serial == c.Serial {
			return nil
		}
	}
	m.certs = append(m.certs, c)
	return nil
}

func (m *memCAStore) ListCACertificates(context.Context) ([]CACertificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.certs), nil
}

func (m *memCAStore) DistrustCACertificate(_ context.Context, serial string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.certs {
		if m.certs[i].Serial == serial {
			m.certs[i].DistrustedAt = at
			return nil
		}
	}
	return errNoSecret
}

func (m *memCAStore) PutCertificateRevocation(_ context.Context, r Revocation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.revs[r.ID()] = r
	return nil
}

func (m *memCAStore) ListCertificateRevocations(context.Context) ([]Revocation, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Revocation
	for _, r := range m.revs {
		out = append(out, r)
	}
	return out, nil
}

// noRoot hides the root secrets, as the store does from a process without the root's
// storage key.
type noRoot struct{ *memCAStore }

func (n noRoot) GetSecret(ctx context.Context, name string) ([]byte, error) {
	if strings.HasPrefix(name, "pki/root/") {
		return nil, errors.New("this process holds no store-ca-root key")
	}
	return n.memCAStore.GetSecret(ctx, name)
}

// noKeys hides every key, as from a gateway.
type noKeys struct{ *memCAStore }

func (n noKeys) GetSecret(context.Context, string) ([]byte, error) {
	return nil, errors.New("this gateway holds no store-ca key")
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func openAuthority(t *testing.T, st CAStore, clock *testClock, issue, root bool) *Authority {
	t.Helper()
	a, err := OpenAuthority(t.Context(), AuthorityConfig{Config: Config{Account: testAccount, Now: clock.Now}, Issue: issue, Root: root}, st)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func issueGateway(t *testing.T, a *Authority) *tls.Certificate {
	t.Helper()
	ca, err := a.CA()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(Request{Identity: Identity{testAccount, KindGateway, "gateway"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func leafChain(c *tls.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, der := range c.Certificate {
		x, _ := x509.ParseCertificate(der)
		out = append(out, x)
	}
	return out
}

// A new perimeter's CA is a root that signs an issuing CA that signs leaves: the root
// signs nothing else, the issuing CA no CA; the chain a server sends has the issuing CA.
func TestAuthorityHierarchy(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	st := newMemCAStore()
	a := openAuthority(t, st, clock, true, true)
	certs := a.Certificates()
	if len(certs) != 2 || certs[0].Role != RoleRoot || certs[1].Role != RoleIssuing {
		t.Fatalf("certificates %+v", certs)
	}
	ca, _ := a.CA()
	if isRoot(ca.Certificate()) || !ca.Certificate().MaxPathLenZero {
		t.Fatal("leaves are signed by the root, or the issuing CA may sign CAs")
	}
	if got := ca.Certificate().NotAfter.Sub(ca.Certificate().NotBefore); got > DefaultIssuingValidity+time.Minute {
		t.Fatalf("issuing CA lives %s", got)
	}
	leaf := issueGateway(t, a)
	if len(leaf.Certificate) != 2 {
		t.Fatalf("a leaf's chain has %d certificates, want leaf and issuing CA", len(leaf.Certificate))
	}
	if _, err := a.Verifier().Verify(leafChain(leaf), x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatal(err)
	}
	// A client that trusts only ca.pem (the bundle) verifies what a server sends.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(a.BundlePEM())
	if _, err := leafChain(leaf)[0].Verify(x509.VerifyOptions{Roots: roots, CurrentTime: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	// The root's key is kept apart: a process without it (STS) opens the CA and issues,
	// but cannot rotate; one without the issuing key (a gateway) only verifies.
	sts := openAuthority(t, noRoot{st}, clock, true, false)
	if _, err := sts.CA(); err != nil {
		t.Fatal(err)
	}
	if _, err := sts.Rotate(t.Context(), false); err == nil {
		t.Fatal("a process without the root key made an issuing CA")
	}
	gw := openAuthority(t, noKeys{st}, clock, false, false)
	if _, err := gw.CA(); !errors.Is(err, ErrCannotIssue) {
		t.Fatalf("a gateway's authority: %v", err)
	}
	if _, err := gw.Verifier().Verify(leafChain(leaf), x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatal(err)
	}
	// Nor can a store without a CA be given one by a process without a root key.
	if _, err := OpenAuthority(t.Context(), AuthorityConfig{Config: Config{Account: testAccount}, Issue: true}, newMemCAStore()); err == nil {
		t.Fatal("a CA was created without a root key")
	}
}

// Rotating the issuing CA, then the root, while certificates from each are in use: every
// one keeps verifying everywhere until it expires (no connection fails), new ones come
// from the new CA, and audit writers certified before the rotation still verify after.
func TestAuthorityRotationOverlaps(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	st := newMemCAStore()
	op := openAuthority(t, st, clock, true, true)
	sts := openAuthority(t, noRoot{st}, clock, true, false)
	gw := openAuthority(t, noKeys{st}, clock, false, false)
	audit := func(a *Authority, chain string) []byte {
		pub, _, _ := ed25519.GenerateKey(nil)
		ca, _ := a.CA()
		c, err := ca.Sign(pub, Request{Identity: Identity{testAccount, KindAudit, chain}, AuditSigning: true})
		if err != nil {
			t.Fatal(err)
		}
		return c.Raw
	}
	before := issueGateway(t, sts)
	auditBefore := audit(sts, "gateway-1")
	first, _ := sts.CA()

	clock.Advance(21 * 24 * time.Hour) // past two thirds of the issuing CA's life
	if !op.NeedsRenewal() {
		t.Fatal("an issuing CA past two thirds of its life does not need renewal")
	}
	if rotated, err := op.Renew(t.Context()); err != nil || !rotated {
		t.Fatalf("renew: %v %v", rotated, err)
	}
	for _, a := range []*Authority{sts, gw} {
		if err := a.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	second, _ := sts.CA()
	if second.Certificate().Equal(first.Certificate()) {
		t.Fatal("STS still issues from the old issuing CA after a refresh")
	}
	before = issueGateway(t, sts) // renewed leaf (the earlier one expired meanwhile)
	clock.Advance(time.Hour)
	if _, err := op.Rotate(t.Context(), true); err != nil { // a new root, and an issuing CA under it
		t.Fatal(err)
	}
	for _, a := range []*Authority{sts, gw} {
		if err := a.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	after := issueGateway(t, sts)
	third, _ := sts.CA()
	if third.Certificate().CheckSignatureFrom(second.Certificate()) == nil || isRoot(third.Certificate()) {
		t.Fatal("the new issuing CA is not under the new root")
	}
	for _, v := range []*Verifier{op.Verifier(), sts.Verifier(), gw.Verifier()} {
		for name, c := range map[string]*tls.Certificate{"leaf of the old root": before, "leaf of the new root": after} {
			if _, err := v.Verify(leafChain(c), x509.ExtKeyUsageServerAuth); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		if _, err := v.VerifyAuditSigner(auditBefore); err != nil {
			t.Errorf("an audit writer certified before both rotations: %v", err)
		}
	}
	if n := strings.Count(string(gw.BundlePEM()), "BEGIN CERTIFICATE"); n != 5 {
		t.Errorf("the bundle holds %d CA certificates, want 2 roots and 3 issuing CAs", n)
	}
}

// Revocations and distrust reach every verifier on its next refresh: a revoked leaf, every
// certificate of a revoked identity issued before the revocation (but not those issued
// after), every certificate under a distrusted issuing CA, audit writers included.
func TestAuthorityRevocation(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	st := newMemCAStore()
	op := openAuthority(t, st, clock, true, true)
	gw := openAuthority(t, noKeys{st}, clock, false, false)
	ca, _ := op.CA()
	issue := func(kind Kind, name string) *tls.Certificate {
		c, err := ca.Issue(Request{Identity: Identity{testAccount, kind, name}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true, Client: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	verifies := func(c *tls.Certificate) error {
		_, err := gw.Verifier().Verify(leafChain(c), x509.ExtKeyUsageClientAuth)
		return err
	}
	one, two := issue(KindGateway, "gateway"), issue(KindGateway, "gateway")
	ep := issue(KindEndpoint, "vpce-0123456789abcdef0")
	gen := gw.Verifier().Generation()
	if err := op.Revoke(t.Context(), Revocation{Serial: one.Leaf.SerialNumber.Text(16), RevokedAt: clock.Now(), Reason: "key compromise"}); err != nil {
		t.Fatal(err)
	}
	if verifies(one) != nil {
		t.Fatal("verifies before the gateway refreshed: this test proves nothing")
	}
	if err := gw.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if gw.Verifier().Generation() == gen {
		t.Fatal("the trust generation did not move")
	}
	if err := verifies(one); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked by serial: %v", err)
	}
	if err := verifies(two); err != nil {
		t.Fatalf("another certificate of the same identity: %v", err)
	}
	clock.Advance(time.Minute)
	if err := op.Revoke(t.Context(), Revocation{Identity: Identity{testAccount, KindEndpoint, "vpce-0123456789abcdef0"}, IssuedBefore: clock.Now(), RevokedAt: clock.Now(), Reason: "host compromised"}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	fresh := issue(KindEndpoint, "vpce-0123456789abcdef0")
	gw.Refresh(t.Context())
	if err := verifies(ep); !errors.Is(err, ErrRevoked) {
		t.Fatalf("an identity's earlier certificate: %v", err)
	}
	if err := verifies(fresh); err != nil {
		t.Fatalf("the identity's certificate issued after the revocation: %v", err)
	}
	// Distrusting the issuing CA refuses everything under it, audit writers too.
	pub, _, _ := ed25519.GenerateKey(nil)
	aw, err := ca.Sign(pub, Request{Identity: Identity{testAccount, KindAudit, "gateway"}, AuditSigning: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Distrust(t.Context(), ca.Certificate().SerialNumber.Text(16)); err != nil {
		t.Fatal(err)
	}
	gw.Refresh(t.Context())
	if err := verifies(two); err == nil {
		t.Fatal("a leaf of a distrusted issuing CA verifies")
	}
	if _, err := gw.Verifier().VerifyAuditSigner(aw.Raw); err == nil {
		t.Fatal("an audit writer of a distrusted issuing CA verifies")
	}
	// A chain that presents the distrusted CA itself does not bring it back.
	chain := append(leafChain(two), ca.Certificate())
	if _, err := gw.Verifier().Verify(chain, x509.ExtKeyUsageClientAuth); err == nil {
		t.Fatal("a presented intermediate restored a distrusted CA")
	}
	for _, bad := range []Revocation{
		{Serial: "XYZ", RevokedAt: clock.Now()},
		{Serial: "0a", RevokedAt: clock.Now()},
		{Identity: Identity{testAccount, KindNode, "n"}, RevokedAt: clock.Now()},
		{Serial: "ab", Identity: Identity{testAccount, KindNode, "n"}, IssuedBefore: clock.Now(), RevokedAt: clock.Now()},
		{Serial: "ab"},
	} {
		if err := op.Revoke(t.Context(), bad); err == nil {
			t.Errorf("revocation %+v accepted", bad)
		}
	}
}

// A perimeter whose CA predates issuing CAs (New's ca.crt and ca.key) keeps its
// certificates verifying: the CA is imported as a root that also issues, and the first
// renewal moves it to a root and issuing CA of its own, trusting both meanwhile.
func TestAuthorityImportsLegacyCA(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	dir := filepath.Join(t.TempDir(), "ca")
	legacy, err := New(Config{Dir: dir, Account: testAccount, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	old, err := legacy.Issue(Request{Identity: Identity{testAccount, KindNode, "n1"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	st := newMemCAStore()
	a, err := OpenAuthority(t.Context(), AuthorityConfig{Config: Config{Account: testAccount, Now: clock.Now, Dir: dir}, Issue: true, Root: true}, st)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := a.CA()
	if !ca.Certificate().Equal(legacy.Certificate()) || !a.NeedsRenewal() {
		t.Fatal("the legacy CA is not the issuer, or does not ask to be replaced")
	}
	if rotated, err := a.Renew(t.Context()); err != nil || !rotated {
		t.Fatalf("renew: %v %v", rotated, err)
	}
	if _, err := a.Verifier().Verify(leafChain(old), x509.ExtKeyUsageClientAuth); err != nil {
		t.Fatalf("a certificate of the legacy CA after the move: %v", err)
	}
	if _, err := a.Verifier().Verify(leafChain(issueGateway(t, a)), x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatal(err)
	}
	if ca, _ := a.CA(); isRoot(ca.Certificate()) {
		t.Fatal("still issuing from a root")
	}
	if n := len(a.Certificates()); n != 3 {
		t.Fatalf("%d CA certificates, want the legacy CA, a root and an issuing CA", n)
	}
}

// Concurrent first starts agree on one root.
func TestAuthorityConcurrentCreateAgrees(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	st := newMemCAStore()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := OpenAuthority(context.Background(), AuthorityConfig{Config: Config{Account: testAccount, Now: clock.Now}, Issue: true, Root: true}, st)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	roots := 0
	for _, c := range st.certs {
		if c.Role == RoleRoot {
			roots++
		}
	}
	if roots != 1 {
		t.Fatalf("%d roots after concurrent first starts (%s)", roots, fmt.Sprint(len(st.certs)))
	}
}

// Rotations within one second (certificate times have seconds only): each makes the new
// issuing CA current, in the rotating process and in every other, and a new root is the
// one the next issuing CA is signed by.
func TestAuthorityRotationsInOneSecond(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)} // never advances
	st := newMemCAStore()
	op := openAuthority(t, st, clock, true, true)
	sts := openAuthority(t, noRoot{st}, clock, true, false)
	for i := range 4 {
		cert, err := op.Rotate(t.Context(), i == 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := sts.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		for name, a := range map[string]*Authority{"the rotating process": op, "another": sts} {
			if ca, _ := a.CA(); !ca.Certificate().Equal(cert) {
				t.Fatalf("rotation %d: %s issues from another CA than the new one", i, name)
			}
		}
		if i == 2 {
			root, _, err := op.currentRoot(t.Context())
			if err != nil || cert.CheckSignatureFrom(root) != nil {
				t.Fatalf("the issuing CA made with a new root is not signed by the newest root: %v", err)
			}
		}
	}
}

// A holder of a leaf learns that a newer issuing CA under the same root superseded its
// issuer (and renews early), but not that one under a new root did: clients must trust
// a new root before leaves move to it. TestRotationUnderLoad failed (a client holding
// the first root refused a renewed certificate) when a new root was followed early.
func TestAuthorityNewerIssuing(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	st := newMemCAStore()
	op := openAuthority(t, st, clock, true, true)
	gw := openAuthority(t, noKeys{st}, clock, false, false)
	leaf := func() []byte {
		ca, _ := op.CA()
		return ca.Certificate().SubjectKeyId
	}
	first := leaf()
	if got := gw.NewerIssuing(first); got != nil {
		t.Fatalf("nothing superseded the only issuing CA, yet NewerIssuing names %x", got)
	}
	clock.Advance(time.Minute)
	if _, err := op.Rotate(t.Context(), false); err != nil {
		t.Fatal(err)
	}
	if err := gw.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	second := leaf()
	if got := gw.NewerIssuing(first); !bytes.Equal(got, second) {
		t.Fatalf("after an issuing CA rotation NewerIssuing(first) = %x, want the new CA %x", got, second)
	}
	if got := gw.NewerIssuing(second); got != nil {
		t.Fatalf("the newest issuing CA is superseded by %x", got)
	}
	clock.Advance(time.Minute)
	if _, err := op.Rotate(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	if err := gw.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, old := range [][]byte{first, second} {
		if got := gw.NewerIssuing(old); got != nil {
			t.Fatalf("a new root's issuing CA superseded the old root's at once (%x): clients may not trust it yet", got)
		}
	}
}
