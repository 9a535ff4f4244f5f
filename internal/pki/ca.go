// Package pki owns the perimeter's certificate authority: a root that signs short-lived
// issuing CAs (Authority, kept in the store every process shares, the root's key apart
// from the issuing key), the issuing CA that signs short-lived ECDSA P-256 certificates
// whose one URI SAN names an endpoint, gateway or node
// (spiffe://phantom/<account>/<kind>/<name>), rotation with overlap, certificate
// revocations, verifying peers against the current trust and telling a TLS server who
// they are, mutual-TLS configurations, the CA bundle AWS tools trust (AWS_CA_BUNDLE), and
// enrolling nodes with single-use join tokens.
//
// It does not own storage (the CA's certificates and keys, join tokens and revocations
// live behind the CAStore and TokenStore interfaces it declares; internal/store
// implements them), nor the CLI commands that hand out tokens, rotate and revoke.
package pki

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
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/atomicfile"
)

const (
	// DefaultCAValidity is a root certificate's lifetime (and a CA's made by New, which is
	// both root and issuer).
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultIssuingValidity is an issuing CA's lifetime: the root signs a new one before
	// two thirds of it have passed (Authority.Renew), so a stolen issuing key is useful
	// for weeks, not years.
	DefaultIssuingValidity = 30 * 24 * time.Hour
	// DefaultValidity is a leaf certificate's lifetime: short, so that a stolen key is
	// useful only briefly and no revocation list is needed.
	DefaultValidity = 24 * time.Hour
	// MaxValidity bounds what Issue accepts.
	MaxValidity = 30 * 24 * time.Hour
	// backdate covers clock skew between the CA and the verifiers.
	backdate = time.Minute

	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
)

// Config configures a CA.
type Config struct {
	// Dir holds the CA's files (created 0700 if missing): ca.crt and ca.key (0600).
	Dir string
	// Account is the perimeter's account id; every identity the CA issues carries it.
	Account string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the entropy source; nil means crypto/rand.
	Rand io.Reader
	// Validity is the default leaf lifetime; zero means DefaultValidity.
	Validity time.Duration
}

// CA is the perimeter's issuing certificate authority: the certificate and key that sign
// leaf certificates. Made by New (one self-signed CA in a directory, the layout before
// issuing CAs, kept for tests and tools) or by an Authority (an issuing CA its root
// signed).
type CA struct {
	cfg     Config
	cert    *x509.Certificate
	certPEM []byte // the trusted bundle: cert alone (New), or every trusted CA (Authority)
	key     crypto.Signer
	// chain is sent after an issued TLS certificate: the issuing certificate, unless it is
	// a root, so a client that trusts only the root can build the path.
	chain [][]byte
}

// New loads the CA from cfg.Dir, or creates it there if the directory holds none. A
// directory with only one of the two files, a key readable by others, or a key that does
// not match the certificate is an error: the CA fails closed rather than silently
// replacing an identity every issued certificate chains to.
func New(cfg Config) (*CA, error) {
	if cfg.Dir == "" {
		return nil, errors.New("pki: no CA directory")
	}
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	if ca, err := load(cfg); err == nil {
		return ca, nil
	}
	// No CA, or one that looks broken: a first start in another process may be half-way
	// through writing the key and certificate, so decide under the directory lock, where
	// create finds the complete pair, makes one if there is none, or reports the breakage.
	return create(cfg)
}

// withDefaults validates cfg and fills its defaults.
func withDefaults(cfg Config) (Config, error) {
	if !arn.ValidAccount(cfg.Account) {
		return cfg, fmt.Errorf("pki: account %q is not 12 digits", cfg.Account)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Validity == 0 {
		cfg.Validity = DefaultValidity
	}
	if cfg.Validity < 0 || cfg.Validity > MaxValidity {
		return cfg, fmt.Errorf("pki: validity %s is outside 0 to %s", cfg.Validity, MaxValidity)
	}
	return cfg, nil
}

// SecretStore keeps named secrets: a store shared by every process, which seals each
// value at rest (the CA's keys, each kind under a storage key of its own).
type SecretStore interface {
	// PutSecretIfAbsent stores value under name unless one is there, and returns the
	// stored value, so that processes starting at once agree on one CA.
	PutSecretIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error)
}

// splitCA splits a stored CA (certificate PEM then key PEM) into its two blocks.
func splitCA(b []byte) (certPEM, keyPEM []byte, err error) {
	cert, rest := pem.Decode(b)
	if cert == nil || cert.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no CERTIFICATE block first")
	}
	key, rest := pem.Decode(rest)
	if key == nil || key.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, errors.New("want exactly a CERTIFICATE and a PRIVATE KEY block")
	}
	return pem.EncodeToMemory(cert), pem.EncodeToMemory(key), nil
}

// errNoCA says the directory holds neither CA file: the one state in which New creates a
// CA. Any other missing file is an error, never a reason to mint a new CA.
var errNoCA = errors.New("no CA in directory")

func load(cfg Config) (*CA, error) {
	certPath, keyPath := filepath.Join(cfg.Dir, caCertFile), filepath.Join(cfg.Dir, caKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyInfo, keyErr := os.Stat(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return nil, errNoCA
	case certErr != nil:
		return nil, fmt.Errorf("read CA certificate: %w", certErr)
	case keyErr != nil:
		return nil, fmt.Errorf("read CA key: %w", keyErr)
	}
	if keyInfo.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("CA key %s has mode %#o; run chmod 600 %s", keyPath, keyInfo.Mode().Perm(), keyPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	ca, err := parseCA(cfg, certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA in %s: %w", cfg.Dir, err)
	}
	return ca, nil
}

// parseCA checks that a certificate and key are this account's CA and belong together.
func parseCA(cfg Config, certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("CA key does not match certificate")
	}
	if !cert.IsCA || cert.Subject.SerialNumber != cfg.Account {
		return nil, fmt.Errorf("CA certificate is not the CA of account %s", cfg.Account)
	}
	return &CA{cfg: cfg, cert: cert, certPEM: certPEM, key: key}, nil
}

// newIssuing is the CA that signs with key under cert, trusted as bundlePEM says.
func newIssuing(cfg Config, cert *x509.Certificate, key crypto.Signer, bundlePEM []byte) (*CA, error) {
	if !cert.IsCA || cert.Subject.SerialNumber != cfg.Account {
		return nil, fmt.Errorf("issuing certificate is not a CA of account %s", cfg.Account)
	}
	if !publicKeyEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("issuing key does not match its certificate")
	}
	ca := &CA{cfg: cfg, cert: cert, certPEM: bundlePEM, key: key}
	if !isRoot(cert) {
		ca.chain = [][]byte{cert.Raw}
	}
	return ca, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// create makes a new CA under an exclusive lock on the directory, so two processes
// starting at once agree on one CA; each file is written to a temporary name and renamed,
// so a reader never sees half a file.
func create(cfg Config) (*CA, error) {
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if ca, err := load(cfg); !errors.Is(err, errNoCA) {
		return ca, err // created by another process while we waited, or broken
	}
	certPEM, keyPEM, err := generate(cfg)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(cfg.Dir, caKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(cfg.Dir, caCertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	return load(cfg)
}

// generate makes a new CA key and self-signed certificate, in PEM: New's CA, which is
// both root and issuer.
func generate(cfg Config) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), cfg.Rand)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	cert, err := caCertificate(cfg, "Phantom perimeter CA "+cfg.Account, key.Public(), nil, key, DefaultCAValidity, 0)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), keyPEM, nil
}

// caCertificate makes a CA certificate for pub named cn, signed by parent's key (self-
// signed when parent is nil). maxPathLen 0 signs leaves only (an issuing CA: a leaf key
// can never mint certificates); 1 signs issuing CAs (a root).
func caCertificate(cfg Config, cn string, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer, validity time.Duration, maxPathLen int) (*x509.Certificate, error) {
	serial, err := randomSerial(cfg.Rand)
	if err != nil {
		return nil, err
	}
	now := cfg.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Phantom"},
			CommonName:   cn,
			SerialNumber: cfg.Account,
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            maxPathLen,
		MaxPathLenZero:        maxPathLen == 0,
	}
	if parent == nil {
		parent = tmpl
	} else if tmpl.NotAfter.After(parent.NotAfter) {
		tmpl.NotAfter = parent.NotAfter
	}
	der, err := x509.CreateCertificate(cfg.Rand, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate %q: %w", cn, err)
	}
	return x509.ParseCertificate(der)
}

// Chain is what follows an issued certificate up to a root: the issuing CA's
// certificate, unless it is a root itself.
func (ca *CA) Chain() [][]byte { return slices.Clone(ca.chain) }

// Certificate returns the issuing CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// BundlePEM returns the CA bundle clients trust, in PEM: the roots and issuing CAs.
func (ca *CA) BundlePEM() []byte { return bytes.Clone(ca.certPEM) }

// WriteBundle writes the CA bundle to path (0644, replaced atomically) for AWS_CA_BUNDLE,
// curl --cacert and the agent.
func (ca *CA) WriteBundle(path string) error {
	return atomicfile.Write(path, ca.certPEM, 0o644)
}

// Verifier returns a Verifier trusting this CA's bundle (no revocations: an Authority's
// Verifier follows those).
func (ca *CA) Verifier() *Verifier {
	v, err := NewVerifier(ca.certPEM, ca.cfg.Account, ca.cfg.Now)
	if err != nil {
		panic("pki: a CA's own bundle does not parse: " + err.Error())
	}
	return v
}

// Request describes a certificate to issue.
type Request struct {
	// Identity is the URI SAN; its account must be the CA's.
	Identity Identity
	// DNSNames and IPs are the names a server certificate is valid for.
	DNSNames []string
	IPs      []netip.Addr
	// Server and Client select the extended key usages; at least one is required, unless
	// AuditSigning.
	Server, Client bool
	// AuditSigning issues an audit writer's certificate (identity kind KindAudit, an
	// Ed25519 key): its only extended key usage is document signing, so it signs audit
	// digests and cannot serve or authenticate TLS.
	AuditSigning bool
	// Validity is the lifetime; zero means the CA's default.
	Validity time.Duration
	// AuditChains are the audit chains a component certificate lets its holder have
	// certified (Grant), carried as Subject OU values.
	AuditChains []string
}

// Issue generates a P-256 key and a certificate for it.
func (ca *CA) Issue(req Request) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), ca.cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("generate key for %s: %w", req.Identity, err)
	}
	cert, err := ca.Sign(key.Public(), req)
	if err != nil {
		return nil, err
	}
	chain := append([][]byte{cert.Raw}, ca.chain...)
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: cert}, nil
}

// SignCSR signs the key of a certificate signing request, as a node enrolling with its
// own key asks. Only the key is taken from the CSR: names come from req, which the caller
// derives from what it authenticated (a redeemed join token), never from the request.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, req Request) (*x509.Certificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature: %w", err)
	}
	return ca.Sign(csr.PublicKey, req)
}

// Sign issues a certificate for pub. Only ECDSA P-256 and Ed25519 keys are accepted.
func (ca *CA) Sign(pub crypto.PublicKey, req Request) (*x509.Certificate, error) {
	if err := req.Identity.Validate(); err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	if req.Identity.Account != ca.cfg.Account {
		return nil, fmt.Errorf("issue certificate: identity account %s is not the CA's %s", req.Identity.Account, ca.cfg.Account)
	}
	if req.AuditSigning != (req.Identity.Kind == KindAudit) {
		return nil, fmt.Errorf("issue certificate for %s: audit signing is for audit writer identities only, and the only usage they get", req.Identity)
	}
	if req.AuditSigning {
		if req.Server || req.Client {
			return nil, fmt.Errorf("issue certificate for %s: an audit writer gets no TLS usage", req.Identity)
		}
		if _, ok := pub.(ed25519.PublicKey); !ok {
			return nil, fmt.Errorf("issue certificate for %s: audit digests are signed with Ed25519, not %T", req.Identity, pub)
		}
	} else if !req.Server && !req.Client {
		return nil, fmt.Errorf("issue certificate for %s: neither server nor client usage requested", req.Identity)
	}
	if len(req.AuditChains) > 0 && !slices.Contains(ComponentKinds, req.Identity.Kind) {
		return nil, fmt.Errorf("issue certificate for %s: only a component's certificate names audit chains", req.Identity)
	}
	for _, c := range req.AuditChains {
		if !chainRe.MatchString(c) {
			return nil, fmt.Errorf("issue certificate for %s: audit chain %q is not [a-z0-9-]+", req.Identity, c)
		}
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", req.Identity, err)
	}
	validity := req.Validity
	if validity == 0 {
		validity = ca.cfg.Validity
	}
	if validity < 0 || validity > MaxValidity {
		return nil, fmt.Errorf("issue certificate for %s: validity %s is outside 0 to %s", req.Identity, validity, MaxValidity)
	}
	now := ca.cfg.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	serial, err := randomSerial(ca.cfg.Rand)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Phantom"}, CommonName: string(req.Identity.Kind) + "/" + req.Identity.Name, OrganizationalUnit: auditChainOUs(req.AuditChains)},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{req.Identity.URI()},
		DNSNames:              req.DNSNames,
	}
	for _, ip := range req.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.Unmap().AsSlice()))
	}
	if req.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if req.AuditSigning {
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{oidDocumentSigning}
	}
	der, err := x509.CreateCertificate(ca.cfg.Rand, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %s: %w", req.Identity, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate for %s: %w", req.Identity, err)
	}
	return cert, nil
}

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA key on %s, want P-256", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
	return nil
}

func randomSerial(r io.Reader) (*big.Int, error) {
	// RFC 5280 §4.1.2.2: positive, at most 20 octets; 128 random bits make it unguessable.
	serial, err := rand.Int(r, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
