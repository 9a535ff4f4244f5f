package keys

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// Generation numbers the keys of one purpose, so that a purpose's key can be rotated
// while values made under the old one are still in use: every value sealed under a
// generation names it, and a ring may hold several generations of a purpose at once.
//
// Generation 1 is the key Derive has always derived (the purpose's label); generation
// n > 1 is derived with the label followed by "/gen/n". HKDF's outputs for distinct infos
// are independent, so neither a purpose's generation reveals another, nor another
// purpose's key: a leaked key file stops mattering once its generations are retired.
// Which generation is current, and which are retired, is the store's record, written by
// the operator (phantom keys rotate): a ring only holds keys.
type Generation uint32

// FirstGeneration is the generation every purpose starts at.
const FirstGeneration Generation = 1

// genInfo is the HKDF info of generation g of a purpose whose label is label.
func genInfo(label string, g Generation) string {
	if g == FirstGeneration {
		return label
	}
	return label + "/gen/" + strconv.FormatUint(uint64(g), 10)
}

// DeriveGeneration derives generation g of p's key from the master key; generation 1 is
// Derive's key.
func DeriveGeneration(master []byte, p Purpose, g Generation) ([]byte, error) {
	if g < FirstGeneration {
		return nil, fmt.Errorf("derive %s key: generation %d", p, g)
	}
	if g == FirstGeneration {
		return Derive(master, p)
	}
	if _, err := Derive(master, StoreLegacy); err != nil { // the master key's own checks
		return nil, err
	}
	for _, d := range purposes {
		if d.p != p {
			continue
		}
		if d.public != "" {
			seed, err := DeriveGeneration(master, d.public, g)
			if err != nil {
				return nil, err
			}
			return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey), nil
		}
		k, err := hkdf.Key(sha256.New, master, nil, genInfo(d.label, g), Size)
		if err != nil {
			return nil, fmt.Errorf("derive %s key: %w", p, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("derive key: unknown purpose %q", p)
}

// ForComponentGenerations is ForComponent holding, of each purpose, the generations gens
// names (generation 1 alone for a purpose it does not name): what `phantom keys export`
// writes while a purpose's generations overlap.
func ForComponentGenerations(master []byte, c Component, gens map[Purpose][]Generation) (*Ring, error) {
	r, err := ForComponent(master, c)
	if err != nil {
		return nil, err
	}
	for _, p := range slices.Sorted(maps.Keys(r.keys)) {
		want := gens[p]
		if len(want) == 0 {
			continue
		}
		if !slices.Contains(want, FirstGeneration) {
			delete(r.keys, p)
		}
		for _, g := range want {
			if g == FirstGeneration {
				continue
			}
			k, err := DeriveGeneration(master, p, g)
			if err != nil {
				return nil, err
			}
			r.addGeneration(p, g, k)
		}
	}
	return r, nil
}

func (r *Ring) addGeneration(p Purpose, g Generation, k []byte) {
	if r.gens == nil {
		r.gens = map[Purpose]map[Generation][]byte{}
	}
	if r.gens[p] == nil {
		r.gens[p] = map[Generation][]byte{}
	}
	r.gens[p][g] = k
}

// KeyGeneration returns generation g of p's key, or an error wrapping ErrNotHeld.
func (r *Ring) KeyGeneration(p Purpose, g Generation) ([]byte, error) {
	if r.master != nil {
		return DeriveGeneration(r.master, p, g)
	}
	if g == FirstGeneration {
		if k, ok := r.keys[p]; ok {
			return slices.Clone(k), nil
		}
	} else if k, ok := r.gens[p][g]; ok {
		return slices.Clone(k), nil
	}
	return nil, fmt.Errorf("%s key generation %d: %w (this %s's key file does not carry it: export it again)", p, g, ErrNotHeld, r.component)
}

// Generations lists the generations of p the ring holds, in order; nil for a ring
// holding the master key, which derives every generation.
func (r *Ring) Generations(p Purpose) []Generation {
	if r.master != nil {
		return nil
	}
	var out []Generation
	if _, ok := r.keys[p]; ok {
		out = append(out, FirstGeneration)
	}
	return append(out, slices.Sorted(maps.Keys(r.gens[p]))...)
}

// StoragePurposes are the purposes whose keys seal values in the store, the ones that
// rotate by generation.
func StoragePurposes() []Purpose {
	return []Purpose{StoreAccessKeys, StoreTokenKeys, StoreTokenSigning, StoreMFA, StoreCA, StoreCARoot}
}
