package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// mtlsBackend serves e's backend over TLS with a certificate from ca, requiring a client
// certificate of the perimeter CA that names a gateway, as docs/backends.md tells backend
// authors to; it points the spec's backends at it (with ca: caFile when given).
func mtlsBackend(t *testing.T, e *env, ca *pki.CA, caFile string) {
	t.Helper()
	cert, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "orders-backend"},
		IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	verifier := e.ca.Verifier()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(e.serveBackend))
	srv.EnableHTTP2 = true // offered; the gateway speaks HTTP/1.1 (newTransport)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{*cert},
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := verifier.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
			if err == nil && id.Kind != pki.KindGateway {
				return errors.New("not a gateway")
			}
			return err
		},
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	y := bytes.ReplaceAll(e.yaml, []byte(e.backend.URL), []byte(srv.URL))
	if caFile != "" {
		y = bytes.ReplaceAll(y, []byte(`timeout: 5s}`), []byte(`timeout: 5s, ca: `+caFile+`}`))
	}
	spec, err := config.Parse(filepath.Join(t.TempDir(), "spec.yaml"), y)
	if err != nil {
		t.Fatal(err)
	}
	e.spec.Store(spec)
}

// TestBackendMutualTLS: over an https backend URL the gateway verifies the backend's
// certificate (the perimeter CA by default, the spec's ca otherwise) and presents its own
// from the perimeter CA, which the backend requires.
func TestBackendMutualTLS(t *testing.T) {
	roots := x509.NewCertPool()
	var e *env
	withCert := func(c *Config) {
		c.BackendRoots = roots
		c.ClientCert = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return e.ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "gateway"}, Client: true})
		}
	}
	e = newEnv(t, withCert)
	roots.AddCert(e.ca.Certificate())
	k := e.keys["alice"]

	mtlsBackend(t, e, e.ca, "")
	status, body, hdr := e.send(t, testCall{method: "GET", path: "/prod/orders/7", creds: &k})
	if status != 200 || body != "backend:GET /svc/orders/7" {
		t.Fatalf("mTLS backend of the perimeter CA: %d %q", status, body)
	}
	hit := e.hit(t)
	verifyHit(t, e, hit, hdr.Get("X-Amzn-Requestid"))
	if hit.Proto != "HTTP/1.1" {
		t.Errorf("the backend was called over %s, want HTTP/1.1 (newTransport)", hit.Proto)
	}

	// The backend's own CA, named in the spec.
	other, err := pki.New(pki.Config{Dir: t.TempDir(), Account: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "backend-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	mtlsBackend(t, e, other, caFile)
	if status, _, _ := e.send(t, testCall{method: "GET", path: "/prod/orders/8", creds: &k}); status != 200 {
		t.Fatalf("backend with its own CA in the spec: %d", status)
	}
	e.hit(t)
	// The same backend without ca: its certificate does not verify under the perimeter CA.
	mtlsBackend(t, e, other, "")
	if status, _, _ := e.send(t, testCall{method: "GET", path: "/prod/orders/9", creds: &k}); status != http.StatusBadGateway {
		t.Fatalf("backend of an unknown CA: %d, want 502", status)
	}

	// A gateway without a client certificate is refused by the backend.
	plain := newEnv(t, func(c *Config) { c.BackendRoots = roots })
	roots.AddCert(plain.ca.Certificate())
	pk := plain.keys["alice"]
	mtlsBackend(t, plain, plain.ca, "")
	if status, _, _ := plain.send(t, testCall{method: "GET", path: "/prod/orders/1", creds: &pk}); status != http.StatusBadGateway {
		t.Fatalf("no client certificate: %d, want 502", status)
	}
}
