package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/nodeapi"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// stateDir is the node directory (internal/nodeapi's files): the layout `phantom node
// enroll --out DIR` writes, so a node enrolled that way runs the agent on the same
// directory.
type stateDir struct{ dir string }

// prepare creates the directory (0700) and checks it can be written, before a join token
// is spent on a certificate that could not be kept.
func (s *stateDir) prepare() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	f, err := os.CreateTemp(s.dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("state directory %s is not writable: %w", s.dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// load returns the node identity saved in the directory, or nil when there is none or
// its certificate has expired (the node must enroll again).
func (s *stateDir) load(now time.Time) (*nodeIdentity, error) {
	certPath, keyPath := filepath.Join(s.dir, nodeapi.CertFile), filepath.Join(s.dir, nodeapi.KeyFile)
	if _, err := os.Stat(certPath); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	cert, err := pki.LoadKeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("node state: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("node state: %s: %w", certPath, err)
	}
	cert.Leaf = leaf
	id, err := pki.IdentityFromCert(leaf)
	if err != nil || id.Kind != pki.KindNode {
		return nil, fmt.Errorf("node state: %s does not name a node", certPath)
	}
	if !now.Before(leaf.NotAfter) {
		return nil, nil
	}
	return &nodeIdentity{name: id.Name, cert: cert, leaf: leaf}, nil
}

// save writes the certificate and key (0600) and the CA bundle, each atomically.
func (s *stateDir) save(cert *tls.Certificate, caPEM, fallbackCA []byte) error {
	if err := s.prepare(); err != nil {
		return err
	}
	if err := pki.WriteKeyPair(filepath.Join(s.dir, nodeapi.CertFile), filepath.Join(s.dir, nodeapi.KeyFile), cert); err != nil {
		return fmt.Errorf("node state: %w", err)
	}
	if len(caPEM) == 0 {
		caPEM = fallbackCA
	}
	return atomicfile.Write(filepath.Join(s.dir, nodeapi.CABundleFile), caPEM, 0o644)
}
