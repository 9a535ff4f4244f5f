package store

import (
	"bytes"
	"crypto/rand"
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
