package keys

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
)

// FileEnv names the environment variable that points a component at its key file.
const FileEnv = "PHANTOM_KEYS_FILE"

// A component key file holds one component's derived keys and nothing else:
//
//	phantom-keys v1 gateway
//	store-access-keys <base64 of 32 bytes>
//	store-token-keys <base64>
//	…
//
// The header names the component; the lines are exactly its purposes, each once. `phantom
// keys export` writes it (0600) on a host holding the master key; the component reads it
// with --keys or $PHANTOM_KEYS_FILE instead of the master key.
const fileMagic = "phantom-keys v1"

// maxFileSize bounds a key file: a few lines of base64.
const maxFileSize = 4 << 10

// Marshal encodes r as a component key file. A ring holding the master key is not
// written: the master key file is its own.
func (r *Ring) Marshal() ([]byte, error) {
	if r.master != nil {
		return nil, errors.New("key file: a ring holding the master key is not a component's")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s\n", fileMagic, r.component)
	ps, err := r.component.Purposes()
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		fmt.Fprintf(&b, "%s %s\n", p, base64.StdEncoding.EncodeToString(r.keys[p]))
	}
	return b.Bytes(), nil
}

// Parse decodes a component key file. It refuses anything but exactly the component's
// purposes: a file that carries more than its component needs is a mistake to stop at,
// not a key to use.
func Parse(data []byte) (*Ring, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("key file: larger than %d bytes", maxFileSize)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	if !sc.Scan() {
		return nil, errors.New("key file: empty")
	}
	name, ok := strings.CutPrefix(sc.Text(), fileMagic+" ")
	if !ok {
		return nil, fmt.Errorf("key file: first line is not %q and a component", fileMagic)
	}
	c, err := ParseComponent(name)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if c == Operator {
		return nil, errors.New("key file: the operator holds the master key, not a key file")
	}
	want, _ := c.Purposes()
	r := &Ring{component: c, keys: make(map[Purpose][]byte, len(want))}
	for line := 2; sc.Scan(); line++ {
		text := sc.Text()
		if text == "" {
			continue
		}
		ps, enc, ok := strings.Cut(text, " ")
		p := Purpose(ps)
		switch {
		case !ok:
			return nil, fmt.Errorf("key file line %d: want PURPOSE BASE64", line)
		case !slices.Contains(want, p):
			return nil, fmt.Errorf("key file line %d: a %s holds no %q key", line, c, ps)
		case r.keys[p] != nil:
			return nil, fmt.Errorf("key file line %d: %s appears twice", line, p)
		}
		k, err := base64.StdEncoding.Strict().DecodeString(enc)
		if err != nil || len(k) != Size {
			return nil, fmt.Errorf("key file line %d: %s is not base64 of %d bytes", line, p, Size)
		}
		r.keys[p] = k
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	for _, p := range want {
		if r.keys[p] == nil {
			return nil, fmt.Errorf("key file: the %s's %s key is missing", c, p)
		}
	}
	return r, nil
}

// WriteFile writes r's key file to path (0600, replaced atomically).
func WriteFile(path string, r *Ring) error {
	b, err := r.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// LoadFile reads a key file, refusing one that group or others may read.
func LoadFile(path string) (*Ring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %#o, readable beyond its owner: chmod 600 it", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}
