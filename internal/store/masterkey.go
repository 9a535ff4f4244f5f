package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// MasterKeySize is the length of the perimeter's master key.
const MasterKeySize = 32

// MasterKeyEnv names the environment variable that, when set, supplies the master key as
// standard base64 of 32 bytes instead of the data directory's master.key file. Use it when
// the key comes from a secret manager and must not sit next to the database; the file is
// then neither read nor created. Set but invalid (or empty) is an error, never a fallback.
const MasterKeyEnv = "PHANTOM_MASTER_KEY"

// MasterKeyFile is the master key's file name in the data directory: the key as standard
// base64 and a newline, mode 0600.
const MasterKeyFile = "master.key"

// LoadOrCreateMasterKey returns the perimeter's master key: from PHANTOM_MASTER_KEY when
// that is set, else from dataDir/master.key, which is created (0600, in a 0700 directory)
// with 32 random bytes on first start. Creation is atomic: concurrent first starts agree on
// one key, and a crash never leaves a partial file. A key file readable by group or others
// is refused. Losing the key makes every stored secret unreadable: back it up.
func LoadOrCreateMasterKey(dataDir string) ([]byte, error) {
	if v, ok := os.LookupEnv(MasterKeyEnv); ok {
		key, err := decodeMasterKey([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("master key from %s: %w", MasterKeyEnv, err)
		}
		return key, nil
	}
	return loadOrCreateMasterKeyFile(dataDir)
}

func loadOrCreateMasterKeyFile(dataDir string) ([]byte, error) {
	if dataDir == "" {
		return nil, errors.New("master key: no data directory")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("master key: create data directory: %w", err)
	}
	path := filepath.Join(dataDir, MasterKeyFile)
	key, err := readMasterKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}

	key = make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("master key: generate: %w", err)
	}
	tmp, err := os.CreateTemp(dataDir, ".master.key-*")
	if err != nil {
		return nil, fmt.Errorf("master key: create: %w", err)
	}
	defer os.Remove(tmp.Name())
	enc := base64.StdEncoding.EncodeToString(key) + "\n"
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("master key: create: %w", err)
	}
	if _, err := tmp.WriteString(enc); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("master key: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("master key: write: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("master key: write: %w", err)
	}
	// A hard link never replaces an existing file: if another process created the key
	// first, this fails and both use that key.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readMasterKeyFile(path)
		}
		return nil, fmt.Errorf("master key: install %s: %w", path, err)
	}
	if d, err := os.Open(dataDir); err == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil {
			return nil, fmt.Errorf("master key: sync data directory: %w", serr)
		}
	}
	return key, nil
}

func readMasterKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("master key: %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("master key: %s has mode %#o, readable beyond its owner: chmod 600 it", path, perm)
	}
	buf, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return nil, fmt.Errorf("master key: read %s: %w", path, err)
	}
	key, err := decodeMasterKey(buf)
	if err != nil {
		return nil, fmt.Errorf("master key: %s: %w", path, err)
	}
	return key, nil
}

func decodeMasterKey(b []byte) ([]byte, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New("empty; want base64 of 32 bytes")
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	n, err := base64.StdEncoding.Strict().Decode(key, b)
	if err != nil {
		return nil, errors.New("not valid standard base64; want base64 of 32 bytes")
	}
	if n != MasterKeySize {
		return nil, fmt.Errorf("decodes to %d bytes; want %d", n, MasterKeySize)
	}
	return key[:n], nil
}

// sealer encrypts secrets at rest. Its key is derived from the master key (HKDF-SHA256) so
// the master key itself never keys data anywhere else it may be used. A sealed value is
// version byte || 12-byte random nonce || AES-256-GCM ciphertext and tag; the additional
// data names the row ("access-key:AKIA…"), so a ciphertext copied to another row fails.
type sealer struct {
	aead cipher.AEAD
}

const (
	sealVersion  = 1
	sealHKDFInfo = "phantom store: secrets at rest v1"
	aadPrefix    = "phantom-store/v1 "
)

func newSealer(masterKey []byte) (*sealer, error) {
	if len(masterKey) != MasterKeySize {
		return nil, fmt.Errorf("master key is %d bytes; want %d", len(masterKey), MasterKeySize)
	}
	if bytes.Equal(masterKey, make([]byte, MasterKeySize)) {
		return nil, errors.New("master key is all zeros")
	}
	k, err := hkdf.Key(sha256.New, masterKey, nil, sealHKDFInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive storage key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("derive storage key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("derive storage key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts plaintext bound to the row named by kind and id.
func (s *sealer) seal(kind, id string, plaintext []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal %s: nonce: %w", kind, err)
	}
	return s.aead.Seal(out, out[1:1+ns], plaintext, aad(kind, id)), nil
}

// open decrypts a sealed value of the row named by kind and id; any mismatch is ErrDecrypt.
func (s *sealer) open(kind, id string, sealed []byte) ([]byte, error) {
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, ErrDecrypt
	}
	pt, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], aad(kind, id))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

func aad(kind, id string) []byte {
	return []byte(aadPrefix + kind + ":" + id)
}
