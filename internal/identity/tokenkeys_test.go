package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"errors"
	"io"
	"testing"
	"time"
)

// pureSigner is a token's Ed25519 key as hsm.Ed25519Key is: pure Ed25519 only.
type pureSigner struct{ k ed25519.PrivateKey }

func (p pureSigner) Public() crypto.PublicKey { return p.k.Public() }
func (p pureSigner) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if o, ok := opts.(*ed25519.Options); opts.HashFunc() != 0 || ok && (o.Context != "" || o.Hash != 0) {
		return nil, errors.New("pure Ed25519 only")
	}
	return ed25519.Sign(p.k, msg), nil
}

// fakeToken holds token-signing keys in memory, as a PKCS#11 token would.
type fakeToken struct{ keys map[string]ed25519.PrivateKey }

func newFakeToken() *fakeToken { return &fakeToken{keys: map[string]ed25519.PrivateKey{}} }

func (f *fakeToken) NewTokenSigningKey(context.Context) (crypto.Signer, error) {
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	f.keys[string(k.Public().(ed25519.PublicKey))] = k
	return pureSigner{k}, nil
}

func (f *fakeToken) TokenSigningKey(_ context.Context, pub ed25519.PublicKey) (crypto.Signer, error) {
	k, ok := f.keys[string(pub)]
	if !ok {
		return nil, errors.New("no such key in the token")
	}
	return pureSigner{k}, nil
}

// inToken is testKey with its signing key moved into tok: the store holds its public key.
func inToken(tok *fakeToken, k SealingKey) SealingKey {
	tok.keys[string(k.PublicKey)] = ed25519.NewKeyFromSeed(k.SigningSeed)
	k.SigningSeed, k.SignerInToken = nil, true
	return k
}

func tokenSealer(t *testing.T, c *clock, tok TokenSigningKeys, keys ...SealingKey) *Sealer {
	t.Helper()
	s, err := NewSealer(SealerConfig{Now: c.Now, TokenKeys: tok})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetKeys(keys); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenKeySeals: a key signing in a token seals version 3 tokens that a gateway (the
// AES key and the public key, no token) opens and cannot make; a process without the
// token, or whose token lacks the key, cannot seal with it.
func TestTokenKeySeals(t *testing.T) {
	c := newClock(t0)
	tok := newFakeToken()
	k := inToken(tok, testKey("k1", 1, t0))
	sts := tokenSealer(t, c, tok, k)
	if !sts.CanSeal() || !sts.CurrentInToken() {
		t.Fatalf("STS with the token: CanSeal %v, CurrentInToken %v", sts.CanSeal(), sts.CurrentInToken())
	}
	token, err := sts.Seal(fullClaims(t0))
	if err != nil {
		t.Fatal(err)
	}
	if v := tokenBytes(t, token)[0]; v != tokenVersionInHSM {
		t.Fatalf("version %d, want %d", v, tokenVersionInHSM)
	}
	gw := newTestSealer(t, c, k)
	got, err := gw.Open(token)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessKeyID != fullClaims(t0).AccessKeyID {
		t.Fatal("claims did not round-trip")
	}
	if gw.CanSeal() {
		t.Fatal("a gateway can seal with a token key")
	}
	if _, err := gw.Seal(fullClaims(t0)); err == nil {
		t.Fatal("a gateway sealed")
	}
	// A token that does not hold the current key: loading fails and leaves the ring.
	s := tokenSealer(t, c, newFakeToken())
	if err := s.SetKeys([]SealingKey{k}); err == nil {
		t.Fatal("loaded a current key its token does not hold")
	}
	if len(s.KeyIDs()) != 0 {
		t.Fatal("the ring changed on a failed load")
	}
	// A retired token key need not be in the token: only the current key seals.
	retired := inToken(newFakeToken(), testKey("k0", 3, t0.Add(-time.Hour)))
	retired.RetireAfter = t0.Add(time.Hour)
	if err := tokenSealer(t, c, tok, k, retired).SetKeys([]SealingKey{k, retired}); err != nil {
		t.Fatal(err)
	}
	// A reload where the key changes kind (file ↔ token) is refused.
	if err := sts.SetKeys([]SealingKey{testKey("k1", 1, t0)}); err == nil {
		t.Fatal("a token key reloaded as a file key")
	}
}

// TestTokenKeyAlgConfusion: a key opens only tokens of the scheme its signer makes. The
// same key pair, the same AES key and id, once a file key (Ed25519ctx, version 2) and
// once a token key (pure Ed25519 over tokenV3Domain, version 3): neither ring opens the
// other's token; and a gateway, which holds the AES key, cannot turn one scheme's token
// into the other's by rewriting its version (the signature then fails).
func TestTokenKeyAlgConfusion(t *testing.T) {
	c := newClock(t0)
	tok := newFakeToken()
	file := testKey("k1", 1, t0)
	hsmKey := inToken(tok, file)
	fileRing := newTestSealer(t, c, file)
	tokenRing := tokenSealer(t, c, tok, hsmKey)
	v2, err := fileRing.Seal(fullClaims(t0))
	if err != nil {
		t.Fatal(err)
	}
	v3, err := tokenRing.Seal(fullClaims(t0))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		ring  *Sealer
		token string
		want  error
	}{
		{"a file key's token under the token key", tokenRing, v2, ErrTokenTampered},
		{"a token key's token under the file key", fileRing, v3, ErrTokenTampered},
		{"a file key's token relabelled version 3 (resealed with the AES key)", tokenRing, reseal(t, file.Key, v2, tokenVersionInHSM), ErrTokenForged},
		{"a token key's token relabelled version 2 (resealed with the AES key)", fileRing, reseal(t, file.Key, v3, tokenVersion), ErrTokenForged},
		{"a token key's token relabelled version 1 (unsigned)", tokenRing, reseal(t, file.Key, v3, tokenVersionLegacy), ErrTokenTampered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.ring.Open(tc.token); !errors.Is(err, tc.want) {
				t.Fatalf("Open: %v, want %v", err, tc.want)
			}
		})
	}
	// Each opens its own.
	if _, err := fileRing.Open(v2); err != nil {
		t.Fatal(err)
	}
	if _, err := tokenRing.Open(v3); err != nil {
		t.Fatal(err)
	}
}

// reseal decrypts token with the AES key, sets its version and encrypts it again: what a
// holder of the AES key alone (a gateway) can do to a token.
func reseal(t *testing.T, key []byte, token string, version byte) string {
	t.Helper()
	b := tokenBytes(t, token)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	hdr := 2 + int(b[1]) + 2
	plain, err := aead.Open(nil, b[hdr:hdr+nonceLen], b[hdr+nonceLen:], b[:hdr])
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.Clone(b[:hdr+nonceLen])
	out[0] = version
	return retoken(aead.Seal(out, out[hdr:hdr+nonceLen], plain, out[:hdr]))
}

// ctxSigner is a token that signs Ed25519ctx when asked for pure Ed25519: the scheme
// SoftHSM2 would substitute the other way round.
type ctxSigner struct{ k ed25519.PrivateKey }

func (c ctxSigner) Public() crypto.PublicKey { return c.k.Public() }
func (c ctxSigner) Sign(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	return c.k.Sign(nil, msg, &ed25519.Options{Context: "x"})
}

type oneKey struct{ s crypto.Signer }

func (o oneKey) NewTokenSigningKey(context.Context) (crypto.Signer, error) { return o.s, nil }
func (o oneKey) TokenSigningKey(context.Context, ed25519.PublicKey) (crypto.Signer, error) {
	return o.s, nil
}

// TestTokenKeyWrongSchemeRefused: a token that returns a signature of another scheme
// makes no session.
func TestTokenKeyWrongSchemeRefused(t *testing.T) {
	k := testKey("k1", 1, t0)
	bad := ctxSigner{ed25519.NewKeyFromSeed(k.SigningSeed)}
	k.SigningSeed, k.SignerInToken = nil, true
	s := tokenSealer(t, newClock(t0), oneKey{bad}, k)
	if tok, err := s.Seal(fullClaims(t0)); err == nil {
		t.Fatalf("sealed %q with a signature of another scheme", tok)
	}
}
