package identity

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

func TestSealOpenRoundTrip(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c, testKey("k1", 1, t0))
	v6 := fullClaims(t0)
	v6.PrivateIP = netip.MustParseAddr("fd00::1:2")
	subNano := minimalClaims(t0.Add(123456789 * time.Nanosecond))
	for _, tc := range []struct {
		name   string
		claims *Claims
	}{
		{"every field set (AssumeRole from a node through an endpoint)", fullClaims(t0)},
		{"only required fields: empty lists decode as nil", minimalClaims(t0)},
		{"IPv6 private address", v6},
		{"issue time keeps nanoseconds (revocation compares exact instants)", subNano},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := s.Seal(tc.claims)
			if err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(tok, "+/=") {
				t.Errorf("token %q is not unpadded base64url", tok)
			}
			got, err := s.Open(tok)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.claims) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.claims)
			}
		})
	}
}

func TestSealIsRandomized(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c, testKey("k1", 1, t0))
	a, _ := s.Seal(fullClaims(t0))
	b, _ := s.Seal(fullClaims(t0))
	if a == b {
		t.Fatal("two seals of the same claims gave the same token: nonces repeat")
	}
}

func TestSealRejectsClaims(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c, testKey("k1", 1, t0))
	for _, tc := range []struct {
		name string
		mod  func(*Claims)
	}{
		{"long-term access key id (sessions are ASIA)", func(c *Claims) { c.AccessKeyID = "AKIAQ2B3C4D5E6F7G2H3" }},
		{"access key id with a lower-case character", func(c *Claims) { c.AccessKeyID = "ASIAq2B3C4D5E6F7G2H3" }},
		{"secret of 39 characters", func(c *Claims) { c.SecretAccessKey = c.SecretAccessKey[1:] }},
		{"no principal", func(c *Claims) { c.Principal = "" }},
		{"no role", func(c *Claims) { c.Role = "" }},
		{"no issue time", func(c *Claims) { c.IssuedAt = time.Time{} }},
		{"expiry equals issue time", func(c *Claims) { c.Expires = c.IssuedAt }},
		{"session longer than 36h (rotated keys would retire before it expires)", func(c *Claims) { c.Expires = c.IssuedAt.Add(36*time.Hour + time.Second) }},
		{"zoned private IP", func(c *Claims) { c.PrivateIP = netip.MustParseAddr("fe80::1%eth0") }},
		{"token over 16 KiB", func(c *Claims) { c.Policy = strings.Repeat("x", MaxTokenLen) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := fullClaims(t0)
			tc.mod(cl)
			tok, err := s.Seal(cl)
			if err == nil {
				t.Fatalf("sealed %d-char token, want an error", len(tok))
			}
			if strings.Contains(err.Error(), cl.SecretAccessKey) {
				t.Errorf("error %q carries the secret", err)
			}
		})
	}
	if _, err := s.Seal(nil); err == nil {
		t.Error("sealed nil claims")
	}
	empty := newTestSealer(t, c)
	if _, err := empty.Seal(fullClaims(t0)); err == nil {
		t.Error("sealed with an empty ring")
	}
}

// tokenBytes decodes a token for surgery; retoken re-encodes.
func tokenBytes(t testing.TB, tok string) []byte {
	t.Helper()
	b, err := tokenEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func retoken(b []byte) string { return tokenEncoding.EncodeToString(b) }

func TestOpenRejects(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c, testKey("k1", 1, t0))
	good, err := s.Seal(fullClaims(t0))
	if err != nil {
		t.Fatal(err)
	}
	raw := tokenBytes(t, good)
	with := func(f func(b []byte) []byte) string {
		b := append([]byte(nil), raw...)
		return retoken(f(b))
	}
	otherRing := newTestSealer(t, c, testKey("k1", 2, t0)) // same id, different key bytes
	forged, _ := otherRing.Seal(fullClaims(t0))
	unknownRing := newTestSealer(t, c, testKey("k9", 1, t0))
	unknown, _ := unknownRing.Seal(fullClaims(t0))

	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", ErrTokenMalformed},
		{"over 16 KiB", strings.Repeat("A", MaxTokenLen+1), ErrTokenMalformed},
		{"standard base64 alphabet", strings.Replace(good, good[10:11], "+", 1), ErrTokenMalformed},
		{"padding", good + "==", ErrTokenMalformed},
		{"newline inside (encoding/base64 would skip it)", good[:40] + "\n" + good[40:], ErrTokenMalformed},
		{"CRLF at the end", good + "\r\n", ErrTokenMalformed},
		{"non-canonical last character (strict base64: one spelling per token)", good[:len(good)-1] + nonCanonicalLast(good), ErrTokenMalformed},
		{"version 3 (a token key's) under a file key", with(func(b []byte) []byte { b[0] = 3; return b }), ErrTokenTampered},
		{"version 4", with(func(b []byte) []byte { b[0] = 4; return b }), ErrTokenMalformed},
		{"version 1 (unsigned) under a signed key", with(func(b []byte) []byte { b[0] = 1; return b }), ErrTokenTampered},
		{"version 0", with(func(b []byte) []byte { b[0] = 0; return b }), ErrTokenMalformed},
		{"key id length 0", with(func(b []byte) []byte { b[1] = 0; return b }), ErrTokenMalformed},
		{"key id length 33", with(func(b []byte) []byte { b[1] = 33; return b }), ErrTokenMalformed},
		{"only the version byte", retoken(raw[:1]), ErrTokenTruncated},
		{"header cut inside the key id", retoken(raw[:3]), ErrTokenTruncated},
		{"cut inside the nonce", retoken(raw[:10]), ErrTokenTruncated},
		{"last byte missing (tag cut)", retoken(raw[:len(raw)-1]), ErrTokenTruncated},
		{"trailing byte", with(func(b []byte) []byte { return append(b, 0) }), ErrTokenMalformed},
		{"body length below a tag", with(func(b []byte) []byte { binary.BigEndian.PutUint16(b[4:6], 15); return b }), ErrTokenMalformed},
		{"key id not in the ring", unknown, ErrTokenUnknownKey},
		{"same key id, other key bytes (forgery)", forged, ErrTokenTampered},
		{"nonce bit flipped", with(func(b []byte) []byte { b[7] ^= 1; return b }), ErrTokenTampered},
		{"ciphertext bit flipped", with(func(b []byte) []byte { b[30] ^= 0x80; return b }), ErrTokenTampered},
		{"tag bit flipped", with(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrTokenTampered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Open(tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, %v; want %v", got, err, tc.want)
			}
			if got != nil {
				t.Error("claims returned with an error")
			}
			if !errors.Is(err, sigv4.ErrInvalidToken) {
				t.Errorf("%v does not match sigv4.ErrInvalidToken (the verifier maps it to InvalidClientTokenId)", err)
			}
		})
	}
}

// nonCanonicalLast returns a base64url character decoding to the same bytes as tok's last
// character under a lenient decoder but with non-zero padding bits.
func nonCanonicalLast(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	switch len(tok) % 4 {
	case 2: // 4 padding bits
		return string(alphabet[last|1])
	case 3: // 2 padding bits
		return string(alphabet[last|1])
	}
	return "" // no padding bits: drop the last character (also malformed: 4n+1 characters or truncated)
}

func TestOpenExpiry(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c, testKey("k1", 1, t0))
	tok, _ := s.Seal(minimalClaims(t0)) // 15 minutes
	c.Advance(15*time.Minute - time.Nanosecond)
	if _, err := s.Open(tok); err != nil {
		t.Fatalf("one nanosecond before expiry: %v", err)
	}
	c.Advance(time.Nanosecond)
	_, err := s.Open(tok)
	if !errors.Is(err, ErrTokenExpired) || !errors.Is(err, sigv4.ErrExpiredToken) {
		t.Fatalf("at expiry: %v, want ErrTokenExpired matching sigv4.ErrExpiredToken", err)
	}
}

// TestTamperEveryByte flips bits in every byte of a token and checks the refusal each
// position class must give.
func TestTamperEveryByte(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c, testKey("k1", 1, t0), testKey("k2", 2, t0.Add(-time.Hour)))
	tok, _ := s.Seal(fullClaims(t0))
	raw := tokenBytes(t, tok)
	idLen := int(raw[1])
	hdr := 2 + idLen + 2
	class := func(i int) (string, []error) {
		switch {
		case i == 0:
			return "version", []error{ErrTokenMalformed, ErrTokenTampered} // 1 and 3 name another key kind
		case i == 1:
			return "key id length", []error{ErrTokenMalformed, ErrTokenTruncated, ErrTokenUnknownKey}
		case i < 2+idLen:
			return "key id", []error{ErrTokenUnknownKey, ErrTokenTampered} // k1 -> k2 is in the ring: GCM fails
		case i < hdr:
			return "body length", []error{ErrTokenTruncated, ErrTokenMalformed}
		case i < hdr+nonceLen:
			return "nonce", []error{ErrTokenTampered}
		case i < len(raw)-tagLen:
			return "ciphertext", []error{ErrTokenTampered}
		default:
			return "tag", []error{ErrTokenTampered}
		}
	}
	for i := range raw {
		name, want := class(i)
		for _, mask := range []byte{0x01, 0x02, 0x40, 0x80, 0xff} {
			b := append([]byte(nil), raw...)
			b[i] ^= mask
			_, err := s.Open(retoken(b))
			ok := false
			for _, w := range want {
				ok = ok || errors.Is(err, w)
			}
			if !ok {
				t.Errorf("byte %d (%s) ^ %#x: Open error %v, want one of %v", i, name, mask, err, want)
			}
		}
	}
	// Any single-character change of the encoded token is refused too.
	for i := 0; i < len(tok); i++ {
		for _, r := range []byte{'A', 'z', '-', '_', '7'} {
			if tok[i] == r {
				continue
			}
			mod := tok[:i] + string(r) + tok[i+1:]
			if _, err := s.Open(mod); err == nil {
				t.Fatalf("token with character %d changed to %q was accepted", i, r)
			}
		}
	}
	// Every truncation is refused: a prefix that is valid base64url is a token cut short
	// (truncated); one that is not (4n+1 characters, non-zero padding bits) is malformed.
	for n := 0; n < len(tok); n++ {
		_, err := s.Open(tok[:n])
		want := ErrTokenMalformed
		if _, derr := tokenEncoding.DecodeString(tok[:n]); derr == nil && n > 0 {
			want = ErrTokenTruncated
		}
		if !errors.Is(err, want) {
			t.Fatalf("token cut to %d characters: %v, want %v", n, err, want)
		}
	}
}

func TestRotation(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c)
	if err := s.Rotate(testKey("k1", 1, t0)); err != nil {
		t.Fatal(err)
	}
	old, _ := s.Seal(fullClaims(t0)) // expires t0+1h

	c.Advance(10 * time.Minute)
	if err := s.Rotate(testKey("k2", 2, c.Now())); err != nil {
		t.Fatal(err)
	}
	if got := s.CurrentKeyID(); got != "k2" {
		t.Fatalf("current key %q after rotation, want k2", got)
	}
	if _, err := s.Open(old); err != nil {
		t.Fatalf("token sealed before rotation: %v", err)
	}
	fresh, _ := s.Seal(fullClaims(c.Now()))
	if id := string(tokenBytes(t, fresh)[2:4]); id != "k2" {
		t.Fatalf("new token sealed with %q, want k2", id)
	}
	if err := s.Rotate(testKey("k2", 3, c.Now())); err == nil {
		t.Error("rotating in a key id already in the ring succeeded")
	}

	// k1 stays until rotation time + 36h, however often keys rotate meanwhile.
	c.Advance(time.Hour)
	if err := s.Rotate(testKey("k3", 3, c.Now())); err != nil {
		t.Fatal(err)
	}
	if got := len(s.KeyIDs()); got != 3 {
		t.Fatalf("ring has %d keys, want 3 (k1 and k2 not yet retired)", got)
	}
	c.Advance(DefaultMaxSessionDuration)
	if err := s.Rotate(testKey("k4", 4, c.Now())); err != nil {
		t.Fatal(err)
	}
	ids := s.KeyIDs()
	if len(ids) != 2 {
		t.Fatalf("ring %v, want k3 (retiring) and k4: k1 and k2 retired", ids)
	}
	if _, err := s.Open(old); !errors.Is(err, ErrTokenUnknownKey) {
		t.Fatalf("token of a rotated-out key: %v, want ErrTokenUnknownKey", err)
	}
}

// TestRetiredKeyRefusedBeforePrune: a key past RetireAfter opens nothing even while still
// listed (the store may not have deleted it yet), and that is not reported as expiry.
func TestRetiredKeyRefusedBeforePrune(t *testing.T) {
	c := newClock(t0)
	sealerK1 := newTestSealer(t, c, testKey("k1", 1, t0))
	tok, _ := sealerK1.Seal(fullClaims(t0)) // valid until t0+1h

	k1 := testKey("k1", 1, t0)
	k1.RetireAfter = t0.Add(30 * time.Minute)
	s := newTestSealer(t, c, k1, testKey("k2", 2, t0.Add(time.Minute)))
	if _, err := s.Open(tok); err != nil {
		t.Fatalf("before retirement: %v", err)
	}
	c.Advance(30 * time.Minute)
	if _, err := s.Open(tok); !errors.Is(err, ErrTokenUnknownKey) {
		t.Fatalf("after retirement: %v, want ErrTokenUnknownKey", err)
	}
}

func TestSetKeys(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c)
	retiredLong := testKey("k0", 9, t0.Add(-72*time.Hour))
	retiredLong.RetireAfter = t0.Add(-time.Hour)
	if err := s.SetKeys([]SealingKey{testKey("k2", 2, t0), testKey("k1", 1, t0.Add(-time.Hour)), retiredLong}); err != nil {
		t.Fatal(err)
	}
	if got := s.CurrentKeyID(); got != "k2" {
		t.Errorf("current %q, want the newest unretired key k2", got)
	}
	if got := len(s.KeyIDs()); got != 2 {
		t.Errorf("ring has %d keys, want 2 (k0 retired)", got)
	}
	for _, tc := range []struct {
		name string
		keys []SealingKey
	}{
		{"same id with other key bytes (a store bug or an attack: keep the old ring)", []SealingKey{testKey("k2", 7, t0)}},
		{"duplicate id", []SealingKey{testKey("k3", 3, t0), testKey("k3", 3, t0)}},
		{"16-byte key", []SealingKey{{ID: "k5", Key: make([]byte, 16), CreatedAt: t0}}},
		{"empty id", []SealingKey{{ID: "", Key: make([]byte, 32), CreatedAt: t0}}},
		{"id with a slash", []SealingKey{{ID: "a/b", Key: make([]byte, 32), CreatedAt: t0}}},
		{"id of 33 characters", []SealingKey{{ID: strings.Repeat("a", 33), Key: make([]byte, 32), CreatedAt: t0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.SetKeys(tc.keys); err == nil {
				t.Fatal("accepted")
			}
			if got := s.CurrentKeyID(); got != "k2" {
				t.Errorf("ring changed on error: current %q", got)
			}
		})
	}
}

// TestConcurrentSealOpenRotate runs readers against ring swaps; run with -race.
func TestConcurrentSealOpenRotate(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c, testKey("k0", 1, t0))
	first, _ := s.Seal(fullClaims(t0))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok, err := s.Seal(fullClaims(t0))
				if err != nil {
					errs <- err
					return
				}
				for _, tk := range []string{tok, first} {
					if _, err := s.Open(tk); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	for i := 1; i <= 50; i++ {
		k := testKey("k"+string(rune('a'+i%26))+string(rune('a'+i/26)), byte(i), t0.Add(time.Duration(i)*time.Second))
		if err := s.Rotate(k); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A process holding a key's opening half only (a gateway: keys.StoreTokenKeys, not
// keys.StoreTokenSigning) opens every token STS seals and can make none: Seal refuses, and
// a token it encrypts itself with the AES key, however well formed, is refused as forged.
func TestOpenOnlyCannotMint(t *testing.T) {
	c := newClock(t0)
	k := testKey("k1", 1, t0)
	sts := newTestSealer(t, c, k)
	gw := newTestSealer(t, c, openOnly(k))
	tok, err := sts.Seal(fullClaims(t0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gw.Open(tok); err != nil {
		t.Fatalf("the gateway cannot open STS's token: %v", err)
	}
	if gw.CanSeal() || !sts.CanSeal() {
		t.Fatalf("CanSeal: gateway %v, STS %v", gw.CanSeal(), sts.CanSeal())
	}
	if _, err := gw.Seal(fullClaims(t0)); err == nil {
		t.Fatal("a sealer without the signing key sealed a token")
	}
	// The gateway's best forgery: STS's format, its own claims, encrypted under the AES key
	// it holds, signed with a key of its own (or with none, or with the public key).
	forge := func(signer ed25519.PrivateKey, version byte, withSig bool) string {
		b := []byte{version, byte(len(k.ID))}
		b = append(b, k.ID...)
		b = append(b, 0, 0)
		hdr := len(b)
		b = append(b, make([]byte, nonceLen)...)
		claims := fullClaims(t0)
		claims.Role = "arn:aws:iam::123456789012:role/admin"
		b = appendClaims(b, claims)
		body := len(b) - hdr - nonceLen + tagLen
		if withSig {
			body += sigLen
		}
		binary.BigEndian.PutUint16(b[hdr-2:hdr], uint16(body))
		if withSig {
			sig, _ := signer.Sign(nil, b, signOptions)
			b = append(b, sig...)
		}
		block, _ := aes.NewCipher(k.Key)
		aead, _ := cipher.NewGCM(block)
		plain := b[hdr+nonceLen:]
		sealed := aead.Seal(plain[:0], b[hdr:hdr+nonceLen], plain, b[:hdr])
		return retoken(b[:hdr+nonceLen+len(sealed)])
	}
	own := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	for name, tc := range map[string]struct {
		tok  string
		want error
	}{
		"signed with another key":            {forge(own, tokenVersion, true), ErrTokenForged},
		"signed with the public key as seed": {forge(ed25519.NewKeyFromSeed(k.PublicKey), tokenVersion, true), ErrTokenForged},
		"unsigned, as version 1":             {forge(nil, tokenVersionLegacy, false), ErrTokenTampered},
		"version 2 without a signature":      {forge(nil, tokenVersion, false), ErrTokenForged},
	} {
		for who, s := range map[string]*Sealer{"gateway": gw, "STS": sts} {
			if _, err := s.Open(tc.tok); !errors.Is(err, tc.want) {
				t.Errorf("%s: %s opened it: err %v, want %v", name, who, err, tc.want)
			}
		}
	}
	// The genuine one, checked through the cache on its second use, still opens; the
	// cache does not carry a forgery that shares its nonce and key.
	for range 2 {
		if _, err := gw.Open(tok); err != nil {
			t.Fatal(err)
		}
	}
}

// Sessions sealed before signed tokens (version 1, under a key without a public key) keep
// opening until their key retires; a key made since opens no version 1 token.
func TestLegacyTokensUnderLegacyKeys(t *testing.T) {
	c := newClock(t0)
	old := legacyKey(testKey("old", 1, t0.Add(-time.Hour)))
	s := newTestSealer(t, c, old)
	if s.CanSeal() {
		t.Fatal("a key from before signed tokens seals")
	}
	legacy := sealLegacy(t, old, fullClaims(t0))
	if _, err := s.Open(legacy); err != nil {
		t.Fatalf("a session from before the upgrade: %v", err)
	}
	// Rotated: the new key signs; the old one still opens its tokens.
	if err := s.Rotate(testKey("new", 2, t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(legacy); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	tok, err := s.Seal(fullClaims(t0))
	if err != nil {
		t.Fatal(err)
	}
	raw := tokenBytes(t, tok)
	raw[0] = tokenVersionLegacy
	if _, err := s.Open(retoken(raw)); !errors.Is(err, ErrTokenTampered) {
		t.Fatalf("a version 1 token under the signed key: %v", err)
	}
}

// sealLegacy seals c as a Phantom before signed tokens did (version 1, no signature).
func sealLegacy(t testing.TB, k SealingKey, c *Claims) string {
	t.Helper()
	b := []byte{tokenVersionLegacy, byte(len(k.ID))}
	b = append(b, k.ID...)
	b = append(b, 0, 0)
	hdr := len(b)
	b = append(b, make([]byte, nonceLen)...)
	b = appendClaims(b, c)
	binary.BigEndian.PutUint16(b[hdr-2:hdr], uint16(len(b)-hdr-nonceLen+tagLen))
	block, err := aes.NewCipher(k.Key)
	if err != nil {
		t.Fatal(err)
	}
	aead, _ := cipher.NewGCM(block)
	plain := b[hdr+nonceLen:]
	sealed := aead.Seal(plain[:0], b[hdr:hdr+nonceLen], plain, b[:hdr])
	return retoken(b[:hdr+nonceLen+len(sealed)])
}
