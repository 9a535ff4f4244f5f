package perimeter

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// tokenKey is an audit writer key as a PKCS#11 token holds it: it can be destroyed.
type tokenKey struct {
	ed25519.PrivateKey
	t *fakeAuditToken
}

func (k tokenKey) Sign(r io.Reader, msg []byte, o crypto.SignerOpts) ([]byte, error) {
	return k.PrivateKey.Sign(r, msg, o)
}

func (k tokenKey) Destroy() error {
	k.t.mu.Lock()
	defer k.t.mu.Unlock()
	delete(k.t.live, string(k.Public().(ed25519.PublicKey)))
	return nil
}

type fakeAuditToken struct {
	mu   sync.Mutex
	made int
	live map[string]string // public key -> chain
}

func (f *fakeAuditToken) NewAuditKey(_ context.Context, chain string) (crypto.Signer, error) {
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.made++
	f.live[string(k.Public().(ed25519.PublicKey))] = chain
	return tokenKey{k, f}, nil
}

func (f *fakeAuditToken) count() (made, live int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.made, len(f.live)
}

// TestChainsWriterKeysInToken: with AuditKeys, each chain's writer key is made there; a
// renewal makes the next there and destroys the one it replaces; closing the chains
// destroys the last; the chain verifies across the change of key.
func TestChainsWriterKeysInToken(t *testing.T) {
	dir := t.TempDir()
	p := testPerimeter(t, dir, "")
	tok := &fakeAuditToken{live: map[string]string{}}
	p.AuditKeys = tok
	log := slog.New(slog.DiscardHandler)
	auditDir := filepath.Join(dir, "audit")
	l, err := OpenChains(auditDir, []string{"gateway"}, p, testAccount, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	record := func() {
		if err := l.Get("gateway").Record(t.Context(), &audit.Event{EventSource: "execute-api.amazonaws.com", EventName: "Invoke"}); err != nil {
			t.Fatal(err)
		}
	}
	record()
	if made, live := tok.count(); made != 1 || live != 1 {
		t.Fatalf("after open: %d keys made, %d in the token; want 1, 1", made, live)
	}
	l.renewAt["gateway"] = time.Now() // past half its life: renew
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { l.renewWriters(ctx, 10*time.Millisecond, log); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for made, _ := tok.count(); made < 2; made, _ = tok.count() {
		if time.Now().After(deadline) {
			t.Fatal("the writer key was not renewed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	if made, live := tok.count(); made != 2 || live != 1 {
		t.Fatalf("after renewal: %d keys made, %d in the token; want 2, 1", made, live)
	}
	record()
	l.CloseAll(log)
	if _, live := tok.count(); live != 0 {
		t.Fatalf("%d writer keys left in the token after close", live)
	}
	r, err := audit.Verify(auditDir, audit.VerifyOptions{Signers: caSigners{p.CA.Verifier()}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 0 || r.Records != 2 {
		t.Fatalf("verify across the renewal: %d records, problems %+v", r.Records, r.Problems)
	}
}

type caSigners struct{ v *pki.Verifier }

func (c caSigners) VerifyAuditSigner(der []byte) (audit.SignerInfo, error) {
	s, err := c.v.VerifyAuditSigner(der)
	return audit.SignerInfo{Chain: s.Chain, Key: s.Key, NotBefore: s.NotBefore, NotAfter: s.NotAfter}, err
}

// shortCerts is a CA that certifies audit writers for a day, whatever they ask for (as
// STS's component API does for an enrolled component).
type shortCerts struct {
	componentIssuer
	signed int
	mu     sync.Mutex
}

func (s *shortCerts) Sign(pub crypto.PublicKey, req pki.Request) (*x509.Certificate, error) {
	s.mu.Lock()
	s.signed++
	s.mu.Unlock()
	req.Validity = 24 * time.Hour
	return s.componentIssuer.Sign(pub, req)
}

// TestWriterRenewsAtHalfItsCertificatesLife: a writer whose CA gives it a shorter
// certificate than it asked for renews at half that certificate's life, not on every
// check (it renewed every few seconds, each time a new key and a call to STS).
func TestWriterRenewsAtHalfItsCertificatesLife(t *testing.T) {
	dir := t.TempDir()
	p := testPerimeter(t, dir, "")
	ca := &shortCerts{componentIssuer: p.Issuer}
	p.Issuer = ca
	log := slog.New(slog.DiscardHandler)
	l, err := OpenChains(filepath.Join(dir, "audit"), []string{"gateway"}, p, testAccount, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	defer l.CloseAll(log)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { l.renewWriters(ctx, 5*time.Millisecond, log); close(done) }()
	time.Sleep(200 * time.Millisecond)
	stop()
	<-done
	if ca.signed != 1 {
		t.Fatalf("a writer with a fresh one-day certificate was certified %d times in 200 ms, want once", ca.signed)
	}
}
