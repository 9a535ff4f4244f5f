package pki

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Verifier checks certificates against the perimeter CA. It needs only the CA
// certificate, so gateways and endpoints running as their own processes verify peers
// without holding the CA key.
type Verifier struct {
	roots   *x509.CertPool
	account string
	now     func() time.Time
}

// NewVerifier trusts the CA certificate in bundlePEM for identities of account. now is
// the clock (nil means time.Now).
func NewVerifier(bundlePEM []byte, account string, now func() time.Time) (*Verifier, error) {
	if !accountRe.MatchString(account) {
		return nil, fmt.Errorf("pki: account %q is not 12 digits", account)
	}
	cert, err := parseCertPEM(bundlePEM)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("CA bundle: certificate is not a CA")
	}
	if now == nil {
		now = time.Now
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &Verifier{roots: pool, account: account, now: now}, nil
}

// Verify verifies a peer's chain (leaf first) to the CA at the verifier's current time,
// for usage, and returns the identity the leaf names. Phantom issues no intermediates,
// and the CA's path length of zero makes any presented one fail verification.
func (v *Verifier) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, errors.New("verify peer: no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   v.now(),
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return Identity{}, fmt.Errorf("verify peer: %w", err)
	}
	return v.identity(chain[0])
}

// identity extracts a verified leaf's identity and checks it belongs to this perimeter.
func (v *Verifier) identity(leaf *x509.Certificate, allow ...Kind) (Identity, error) {
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return Identity{}, err
	}
	if id.Account != v.account {
		return Identity{}, fmt.Errorf("peer %s is not in account %s", id, v.account)
	}
	if len(allow) > 0 && !slices.Contains(allow, id.Kind) {
		return Identity{}, fmt.Errorf("peer %s is a %s; only %v may connect", id, id.Kind, allow)
	}
	return id, nil
}

// ServerConfig is a mutual-TLS server configuration: it presents cert, requires a client
// certificate chaining to the CA that names exactly one identity of this account, of one
// of the allowed kinds (any kind when none is given), and speaks TLS 1.2 or later. A
// handler learns the peer with PeerIdentity.
func (v *Verifier) ServerConfig(cert *tls.Certificate, allow ...Kind) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    v.roots,
		Time:         v.now,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := v.peer(cs, allow)
			return err
		},
	}
}

// ClientConfig is a mutual-TLS client configuration: it presents cert, verifies the
// server's certificate for serverName (a DNS name or IP address in its SANs) against the
// CA, and requires the server to name an identity of this account of an allowed kind.
func (v *Verifier) ClientConfig(cert *tls.Certificate, serverName string, allow ...Kind) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
		RootCAs:      v.roots,
		ServerName:   serverName,
		Time:         v.now,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := v.peer(cs, allow)
			return err
		},
	}
}

// PeerIdentity returns the identity of a connection's verified peer. It refuses a
// connection whose chain was not verified, so an unverified certificate can never be
// mistaken for an identity.
func (v *Verifier) PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	return v.peer(cs, nil)
}

func (v *Verifier) peer(cs tls.ConnectionState, allow []Kind) (Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, errors.New("peer certificate not verified")
	}
	return v.identity(cs.VerifiedChains[0][0], allow...)
}

// oidDocumentSigning is id-kp-documentSigning (RFC 9336 §3.1), the only extended key
// usage of an audit writer's certificate: an IANA-registered usage no TLS stack accepts
// for server or client authentication.
var oidDocumentSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 36}

// AuditSigner is what an audit writer's certificate vouches for: the chain whose
// digests Key signs, during the certificate's validity.
type AuditSigner struct {
	Chain               string
	Key                 ed25519.PublicKey
	NotBefore, NotAfter time.Time
}

// VerifyAuditSigner checks that der is an audit writer certificate the CA issued for an
// identity of this account, and returns what it vouches for. The chain to the CA is
// checked as of the certificate's own start, since the digests it signed are checked
// long after it expired; whether a digest's time is within its validity is the
// caller's check.
func (v *Verifier) VerifyAuditSigner(der []byte) (AuditSigner, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return AuditSigner{}, fmt.Errorf("audit writer certificate: %w", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       v.roots,
		CurrentTime: cert.NotBefore.Add(time.Second),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return AuditSigner{}, fmt.Errorf("audit writer certificate: %w", err)
	}
	if len(cert.ExtKeyUsage) != 0 || len(cert.UnknownExtKeyUsage) != 1 || !cert.UnknownExtKeyUsage[0].Equal(oidDocumentSigning) {
		return AuditSigner{}, errors.New("audit writer certificate: its usage is not document signing alone")
	}
	id, err := v.identity(cert, KindAudit)
	if err != nil {
		return AuditSigner{}, fmt.Errorf("audit writer certificate: %w", err)
	}
	key, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return AuditSigner{}, fmt.Errorf("audit writer certificate: key is %T, want Ed25519", cert.PublicKey)
	}
	return AuditSigner{Chain: id.Name, Key: key, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter}, nil
}
