package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
)

// The perimeter's CA, kept in the store every process shares:
//
//   - roots (10 years) sign issuing CAs and nothing else; a root's key is a named secret
//     "pki/root/…" sealed under its own storage key (keys.StoreCARoot, which only the
//     operator's master key derives), or lives in a key provider (RootSigner);
//   - issuing CAs (DefaultIssuingValidity, 30 days) sign leaves; their keys are named
//     secrets "pki/issuing/<serial>" sealed under keys.StoreCA (STS holds it);
//   - every CA certificate, public, is a row (CACertificate): the bundle every verifier
//     trusts and ca.pem is written from. A CA removed from trust (Distrust) stays listed,
//     so audit signatures made under it are still told apart from forgeries;
//   - revocations (Revocation) refuse single certificates.
//
// Rotation overlaps: a new issuing CA joins the bundle, new leaves come from it, and the
// old one stays trusted until it expires, so no certificate in use stops verifying. A new
// root joins the bundle beside the old one the same way.

// Role is what a CA certificate is for.
type Role string

const (
	RoleRoot    Role = "root"    // self-signed; signs issuing CAs
	RoleIssuing Role = "issuing" // signed by a root; signs leaves
)

// CACertificate is one CA certificate of the perimeter, as the store keeps it.
type CACertificate struct {
	Serial       string // lower-case hexadecimal
	DER          []byte
	Role         Role
	NotBefore    time.Time
	NotAfter     time.Time
	DistrustedAt time.Time // zero: trusted
}

// CAStore keeps the CA. internal/store implements it: the certificates in a table every
// process may read, the keys as named secrets (PutSecretIfAbsent, GetSecret), each kind
// sealed under a storage key of its own.
type CAStore interface {
	SecretStore
	GetSecret(ctx context.Context, name string) ([]byte, error)
	// PutCACertificate adds a CA certificate; one already there is left as it is.
	PutCACertificate(ctx context.Context, c CACertificate) error
	ListCACertificates(ctx context.Context) ([]CACertificate, error)
	// DistrustCACertificate removes a CA from trust from at on.
	DistrustCACertificate(ctx context.Context, serial string, at time.Time) error
	PutCertificateRevocation(ctx context.Context, r Revocation) error
	ListCertificateRevocations(ctx context.Context) ([]Revocation, error)
}

// RootSigner gives the key of a root certificate: from a key provider (PKCS#11), when the
// root's key is not in the store.
type RootSigner func(ctx context.Context, root *x509.Certificate) (crypto.Signer, error)

// AuthorityConfig configures an Authority.
type AuthorityConfig struct {
	Config // Account, Now, Rand, Validity (leaves); Dir: a CA from before issuing CAs (New's files), imported once
	// IssuingValidity is an issuing CA's lifetime; zero means DefaultIssuingValidity.
	IssuingValidity time.Duration
	// Issue: this process signs certificates (it holds the issuing keys' storage key:
	// STS, the operator). Without it the Authority only verifies.
	Issue bool
	// Root: this process may use root keys kept in the store (the operator: keys.StoreCARoot)
	// to create the CA, renew issuing CAs and rotate roots.
	Root bool
	// RootSigner, when set, is where root keys are (a key provider); roots it makes are
	// made there too (NewRootKey).
	RootSigner RootSigner
	// NewRootKey makes a new root key in the key provider; with RootSigner.
	NewRootKey func(ctx context.Context) (crypto.Signer, error)
	// IssuingSigner, when set, finds an issuing CA's key in a key provider (PKCS#11)
	// before the store is looked at.
	IssuingSigner func(ctx context.Context, cert *x509.Certificate) (crypto.Signer, error)
	// NewIssuingKey, when set, makes new issuing CAs' keys in the key provider, which
	// keeps them (the store keeps no key of theirs).
	NewIssuingKey func(ctx context.Context) (crypto.Signer, error)
}

// Authority is the perimeter's CA as one process sees it: the trust (roots, issuing CAs,
// revocations) for its Verifier, and, in a process that issues, the current issuing CA.
// Refresh follows the store.
type Authority struct {
	cfg      AuthorityConfig
	st       CAStore
	verifier *Verifier
	ca       atomic.Pointer[CA]
	bundle   atomic.Pointer[[]byte]
	certs    atomic.Pointer[[]CACertificate]
	newer    atomic.Pointer[map[string][]byte] // NewerIssuing's answers, by issuing CA key id
	mu       sync.Mutex                        // Refresh and rotations, one at a time
}

// ErrCannotIssue is returned by Authority.CA in a process that does not issue.
var ErrCannotIssue = errors.New("this process holds no issuing CA key (only STS and the operator issue certificates)")

// OpenAuthority loads the perimeter's CA from st. A store that holds none gets one:
// imported from a CA made before issuing CAs (cfg.Dir's ca.crt and ca.key, or the
// shared secret "pki/ca/<account>"), else created, which takes a root key (cfg.Root or a
// key provider). Processes starting at once agree on one root.
func OpenAuthority(ctx context.Context, cfg AuthorityConfig, st CAStore) (*Authority, error) {
	var err error
	if cfg.Config, err = withDefaults(cfg.Config); err != nil {
		return nil, err
	}
	if cfg.IssuingValidity == 0 {
		cfg.IssuingValidity = DefaultIssuingValidity
	}
	if cfg.IssuingValidity < cfg.Validity || cfg.IssuingValidity > DefaultCAValidity {
		return nil, fmt.Errorf("pki: issuing CA validity %s is outside %s (a leaf's) to %s", cfg.IssuingValidity, cfg.Validity, DefaultCAValidity)
	}
	a := &Authority{cfg: cfg, st: st}
	certs, err := st.ListCACertificates(ctx)
	if err != nil {
		return nil, fmt.Errorf("load the CA: %w", err)
	}
	if len(certs) == 0 {
		if err := a.create(ctx); err != nil {
			return nil, err
		}
	}
	if err := a.Refresh(ctx); errors.Is(err, ErrNoIssuer) && len(certs) > 0 {
		// Another process is making the CA (its root is stored, its issuing CA not yet),
		// or every issuing CA expired: wait for the first, make one when this process
		// holds a root key.
		if err := a.awaitIssuer(ctx); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return a, nil
}

// awaitIssuer waits up to two seconds for another process's first issuing CA, then
// makes one under the current root when this process holds its key.
func (a *Authority) awaitIssuer(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var err error
	for range 40 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if err = a.Refresh(ctx); !errors.Is(err, ErrNoIssuer) {
			return err
		}
	}
	if !a.cfg.Root && a.cfg.RootSigner == nil {
		return err
	}
	_, err = a.Rotate(ctx, false)
	return err
}

// Verifier is the process's verifier; Refresh keeps its trust current.
func (a *Authority) Verifier() *Verifier { return a.verifier }

// BundlePEM is the current trusted bundle (roots, then issuing CAs).
func (a *Authority) BundlePEM() []byte { return bytes.Clone(*a.bundle.Load()) }

// WriteBundle writes the current bundle to path (0644, replaced atomically).
func (a *Authority) WriteBundle(path string) error {
	return atomicfile.Write(path, *a.bundle.Load(), 0o644)
}

// NewerIssuing returns the key id of the newest trusted issuing CA (the one a renewal
// gets a certificate from) when it superseded the issuing CA whose key id is issuer
// under the same root, nil otherwise: a holder of a certificate issuer signed renews it
// early, so an issuing CA rotation moves every component within a poll instead of a leaf
// lifetime, and its clients, which trust the root, see no change. A new root is not
// followed early: clients must trust it first (the old root stays trusted), so leaves
// move to it when they renew at half life.
func (a *Authority) NewerIssuing(issuer []byte) []byte {
	if m := a.newer.Load(); m != nil {
		return (*m)[string(issuer)]
	}
	return nil
}

// newerIssuing maps the key id of each trusted issuing CA under the same root as the
// newest one, other than it, to the newest's. trusted is oldest first per role.
func newerIssuing(trusted []*x509.Certificate) map[string][]byte {
	var newest *x509.Certificate
	for _, c := range trusted {
		if !bytes.Equal(c.RawIssuer, c.RawSubject) && (newest == nil || !c.NotBefore.Before(newest.NotBefore)) {
			newest = c
		}
	}
	out := map[string][]byte{}
	if newest == nil {
		return out
	}
	for _, c := range trusted {
		if c != newest && !bytes.Equal(c.RawIssuer, c.RawSubject) && bytes.Equal(c.AuthorityKeyId, newest.AuthorityKeyId) {
			out[string(c.SubjectKeyId)] = bytes.Clone(newest.SubjectKeyId)
		}
	}
	return out
}

// Certificates lists the perimeter's CA certificates as last refreshed.
func (a *Authority) Certificates() []CACertificate { return slices.Clone(*a.certs.Load()) }

// CA is the current issuing CA, or ErrCannotIssue.
func (a *Authority) CA() (*CA, error) {
	if ca := a.ca.Load(); ca != nil {
		return ca, nil
	}
	return nil, ErrCannotIssue
}

// create makes the perimeter's CA in an empty store: imported from before issuing CAs,
// or a new root and issuing CA.
func (a *Authority) create(ctx context.Context) error {
	if imported, err := a.importLegacy(ctx); imported || err != nil {
		return err
	}
	root, rootKey, err := a.newRoot(ctx, true)
	if err != nil {
		return err
	}
	_, err = a.newIssuing(ctx, root, rootKey)
	return err
}

// rootSecret names a root key's secret: the first root's name is fixed, so processes
// creating the CA at once keep the one stored first; later ones are named by serial.
func (a *Authority) rootSecret(first bool, serial string) string {
	if first {
		return "pki/root/" + a.cfg.Account
	}
	return "pki/root/" + a.cfg.Account + "/" + serial
}

// importLegacy takes a CA made before issuing CAs (self-signed, signing leaves itself)
// as the perimeter's root and issuing CA, so certificates it issued keep verifying;
// Rotate(root) moves the perimeter to a root and issuing CA of its own.
func (a *Authority) importLegacy(ctx context.Context) (bool, error) {
	var certPEM, keyPEM []byte
	if a.cfg.Dir != "" {
		c, cerr := os.ReadFile(filepath.Join(a.cfg.Dir, caCertFile))
		k, kerr := os.ReadFile(filepath.Join(a.cfg.Dir, caKeyFile))
		if cerr == nil && kerr == nil {
			certPEM, keyPEM = c, k
		}
	}
	if certPEM == nil && a.cfg.Issue {
		if b, err := a.st.GetSecret(ctx, "pki/ca/"+a.cfg.Account); err == nil {
			if certPEM, keyPEM, err = splitCA(b); err != nil {
				return false, fmt.Errorf("shared CA pki/ca/%s: %w", a.cfg.Account, err)
			}
		}
	}
	if certPEM == nil {
		return false, nil
	}
	ca, err := parseCA(a.cfg.Config, certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("import the CA: %w", err)
	}
	serial := ca.cert.SerialNumber.Text(16)
	if _, err := a.st.PutSecretIfAbsent(ctx, issuingSecret(serial), append(certPEM, keyPEM...)); err != nil {
		return false, fmt.Errorf("import the CA: %w", err)
	}
	if err := a.st.PutCACertificate(ctx, caRow(ca.cert, RoleRoot)); err != nil {
		return false, fmt.Errorf("import the CA: %w", err)
	}
	return true, nil
}

func issuingSecret(serial string) string { return "pki/issuing/" + serial }

func caRow(c *x509.Certificate, r Role) CACertificate {
	return CACertificate{Serial: c.SerialNumber.Text(16), DER: c.Raw, Role: r, NotBefore: c.NotBefore, NotAfter: c.NotAfter}
}

// newRoot makes a root: in the key provider when there is one, else a key stored as a
// secret (rootSecret).
func (a *Authority) newRoot(ctx context.Context, first bool) (*x509.Certificate, crypto.Signer, error) {
	cn := "Phantom root CA " + a.cfg.Account + " " + a.cfg.Now().UTC().Format("2006-01-02T15:04:05Z")
	if a.cfg.NewRootKey != nil {
		key, err := a.cfg.NewRootKey(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("create a root key in the key provider: %w", err)
		}
		cfg, err := a.startingAfter(ctx, RoleRoot)
		if err != nil {
			return nil, nil, err
		}
		cert, err := caCertificate(cfg, cn, key.Public(), nil, key, DefaultCAValidity, 1)
		if err != nil {
			return nil, nil, err
		}
		if err := a.st.PutCACertificate(ctx, caRow(cert, RoleRoot)); err != nil {
			return nil, nil, fmt.Errorf("store the root certificate: %w", err)
		}
		return cert, key, nil
	}
	if !a.cfg.Root {
		return nil, nil, errors.New("pki: the store holds no CA, and this process holds no root key to make one: start STS or run an admin command with the master key first")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), a.cfg.Rand)
	if err != nil {
		return nil, nil, fmt.Errorf("generate root key: %w", err)
	}
	cfg, err := a.startingAfter(ctx, RoleRoot)
	if err != nil {
		return nil, nil, err
	}
	cert, err := caCertificate(cfg, cn, key.Public(), nil, key, DefaultCAValidity, 1)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	name := a.rootSecret(first, cert.SerialNumber.Text(16))
	stored, err := a.st.PutSecretIfAbsent(ctx, name, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), keyPEM...))
	if err != nil {
		return nil, nil, fmt.Errorf("store the root: %w", err)
	}
	certPEM, keyPEM, err := splitCA(stored)
	if err != nil {
		return nil, nil, fmt.Errorf("root %s: %w", name, err)
	}
	if cert, err = parseCertPEM(certPEM); err != nil {
		return nil, nil, fmt.Errorf("root %s: %w", name, err)
	}
	skey, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("root %s: %w", name, err)
	}
	if err := a.st.PutCACertificate(ctx, caRow(cert, RoleRoot)); err != nil {
		return nil, nil, fmt.Errorf("store the root certificate: %w", err)
	}
	return cert, skey, nil
}

// startingAfter is the config to make a CA certificate of role with: its NotBefore is
// later than every stored one's of that role, so that "newest" (bundleOf's order, which
// every process computes alike) names the one made last, also when two are made within a
// second (certificate times have seconds only).
func (a *Authority) startingAfter(ctx context.Context, role Role) (Config, error) {
	certs, err := a.st.ListCACertificates(ctx)
	if err != nil {
		return Config{}, fmt.Errorf("load the CA: %w", err)
	}
	var last time.Time
	for _, c := range certs {
		if c.Role == role && c.NotBefore.After(last) {
			last = c.NotBefore
		}
	}
	cfg := a.cfg.Config
	now := cfg.Now
	cfg.Now = func() time.Time {
		n := now()
		if min := last.Add(backdate + time.Second); n.Before(min) {
			return min
		}
		return n
	}
	return cfg, nil
}

// newIssuing makes an issuing CA under root and stores it.
func (a *Authority) newIssuing(ctx context.Context, root *x509.Certificate, rootKey crypto.Signer) (*x509.Certificate, error) {
	// The key: in the key provider (which keeps it), else made here and sealed in the
	// store before the certificate is listed, so a process that finds the certificate
	// finds its key.
	var key crypto.Signer
	var err error
	if a.cfg.NewIssuingKey != nil {
		if key, err = a.cfg.NewIssuingKey(ctx); err != nil {
			return nil, fmt.Errorf("make an issuing key in the key provider: %w", err)
		}
	} else if key, err = ecdsa.GenerateKey(elliptic.P256(), a.cfg.Rand); err != nil {
		return nil, fmt.Errorf("generate issuing key: %w", err)
	}
	cn := "Phantom issuing CA " + a.cfg.Account + " " + a.cfg.Now().UTC().Format("2006-01-02T15:04:05Z")
	cfg, err := a.startingAfter(ctx, RoleIssuing)
	if err != nil {
		return nil, err
	}
	cert, err := caCertificate(cfg, cn, key.Public(), root, rootKey, a.cfg.IssuingValidity, 0)
	if err != nil {
		return nil, err
	}
	if k, ok := key.(*ecdsa.PrivateKey); ok && a.cfg.NewIssuingKey == nil {
		keyPEM, err := encodeKey(k)
		if err != nil {
			return nil, err
		}
		serial := cert.SerialNumber.Text(16)
		if _, err := a.st.PutSecretIfAbsent(ctx, issuingSecret(serial), append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), keyPEM...)); err != nil {
			return nil, fmt.Errorf("store the issuing CA: %w", err)
		}
	}
	if err := a.st.PutCACertificate(ctx, caRow(cert, RoleIssuing)); err != nil {
		return nil, fmt.Errorf("store the issuing CA certificate: %w", err)
	}
	return cert, nil
}

// Refresh reloads the CA certificates and revocations: the verifier's trust, the bundle,
// and in a process that issues, the newest trusted issuing CA.
func (a *Authority) Refresh(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refreshLocked(ctx)
}

func (a *Authority) refreshLocked(ctx context.Context) error {
	certs, err := a.st.ListCACertificates(ctx)
	if err != nil {
		return fmt.Errorf("load the CA: %w", err)
	}
	revs, err := a.st.ListCertificateRevocations(ctx)
	if err != nil {
		return fmt.Errorf("load certificate revocations: %w", err)
	}
	bundle, trusted, err := bundleOf(certs)
	if err != nil {
		return err
	}
	if a.verifier == nil {
		if a.verifier, err = NewVerifier(bundle, a.cfg.Account, a.cfg.Now); err != nil {
			return err
		}
	}
	if err := a.verifier.SetTrust(bundle, NewRevocations(revs)); err != nil {
		return err
	}
	a.bundle.Store(&bundle)
	a.certs.Store(&certs)
	newer := newerIssuing(trusted)
	a.newer.Store(&newer)
	if !a.cfg.Issue {
		return nil
	}
	ca, err := a.issuer(ctx, trusted, bundle)
	a.ca.Store(ca) // nil when none: issuing fails until there is one again
	return err
}

// bundleOf is the trusted bundle of certs, roots first, each role oldest first; and the
// trusted certificates parsed.
func bundleOf(certs []CACertificate) ([]byte, []*x509.Certificate, error) {
	var roots, issuing []*x509.Certificate
	for _, c := range certs {
		if !c.DistrustedAt.IsZero() {
			continue
		}
		x, err := x509.ParseCertificate(c.DER)
		if err != nil {
			return nil, nil, fmt.Errorf("CA certificate %s: %w", c.Serial, err)
		}
		if c.Role == RoleRoot {
			roots = append(roots, x)
		} else {
			issuing = append(issuing, x)
		}
	}
	if len(roots) == 0 {
		return nil, nil, errors.New("pki: the store trusts no root certificate")
	}
	byStart := func(x, y *x509.Certificate) int { return x.NotBefore.Compare(y.NotBefore) }
	slices.SortStableFunc(roots, byStart)
	slices.SortStableFunc(issuing, byStart)
	var b bytes.Buffer
	all := append(roots, issuing...)
	for _, c := range all {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes(), all, nil
}

// issuer is the newest trusted, valid CA that signs leaves (an issuing CA, or a root from
// before issuing CAs) whose key this process reads.
func (a *Authority) issuer(ctx context.Context, trusted []*x509.Certificate, bundle []byte) (*CA, error) {
	now := a.cfg.Now()
	var errs []error
	for i := len(trusted) - 1; i >= 0; i-- {
		c := trusted[i]
		if !c.MaxPathLenZero || now.After(c.NotAfter) || now.Before(c.NotBefore) {
			continue // a root of issuing CAs, or not valid now
		}
		if cur := a.ca.Load(); cur != nil && cur.cert.Equal(c) {
			return newIssuing(a.cfg.Config, cur.cert, cur.key, bundle) // its key, found before
		}
		if a.cfg.IssuingSigner != nil {
			if key, err := a.cfg.IssuingSigner(ctx, c); err == nil {
				return newIssuing(a.cfg.Config, c, key, bundle)
			}
		}
		b, err := a.st.GetSecret(ctx, issuingSecret(c.SerialNumber.Text(16)))
		if err != nil {
			errs = append(errs, fmt.Errorf("issuing CA %s: %w", c.SerialNumber.Text(16), err))
			continue
		}
		certPEM, keyPEM, err := splitCA(b)
		if err != nil {
			return nil, fmt.Errorf("issuing CA %s: %w", c.SerialNumber.Text(16), err)
		}
		cert, err := parseCertPEM(certPEM)
		if err != nil || !cert.Equal(c) {
			return nil, fmt.Errorf("issuing CA %s: the stored key's certificate is not the listed one", c.SerialNumber.Text(16))
		}
		key, err := parseKeyPEM(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("issuing CA %s: %w", c.SerialNumber.Text(16), err)
		}
		return newIssuing(a.cfg.Config, cert, key, bundle)
	}
	if len(errs) == 0 {
		return nil, ErrNoIssuer
	}
	return nil, fmt.Errorf("%w: %w", ErrNoIssuer, errors.Join(errs...))
}

// ErrNoIssuer is returned by Refresh when no trusted, valid issuing CA is left whose key
// this process reads: it verifies, and issues nothing until one is made (Rotate).
var ErrNoIssuer = errors.New("pki: no valid issuing CA whose key this process reads")

// Renew rotates the issuing CA when it needs it (NeedsRenewal): under the current root,
// or, for a CA from before issuing CAs, under a new root. It reports whether it rotated.
// A process without a root key does nothing.
func (a *Authority) Renew(ctx context.Context) (bool, error) {
	if !a.NeedsRenewal() || (!a.cfg.Root && a.cfg.RootSigner == nil) {
		return false, nil
	}
	_, err := a.Rotate(ctx, isRoot(a.ca.Load().cert))
	return err == nil, err
}

// NeedsRenewal reports whether the current issuing CA is past two thirds of its life (or
// is a root from before issuing CAs).
func (a *Authority) NeedsRenewal() bool {
	ca := a.ca.Load()
	if ca == nil {
		return false
	}
	c := ca.cert
	return isRoot(c) || a.cfg.Now().After(c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore)*2/3))
}

// Rotate makes a new issuing CA under the newest trusted root; with newRoot, a new root
// first (kept beside the old one, which stays trusted until its issuing CAs expire or it
// is distrusted). It needs a root key: the store's (cfg.Root) or the key provider's. The
// new CA is current in this process when Rotate returns; others take it on their next
// Refresh.
func (a *Authority) Rotate(ctx context.Context, newRoot bool) (*x509.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var root *x509.Certificate
	var rootKey crypto.Signer
	var err error
	if newRoot {
		root, rootKey, err = a.newRoot(ctx, false)
	} else {
		root, rootKey, err = a.currentRoot(ctx)
	}
	if err != nil {
		return nil, err
	}
	cert, err := a.newIssuing(ctx, root, rootKey)
	if err != nil {
		return nil, err
	}
	if err := a.refreshLocked(ctx); err != nil {
		return nil, err
	}
	return cert, nil
}

// currentRoot is the newest trusted root that signs issuing CAs, and its key.
func (a *Authority) currentRoot(ctx context.Context) (*x509.Certificate, crypto.Signer, error) {
	certs, err := a.st.ListCACertificates(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("load the CA: %w", err)
	}
	var root *x509.Certificate
	for _, c := range certs {
		if c.Role != RoleRoot || !c.DistrustedAt.IsZero() {
			continue
		}
		x, err := x509.ParseCertificate(c.DER)
		if err != nil {
			return nil, nil, err
		}
		if x.MaxPathLenZero || a.cfg.Now().After(x.NotAfter) {
			continue // a CA from before issuing CAs signs no issuing CA
		}
		if root == nil || x.NotBefore.After(root.NotBefore) {
			root = x
		}
	}
	if root == nil {
		return nil, nil, errors.New("pki: no root that signs issuing CAs yet (rotate with a new root)")
	}
	key, err := a.rootKey(ctx, root)
	if err != nil {
		return nil, nil, err
	}
	return root, key, nil
}

// rootKey finds root's key: in the key provider, else among the store's root secrets.
func (a *Authority) rootKey(ctx context.Context, root *x509.Certificate) (crypto.Signer, error) {
	if a.cfg.RootSigner != nil {
		k, err := a.cfg.RootSigner(ctx, root)
		if err != nil {
			return nil, fmt.Errorf("root key from the key provider: %w", err)
		}
		if !publicKeyEqual(root.PublicKey, k.Public()) {
			return nil, errors.New("the key provider's root key does not match the root certificate")
		}
		return k, nil
	}
	if !a.cfg.Root {
		return nil, errors.New("pki: this process holds no root key (the operator's master key, or a key provider, does)")
	}
	for _, n := range []string{a.rootSecret(true, ""), a.rootSecret(false, root.SerialNumber.Text(16))} {
		b, err := a.st.GetSecret(ctx, n)
		if err != nil {
			continue
		}
		certPEM, keyPEM, err := splitCA(b)
		if err != nil {
			continue
		}
		if c, err := parseCertPEM(certPEM); err != nil || !c.Equal(root) {
			continue
		}
		return parseKeyPEM(keyPEM)
	}
	return nil, fmt.Errorf("pki: the key of root %s is not in the store", root.SerialNumber.Text(16))
}

// Revoke records a revocation; every verifier refuses the certificates it covers from
// its next refresh (this one's at once).
func (a *Authority) Revoke(ctx context.Context, r Revocation) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if err := a.st.PutCertificateRevocation(ctx, r); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return a.Refresh(ctx)
}

// Distrust removes a CA certificate from the trust (a compromised root or issuing CA):
// every certificate chaining to it stops verifying, audit signatures made under it too.
// The issuing CA it leaves current is replaced at once when this process holds a root key.
func (a *Authority) Distrust(ctx context.Context, serial string) error {
	if err := a.st.DistrustCACertificate(ctx, serial, a.cfg.Now()); err != nil {
		return fmt.Errorf("distrust CA %s: %w", serial, err)
	}
	err := a.Refresh(ctx)
	if errors.Is(err, ErrNoIssuer) && (a.cfg.Root || a.cfg.RootSigner != nil) {
		_, err = a.Rotate(ctx, false)
	}
	return err
}

// Issue, Sign, SignCSR and Enroll are the current issuing CA's (CA), or ErrCannotIssue.

func (a *Authority) Issue(req Request) (*tls.Certificate, error) {
	ca, err := a.CA()
	if err != nil {
		return nil, err
	}
	return ca.Issue(req)
}

func (a *Authority) Sign(pub crypto.PublicKey, req Request) (*x509.Certificate, error) {
	ca, err := a.CA()
	if err != nil {
		return nil, err
	}
	return ca.Sign(pub, req)
}

func (a *Authority) SignCSR(csr *x509.CertificateRequest, req Request) (*x509.Certificate, error) {
	ca, err := a.CA()
	if err != nil {
		return nil, err
	}
	return ca.SignCSR(csr, req)
}

func (a *Authority) Enroll(ctx context.Context, tokens *Tokens, token string, csr *x509.CertificateRequest) (*x509.Certificate, JoinToken, error) {
	ca, err := a.CA()
	if err != nil {
		return nil, JoinToken{}, err
	}
	return ca.Enroll(ctx, tokens, token, csr)
}
