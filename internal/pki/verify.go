package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
)

// Verifier checks certificates against the perimeter's trust: its root certificates,
// the intermediates they signed (both from the CA bundle), and the certificate
// revocations. It holds no private key, so gateways and endpoints running as their own
// processes verify peers without being able to issue. The trust is swapped whole
// (SetTrust) when the CA rotates or a certificate is revoked, and every verification
// after that uses the new trust: a revoked certificate is refused on its next use.
type Verifier struct {
	account string
	now     func() time.Time
	trust   atomic.Pointer[trust]
}

// trust is one immutable snapshot of what the Verifier trusts.
type trust struct {
	gen     uint64
	roots   *x509.CertPool
	inters  *x509.CertPool
	revoked Revocations
}

// NewVerifier trusts the CA certificates in bundlePEM (roots and the intermediates they
// signed) for identities of account. now is the clock (nil means time.Now).
func NewVerifier(bundlePEM []byte, account string, now func() time.Time) (*Verifier, error) {
	if !arn.ValidAccount(account) {
		return nil, fmt.Errorf("pki: account %q is not 12 digits", account)
	}
	if now == nil {
		now = time.Now
	}
	v := &Verifier{account: account, now: now}
	if err := v.SetTrust(bundlePEM, Revocations{}); err != nil {
		return nil, err
	}
	return v, nil
}

// SetTrust replaces what the verifier trusts: the CA certificates in bundlePEM
// (self-signed ones are roots, the others intermediates) and the revocations.
func (v *Verifier) SetTrust(bundlePEM []byte, revoked Revocations) error {
	certs, err := ParseBundle(bundlePEM)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	t := &trust{roots: x509.NewCertPool(), inters: x509.NewCertPool(), revoked: revoked}
	for _, c := range certs {
		if isRoot(c) {
			t.roots.AddCert(c)
		} else {
			t.inters.AddCert(c)
		}
	}
	if len(t.roots.Subjects()) == 0 { //nolint:staticcheck // only the count is used
		return errors.New("CA bundle: no root certificate")
	}
	if old := v.trust.Load(); old != nil {
		t.gen = old.gen + 1
	}
	v.trust.Store(t)
	return nil
}

// Generation changes every time the trust does: a cache of verified peers keyed by it
// never outlives a revocation or a removed CA.
func (v *Verifier) Generation() uint64 { return v.trust.Load().gen }

// ParseBundle returns every certificate of a PEM bundle; each must be a CA certificate.
func ParseBundle(bundlePEM []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := bundlePEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		if !c.IsCA {
			return nil, fmt.Errorf("certificate %s is not a CA", c.Subject.CommonName)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("trailing data after the last PEM block")
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return out, nil
}

// isRoot reports whether c is self-signed: a trust anchor, not an intermediate.
func isRoot(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// Verify verifies a peer's chain (leaf first) to a root at the verifier's current time,
// for usage, and returns the identity the leaf names. Only intermediates of the bundle
// count: one the peer presents but the perimeter does not trust (a removed issuing CA)
// is not used. A revoked certificate is refused.
func (v *Verifier) Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, errors.New("verify peer: no certificate")
	}
	t := v.trust.Load()
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         t.roots,
		Intermediates: t.inters,
		CurrentTime:   v.now(),
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return Identity{}, fmt.Errorf("verify peer: %w", err)
	}
	id, err := v.identity(chain[0])
	if err != nil {
		return Identity{}, err
	}
	if err := t.revoked.check(chain[0], id); err != nil {
		return Identity{}, fmt.Errorf("verify peer: %w", err)
	}
	return id, nil
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
// certificate that verifies (Verify, with the trust current at the handshake) and names
// exactly one identity of this account, of one of the allowed kinds (any kind when none
// is given), and speaks TLS 1.2 or later. A handler learns the peer with PeerIdentity.
func (v *Verifier) ServerConfig(cert *tls.Certificate, allow ...Kind) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
		// The chain is verified by VerifyConnection against the current trust, not by a
		// pool fixed when this configuration was made.
		ClientAuth: tls.RequireAnyClientCert,
		Time:       v.now,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return v.checkPeer(cs, x509.ExtKeyUsageClientAuth, allow)
		},
	}
}

// ClientConfig is a mutual-TLS client configuration: it presents cert, verifies the
// server's certificate for serverName (a DNS name or IP address in its SANs) against the
// current trust, and requires the server to name an identity of this account of an
// allowed kind.
func (v *Verifier) ClientConfig(cert *tls.Certificate, serverName string, allow ...Kind) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
		ServerName:   serverName,
		// Verified below, with the trust current at the handshake and the host name.
		InsecureSkipVerify: true,
		Time:               v.now,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("verify peer: no certificate")
			}
			if err := cs.PeerCertificates[0].VerifyHostname(serverName); err != nil {
				return fmt.Errorf("verify peer: %w", err)
			}
			return v.checkPeer(cs, x509.ExtKeyUsageServerAuth, allow)
		},
	}
}

func (v *Verifier) checkPeer(cs tls.ConnectionState, usage x509.ExtKeyUsage, allow []Kind) error {
	id, err := v.Verify(cs.PeerCertificates, usage)
	if err != nil {
		return err
	}
	if len(allow) > 0 && !slices.Contains(allow, id.Kind) {
		return fmt.Errorf("peer %s is a %s; only %v may connect", id, id.Kind, allow)
	}
	return nil
}

// PeerIdentity returns the identity of a connection's peer, verifying its chain (for any
// usage) against the current trust: an unverified or revoked certificate is never taken
// for an identity.
func (v *Verifier) PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	return v.Verify(cs.PeerCertificates, x509.ExtKeyUsageAny)
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
// identity of this account, and returns what it vouches for. The chain to a root is
// checked as of the certificate's own start, since the digests it signed are checked
// long after it (and perhaps its issuing CA) expired; whether a digest's time is within
// its validity is the caller's check. A revoked writer certificate vouches for nothing.
func (v *Verifier) VerifyAuditSigner(der []byte) (AuditSigner, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return AuditSigner{}, fmt.Errorf("audit writer certificate: %w", err)
	}
	t := v.trust.Load()
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         t.roots,
		Intermediates: t.inters,
		CurrentTime:   cert.NotBefore.Add(time.Second),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
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
	if err := t.revoked.check(cert, id); err != nil {
		return AuditSigner{}, fmt.Errorf("audit writer certificate: %w", err)
	}
	key, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return AuditSigner{}, fmt.Errorf("audit writer certificate: key is %T, want Ed25519", cert.PublicKey)
	}
	return AuditSigner{Chain: id.Name, Key: key, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter}, nil
}
