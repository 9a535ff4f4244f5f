package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// KeyID names a public key in digests: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// MarshalPublicKey returns pub as a PEM "PUBLIC KEY" block (PKIX), the format of a
// chain's signer.pub and of `phantom audit verify --public-key`.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeys parses every PEM "PUBLIC KEY" block in data; each must be Ed25519.
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key is %T, want Ed25519", k)
		}
		keys = append(keys, ek)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM PUBLIC KEY block")
	}
	return keys, nil
}

// ensurePublicKey makes sure the chain's key file lists pub, appending it after any keys
// an earlier signer left (a rotated master key): old segments stay verifiable.
func ensurePublicKey(path string, pub ed25519.PublicKey) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read audit public key %s: %w", path, err)
	}
	if len(data) > 0 {
		keys, err := ParsePublicKeys(data)
		if err != nil {
			return fmt.Errorf("audit public key %s: %w", path, err)
		}
		for _, k := range keys {
			if bytes.Equal(k, pub) {
				return nil
			}
		}
	}
	p, err := MarshalPublicKey(pub)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("write audit public key: %w", err)
	}
	if _, err := f.Write(p); err != nil {
		f.Close()
		return fmt.Errorf("write audit public key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync audit public key %s: %w", path, err)
	}
	return f.Close()
}

// ensureCertificate makes sure the chain's certificate file lists cert (DER), appending
// it after the certificates of earlier writers: their digests stay verifiable.
func ensureCertificate(path string, cert []byte) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read audit certificates %s: %w", path, err)
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" && bytes.Equal(b.Bytes, cert) {
			return nil
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("write audit certificate: %w", err)
	}
	if _, err := f.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})); err != nil {
		f.Close()
		return fmt.Errorf("write audit certificate %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync audit certificate %s: %w", path, err)
	}
	return f.Close()
}

// ParseCertificates returns the DER of every PEM "CERTIFICATE" block in data.
func ParseCertificates(data []byte) [][]byte {
	var out [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type == "CERTIFICATE" {
			out = append(out, b.Bytes)
		}
	}
}
