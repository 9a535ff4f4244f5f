package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// sealer encrypts secrets at rest, each kind under a key of its own purpose
// (internal/keys), so that a process holding one kind's key (a gateway: users' secret
// keys and the token-opening keys) reads nothing else. A sealed value is version byte ||
// 12-byte random nonce || AES-256-GCM ciphertext and tag; the additional data names the
// row ("access-key:AKIA…"), so a ciphertext copied to another row fails.
//
// Version 2 (written now) uses the kind's purpose key. Version 1 (written before
// per-purpose keys) used one key for every kind, derived from the master key with the
// StoreLegacy label: only a holder of the master key opens it, and Open rewraps such
// values as version 2 when it holds the master key (rewrapLegacy).
type sealer struct {
	ring   *keys.Ring
	aeads  map[keys.Purpose]cipher.AEAD // the store purposes the ring holds
	legacy cipher.AEAD                  // nil without the master key
}

const (
	sealVersionLegacy = 1
	sealVersion       = 2
	aadPrefixLegacy   = "phantom-store/v1 "
	aadPrefix         = "phantom-store/v2 "
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
var storePurposes = []keys.Purpose{keys.StoreAccessKeys, keys.StoreTokenKeys, keys.StoreTokenSigning, keys.StoreMFA, keys.StoreCA, keys.StoreCARoot}

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
	s := &sealer{ring: ring, aeads: map[keys.Purpose]cipher.AEAD{}}
	for _, p := range storePurposes {
		if !ring.Has(p) {
			continue
		}
		k, err := ring.Key(p)
		if err != nil {
			return nil, fmt.Errorf("storage key %s: %w", p, err)
		}
		if s.aeads[p], err = newAEAD(k); err != nil {
			return nil, fmt.Errorf("storage key %s: %w", p, err)
		}
	}
	if ring.HasMaster() {
		k, err := ring.Key(keys.StoreLegacy)
		if err != nil {
			return nil, fmt.Errorf("storage key: %w", err)
		}
		if s.legacy, err = newAEAD(k); err != nil {
			return nil, fmt.Errorf("storage key: %w", err)
		}
	}
	return s, nil
}

// holds reports whether the sealer can open values of kind.
func (s *sealer) holds(kind string) bool { return s.aeads[kindPurpose[kind]] != nil }

func (s *sealer) aead(kind string) (cipher.AEAD, error) {
	p, ok := kindPurpose[kind]
	if !ok {
		return nil, fmt.Errorf("seal %s: no purpose for this kind", kind)
	}
	a := s.aeads[p]
	if a == nil {
		return nil, fmt.Errorf("%s: %w", kind, &MissingKeyError{Purpose: p, Component: s.ring.Component()})
	}
	return a, nil
}

// MissingKeyError says a process tried to read or write a kind of secret its keys do
// not cover: a component doing what it has no key for.
type MissingKeyError struct {
	Purpose   keys.Purpose
	Component keys.Component
}

func (e *MissingKeyError) Error() string {
	return fmt.Sprintf("this %s holds no %s key", e.Component, e.Purpose)
}

func (e *MissingKeyError) Unwrap() error { return keys.ErrNotHeld }

// seal encrypts plaintext bound to the row named by kind and id.
func (s *sealer) seal(kind, id string, plaintext []byte) ([]byte, error) {
	a, err := s.aead(kind)
	if err != nil {
		return nil, err
	}
	return sealWith(a, sealVersion, aadPrefix, kind, id, plaintext)
}

func sealWith(a cipher.AEAD, version byte, prefix, kind, id string, plaintext []byte) ([]byte, error) {
	ns := a.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+a.Overhead())
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal %s: nonce: %w", kind, err)
	}
	return a.Seal(out, out[1:1+ns], plaintext, []byte(prefix+kind+":"+id)), nil
}

// open decrypts a sealed value of the row named by kind and id; any mismatch is
// ErrDecrypt, a kind whose key the process does not hold a MissingKeyError.
func (s *sealer) open(kind, id string, sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, ErrDecrypt
	}
	var (
		a      cipher.AEAD
		prefix string
	)
	switch sealed[0] {
	case sealVersion:
		var err error
		if a, err = s.aead(kind); err != nil {
			return nil, err
		}
		prefix = aadPrefix
	case sealVersionLegacy:
		if s.legacy == nil {
			return nil, fmt.Errorf("%s %s is sealed under the master key's single storage key: open the store once with the master key (any phantom admin command) to rewrap it", kind, id)
		}
		a, prefix = s.legacy, aadPrefixLegacy
	default:
		return nil, ErrDecrypt
	}
	ns := a.NonceSize()
	if len(sealed) < 1+ns+a.Overhead() {
		return nil, ErrDecrypt
	}
	pt, err := a.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(prefix+kind+":"+id))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// rewrap returns a legacy (version 1) value sealed as version 2, or nil when the value
// is version 2 already.
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

// checkValue is what each purpose's check row seals: opening it with another key fails
// at once, so a wrong key is reported at open instead of on the first secret read.
func checkValue(p keys.Purpose) []byte { return []byte("phantom key check v2 " + string(p)) }

// sealCheck seals p's check value.
func (s *sealer) sealCheck(p keys.Purpose) ([]byte, error) {
	a := s.aeads[p]
	if a == nil {
		return nil, &MissingKeyError{Purpose: p, Component: s.ring.Component()}
	}
	return sealWith(a, sealVersion, aadPrefix, kindKeyCheck, string(p), checkValue(p))
}

// openCheck reports whether sealed is p's check value under the key held.
func (s *sealer) openCheck(p keys.Purpose, sealed []byte) bool {
	a := s.aeads[p]
	if a == nil || len(sealed) < 1+a.NonceSize()+a.Overhead() || sealed[0] != sealVersion {
		return false
	}
	ns := a.NonceSize()
	pt, err := a.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(aadPrefix+kindKeyCheck+":"+string(p)))
	return err == nil && string(pt) == string(checkValue(p))
}

// sealLegacyCheck and openLegacyCheck are the master key's own check (master_key_check,
// version 1, as every Phantom before per-purpose keys wrote it).
const keyCheckValue = "phantom master key check v1"

func (s *sealer) sealLegacyCheck() ([]byte, error) {
	return sealWith(s.legacy, sealVersionLegacy, aadPrefixLegacy, kindKeyCheck, "1", []byte(keyCheckValue))
}

func (s *sealer) openLegacyCheck(sealed []byte) bool {
	pt, err := s.open(kindKeyCheck, "1", sealed)
	return err == nil && string(pt) == keyCheckValue
}
