// Package keys owns every key Phantom derives from the perimeter's master key: the list
// of purposes with their HKDF labels (RFC 5869, HKDF-SHA256; the label is the info
// string), which component holds which purposes, and the ring a process holds, either
// the master key itself (the operator's host, `phantom up`) or only the derived keys of
// its purposes, read from a component key file. A derived key reveals neither the master
// key nor any other purpose's key (HKDF's outputs for distinct infos are independent), so
// a host given a component key file can do its job and nothing else.
//
// It does not own what the keys do (the store seals with its purposes' keys, the gateway
// signs assertions with its), nor keys that are not derived from the master key: the
// token-sealing keys and the CA's keys are random and live in the store or a key
// provider.
package keys

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
)

// MasterSize is the length of the perimeter's master key.
const MasterSize = 32

// Purpose names what a derived key is for. Its label is the HKDF info string; a label
// is never reused for another purpose or changed (existing data is sealed under it).
type Purpose string

// The purposes. The store's are one per kind of stored secret, so a process that must
// read one kind (a gateway: users' secret keys and the token-opening keys) cannot read
// another (MFA seeds, the token-signing keys, the CA).
const (
	// StoreLegacy sealed every stored secret before per-purpose keys (sealed values of
	// version 1). Only a holder of the master key uses it, to rewrap such values.
	StoreLegacy Purpose = "store-legacy"
	// StoreAccessKeys seals users' long-term secret access keys.
	StoreAccessKeys Purpose = "store-access-keys"
	// StoreTokenKeys seals the AES keys that encrypt and open session tokens.
	StoreTokenKeys Purpose = "store-token-keys"
	// StoreTokenSigning seals the Ed25519 keys that sign session tokens: whoever holds
	// it can mint sessions.
	StoreTokenSigning Purpose = "store-token-signing"
	// StoreMFA seals users' virtual MFA seeds.
	StoreMFA Purpose = "store-mfa"
	// StoreCA seals the named secrets: the CA's issuing keys.
	StoreCA Purpose = "store-ca"
	// StoreCARoot seals the CA's root keys kept in the store: only the operator's master
	// key derives it, so no component can make an issuing CA.
	StoreCARoot Purpose = "store-ca-root"
	// Assertion is the seed of the gateway's Ed25519 identity-assertion key.
	Assertion Purpose = "gateway-assertion"
	// AuthzMessages seals encoded authorization messages (gateway, STS).
	AuthzMessages Purpose = "authz-messages"
	// AuditLegacy is the seed of the Ed25519 key every process signed audit digests with
	// before writers got keys of their own certified by the CA: the operator derives its
	// public key to verify such chains (phantom audit public-key). No component holds it.
	AuditLegacy Purpose = "audit-legacy"
	// EgressPasswords is the seed of the Ed25519 key that signs nodes' egress proxy
	// passwords (STS); the proxy holds only its public half (EgressPasswordsPublic).
	EgressPasswords Purpose = "egress-passwords"
	// EgressPasswordsPublic is the public key that checks proxy passwords: not a secret,
	// carried in the egress proxy's key file so it need not derive it.
	EgressPasswordsPublic Purpose = "egress-passwords-public"
)

// purposes lists every purpose with its HKDF label, in one place. public marks a
// purpose whose value is a public key computed from another purpose's seed.
var purposes = []struct {
	p      Purpose
	label  string
	public Purpose // for a public purpose: the seed it is computed from
}{
	{p: StoreLegacy, label: "phantom store: secrets at rest v1"},
	{p: StoreAccessKeys, label: "phantom/store/access-keys/v2"},
	{p: StoreTokenKeys, label: "phantom/store/token-keys/v2"},
	{p: StoreTokenSigning, label: "phantom/store/token-signing/v2"},
	{p: StoreMFA, label: "phantom/store/mfa/v2"},
	{p: StoreCA, label: "phantom/store/ca/v2"},
	{p: StoreCARoot, label: "phantom/store/ca-root/v2"},
	{p: Assertion, label: "phantom/assertion/v1"},
	{p: AuthzMessages, label: "phantom/authzmsg/v1"},
	{p: AuditLegacy, label: "phantom/audit/v1"},
	{p: EgressPasswords, label: "phantom/egress-passwords/ed25519/v1"},
	{p: EgressPasswordsPublic, public: EgressPasswords},
}

// Purposes returns every purpose, in a fixed order.
func Purposes() []Purpose {
	out := make([]Purpose, len(purposes))
	for i, d := range purposes {
		out[i] = d.p
	}
	return out
}

// Label returns p's HKDF label ("" for a public purpose, which is computed, not derived).
func Label(p Purpose) (string, bool) {
	for _, d := range purposes {
		if d.p == p {
			return d.label, true
		}
	}
	return "", false
}

// Size is the length of every derived key (AES-256 keys, Ed25519 seeds and public keys).
const Size = 32

// ErrNotHeld is returned (wrapped) for a purpose the ring does not hold.
var ErrNotHeld = errors.New("key not held by this process")

// Derive derives p's key from the master key.
func Derive(master []byte, p Purpose) ([]byte, error) {
	if len(master) != MasterSize {
		return nil, fmt.Errorf("derive %s key: master key is %d bytes, want %d", p, len(master), MasterSize)
	}
	if subtle.ConstantTimeCompare(master, make([]byte, MasterSize)) == 1 {
		return nil, fmt.Errorf("derive %s key: master key is all zeros", p)
	}
	for _, d := range purposes {
		if d.p != p {
			continue
		}
		if d.public != "" {
			seed, err := Derive(master, d.public)
			if err != nil {
				return nil, err
			}
			return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey), nil
		}
		k, err := hkdf.Key(sha256.New, master, nil, d.label, Size)
		if err != nil {
			return nil, fmt.Errorf("derive %s key: %w", p, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("derive key: unknown purpose %q", p)
}

// DeriveEd25519 derives p's key from the master key as an Ed25519 private key (p's key
// is its seed).
func DeriveEd25519(master []byte, p Purpose) (ed25519.PrivateKey, error) {
	seed, err := Derive(master, p)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// backendAssertionLabel is the HKDF info prefix of the APIs' assertion MAC keys; the API
// id follows it.
const backendAssertionLabel = "phantom/assertion/hs256/v1 api="

// DeriveBackendAssertion derives API api's assertion MAC key (HS256, spec apis[].assertion)
// from the gateway's assertion key (the Assertion purpose's key, the Ed25519 seed):
// HKDF-SHA256 with the API id in the info. Every gateway replica derives the same key; a
// backend given its API's key can verify that API's assertions and learns nothing of
// another API's key or of the signing key (RFC 5869: outputs for distinct infos are
// independent).
func DeriveBackendAssertion(assertion []byte, api string) ([]byte, error) {
	if len(assertion) != Size {
		return nil, fmt.Errorf("derive the assertion key of API %s: the assertion key is %d bytes, want %d", api, len(assertion), Size)
	}
	if api == "" {
		return nil, errors.New("derive an API's assertion key: no API id")
	}
	k, err := hkdf.Key(sha256.New, assertion, nil, backendAssertionLabel+api, Size)
	if err != nil {
		return nil, fmt.Errorf("derive the assertion key of API %s: %w", api, err)
	}
	return k, nil
}

// Ring is the keys one process holds: the master key (every purpose derivable) or the
// derived keys of some purposes only. It is immutable and safe for concurrent use.
type Ring struct {
	component Component
	master    []byte
	keys      map[Purpose][]byte                // generation 1 of each purpose
	gens      map[Purpose]map[Generation][]byte // later generations (generation.go)
}

// FromMaster returns a ring holding the master key: every purpose.
func FromMaster(master []byte) (*Ring, error) {
	if _, err := Derive(master, StoreLegacy); err != nil {
		return nil, err
	}
	return &Ring{component: Operator, master: slices.Clone(master), keys: map[Purpose][]byte{}}, nil
}

// ForComponent returns a ring of c's purposes only, derived from the master key: what a
// process of that kind needs, and nothing it could derive more from.
func ForComponent(master []byte, c Component) (*Ring, error) {
	ps, err := c.Purposes()
	if err != nil {
		return nil, err
	}
	r := &Ring{component: c, keys: make(map[Purpose][]byte, len(ps))}
	for _, p := range ps {
		k, err := Derive(master, p)
		if err != nil {
			return nil, err
		}
		r.keys[p] = k
	}
	return r, nil
}

// Restrict returns a ring of c's purposes taken from r: a process given the master key
// keeps only what its component needs.
func (r *Ring) Restrict(c Component) (*Ring, error) {
	if r.master != nil {
		return ForComponent(r.master, c)
	}
	ps, err := c.Purposes()
	if err != nil {
		return nil, err
	}
	out := &Ring{component: c, keys: make(map[Purpose][]byte, len(ps))}
	for _, p := range ps {
		if !r.Has(p) {
			_, err := r.Key(p)
			return nil, fmt.Errorf("restrict keys to %s: %w", c, err)
		}
		if k, ok := r.keys[p]; ok {
			out.keys[p] = slices.Clone(k)
		}
		for g, k := range r.gens[p] {
			out.addGeneration(p, g, slices.Clone(k))
		}
	}
	return out, nil
}

// Component is the kind of process the ring is for (Operator for the master key).
func (r *Ring) Component() Component { return r.component }

// HasMaster reports whether the ring holds the master key.
func (r *Ring) HasMaster() bool { return r.master != nil }

// Master returns the master key, or ErrNotHeld.
func (r *Ring) Master() ([]byte, error) {
	if r.master == nil {
		return nil, fmt.Errorf("master key: %w (%s key file)", ErrNotHeld, r.component)
	}
	return slices.Clone(r.master), nil
}

// Has reports whether the ring holds p's key.
func (r *Ring) Has(p Purpose) bool {
	if r.master != nil {
		_, ok := Label(p)
		return ok
	}
	_, ok := r.keys[p]
	return ok || len(r.gens[p]) > 0
}

// Key returns p's key, or an error wrapping ErrNotHeld.
func (r *Ring) Key(p Purpose) ([]byte, error) {
	if r.master != nil {
		return Derive(r.master, p)
	}
	k, ok := r.keys[p]
	if !ok {
		return nil, fmt.Errorf("%s key: %w (a %s holds %s)", p, ErrNotHeld, r.component, purposeList(r.component))
	}
	return slices.Clone(k), nil
}

// Ed25519 returns p's key as an Ed25519 private key (p's key is its seed).
func (r *Ring) Ed25519(p Purpose) (ed25519.PrivateKey, error) {
	if r.master != nil {
		return DeriveEd25519(r.master, p)
	}
	seed, err := r.Key(p)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// Held lists the purposes the ring holds, in Purposes order.
func (r *Ring) Held() []Purpose {
	var out []Purpose
	for _, p := range Purposes() {
		if r.Has(p) {
			out = append(out, p)
		}
	}
	return out
}

func purposeList(c Component) string {
	ps, err := c.Purposes()
	if err != nil || len(ps) == 0 {
		return "no derived keys"
	}
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += string(p)
	}
	return s
}
