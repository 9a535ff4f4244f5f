package enroll

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

const testAccount = "123456789012"

// fakeSTS plays STS's component API with a real CA, and answers as told: the tests
// check what the client accepts, not what STS decides (internal/sts tests that).
type fakeSTS struct {
	t   *testing.T
	ca  *pki.CA
	srv *httptest.Server

	mu       sync.Mutex
	calls    map[string]int
	clientCN []string // the client certificate's identity on each call ("" without one)
	// answer, when set, replaces the honest answer to op.
	answer func(op string, csrKey any) (int, []byte)
	kind   pki.Kind
	valid  time.Duration
}

func newFakeSTS(t *testing.T) *fakeSTS {
	t.Helper()
	ca, err := pki.New(pki.Config{Dir: t.TempDir(), Account: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSTS{t: t, ca: ca, calls: map[string]int{}, kind: pki.KindGateway, valid: time.Hour}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srvCert, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "sts"},
		IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*srvCert}, ClientAuth: tls.RequestClientCert}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeSTS) serve(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.URL.Path, "/phantom/component/")
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	f.mu.Lock()
	f.calls[op]++
	cn := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if id, err := pki.IdentityFromCert(r.TLS.PeerCertificates[0]); err == nil {
			cn = id.String()
		}
	}
	f.clientCN = append(f.clientCN, cn)
	answer, kind, valid := f.answer, f.kind, f.valid
	f.mu.Unlock()

	var key any
	switch op {
	case "enroll", "renew":
		b, _ := pem.Decode([]byte(body["csr"]))
		if b == nil {
			http.Error(w, "no csr", 400)
			return
		}
		csr, err := x509.ParseCertificateRequest(b.Bytes)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		key = csr.PublicKey
	case "audit":
		raw, err := base64.StdEncoding.DecodeString(body["publicKey"])
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		key = ed25519.PublicKey(raw)
	}
	if answer != nil {
		if code, b := answer(op, key); code != 0 {
			w.WriteHeader(code)
			w.Write(b)
			return
		}
	}
	req := pki.Request{Identity: pki.Identity{Account: testAccount, Kind: kind, Name: "gw-1"}, Server: true, Client: true, Validity: valid}
	if op == "audit" {
		req = pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindAudit, Name: body["chain"]}, AuditSigning: true}
	}
	f.writeCert(w, key, req)
}

func (f *fakeSTS) writeCert(w http.ResponseWriter, key any, req pki.Request) {
	cert, err := f.ca.Sign(key, req)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	json.NewEncoder(w).Encode(response{
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		CA:          string(f.ca.BundlePEM()), Identity: req.Identity.String(), Expiration: cert.NotAfter.Format(time.RFC3339),
	})
}

func (f *fakeSTS) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeSTS) config(dir, token string) Config {
	return Config{STS: f.srv.URL, CABundle: f.ca.BundlePEM(), StateDir: dir, JoinToken: token, Kind: pki.KindGateway,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// certFor is a PEM certificate of this CA for a fresh key: what a lying STS sends back.
func (f *fakeSTS) certFor(t *testing.T, kind pki.Kind) []byte {
	t.Helper()
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := f.ca.Sign(other.Public(), pki.Request{Identity: pki.Identity{Account: testAccount, Kind: kind, Name: "x"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(response{Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))})
	return b
}

func TestEnrollThenReload(t *testing.T) {
	f := newFakeSTS(t)
	dir := t.TempDir()
	c, err := Open(t.Context(), f.config(dir, "join"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := c.Identity(); got.Kind != pki.KindGateway || got.Name != "gw-1" {
		t.Fatalf("identity %v", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, keyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	// A second start uses the saved certificate: no token needed, no second enrollment.
	again, err := Open(t.Context(), f.config(dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if n := f.count("enroll"); n != 1 {
		t.Fatalf("%d enrollments, want 1", n)
	}
	if f.clientCN[0] != "" {
		t.Fatalf("enrollment presented a client certificate: %q", f.clientCN[0])
	}
}

func TestOpenRefuses(t *testing.T) {
	f := newFakeSTS(t)
	for name, tc := range map[string]struct {
		answer func(t *testing.T) func(op string, key any) (int, []byte)
		kind   pki.Kind
		want   string
	}{
		"STS error in AWS shape": {answer: func(*testing.T) func(string, any) (int, []byte) {
			return func(string, any) (int, []byte) {
				return 403, []byte(`{"__type":"AccessDenied","message":"join token used"}`)
			}
		}, want: "403 AccessDenied: join token used"},
		"a certificate for another key": {answer: func(t *testing.T) func(string, any) (int, []byte) {
			b := f.certFor(t, pki.KindGateway)
			return func(string, any) (int, []byte) { return 200, b }
		}, want: "not for this component's key"},
		"a certificate of another kind": {kind: pki.KindEgress, want: "does not name a gateway"},
		"a private key instead of a certificate": {answer: func(*testing.T) func(string, any) (int, []byte) {
			b, _ := json.Marshal(response{Certificate: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"})
			return func(string, any) (int, []byte) { return 200, b }
		}, want: `unexpected PEM block "PRIVATE KEY"`},
		"trailing garbage after the chain": {answer: func(t *testing.T) func(string, any) (int, []byte) {
			var r response
			json.Unmarshal(f.certFor(t, pki.KindGateway), &r)
			b, _ := json.Marshal(response{Certificate: r.Certificate + "garbage"})
			return func(string, any) (int, []byte) { return 200, b }
		}, want: "no certificate chain"},
		"an oversized answer": {answer: func(*testing.T) func(string, any) (int, []byte) {
			return func(string, any) (int, []byte) { return 200, make([]byte, maxResponseBytes+1) }
		}, want: "response too large"},
	} {
		t.Run(name, func(t *testing.T) {
			f.mu.Lock()
			f.answer, f.kind = nil, pki.KindGateway
			if tc.answer != nil {
				f.answer = tc.answer(t)
			}
			if tc.kind != "" {
				f.kind = tc.kind
			}
			f.mu.Unlock()
			dir := t.TempDir()
			c, err := Open(t.Context(), f.config(dir, "join"))
			if err == nil {
				c.Close()
				t.Fatal("Open accepted the answer")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, certFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused answer was saved: %v", err)
			}
		})
	}
	var ae *Error
	f.mu.Lock()
	f.answer = func(string, any) (int, []byte) { return 403, []byte(`{"__type":"AccessDenied","message":"no"}`) }
	f.mu.Unlock()
	if _, err := Open(t.Context(), f.config(t.TempDir(), "join")); !errors.As(err, &ae) || ae.Status != 403 || ae.Code != "AccessDenied" {
		t.Fatalf("error %v is not an *Error 403 AccessDenied", err)
	}
}

func TestOpenWithoutTokenOrConfig(t *testing.T) {
	f := newFakeSTS(t)
	if _, err := Open(t.Context(), f.config(t.TempDir(), "")); err == nil || !strings.Contains(err.Error(), "no join token") {
		t.Fatalf("Open without a certificate or token: %v", err)
	}
	cfg := f.config(t.TempDir(), "join")
	cfg.Kind = pki.KindAudit // not a component kind
	if _, err := Open(t.Context(), cfg); err == nil {
		t.Fatal("Open accepted a non-component kind")
	}
	cfg = f.config(t.TempDir(), "join")
	cfg.CABundle = []byte("not pem")
	if _, err := Open(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Fatalf("Open with an empty CA bundle: %v", err)
	}
	// An STS whose certificate another CA signed is not trusted.
	other, err := pki.New(pki.Config{Dir: t.TempDir(), Account: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	cfg = f.config(t.TempDir(), "join")
	cfg.CABundle = other.BundlePEM()
	if _, err := Open(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Open trusted an STS of another CA: %v", err)
	}
	if f.count("enroll") != 0 {
		t.Fatal("the join token was sent to an STS the bundle does not vouch for")
	}
}

func TestSavedCertificateOfAnotherKindOrExpired(t *testing.T) {
	f := newFakeSTS(t)
	dir := t.TempDir()
	c, err := Open(t.Context(), f.config(dir, "join"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The same state directory opened as an endpoint: the saved gateway certificate is not
	// used, and without a token there is nothing to enroll with.
	cfg := f.config(dir, "")
	cfg.Kind = pki.KindEndpoint
	if _, err := Open(t.Context(), cfg); err == nil {
		t.Fatal("a gateway certificate was accepted for an endpoint")
	}
	// After the certificate expired, a start needs a token again.
	cfg = f.config(dir, "")
	cfg.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if _, err := Open(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "no valid certificate") {
		t.Fatalf("an expired certificate: %v", err)
	}
}

func TestRenewal(t *testing.T) {
	f := newFakeSTS(t)
	var now time.Time
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	set(time.Now())
	cfg := f.config(t.TempDir(), "join")
	cfg.Now = clock
	c, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, _ := c.Certificate(t.Context())
	// Before half its life: the same certificate, no call.
	set(first.Leaf.NotBefore.Add(20 * time.Minute))
	if got, _ := c.Certificate(t.Context()); got != first || f.count("renew") != 0 {
		t.Fatalf("renewed before half life (renewals %d)", f.count("renew"))
	}
	// Past half its life: renewed, proving the current certificate.
	set(first.Leaf.NotBefore.Add(40 * time.Minute))
	second, err := c.Certificate(t.Context())
	if err != nil || second == first || f.count("renew") != 1 {
		t.Fatalf("not renewed past half life: %v (renewals %d)", err, f.count("renew"))
	}
	if last := f.clientCN[len(f.clientCN)-1]; !strings.Contains(last, "gateway/gw-1") {
		t.Fatalf("the renewal presented %q, not the current certificate", last)
	}
	if second.PrivateKey.(*ecdsa.PrivateKey).Equal(first.PrivateKey) {
		t.Fatal("the renewal kept the old key")
	}
	// A failing renewal keeps a still-valid certificate ...
	f.mu.Lock()
	f.answer = func(string, any) (int, []byte) {
		return 503, []byte(`{"__type":"ServiceUnavailable","message":"store down"}`)
	}
	f.mu.Unlock()
	set(second.Leaf.NotBefore.Add(50 * time.Minute))
	if got, err := c.Certificate(t.Context()); err != nil || got != second {
		t.Fatalf("a failed renewal dropped a valid certificate: %v", err)
	}
	// ... and is an error once it has expired: no expired certificate is presented.
	set(second.Leaf.NotAfter.Add(time.Second))
	if _, err := c.Certificate(t.Context()); err == nil {
		t.Fatal("an expired certificate was handed out")
	}
	// A renewal answer for another key is refused and the current certificate stays.
	set(second.Leaf.NotBefore.Add(50 * time.Minute))
	wrong := f.certFor(t, pki.KindGateway)
	f.mu.Lock()
	f.answer = func(string, any) (int, []byte) { return 200, wrong }
	f.mu.Unlock()
	if got, err := c.Certificate(t.Context()); err != nil || got != second {
		t.Fatalf("after a renewal answer for another key: %v", err)
	}
	saved, err := pki.LoadKeyPair(filepath.Join(cfg.StateDir, certFile), filepath.Join(cfg.StateDir, keyFile))
	if err != nil || !saved.PrivateKey.(*ecdsa.PrivateKey).Equal(second.PrivateKey) {
		t.Fatalf("the refused renewal replaced the saved key pair: %v", err)
	}
}

func TestSignAuditWriterKey(t *testing.T) {
	f := newFakeSTS(t)
	c, err := Open(t.Context(), f.config(t.TempDir(), "join"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	cert, err := c.Sign(pub, pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindAudit, Name: "gateway"}, AuditSigning: true})
	if err != nil {
		t.Fatal(err)
	}
	if !cert.PublicKey.(ed25519.PublicKey).Equal(pub) {
		t.Fatal("certificate for another key")
	}
	// Only audit writer keys are certified through the component API.
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := c.Sign(ec.Public(), pki.Request{AuditSigning: true}); err == nil {
		t.Fatal("an ECDSA key was sent for certification")
	}
	if _, err := c.Sign(pub, pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "gw"}}); err == nil {
		t.Fatal("a non-audit request was sent for certification")
	}
	// An answer certifying another key is refused.
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	f.mu.Lock()
	f.answer = func(op string, _ any) (int, []byte) {
		if op != "audit" {
			return 0, nil
		}
		cert, err := f.ca.Sign(other, pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindAudit, Name: "gateway"}, AuditSigning: true})
		if err != nil {
			return 500, nil
		}
		b, _ := json.Marshal(response{Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))})
		return 200, b
	}
	f.mu.Unlock()
	if _, err := c.Sign(pub, pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindAudit, Name: "gateway"}, AuditSigning: true}); err == nil || !strings.Contains(err.Error(), "not for the key sent") {
		t.Fatalf("an audit certificate for another key: %v", err)
	}
}

// When the trust names a newer issuing CA than the one that signed the certificate
// (Config.NewerIssuing), the client renews at once, well before half life, and does not
// ask again on every call while the answer still comes from the old CA.
func TestRenewalOnNewerIssuingCA(t *testing.T) {
	f := newFakeSTS(t)
	var mu sync.Mutex
	now := time.Now()
	var newer []byte
	cfg := f.config(t.TempDir(), "join")
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cfg.NewerIssuing = func(issuer []byte) []byte {
		mu.Lock()
		defer mu.Unlock()
		if newer != nil && !bytes.Equal(issuer, newer) {
			return newer
		}
		return nil
	}
	c, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, _ := c.Certificate(t.Context())
	if got, _ := c.Certificate(t.Context()); got != first || f.count("renew") != 0 {
		t.Fatal("renewed with no newer CA")
	}
	mu.Lock()
	newer = []byte("the new issuing CA's key id")
	mu.Unlock()
	second, err := c.Certificate(t.Context())
	if err != nil || second == first || f.count("renew") != 1 {
		t.Fatalf("not renewed on a newer issuing CA: %v (renewals %d)", err, f.count("renew"))
	}
	// The fake STS still signs with the old CA: no second renewal until the retry.
	if got, _ := c.Certificate(t.Context()); got != second || f.count("renew") != 1 {
		t.Fatalf("renewed again at once (renewals %d)", f.count("renew"))
	}
	mu.Lock()
	now = now.Add(supersededRetry)
	mu.Unlock()
	if _, err := c.Certificate(t.Context()); err != nil || f.count("renew") != 2 {
		t.Fatalf("not retried after %s: %v (renewals %d)", supersededRetry, err, f.count("renew"))
	}
}
