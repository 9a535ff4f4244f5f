package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Session token format, version 2, base64url without padding (strict: one spelling per token):
//
//	version    1 byte  (2)
//	key id len 1 byte  (1..32)
//	key id     the sealing key's id
//	body len   2 bytes big-endian: length of ciphertext+tag
//	nonce      12 bytes, random
//	ciphertext AES-256-GCM of the claims encoding (claims.go) followed by a 64-byte
//	           Ed25519ctx signature (RFC 8032 §5.1, context "phantom session token v2")
//	           over everything before it in the plaintext token (version to claims);
//	           16-byte tag appended
//
// The additional authenticated data is everything before the nonce, so the version, key id
// and length are bound to the ciphertext. The length lets a truncated token be told apart
// from a tampered one before any decryption.
//
// Two keys, two jobs: the AES key keeps the claims (the session's secret key among them)
// confidential and refuses tampering by anyone without it; the signature says STS made
// the token. A gateway holds the AES keys and the public keys only (keys.StoreTokenKeys),
// so it opens every token and can make none: a token it encrypted itself has no valid
// signature.
//
// Version 3 is version 2 signed by a key in a PKCS#11 token (SealingKey.SignerInToken):
// tokens sign pure Ed25519 only (SoftHSM2 ignores CK_EDDSA_PARAMS, so Ed25519ctx is not to
// be had), so the signature is pure Ed25519 (RFC 8032 §5.1) over tokenV3Domain followed by
// everything before it. The domain separates it from every other use of the key as the
// context does for version 2; no message of another Phantom signer starts with it. A key
// opens the one version its signer makes: a version 2 token under a token key, or a
// version 3 token under a file key, is refused whatever its signature.
//
// Version 1 is the same without the signature. It is opened only under a key made before
// signed tokens (one without a public key), so sessions issued before an upgrade keep
// working until they expire; no key with a public key opens it, and Seal never writes it.
const (
	tokenVersion       = 2
	tokenVersionInHSM  = 3
	tokenVersionLegacy = 1
	maxKeyIDLen        = 32
	sealingKeyLen      = 32 // AES-256
	nonceLen           = 12
	tagLen             = 16
	sigLen             = ed25519.SignatureSize

	// MaxTokenLen bounds an encoded token (sigv4 refuses longer X-Amz-Security-Token values).
	MaxTokenLen = 16 << 10

	// DefaultMaxSessionDuration is the longest session AWS issues: GetSessionToken's 36 hours
	// ("GetSessionToken", AWS STS API Reference). Rotated-out keys are kept this long.
	DefaultMaxSessionDuration = 36 * time.Hour

	// maxSealsPerKey keeps random 96-bit nonces within NIST SP 800-38D §8.3's bound of 2^32
	// invocations per key; past it Seal refuses until the key is rotated.
	maxSealsPerKey = 1 << 32

	// maxVerified bounds the cache of tokens whose signature was checked.
	maxVerified = 1 << 16

	// maxOpened bounds the cache of opened tokens (openShared), as many sessions calling
	// at once: an entry is its claims, a few hundred bytes usually and at most what a
	// MaxTokenLen token holds, so a few MiB and never above 64 MiB. Past it, sessions
	// are evicted at random and opened again (their signatures stay in verified).
	maxOpened = 1 << 12
)

// signOptions selects Ed25519ctx with the token's context string, so a signature made for
// anything else with the same key never verifies as a token's (RFC 8032 §8.3).
var signOptions = &ed25519.Options{Context: "phantom session token v2"}

// tokenV3Domain starts every message a token key signs (version 3). It cannot start an
// Ed25519ctx message's hash input (RFC 8032's dom2 begins "SigEd25519 no Ed25519
// collisions"), nor an audit digest's ("phantom/audit/v1 digest").
const tokenV3Domain = "phantom session token v3 (pure Ed25519)\x00"

// tokenEncoding is strict so that a token has exactly one spelling (no malleable padding
// bits); base64url below closes the other gap, the decoder skipping '\r' and '\n'.
var tokenEncoding = base64.RawURLEncoding.Strict()

// base64url reports whether s holds only the unpadded base64url alphabet. encoding/base64
// ignores CR and LF even in strict mode, which would give one token many spellings (found
// by FuzzOpen).
func base64url(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// SealerConfig configures a Sealer.
type SealerConfig struct {
	// TokenKeys finds the signing keys of keys that sign in a PKCS#11 token
	// (SignerInToken); nil: this process cannot seal with such keys, only open.
	TokenKeys TokenSigningKeys
	// MaxSessionDuration is the longest session Seal accepts and how long a rotated-out key
	// stays in the ring; 0 means DefaultMaxSessionDuration.
	MaxSessionDuration time.Duration
	Now                func() time.Time // nil: time.Now
	Rand               io.Reader        // nonces; nil: crypto/rand
}

// Sealer seals claims into session tokens with the ring's current key and opens tokens
// sealed with any key still in the ring. Seal and Open are safe for concurrent use and never
// lock: the ring is an immutable snapshot behind an atomic.Pointer, replaced by Rotate and
// SetKeys (which serialize among themselves).
type Sealer struct {
	tokenKeys  TokenSigningKeys
	maxSession time.Duration
	now        func() time.Time
	rand       io.Reader

	mu   sync.Mutex // writers only
	ring atomic.Pointer[keyRing]
	bufs sync.Pool // *[]byte decode buffers for Open

	// verified remembers the SHA-256 of tokens whose signature checked, so a session's
	// every request after its first costs an AES-GCM open and not an Ed25519
	// verification too (SDKs send one token for many requests). A hit stands only for
	// the exact bytes that verified.
	verifiedMu sync.Mutex
	verified   map[[sha256.Size]byte]struct{}

	// opened remembers the claims of tokens openShared opened, by the SHA-256 of the
	// token's text (one spelling per token: tokenEncoding is strict), so a session's
	// every request after its first costs a hash and a map lookup, not a decode, an
	// AES-GCM open and a claims decode. See openShared for what a hit stands for.
	openedMu  sync.RWMutex
	opened    map[[sha256.Size]byte]openedToken
	maxOpened int
}

// openedToken is a token openShared opened: its claims (read-only) and the AEAD of the key
// that opened it (the very key: a key reloaded under the same id keeps its AEAD, one made
// anew does not).
type openedToken struct {
	claims *Claims
	key    string
	aead   cipher.AEAD
}

type keyRing struct {
	current *ringKey // nil: the ring can open but not seal
	keys    map[string]*ringKey
}

type ringKey struct {
	id          string
	raw         []byte // to tell a reload of the same key from a conflicting one
	aead        cipher.AEAD
	sign        crypto.Signer     // nil: this process cannot seal with it
	pub         ed25519.PublicKey // nil: a key from before signed tokens (version 1 only)
	inToken     bool              // sign is in a PKCS#11 token: version 3
	createdAt   time.Time
	retireAfter time.Time      // zero: not retired
	seals       *atomic.Uint64 // shared by every snapshot holding this key
}

// NewSealer validates cfg and returns a Sealer with an empty ring (load it with SetKeys or
// Rotate).
func NewSealer(cfg SealerConfig) (*Sealer, error) {
	if cfg.MaxSessionDuration < 0 {
		return nil, fmt.Errorf("new sealer: max session duration %s is negative", cfg.MaxSessionDuration)
	}
	s := &Sealer{tokenKeys: cfg.TokenKeys, maxSession: cfg.MaxSessionDuration, now: cfg.Now, rand: cfg.Rand,
		verified: map[[sha256.Size]byte]struct{}{}, opened: map[[sha256.Size]byte]openedToken{}, maxOpened: maxOpened}
	if s.maxSession == 0 {
		s.maxSession = DefaultMaxSessionDuration
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.ring.Store(&keyRing{keys: map[string]*ringKey{}})
	return s, nil
}

// NewSealingKey returns a new current key: a 32-byte AES-256 key, an Ed25519 signing key
// and an 8-character id, all from r (nil: crypto/rand).
func NewSealingKey(r io.Reader, now time.Time) (SealingKey, error) {
	var b [5 + sealingKeyLen + ed25519.SeedSize]byte
	if err := readRandom(r, b[:]); err != nil {
		return SealingKey{}, fmt.Errorf("new sealing key: %w", err)
	}
	id := strings.ToLower(base32.StdEncoding.EncodeToString(b[:5]))
	sign := ed25519.NewKeyFromSeed(b[5+sealingKeyLen:])
	return SealingKey{
		ID:          id,
		Key:         append([]byte(nil), b[5:5+sealingKeyLen]...),
		SigningSeed: sign.Seed(),
		PublicKey:   append([]byte(nil), sign.Public().(ed25519.PublicKey)...),
		CreatedAt:   now.UTC(),
	}, nil
}

// TokenSigningKeys is a key provider holding token-signing keys (hsm.Token): STS makes
// new ones there and signs there; their private halves never leave it. The signers sign
// pure Ed25519 (crypto.Hash(0)).
type TokenSigningKeys interface {
	NewTokenSigningKey(ctx context.Context) (crypto.Signer, error)
	TokenSigningKey(ctx context.Context, pub ed25519.PublicKey) (crypto.Signer, error)
}

// NewSealingKeyInToken returns a new current key whose signing key is signer, in a
// token: a 32-byte AES-256 key and an 8-character id from r (nil: crypto/rand).
func NewSealingKeyInToken(r io.Reader, now time.Time, signer crypto.Signer) (SealingKey, error) {
	pub, ok := signer.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return SealingKey{}, fmt.Errorf("new sealing key: the token's key is a %T, not Ed25519", signer.Public())
	}
	var b [5 + sealingKeyLen]byte
	if err := readRandom(r, b[:]); err != nil {
		return SealingKey{}, fmt.Errorf("new sealing key: %w", err)
	}
	return SealingKey{
		ID:            strings.ToLower(base32.StdEncoding.EncodeToString(b[:5])),
		Key:           append([]byte(nil), b[5:]...),
		PublicKey:     append([]byte(nil), pub...),
		SignerInToken: true,
		CreatedAt:     now.UTC(),
	}, nil
}

// CurrentInToken reports whether the current key signs in a PKCS#11 token.
func (s *Sealer) CurrentInToken() bool {
	k := s.ring.Load().current
	return k != nil && k.inToken
}

// CanSeal reports whether Seal can make tokens: the current key is one this process
// holds the signing key of.
func (s *Sealer) CanSeal() bool {
	k := s.ring.Load().current
	return k != nil && k.sign != nil
}

// CurrentKeyID returns the id of the key Seal uses, "" when there is none.
func (s *Sealer) CurrentKeyID() string {
	if k := s.ring.Load().current; k != nil {
		return k.id
	}
	return ""
}

// KeyIDs returns the ids of every key in the ring (unordered).
func (s *Sealer) KeyIDs() []string {
	r := s.ring.Load()
	ids := make([]string, 0, len(r.keys))
	for id := range r.keys {
		ids = append(ids, id)
	}
	return ids
}

// Rotate makes k the current key. The previous current key stays in the ring, for opening
// only, until MaxSessionDuration from now: no session it sealed can outlive that. Keys whose
// retirement time has passed are dropped.
func (s *Sealer) Rotate(k SealingKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	old := s.ring.Load()
	if _, dup := old.keys[k.ID]; dup {
		return fmt.Errorf("rotate sealing key: key id %q is already in the ring", k.ID)
	}
	nk, err := newRingKey(k)
	if err != nil {
		return fmt.Errorf("rotate sealing key: %w", err)
	}
	if err := s.findSigner(nk); err != nil {
		return fmt.Errorf("rotate sealing key: %w", err)
	}
	nk.retireAfter = time.Time{}
	next := &keyRing{current: nk, keys: make(map[string]*ringKey, len(old.keys)+1)}
	for id, rk := range old.keys {
		if rk == old.current {
			c := *rk
			c.retireAfter = now.Add(s.maxSession)
			rk = &c
		}
		if retired(rk, now) {
			continue
		}
		next.keys[id] = rk
	}
	next.keys[nk.id] = nk
	s.ring.Store(next)
	return nil
}

// SetKeys replaces the ring with keys (as listed by the store): keys past their retirement
// time are left out; the current key is the newest not retired. A key id already in the
// ring with different key bytes is refused, and the ring is left unchanged on any error.
func (s *Sealer) SetKeys(keys []SealingKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	old := s.ring.Load()
	next := &keyRing{keys: make(map[string]*ringKey, len(keys))}
	for _, k := range keys {
		if _, dup := next.keys[k.ID]; dup {
			return fmt.Errorf("load sealing keys: key id %q appears twice", k.ID)
		}
		var rk *ringKey
		var err error
		if prev, ok := old.keys[k.ID]; ok {
			if len(prev.raw) != len(k.Key) || subtle.ConstantTimeCompare(prev.raw, k.Key) != 1 || !bytes.Equal(prev.pub, k.PublicKey) || prev.inToken != k.SignerInToken {
				return fmt.Errorf("load sealing keys: key id %q now has different key bytes", k.ID)
			}
			c := *prev
			c.createdAt, c.retireAfter = k.CreatedAt, k.RetireAfter
			if c.sign == nil && k.SigningSeed != nil {
				if c.sign, err = signingKey(k); err != nil {
					return fmt.Errorf("load sealing keys: %w", err)
				}
			}
			rk = &c
		} else if rk, err = newRingKey(k); err != nil {
			return fmt.Errorf("load sealing keys: %w", err)
		}
		if retired(rk, now) {
			continue
		}
		next.keys[k.ID] = rk
		if rk.retireAfter.IsZero() && (next.current == nil || newer(rk, next.current)) {
			next.current = rk
		}
	}
	// Only the current key seals: only its token key is looked for. A process with the
	// token that does not find it there fails to load (it would seal with nothing).
	if next.current != nil && next.current.inToken && next.current.sign == nil && s.tokenKeys != nil {
		c := *next.current
		if err := s.findSigner(&c); err != nil {
			return fmt.Errorf("load sealing keys: %w", err)
		}
		next.current, next.keys[c.id] = &c, &c
	}
	s.ring.Store(next)
	return nil
}

// findSigner gives a key that signs in a token its signer from s.tokenKeys, if s has
// them.
func (s *Sealer) findSigner(rk *ringKey) error {
	if !rk.inToken || rk.sign != nil || s.tokenKeys == nil {
		return nil
	}
	sign, err := s.tokenKeys.TokenSigningKey(context.Background(), rk.pub)
	if err != nil {
		return fmt.Errorf("sealing key %q: %w", rk.id, err)
	}
	if pub, ok := sign.Public().(ed25519.PublicKey); !ok || !pub.Equal(rk.pub) {
		return fmt.Errorf("sealing key %q: the token's key is not its public key", rk.id)
	}
	rk.sign = sign
	return nil
}

// version is the token version k's signer makes and the only one it opens.
func (k *ringKey) version() byte {
	switch {
	case k.pub == nil:
		return tokenVersionLegacy
	case k.inToken:
		return tokenVersionInHSM
	}
	return tokenVersion
}

func newer(a, b *ringKey) bool {
	if !a.createdAt.Equal(b.createdAt) {
		return a.createdAt.After(b.createdAt)
	}
	return a.id > b.id // a deterministic choice when two replicas rotated at the same instant
}

func retired(k *ringKey, now time.Time) bool {
	return !k.retireAfter.IsZero() && !now.Before(k.retireAfter)
}

func newRingKey(k SealingKey) (*ringKey, error) {
	if !validKeyID(k.ID) {
		return nil, fmt.Errorf("sealing key id %q is not 1 to %d characters of A-Z a-z 0-9 . _ -", k.ID, maxKeyIDLen)
	}
	if len(k.Key) != sealingKeyLen {
		return nil, fmt.Errorf("sealing key %q is %d bytes, want %d", k.ID, len(k.Key), sealingKeyLen)
	}
	raw := append([]byte(nil), k.Key...)
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("sealing key %q: %w", k.ID, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealing key %q: %w", k.ID, err)
	}
	rk := &ringKey{id: k.ID, raw: raw, aead: aead, createdAt: k.CreatedAt, retireAfter: k.RetireAfter, seals: new(atomic.Uint64)}
	if k.PublicKey != nil {
		if len(k.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("sealing key %q: public key is %d bytes, want %d", k.ID, len(k.PublicKey), ed25519.PublicKeySize)
		}
		rk.pub = append(ed25519.PublicKey(nil), k.PublicKey...)
	}
	if k.SignerInToken {
		if rk.pub == nil || k.SigningSeed != nil {
			return nil, fmt.Errorf("sealing key %q: a key signing in a token has a public key and no seed", k.ID)
		}
		rk.inToken = true
		return rk, nil
	}
	if rk.sign, err = signingKey(k); err != nil {
		return nil, err
	}
	return rk, nil
}

// signingKey returns k's signing key, nil when k carries none (this process does not
// hold the token-signing storage key, or k is from before signed tokens). A seed whose
// public key is not k's is refused.
func signingKey(k SealingKey) (crypto.Signer, error) {
	if k.SigningSeed == nil {
		return nil, nil
	}
	if len(k.SigningSeed) != ed25519.SeedSize || k.PublicKey == nil {
		return nil, fmt.Errorf("sealing key %q: a signing key needs a %d-byte seed and its public key", k.ID, ed25519.SeedSize)
	}
	sign := ed25519.NewKeyFromSeed(k.SigningSeed)
	if !sign.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(k.PublicKey)) {
		return nil, fmt.Errorf("sealing key %q: signing key does not match its public key", k.ID)
	}
	return sign, nil
}

func validKeyID(id string) bool {
	if len(id) == 0 || len(id) > maxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Seal validates c and returns its session token, sealed with the current key.
func (s *Sealer) Seal(c *Claims) (string, error) {
	if err := s.checkClaims(c); err != nil {
		return "", fmt.Errorf("seal session token: %w", err)
	}
	k := s.ring.Load().current
	if k == nil {
		return "", errors.New("seal session token: no current sealing key (rotate one in)")
	}
	if k.sign == nil {
		return "", fmt.Errorf("seal session token: this process cannot sign with key %q (only STS holds token-signing keys; a key from before signed tokens must be rotated out)", k.id)
	}
	if k.seals.Add(1) > maxSealsPerKey {
		return "", fmt.Errorf("seal session token: key %q has sealed 2^32 tokens; rotate the sealing key", k.id)
	}

	hdr := 2 + len(k.id) + 2
	b := make([]byte, hdr+nonceLen, hdr+nonceLen+claimsSizeHint(c)+sigLen+tagLen)
	b[0] = tokenVersion
	if k.inToken {
		b[0] = tokenVersionInHSM
	}
	b[1] = byte(len(k.id))
	copy(b[2:], k.id)
	if err := readRandom(s.rand, b[hdr:hdr+nonceLen]); err != nil {
		return "", fmt.Errorf("seal session token: nonce: %w", err)
	}
	b = appendClaims(b, c)
	body := len(b) - hdr - nonceLen + sigLen + tagLen
	if n := tokenEncoding.EncodedLen(len(b) + sigLen + tagLen); n > MaxTokenLen {
		return "", fmt.Errorf("seal session token: claims make a %d-byte token, over the %d-byte limit (fewer tags or a shorter session policy)", n, MaxTokenLen)
	}
	binary.BigEndian.PutUint16(b[hdr-2:hdr], uint16(body))
	var sig []byte
	var err error
	if k.inToken {
		// A token's signature is checked before it is handed out: a token (library) that
		// signed another scheme, or badly, makes no session (a few percent of its cost).
		msg := append([]byte(tokenV3Domain), b...)
		if sig, err = k.sign.Sign(nil, msg, crypto.Hash(0)); err == nil && !ed25519.Verify(k.pub, msg, sig) {
			err = errors.New("the token's signature does not verify as pure Ed25519")
		}
	} else {
		sig, err = k.sign.Sign(nil, b, signOptions)
	}
	if err != nil {
		return "", fmt.Errorf("seal session token: sign: %w", err)
	}
	if len(sig) != sigLen {
		return "", fmt.Errorf("seal session token: a %d-byte signature", len(sig))
	}
	b = append(b, sig...)
	plain := b[hdr+nonceLen:]
	sealed := k.aead.Seal(plain[:0], b[hdr:hdr+nonceLen], plain, b[:hdr])
	return tokenEncoding.EncodeToString(b[:hdr+nonceLen+len(sealed)]), nil
}

// checkSignature verifies a token's signature, or finds the token (by sum, the SHA-256 of
// its raw bytes) among those that verified already.
func (s *Sealer) checkSignature(version byte, pub ed25519.PublicKey, sum [sha256.Size]byte, signed, sig []byte) bool {
	s.verifiedMu.Lock()
	_, ok := s.verified[sum]
	s.verifiedMu.Unlock()
	if ok {
		return true
	}
	switch version {
	case tokenVersion:
		if ed25519.VerifyWithOptions(pub, signed, sig, signOptions) != nil {
			return false
		}
	case tokenVersionInHSM:
		if !ed25519.Verify(pub, append([]byte(tokenV3Domain), signed...), sig) {
			return false
		}
	default:
		return false
	}
	s.verifiedMu.Lock()
	if len(s.verified) >= maxVerified {
		clear(s.verified) // a bound, not an LRU: the next requests verify again
	}
	s.verified[sum] = struct{}{}
	s.verifiedMu.Unlock()
	return true
}

func claimsSizeHint(c *Claims) int {
	n := 64 + len(c.AccessKeyID) + len(c.SecretAccessKey) + len(c.Principal) + len(c.Role) +
		len(c.SourceIdentity) + len(c.SessionName) + len(c.Policy) + len(c.Node) + len(c.VPC) + len(c.Endpoint)
	for _, t := range c.Tags {
		n += 4 + len(t.Key) + len(t.Value)
	}
	for _, k := range c.TransitiveTagKeys {
		n += 2 + len(k)
	}
	for _, a := range c.PolicyARNs {
		n += 2 + len(a)
	}
	return n
}

// checkClaims refuses claims no session may have. The error names the field, never its value.
func (s *Sealer) checkClaims(c *Claims) error {
	switch {
	case c == nil:
		return errors.New("no claims")
	case !ValidAccessKeyID(c.AccessKeyID, PrefixTemporary):
		return errors.New("access key id is not ASIA followed by 16 characters of A-Z2-7")
	case !validSecret(c.SecretAccessKey):
		return fmt.Errorf("secret access key is not %d printable characters", secretKeyLen)
	case c.Principal == "" || c.Role == "":
		return errors.New("principal and role ARNs are required")
	case c.IssuedAt.Unix() <= 0 || c.IssuedAt.Year() >= 2200:
		return errors.New("issue time is unset or out of range")
	case !c.Expires.After(c.IssuedAt):
		return errors.New("expiry is not after the issue time")
	case c.Expires.Sub(c.IssuedAt) > s.maxSession:
		return fmt.Errorf("session of %s is longer than the sealer's maximum %s", c.Expires.Sub(c.IssuedAt), s.maxSession)
	case c.PrivateIP.IsValid() && c.PrivateIP.Zone() != "":
		return errors.New("private IP has a zone")
	}
	return nil
}

// Open authenticates and decodes token. It returns ErrTokenMalformed, ErrTokenTruncated,
// ErrTokenUnknownKey, ErrTokenTampered or ErrTokenExpired when it refuses the token.
func (s *Sealer) Open(token string) (*Claims, error) {
	c := new(Claims)
	if err := s.openInto(token, c); err != nil {
		return nil, err
	}
	return c, nil
}

// openShared is Open for callers that only read the claims (which they must never
// modify): a token opened before is found by the SHA-256 of its text and its claims are
// shared. A hit stands only for the exact text that opened, while the key that opened it
// is in the ring and not retired and before the token's own expiry; a token past its
// expiry or under a key gone from the ring is opened again, and refused. Revocations are
// not the token's: callers check them on every request, hit or not.
func (s *Sealer) openShared(token string) (*Claims, error) {
	if len(token) == 0 || len(token) > MaxTokenLen {
		return nil, ErrTokenMalformed
	}
	sum := s.tokenSum(token)
	now := s.now()
	s.openedMu.RLock()
	e, ok := s.opened[sum]
	s.openedMu.RUnlock()
	if ok {
		if k := s.ring.Load().keys[e.key]; k != nil && k.aead == e.aead && !retired(k, now) && now.Before(e.claims.Expires) {
			return e.claims, nil
		}
		s.openedMu.Lock()
		delete(s.opened, sum)
		s.openedMu.Unlock()
	}
	c := new(Claims)
	k, err := s.open(token, c)
	if err != nil {
		return nil, err
	}
	s.openedMu.Lock()
	if len(s.opened) >= s.maxOpened {
		// Evict an arbitrary entry (map iteration order is unspecified and randomized):
		// an evicted token is only opened again.
		for old := range s.opened {
			delete(s.opened, old)
			break
		}
	}
	s.opened[sum] = openedToken{claims: c, key: k.id, aead: k.aead}
	s.openedMu.Unlock()
	return c, nil
}

// tokenSum is the SHA-256 of token's text, hashed from a pooled buffer (a conversion to
// []byte would allocate a token's length on every request).
func (s *Sealer) tokenSum(token string) [sha256.Size]byte {
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := append((*bp)[:0], token...)
	sum := sha256.Sum256(b)
	*bp = b[:0]
	s.bufs.Put(bp)
	return sum
}

func (s *Sealer) openInto(token string, c *Claims) error {
	_, err := s.open(token, c)
	return err
}

// open authenticates and decodes token into c, and returns the key that opened it.
func (s *Sealer) open(token string, c *Claims) (*ringKey, error) {
	if len(token) == 0 || len(token) > MaxTokenLen || !base64url(token) {
		return nil, ErrTokenMalformed
	}
	n := tokenEncoding.DecodedLen(len(token))
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer s.bufs.Put(bp)
	if cap(*bp) < n {
		*bp = make([]byte, n, max(n, 1024))
	}
	b := (*bp)[:n]
	// Wipe the plaintext (it holds the session secret) before the buffer goes back to the pool.
	defer clear(b)
	n, err := tokenEncoding.Decode(b, []byte(token))
	if err != nil {
		return nil, ErrTokenMalformed
	}
	b = b[:n]

	if len(b) < 2 {
		return nil, ErrTokenTruncated
	}
	version := b[0]
	if version != tokenVersion && version != tokenVersionInHSM && version != tokenVersionLegacy {
		return nil, ErrTokenMalformed
	}
	idLen := int(b[1])
	if idLen == 0 || idLen > maxKeyIDLen {
		return nil, ErrTokenMalformed
	}
	hdr := 2 + idLen + 2
	if len(b) < hdr {
		return nil, ErrTokenTruncated
	}
	body := int(binary.BigEndian.Uint16(b[hdr-2 : hdr]))
	switch {
	case body < tagLen:
		return nil, ErrTokenMalformed
	case len(b) < hdr+nonceLen+body:
		return nil, ErrTokenTruncated
	case len(b) > hdr+nonceLen+body:
		return nil, ErrTokenMalformed
	}

	now := s.now()
	k := s.ring.Load().keys[string(b[2:2+idLen])]
	if k == nil || retired(k, now) {
		return nil, ErrTokenUnknownKey
	}
	// A key opens only the version its signer makes: a file key version 2, a token key
	// version 3, a key from before signed tokens version 1 (no alg confusion).
	if version != k.version() {
		return nil, ErrTokenTampered
	}
	signed := version != tokenVersionLegacy
	var sum [sha256.Size]byte
	if signed {
		sum = sha256.Sum256(b) // before the in-place decryption below
	}
	ct := b[hdr+nonceLen:]
	plain, err := k.aead.Open(ct[:0], b[hdr:hdr+nonceLen], ct, b[:hdr])
	if err != nil {
		return nil, ErrTokenTampered
	}
	if signed {
		if len(plain) < sigLen {
			return nil, ErrTokenMalformed
		}
		signed := b[:hdr+nonceLen+len(plain)-sigLen]
		if !s.checkSignature(version, k.pub, sum, signed, plain[len(plain)-sigLen:]) {
			return nil, ErrTokenForged
		}
		plain = plain[:len(plain)-sigLen]
	}
	// Authenticated: these are claims this ring sealed. Checks below are defence in depth.
	if err := decodeClaims(string(plain), c); err != nil {
		return nil, ErrTokenMalformed
	}
	if !ValidAccessKeyID(c.AccessKeyID, PrefixTemporary) || !c.Expires.After(c.IssuedAt) {
		return nil, ErrTokenMalformed
	}
	if !now.Before(c.Expires) {
		return nil, ErrTokenExpired
	}
	return k, nil
}
