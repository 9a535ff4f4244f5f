// Package enroll is a component's side of STS's component API: a gateway, endpoint,
// egress proxy, detector or console whose host holds no CA key enrolls once with a join
// token, keeps its key and certificate in its state directory, renews the certificate
// before it expires (proving the one it has), and has its audit writers' keys certified.
//
// It does not own what the certificate is used for (the caller presents it on every
// listener and as its client certificate), nor the CA (internal/pki) or the API
// (internal/sts).
package enroll

import (
	"bytes"
	"context"
	"crypto"
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
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

// Files in the state directory.
const (
	certFile = "component.crt" // the certificate, then its issuing CA
	keyFile  = "component.key" // 0600
)

// maxResponseBytes bounds an API answer: a certificate chain and the CA bundle.
const maxResponseBytes = 256 << 10

// Config configures a Client.
type Config struct {
	// STS is the STS's base URL (https://host:port).
	STS string
	// CABundle is the PEM bundle the STS's certificate is checked against (ca.pem).
	CABundle []byte
	// StateDir keeps the key and certificate (created 0700).
	StateDir string
	// JoinToken enrolls when the state directory holds no usable certificate.
	JoinToken string
	// Kind is what the component is: a certificate of another kind is refused.
	Kind pki.Kind
	// Timeout bounds one API call; zero means 10 s.
	Timeout time.Duration
	// NewerIssuing, when set, names the issuing CA that superseded the one with the
	// given key id (pki.Authority.NewerIssuing): a certificate it signed is renewed at
	// once, so an issuing CA rotation reaches the component within a poll. nil: renewed
	// at half life only.
	NewerIssuing func(issuer []byte) []byte
	Now          func() time.Time
	Logger       *slog.Logger
}

// Client holds a component's certificate and renews it.
type Client struct {
	cfg  Config
	hc   *http.Client
	tr   *http.Transport
	mu   sync.Mutex
	cert *tls.Certificate // current; nil before Open enrolls
	// triedFor and triedAt: the newest issuing CA an early renewal was last tried for,
	// and when (superseded).
	triedFor []byte
	triedAt  time.Time
}

// supersededRetry is how often an early renewal for a newer CA is retried while STS
// still signs with the old one (it takes the rotation within its own poll).
const supersededRetry = 2 * time.Second

// Error is a refusal from the component API, in AWS's JSON error shape.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("sts component API: %d %s: %s", e.Status, e.Code, e.Message)
}

// Open loads the certificate in the state directory, or enrolls with the join token when
// there is none (or it expired): a component needs a certificate to start.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.STS == "" || len(cfg.CABundle) == 0 || cfg.StateDir == "" || !slices.Contains(pki.ComponentKinds, cfg.Kind) {
		return nil, errors.New("enroll: STS, CABundle, StateDir and a component Kind are required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("component", "enroll")
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(cfg.CABundle) {
		return nil, errors.New("enroll: the CA bundle holds no certificate")
	}
	c := &Client{cfg: cfg}
	c.tr = &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    roots,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				c.mu.Lock()
				defer c.mu.Unlock()
				if c.cert == nil {
					return &tls.Certificate{}, nil
				}
				return c.cert, nil
			},
		},
		Proxy:                 nil, // never through a proxy
		MaxIdleConns:          2,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
	}
	c.hc = &http.Client{Transport: c.tr, Timeout: cfg.Timeout}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("enroll: state directory: %w", err)
	}
	cert, err := c.load()
	switch {
	case err == nil && c.usable(cert):
		c.cert = cert
		return c, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if cfg.JoinToken == "" {
		return nil, fmt.Errorf("enroll: no valid certificate in %s and no join token to enroll with (phantom ca join-token makes one)", cfg.StateDir)
	}
	if err := c.enroll(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// usable: not expired, and of this component's kind.
func (c *Client) usable(cert *tls.Certificate) bool {
	id, err := pki.IdentityFromCert(cert.Leaf)
	return err == nil && id.Kind == c.cfg.Kind && c.cfg.Now().Before(cert.Leaf.NotAfter)
}

func (c *Client) load() (*tls.Certificate, error) {
	certPath, keyPath := filepath.Join(c.cfg.StateDir, certFile), filepath.Join(c.cfg.StateDir, keyFile)
	if _, err := os.Stat(certPath); err != nil {
		return nil, err
	}
	cert, err := pki.LoadKeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
	}
	return cert, nil
}

// Identity is the component's identity.
func (c *Client) Identity() pki.Identity {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, _ := pki.IdentityFromCert(c.cert.Leaf)
	return id
}

// Certificate returns the current certificate, renewing it first once it is past half
// its life (keeping the current one while it is valid if the renewal fails).
func (c *Client) Certificate(ctx context.Context) (*tls.Certificate, error) {
	c.mu.Lock()
	cur := c.cert
	c.mu.Unlock()
	l := cur.Leaf
	if c.cfg.Now().Before(l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore)/2)) && !c.superseded(l) {
		return cur, nil
	}
	if err := c.renew(ctx); err != nil {
		if c.cfg.Now().Before(l.NotAfter) {
			c.cfg.Logger.Warn("certificate renewal failed; keeping the current one", "not_after", l.NotAfter, "error", err)
			return cur, nil
		}
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, nil
}

// superseded reports whether a newer issuing CA than leaf's is trusted, at most once per
// supersededRetry for that CA: a renewal that still gets the old CA's signature (STS has
// not polled the rotation yet) is not retried on every handshake.
func (c *Client) superseded(leaf *x509.Certificate) bool {
	newest := c.NewerIssuing(leaf.AuthorityKeyId)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	if len(newest) == 0 || (bytes.Equal(newest, c.triedFor) && now.Sub(c.triedAt) < supersededRetry) {
		return false
	}
	c.triedFor, c.triedAt = newest, now
	return true
}

// NewerIssuing is Config.NewerIssuing (nil without it): a certSource over this client
// renews early on an issuing CA rotation too.
func (c *Client) NewerIssuing(issuer []byte) []byte {
	if c.cfg.NewerIssuing == nil {
		return nil
	}
	return c.cfg.NewerIssuing(issuer)
}

// Issue is Certificate for callers that ask a CA for a certificate (pki.Request): an
// enrolled component has one identity, whatever names the caller would have asked for.
func (c *Client) Issue(pki.Request) (*tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	return c.Certificate(ctx)
}

// Sign has STS certify an audit writer's Ed25519 key for chain req.Identity.Name (one
// the component's grant names).
func (c *Client) Sign(pub crypto.PublicKey, req pki.Request) (*x509.Certificate, error) {
	k, ok := pub.(ed25519.PublicKey)
	if !ok || !req.AuditSigning {
		return nil, errors.New("enroll: only audit writer keys (Ed25519) are certified for a component")
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	if _, err := c.Certificate(ctx); err != nil { // a valid client certificate first
		return nil, err
	}
	var out response
	if err := c.post(ctx, "audit", map[string]string{"publicKey": base64.StdEncoding.EncodeToString(k), "chain": req.Identity.Name}, &out); err != nil {
		return nil, fmt.Errorf("certify audit writer of chain %s: %w", req.Identity.Name, err)
	}
	chain, err := parseChain(out.Certificate)
	if err != nil {
		return nil, err
	}
	if got, ok := chain[0].PublicKey.(ed25519.PublicKey); !ok || !got.Equal(k) {
		return nil, errors.New("enroll: the audit certificate is not for the key sent")
	}
	return chain[0], nil
}

type response struct {
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
	Identity    string `json:"identity"`
	Expiration  string `json:"expiration"`
}

func (c *Client) enroll(ctx context.Context) error {
	key, csr, err := newKey()
	if err != nil {
		return err
	}
	var out response
	if err := c.post(ctx, "enroll", map[string]string{"token": c.cfg.JoinToken, "csr": csr}, &out); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	cert, err := c.install(key, &out)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	c.cfg.Logger.Info("component enrolled", "identity", out.Identity, "serial", cert.Leaf.SerialNumber.Text(16), "not_after", cert.Leaf.NotAfter)
	return nil
}

func (c *Client) renew(ctx context.Context) error {
	key, csr, err := newKey()
	if err != nil {
		return err
	}
	var out response
	if err := c.post(ctx, "renew", map[string]string{"csr": csr}, &out); err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	cert, err := c.install(key, &out)
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	c.cfg.Logger.Info("component certificate renewed", "identity", out.Identity, "serial", cert.Leaf.SerialNumber.Text(16), "not_after", cert.Leaf.NotAfter)
	return nil
}

// install checks the certificate is for key and of this kind, saves it and makes it
// current.
func (c *Client) install(key *ecdsa.PrivateKey, out *response) (*tls.Certificate, error) {
	chain, err := parseChain(out.Certificate)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("the certificate is not for this component's key")
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, x := range chain {
		cert.Certificate = append(cert.Certificate, x.Raw)
	}
	if !c.usable(cert) {
		return nil, fmt.Errorf("the certificate does not name a %s, or has expired", c.cfg.Kind)
	}
	if err := pki.WriteKeyPair(filepath.Join(c.cfg.StateDir, certFile), filepath.Join(c.cfg.StateDir, keyFile), cert); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.cert = cert
	c.mu.Unlock()
	// Kept-alive connections present what they presented at their handshake.
	c.tr.CloseIdleConnections()
	return cert, nil
}

func parseChain(text string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		x, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	if len(out) == 0 || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("the response holds no certificate chain")
	}
	return out, nil
}

func newKey() (*ecdsa.PrivateKey, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, "", fmt.Errorf("create certificate request: %w", err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

func (c *Client) post(ctx context.Context, op string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.STS+"/phantom/component/"+op, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return err
	}
	if len(data) > maxResponseBytes {
		return errors.New("response too large")
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(data, &e)
		return &Error{Status: resp.StatusCode, Code: e.Type, Message: e.Message}
	}
	return json.Unmarshal(data, out)
}

// Close drops idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }
