package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/phantom-perimeter/phantom/internal/nodeapi"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// maxResponseBytes bounds an STS node API response (a certificate and the CA bundle, or
// credentials: a few KiB).
const maxResponseBytes = 64 << 10

// stsClient calls the STS node API (internal/nodeapi) over TLS, trusting only the perimeter CA and presenting
// the node's current certificate.
type stsClient struct {
	base   string
	tr     *http.Transport
	hc     *http.Client
	stream *http.Client // no overall timeout: the watch stream (watch.go)
}

func newSTSClient(base string, roots *x509.CertPool, timeout time.Duration, cert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) *stsClient {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion:           tls.VersionTLS12,
			RootCAs:              roots,
			GetClientCertificate: cert,
		},
		Proxy:                 nil, // the node API is never reached through a proxy
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          2,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &stsClient{base: base, tr: tr, hc: &http.Client{Transport: tr, Timeout: timeout}, stream: &http.Client{Transport: tr}}
}

// resetConns drops idle connections: after a renewal, a kept-alive connection would still
// present the superseded certificate.
func (c *stsClient) resetConns() { c.tr.CloseIdleConnections() }

func (c *stsClient) close() { c.tr.CloseIdleConnections() }

// Error is a refusal from the STS node API, in AWS's JSON error shape.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("sts node API: %d %s: %s", e.Status, e.Code, e.Message)
}

func (c *stsClient) post(ctx context.Context, path string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "phantom-agent")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("sts node API %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("sts node API %s: read response: %w", path, err)
	}
	if len(data) > maxResponseBytes {
		return fmt.Errorf("sts node API %s: response exceeds %d bytes", path, maxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		var e nodeapi.Error
		_ = json.Unmarshal(data, &e)
		return &Error{Status: resp.StatusCode, Code: truncate(e.Type, 64), Message: truncate(e.Message, 256)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("sts node API %s: malformed response: %w", path, err)
	}
	return nil
}

func (c *stsClient) credentials(ctx context.Context, d time.Duration) (*nodeapi.Credentials, error) {
	body := &nodeapi.Request{}
	if d > 0 {
		secs := int64(d / time.Second)
		body.DurationSeconds = &secs
	}
	out := &nodeapi.Credentials{}
	if err := c.post(ctx, nodeapi.CredentialsPath, body, out); err != nil {
		return nil, err
	}
	return out, nil
}

// newKey makes a P-256 key and a certificate request carrying its public key.
func (a *Agent) newKey() (*ecdsa.PrivateKey, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), a.rand)
	if err != nil {
		return nil, "", fmt.Errorf("generate node key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(a.rand, &x509.CertificateRequest{Subject: pkix.Name{Organization: []string{"Phantom"}}}, key)
	if err != nil {
		return nil, "", fmt.Errorf("create certificate request: %w", err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// enroll redeems the join token for the node's first certificate. The key is made here
// and never leaves the host.
func (a *Agent) enroll(ctx context.Context) error {
	if a.state != nil {
		// Fail before spending the token if the state cannot be written.
		if err := a.state.prepare(); err != nil {
			return err
		}
	}
	key, csr, err := a.newKey()
	if err != nil {
		return err
	}
	out := &nodeapi.Certificate{}
	if err := a.client.post(ctx, nodeapi.EnrollPath, &nodeapi.Request{Token: a.cfg.JoinToken, CSR: csr}, out); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	id, err := a.install(key, out)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	a.log.Info("node enrolled", "node", id.name, "certificate_serial", id.leaf.SerialNumber.Text(16), "not_after", id.leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// maybeRenew renews the node certificate once it is past 2/3 of its lifetime, with a new
// key.
func (a *Agent) maybeRenew(ctx context.Context) error {
	n := a.node.Load()
	if n == nil || a.now().Before(n.renewAt) {
		return nil
	}
	if !a.now().Before(n.leaf.NotAfter) {
		return fmt.Errorf("renew: the node certificate expired at %s; enroll again with a new join token", n.leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	key, csr, err := a.newKey()
	if err != nil {
		return err
	}
	out := &nodeapi.Certificate{}
	if err := a.client.post(ctx, nodeapi.RenewPath, &nodeapi.Request{CSR: csr}, out); err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	id, err := a.install(key, out)
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	a.log.Info("node certificate renewed", "node", id.name, "certificate_serial", id.leaf.SerialNumber.Text(16), "not_after", id.leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// install checks a certificate STS issued for key, saves it and makes it current.
func (a *Agent) install(key *ecdsa.PrivateKey, out *nodeapi.Certificate) (*nodeIdentity, error) {
	block, _ := pem.Decode([]byte(out.Certificate))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("the response holds no certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("the certificate is not for this node's key")
	}
	id, err := pki.IdentityFromCert(leaf)
	if err != nil || id.Kind != pki.KindNode {
		return nil, fmt.Errorf("the certificate does not name a node: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.client.tr.TLSClientConfig.RootCAs, CurrentTime: a.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("the certificate does not verify under the CA bundle: %w", err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	if a.state != nil {
		if err := a.state.save(cert, []byte(out.CA), a.cfg.CABundle); err != nil {
			return nil, err
		}
	}
	n := &nodeIdentity{name: id.Name, cert: cert, leaf: leaf}
	a.setNode(n)
	// A kept-alive connection still presents what it presented at its handshake: none
	// after enrollment, the superseded certificate after a renewal. The watch stream holds
	// its connection open: end it so it reopens with the new certificate.
	a.client.resetConns()
	a.restartWatch()
	return n, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
