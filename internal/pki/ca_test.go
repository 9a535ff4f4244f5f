package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const testAccount = "123456789012"

func newTestCA(t *testing.T, now func() time.Time) *CA {
	t.Helper()
	ca, err := New(Config{Dir: filepath.Join(t.TempDir(), "pki"), Account: testAccount, Now: now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return ca
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

func TestNewCreatesThenLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "pki")
	ca, err := New(Config{Dir: dir, Account: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("CA directory mode = %#o, want 0700", got)
	}
	if got := mode(t, filepath.Join(dir, "ca.key")); got != 0o600 {
		t.Errorf("ca.key mode = %#o, want 0600", got)
	}
	if got := mode(t, filepath.Join(dir, "ca.crt")); got != 0o644 {
		t.Errorf("ca.crt mode = %#o, want 0644", got)
	}
	c := ca.Certificate()
	if !c.IsCA || !c.MaxPathLenZero || c.MaxPathLen != 0 || c.Subject.SerialNumber != testAccount {
		t.Errorf("CA certificate: IsCA %v, MaxPathLen %d, subject %v", c.IsCA, c.MaxPathLen, c.Subject)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || c.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("CA key algorithm = %v", c.PublicKeyAlgorithm)
	}
	again, err := New(Config{Dir: dir, Account: testAccount})
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !again.Certificate().Equal(c) || !again.key.(*ecdsa.PrivateKey).Equal(ca.key) {
		t.Error("reloading created a different CA")
	}
}

func TestNewConcurrentStartsAgree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var wg sync.WaitGroup
	cas := make([]*CA, 4)
	errs := make([]error, 4)
	for i := range cas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cas[i], errs[i] = New(Config{Dir: dir, Account: testAccount})
		}()
	}
	wg.Wait()
	for i := range cas {
		if errs[i] != nil {
			t.Fatalf("start %d: %v", i, errs[i])
		}
		if !cas[i].Certificate().Equal(cas[0].Certificate()) {
			t.Fatalf("start %d got a different CA", i)
		}
	}
}

func TestNewFailsClosed(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
	}{
		{"key readable by others", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "ca.key"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "has mode 0644; run chmod 600"},
		{"certificate missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "ca.crt")); err != nil {
				t.Fatal(err)
			}
		}, "read CA certificate"},
		{"key missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
				t.Fatal(err)
			}
		}, "read CA key"},
		{"key from another CA", func(t *testing.T, dir string) {
			other := newTestCA(t, nil)
			keyPEM, err := encodeKey(other.key.(*ecdsa.PrivateKey))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "ca.key"), keyPEM, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "does not match certificate"},
		{"garbage certificate", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("not pem"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "no PEM CERTIFICATE block"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			if _, err := New(Config{Dir: dir, Account: testAccount}); err != nil {
				t.Fatal(err)
			}
			tc.break_(t, dir)
			_, err := New(Config{Dir: dir, Account: testAccount})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want error containing %q", err, tc.want)
			}
		})
	}
	t.Run("another account's CA", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "pki")
		if _, err := New(Config{Dir: dir, Account: testAccount}); err != nil {
			t.Fatal(err)
		}
		_, err := New(Config{Dir: dir, Account: "210987654321"})
		if err == nil || !strings.Contains(err.Error(), "is not the CA of account 210987654321") {
			t.Fatalf("New = %v", err)
		}
	})
}

func TestIssue(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ca := newTestCA(t, func() time.Time { return now })
	gw := Identity{Account: testAccount, Kind: KindGateway, Name: "gateway"}
	cert, err := ca.Issue(Request{Identity: gw, DNSNames: []string{"gateway.phantom.internal"},
		IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}, Server: true, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://phantom/123456789012/gateway/gateway" {
		t.Errorf("URIs = %v", leaf.URIs)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal([]byte{127, 0, 0, 1}) || leaf.DNSNames[0] != "gateway.phantom.internal" {
		t.Errorf("SANs = %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if !leaf.NotAfter.Equal(now.Add(DefaultValidity)) || !leaf.NotBefore.Equal(now.Add(-time.Minute)) {
		t.Errorf("validity %s to %s", leaf.NotBefore, leaf.NotAfter)
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature ||
		len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("usage: IsCA %v, KeyUsage %v, ExtKeyUsage %v", leaf.IsCA, leaf.KeyUsage, leaf.ExtKeyUsage)
	}
	if err := leaf.CheckSignatureFrom(ca.Certificate()); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name string
		pub  any
		req  Request
		want string
	}{
		{"another account", &p256.PublicKey, Request{Identity: Identity{"210987654321", KindNode, "n1"}, Client: true}, "is not the CA's"},
		{"unknown kind", &p256.PublicKey, Request{Identity: Identity{testAccount, "user", "alice"}, Client: true}, "is not endpoint, gateway, node, audit, egress, detector or console"},
		{"endpoint name not a vpce id", &p256.PublicKey, Request{Identity: Identity{testAccount, KindEndpoint, "orders"}, Client: true}, "is not a vpce- id"},
		{"node name not a label", &p256.PublicKey, Request{Identity: Identity{testAccount, KindNode, "Node_1"}, Client: true}, "not a lower-case DNS label"},
		{"no usage", &p256.PublicKey, Request{Identity: Identity{testAccount, KindNode, "n1"}}, "neither server nor client"},
		{"long-lived", &p256.PublicKey, Request{Identity: Identity{testAccount, KindNode, "n1"}, Client: true, Validity: 31 * 24 * time.Hour}, "is outside 0 to"},
		{"RSA key", &rsaKey.PublicKey, Request{Identity: Identity{testAccount, KindNode, "n1"}, Client: true}, "unsupported public key type"},
		{"P-384 key", &p384.PublicKey, Request{Identity: Identity{testAccount, KindNode, "n1"}, Client: true}, "want P-256"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ca.Sign(tc.pub, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sign = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestWriteBundle(t *testing.T) {
	ca := newTestCA(t, nil)
	path := filepath.Join(t.TempDir(), "ca-bundle.pem")
	if err := ca.WriteBundle(path); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, path); got != 0o644 {
		t.Errorf("bundle mode = %#o", got)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// What AWS_CA_BUNDLE users do with it: trust it for a server certificate.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatal("bundle holds no certificate")
	}
	srv, err := ca.Issue(Request{Identity: Identity{testAccount, KindGateway, "gateway"}, DNSNames: []string{"sts.phantom.internal"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "sts.phantom.internal"}); err != nil {
		t.Errorf("server certificate does not verify with the bundle: %v", err)
	}
	if !bytes.Equal(data, ca.BundlePEM()) {
		t.Error("bundle file differs from BundlePEM")
	}
}

func TestKeyPairFiles(t *testing.T) {
	ca := newTestCA(t, nil)
	cert, err := ca.Issue(Request{Identity: Identity{testAccount, KindEndpoint, "vpce-0123456789abcdef0"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "endpoint.crt"), filepath.Join(dir, "endpoint.key")
	if err := WriteKeyPair(certPath, keyPath, cert); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, keyPath); got != 0o600 {
		t.Errorf("key mode = %#o, want 0600", got)
	}
	loaded, err := LoadKeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(loaded.Certificate[0], cert.Certificate[0]) {
		t.Error("loaded a different certificate")
	}
	if err := os.Chmod(keyPath, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyPair(certPath, keyPath); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadKeyPair with a group-readable key = %v", err)
	}
}

// rawCert signs a certificate with the CA's key directly, to build the malformed
// certificates Issue refuses to make.
func rawCert(t *testing.T, ca *CA, uris []string, notBefore, notAfter time.Time) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerialT(t),
		Subject:      pkix.Name{CommonName: "raw"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func randomSerialT(t *testing.T) *big.Int {
	t.Helper()
	s, err := randomSerial(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
