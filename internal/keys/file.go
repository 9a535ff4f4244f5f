package keys

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
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
// The header names the component; the lines are exactly its purposes, one line per
// generation held (keys.Generation): a bare purpose is generation 1, "store-access-keys#2
// <base64>" generation 2; a purpose whose generation 1 is retired has no bare line. `phantom
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
		if k, ok := r.keys[p]; ok {
			fmt.Fprintf(&b, "%s %s\n", p, base64.StdEncoding.EncodeToString(k))
		}
		for _, g := range slices.Sorted(maps.Keys(r.gens[p])) {
			fmt.Fprintf(&b, "%s#%d %s\n", p, g, base64.StdEncoding.EncodeToString(r.gens[p][g]))
		}
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
		name, enc, ok := strings.Cut(text, " ")
		ps, g, gok := parseGenerationName(name)
		p := Purpose(ps)
		switch {
		case !ok:
			return nil, fmt.Errorf("key file line %d: want PURPOSE[#GENERATION] BASE64", line)
		case !gok:
			return nil, fmt.Errorf("key file line %d: %q: a generation is a number above 1", line, name)
		case !slices.Contains(want, p):
			return nil, fmt.Errorf("key file line %d: a %s holds no %q key", line, c, ps)
		case g == FirstGeneration && r.keys[p] != nil, g != FirstGeneration && r.gens[p][g] != nil:
			return nil, fmt.Errorf("key file line %d: %s appears twice", line, name)
		}
		k, err := base64.StdEncoding.Strict().DecodeString(enc)
		if err != nil || len(k) != Size {
			return nil, fmt.Errorf("key file line %d: %s is not base64 of %d bytes", line, name, Size)
		}
		if g == FirstGeneration {
			r.keys[p] = k
		} else {
			r.addGeneration(p, g, k)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	for _, p := range want {
		if !r.Has(p) {
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

// parseGenerationName splits "purpose#n" (n > 1, decimal, no sign or leading zero) into
// the purpose and n; a bare purpose is generation 1.
func parseGenerationName(name string) (string, Generation, bool) {
	p, n, found := strings.Cut(name, "#")
	if !found {
		return p, FirstGeneration, true
	}
	if n == "" || n[0] == '0' || n[0] == '+' {
		return p, 0, false
	}
	g, err := strconv.ParseUint(n, 10, 32)
	if err != nil || g <= uint64(FirstGeneration) {
		return p, 0, false
	}
	return p, Generation(g), true
}
