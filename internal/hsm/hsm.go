// Package hsm keeps keys in a PKCS#11 token (an HSM, a cloud KMS's PKCS#11 library,
// SoftHSM2) instead of files or the store: the perimeter CA's root keys and, optionally,
// its issuing CAs' keys, made in the token as non-extractable ECDSA P-256 key pairs and
// used there to sign; and Ed25519 keys (ed25519.go) that sign session tokens and audit
// digests. It plugs into pki.AuthorityConfig (RootSigner, NewRootKey, IssuingSigner,
// NewIssuingKey), identity's token-signing keys and the audit writers; the token's library
// does the cryptography (PKCS#11 C_GenerateKeyPair, C_Sign), through crypto11 and, for
// EdDSA, which crypto11 lacks, miekg/pkcs11.
//
// It does not own which keys matter or when they are used: internal/pki decides that.
package hsm

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ThalesGroup/crypto11"
)

// The CKA_LABEL of the keys Phantom makes in a token: the CA's roots and issuing CAs.
const (
	RootLabel    = "phantom-root"
	IssuingLabel = "phantom-issuing"
)

// Config names the token: its PKCS#11 library (Module), the token's label, and the
// user PIN.
type Config struct {
	Module     string
	TokenLabel string
	PIN        string
}

// Validate checks that every field is set.
func (c Config) Validate() error {
	var errs []error
	if c.Module == "" {
		errs = append(errs, errors.New("no PKCS#11 module (library path)"))
	}
	if c.TokenLabel == "" {
		errs = append(errs, errors.New("no token label"))
	}
	if c.PIN == "" {
		errs = append(errs, errors.New("no PIN"))
	}
	return errors.Join(errs...)
}

// Token is an open session pool on one token.
type Token struct {
	ctx *crypto11.Context
	ed  *edSessions // CKM_EDDSA, which crypto11 lacks
}

// Open logs in to the token cfg names.
func Open(cfg Config) (*Token, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pkcs11: %w", err)
	}
	if _, err := os.Stat(cfg.Module); err != nil {
		return nil, fmt.Errorf("pkcs11 module: %w", err)
	}
	c, err := crypto11.Configure(&crypto11.Config{Path: cfg.Module, TokenLabel: cfg.TokenLabel, Pin: cfg.PIN})
	if err != nil {
		return nil, fmt.Errorf("pkcs11: open token %q with %s: %w", cfg.TokenLabel, cfg.Module, err)
	}
	ed, err := openEdSessions(cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &Token{ctx: c, ed: ed}, nil
}

// Close ends the token's sessions: the Ed25519 ones first, as crypto11 finalizes the
// module when its last context closes.
func (t *Token) Close() error {
	t.ed.close()
	return t.ctx.Close()
}

// NewRootKey makes a root key pair in the token (pki.AuthorityConfig.NewRootKey). Its
// private half never leaves the token.
func (t *Token) NewRootKey(context.Context) (crypto.Signer, error) { return t.newKey(RootLabel) }

// RootSigner finds the token's key of root (pki.AuthorityConfig.RootSigner).
func (t *Token) RootSigner(_ context.Context, root *x509.Certificate) (crypto.Signer, error) {
	return t.find(RootLabel, root)
}

// NewIssuingKey makes an issuing CA's key pair in the token (pki.AuthorityConfig.NewIssuingKey).
func (t *Token) NewIssuingKey(context.Context) (crypto.Signer, error) { return t.newKey(IssuingLabel) }

// IssuingSigner finds the token's key of an issuing CA (pki.AuthorityConfig.IssuingSigner).
func (t *Token) IssuingSigner(_ context.Context, cert *x509.Certificate) (crypto.Signer, error) {
	return t.find(IssuingLabel, cert)
}

// newKey makes a non-extractable ECDSA P-256 key pair labelled label, with a random
// CKA_ID.
func (t *Token) newKey(label string) (crypto.Signer, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	k, err := t.ctx.GenerateECDSAKeyPairWithLabel(id, []byte(label), elliptic.P256())
	if err != nil {
		return nil, fmt.Errorf("pkcs11: generate %s key: %w", label, err)
	}
	return k, nil
}

// find is the key pair labelled label whose public key is cert's.
func (t *Token) find(label string, cert *x509.Certificate) (crypto.Signer, error) {
	keys, err := t.ctx.FindKeyPairs(nil, []byte(label))
	if err != nil {
		return nil, fmt.Errorf("pkcs11: find %s keys: %w", label, err)
	}
	want, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil, fmt.Errorf("pkcs11: certificate %s has a %T key", cert.SerialNumber.Text(16), cert.PublicKey)
	}
	for _, k := range keys {
		if want.Equal(k.Public()) {
			return k, nil
		}
	}
	return nil, fmt.Errorf("pkcs11: the token holds no key of %s (%d %s keys there)", cert.SerialNumber.Text(16), len(keys), label)
}

// ReadPIN reads a PIN from a file (its first line), so it stays out of the process list
// and the environment.
func ReadPIN(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("pkcs11 PIN: %w", err)
	}
	pin, _, _ := strings.Cut(string(b), "\n")
	if pin = strings.TrimSpace(pin); pin == "" {
		return "", fmt.Errorf("pkcs11 PIN: %s is empty", path)
	}
	return pin, nil
}
