package store

import (
	"cmp"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// sealer encrypts secrets at rest, each kind under a key of its own purpose
// (internal/keys), so that a process holding one kind's key (a gateway: users' secret
// keys and the token-opening keys) reads nothing else. A sealed value is version byte ||
// [generation, for version 3] || 12-byte random nonce || AES-256-GCM ciphertext and tag;
// the additional data names the row ("access-key:AKIA…"), so a ciphertext copied to
// another row fails, and the generation, so a value cannot claim another.
//
// Version 2 uses generation 1 of the kind's purpose key, version 3 (4-byte big-endian
// generation after the version byte) a later generation (keys.Generation, made by
// rotating the purpose: RotateStorageKey). Each value names the generation that sealed
// it, so old and new coexist while the operator re-seals every value under the new one;
// a retired generation opens nothing. Version 1 (written before per-purpose keys) used
// one key for every kind, derived from the master key with the StoreLegacy label: only a
// holder of the master key opens it, and Open rewraps such values when it holds the
// master key (rewrapLegacy).
type sealer struct {
	// ring is the keys held; a component's is replaced when its key file is exported
	// again (setKeys), the master key's never.
	ring   atomic.Pointer[keys.Ring]
	legacy cipher.AEAD // nil without the master key
	// gens is which generation of each purpose seals and which are retired, as the
	// store recorded it when last read (loadGenerations), with the AEADs of every live
	// generation held. Swapped whole; readers never lock.
	gens atomic.Pointer[generations]
}

// purposeGen names one generation of one purpose's key.
type purposeGen struct {
	p keys.Purpose
	g keys.Generation
}

func (pg purposeGen) String() string {
	if pg.g == keys.FirstGeneration {
		return string(pg.p)
	}
	return fmt.Sprintf("%s#%d", pg.p, pg.g)
}

// generations is one reading of the store's key_generations.
type generations struct {
	version int64                            // the store version it was read at; -1 before
	current map[keys.Purpose]keys.Generation // absent: generation 1
	retired map[purposeGen]bool
	aeads   map[purposeGen]cipher.AEAD // every live generation the ring holds
}

// genRow is a row of key_generations.
type genRow struct {
	p     keys.Purpose
	g     keys.Generation
	state string
	at    int64
}

// The states of a generation.
const (
	genStaged   = "staged"
	genCurrent  = "current"
	genRetiring = "retiring"
	genRetired  = "retired"
)

// ErrRetiredKey is returned (wrapped) for a value sealed under a generation the operator
// retired: no process opens it any more, whatever keys it holds.
var ErrRetiredKey = errors.New("sealed under a retired key generation")

const (
	sealVersionLegacy = 1
	sealVersion       = 2
	sealVersionGen    = 3
	genSize           = 4 // a version 3 value's generation, big-endian
	aadPrefixLegacy   = "phantom-store/v1 "
	aadPrefix         = "phantom-store/v2 "
	aadPrefixGen      = "phantom-store/v3 gen "
)

// The kinds of sealed values, each with the purpose whose key seals it.
const (
	kindAccessKey  = "access-key"
	kindSealingKey = "sealing-key"
	kindSigningKey = "sealing-key-signing"
	kindMFADevice  = "mfa-device"
	kindSecret     = "secret"
	kindRootSecret = "root-secret"
	kindKeyCheck   = "master-key-check"
)

var kindPurpose = map[string]keys.Purpose{
	kindAccessKey:  keys.StoreAccessKeys,
	kindSealingKey: keys.StoreTokenKeys,
	kindSigningKey: keys.StoreTokenSigning,
	kindMFADevice:  keys.StoreMFA,
	kindSecret:     keys.StoreCA,
	kindRootSecret: keys.StoreCARoot,
}

// secretKind is the kind a named secret is sealed as: the CA's root keys (pki/root/…)
// under a key of their own, every other secret under keys.StoreCA.
func secretKind(name string) string {
	if strings.HasPrefix(name, "pki/root/") {
		return kindRootSecret
	}
	return kindSecret
}

// storePurposes are the purposes the store seals with, in a fixed order.
var storePurposes = keys.StoragePurposes()

func newAEAD(k []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealerFor is the sealer of ring, or of a ring holding master when ring is nil.
func sealerFor(ring *keys.Ring, master []byte) (*sealer, error) {
	if ring == nil {
		if len(master) != keys.MasterSize {
			return nil, fmt.Errorf("master key is %d bytes; want %d", len(master), keys.MasterSize)
		}
		var err error
		if ring, err = keys.FromMaster(master); err != nil {
			return nil, err
		}
	}
	return newSealer(ring)
}

func newSealer(ring *keys.Ring) (*sealer, error) {
	if ring == nil {
		return nil, errors.New("no keys")
	}
	s := &sealer{}
	s.ring.Store(ring)
	if ring.HasMaster() {
		k, err := ring.Key(keys.StoreLegacy)
		if err != nil {
			return nil, fmt.Errorf("storage key: %w", err)
		}
		if s.legacy, err = newAEAD(k); err != nil {
			return nil, fmt.Errorf("storage key: %w", err)
		}
	}
	if err := s.loadGenerations(nil, -1); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *sealer) keys() *keys.Ring { return s.ring.Load() }

// loadGenerations takes rows of key_generations, read at store version v: the current
// generation of each purpose and the retired ones, and the AEADs of every live
// generation the ring holds (a master key derives any; a key file holds what it carries).
func (s *sealer) loadGenerations(rows []genRow, v int64) error {
	st := &generations{version: v, current: map[keys.Purpose]keys.Generation{}, retired: map[purposeGen]bool{}, aeads: map[purposeGen]cipher.AEAD{}}
	known := map[keys.Purpose][]keys.Generation{}
	for _, r := range rows {
		switch r.state {
		case genCurrent:
			st.current[r.p] = r.g
		case genRetired:
			st.retired[purposeGen{r.p, r.g}] = true
		}
		known[r.p] = append(known[r.p], r.g)
	}
	for _, p := range storePurposes {
		if !s.keys().Has(p) {
			continue
		}
		held := s.keys().Generations(p)
		if s.keys().HasMaster() {
			held = append([]keys.Generation{keys.FirstGeneration}, known[p]...)
		}
		for _, g := range held {
			pg := purposeGen{p, g}
			if st.retired[pg] || st.aeads[pg] != nil {
				continue
			}
			k, err := s.keys().KeyGeneration(p, g)
			if err != nil {
				return fmt.Errorf("storage key %s: %w", pg, err)
			}
			if st.aeads[pg], err = newAEAD(k); err != nil {
				return fmt.Errorf("storage key %s: %w", pg, err)
			}
		}
	}
	s.gens.Store(st)
	return nil
}

// liveGenerations lists the live generations the sealer holds, in a fixed order.
func (s *sealer) liveGenerations() []purposeGen {
	st := s.gens.Load()
	var out []purposeGen
	for pg := range st.aeads {
		out = append(out, pg)
	}
	slices.SortFunc(out, func(a, b purposeGen) int {
		if c := cmp.Compare(slices.Index(storePurposes, a.p), slices.Index(storePurposes, b.p)); c != 0 {
			return c
		}
		return cmp.Compare(a.g, b.g)
	})
	return out
}

// currentOf is the generation of p that seals now, as last read.
func (st *generations) currentOf(p keys.Purpose) keys.Generation {
	if g, ok := st.current[p]; ok {
		return g
	}
	return keys.FirstGeneration
}

// holds reports whether the sealer can open values of kind (under some generation).
func (s *sealer) holds(kind string) bool {
	p := kindPurpose[kind]
	for pg := range s.gens.Load().aeads {
		if pg.p == p {
			return true
		}
	}
	return false
}

// sealingAEAD is the AEAD and generation kind's values are sealed under now: the
// purpose's current generation, or, by a process whose key file does not carry it yet,
// the newest live generation it holds (every holder of the purpose still opens that one
// until it is retired, and retiring re-seals what it sealed first).
func (s *sealer) sealingAEAD(kind string) (cipher.AEAD, keys.Generation, error) {
	p, ok := kindPurpose[kind]
	if !ok {
		return nil, 0, fmt.Errorf("seal %s: no purpose for this kind", kind)
	}
	st := s.gens.Load()
	for g := st.currentOf(p); g >= keys.FirstGeneration; g-- {
		if a := st.aeads[purposeGen{p, g}]; a != nil {
			return a, g, nil
		}
	}
	return nil, 0, fmt.Errorf("%s: %w", kind, &MissingKeyError{Purpose: p, Component: s.keys().Component()})
}

// openingAEAD is the AEAD that opens kind's values sealed under generation g.
func (s *sealer) openingAEAD(kind string, g keys.Generation) (cipher.AEAD, error) {
	p, ok := kindPurpose[kind]
	if !ok {
		return nil, fmt.Errorf("open %s: no purpose for this kind", kind)
	}
	st := s.gens.Load()
	pg := purposeGen{p, g}
	if st.retired[pg] {
		return nil, fmt.Errorf("%s: %s: %w", kind, pg, ErrRetiredKey)
	}
	if a := st.aeads[pg]; a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("%s: %w", kind, &MissingKeyError{Purpose: p, Generation: g, Component: s.keys().Component()})
}

// MissingKeyError says a process tried to read or write a kind of secret its keys do
// not cover: a component doing what it has no key for.
type MissingKeyError struct {
	Purpose    keys.Purpose
	Generation keys.Generation // 0: none held at all
	Component  keys.Component
}

func (e *MissingKeyError) Error() string {
	if e.Generation > keys.FirstGeneration {
		return fmt.Sprintf("this %s holds no generation %d of the %s key (export its key file again)", e.Component, e.Generation, e.Purpose)
	}
	return fmt.Sprintf("this %s holds no %s key", e.Component, e.Purpose)
}

func (e *MissingKeyError) Unwrap() error { return keys.ErrNotHeld }

// seal encrypts plaintext bound to the row named by kind and id, under the current
// generation of kind's purpose (sealingAEAD).
func (s *sealer) seal(kind, id string, plaintext []byte) ([]byte, error) {
	a, g, err := s.sealingAEAD(kind)
	if err != nil {
		return nil, err
	}
	return sealGen(a, g, kind, id, plaintext)
}

// sealGen seals under generation g: version 2 for generation 1 (what every Phantom since
// per-purpose keys reads), version 3 naming g otherwise.
func sealGen(a cipher.AEAD, g keys.Generation, kind, id string, plaintext []byte) ([]byte, error) {
	if g == keys.FirstGeneration {
		return sealWith(a, []byte{sealVersion}, aadPrefix, kind, id, plaintext)
	}
	return sealWith(a, binary.BigEndian.AppendUint32([]byte{sealVersionGen}, uint32(g)), genPrefix(g), kind, id, plaintext)
}

// genPrefix is the additional data's prefix of a version 3 value, naming its generation.
func genPrefix(g keys.Generation) string {
	return aadPrefixGen + strconv.FormatUint(uint64(g), 10) + " "
}

func sealWith(a cipher.AEAD, head []byte, prefix, kind, id string, plaintext []byte) ([]byte, error) {
	ns := a.NonceSize()
	out := make([]byte, len(head)+ns, len(head)+ns+len(plaintext)+a.Overhead())
	copy(out, head)
	if _, err := rand.Read(out[len(head):]); err != nil {
		return nil, fmt.Errorf("seal %s: nonce: %w", kind, err)
	}
	return a.Seal(out, out[len(head):], plaintext, []byte(prefix+kind+":"+id)), nil
}

// sealedGeneration returns the storage key generation a version 2 or 3 value names.
func sealedGeneration(sealed []byte) (keys.Generation, bool) {
	switch {
	case len(sealed) > 0 && sealed[0] == sealVersion:
		return keys.FirstGeneration, true
	case len(sealed) > genSize && sealed[0] == sealVersionGen:
		g := keys.Generation(binary.BigEndian.Uint32(sealed[1:]))
		return g, g > keys.FirstGeneration
	}
	return 0, false
}

// open decrypts a sealed value of the row named by kind and id; any mismatch is
// ErrDecrypt, a kind whose key the process does not hold a MissingKeyError, a retired
// generation ErrRetiredKey.
func (s *sealer) open(kind, id string, sealed []byte) ([]byte, error) {
	return s.openWith(kind, id, sealed, s.openingAEAD)
}

// openWith is open with the AEAD of a generation found by aeadOf.
func (s *sealer) openWith(kind, id string, sealed []byte, aeadOf func(kind string, g keys.Generation) (cipher.AEAD, error)) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, ErrDecrypt
	}
	var (
		a      cipher.AEAD
		prefix string
		head   = 1
	)
	switch sealed[0] {
	case sealVersion, sealVersionGen:
		g, ok := sealedGeneration(sealed)
		if !ok {
			return nil, ErrDecrypt
		}
		var err error
		if a, err = aeadOf(kind, g); err != nil {
			return nil, err
		}
		prefix = aadPrefix
		if g != keys.FirstGeneration {
			prefix, head = genPrefix(g), 1+genSize
		}
	case sealVersionLegacy:
		if s.legacy == nil {
			return nil, fmt.Errorf("%s %s is sealed under the master key's single storage key: open the store once with the master key (any phantom admin command) to rewrap it", kind, id)
		}
		a, prefix = s.legacy, aadPrefixLegacy
	default:
		return nil, ErrDecrypt
	}
	ns := a.NonceSize()
	if len(sealed) < head+ns+a.Overhead() {
		return nil, ErrDecrypt
	}
	pt, err := a.Open(nil, sealed[head:head+ns], sealed[head+ns:], []byte(prefix+kind+":"+id))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// rewrap returns a legacy (version 1) value sealed as version 2, or nil when the value
// is version 2 or 3 already.
func (s *sealer) rewrap(kind, id string, sealed []byte) ([]byte, error) {
	if len(sealed) == 0 || sealed[0] != sealVersionLegacy {
		return nil, nil
	}
	pt, err := s.open(kind, id, sealed)
	if err != nil {
		return nil, err
	}
	return s.seal(kind, id, pt)
}

// checkValue is what each purpose generation's check row seals: opening it with another
// key fails at once, so a wrong key is reported at open instead of on the first secret
// read. The row is named pg (store-access-keys, store-access-keys#2).
func checkValue(pg purposeGen) []byte { return []byte("phantom key check v2 " + pg.String()) }

// sealCheck seals pg's check value.
func (s *sealer) sealCheck(pg purposeGen) ([]byte, error) {
	a := s.gens.Load().aeads[pg]
	if a == nil {
		return nil, &MissingKeyError{Purpose: pg.p, Generation: pg.g, Component: s.keys().Component()}
	}
	return sealGen(a, pg.g, kindKeyCheck, pg.String(), checkValue(pg))
}

// openCheck reports whether sealed is pg's check value under the key held.
func (s *sealer) openCheck(pg purposeGen, sealed []byte) bool {
	if g, ok := sealedGeneration(sealed); !ok || g != pg.g {
		return false
	}
	pt, err := s.openWith(kindKeyCheck, pg.String(), sealed, func(string, keys.Generation) (cipher.AEAD, error) {
		if a := s.gens.Load().aeads[pg]; a != nil {
			return a, nil
		}
		return nil, ErrDecrypt
	})
	return err == nil && string(pt) == string(checkValue(pg))
}

// sealLegacyCheck and openLegacyCheck are the master key's own check (master_key_check,
// version 1, as every Phantom before per-purpose keys wrote it).
const keyCheckValue = "phantom master key check v1"

func (s *sealer) sealLegacyCheck() ([]byte, error) {
	return sealWith(s.legacy, []byte{sealVersionLegacy}, aadPrefixLegacy, kindKeyCheck, "1", []byte(keyCheckValue))
}

func (s *sealer) openLegacyCheck(sealed []byte) bool {
	pt, err := s.open(kindKeyCheck, "1", sealed)
	return err == nil && string(pt) == keyCheckValue
}
