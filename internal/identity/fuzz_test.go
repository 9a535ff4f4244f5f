package identity

import (
	"math/rand/v2"
	"testing"
	"time"
)

// FuzzOpen: Open never panics, and it accepts only tokens this ring sealed. GCM forgery is
// infeasible and the encoding is strict, so an accepted input must be one of the seeds
// byte for byte. Nonces come from a seeded generator so that every fuzzing worker process
// seals the same seed tokens.
func FuzzOpen(f *testing.F) {
	c := newClock(t0)
	deterministic := func(seed byte, keys ...SealingKey) *Sealer {
		s, err := NewSealer(SealerConfig{Now: c.Now, Rand: rand.NewChaCha8([32]byte{seed})})
		if err != nil {
			f.Fatal(err)
		}
		if err := s.SetKeys(keys); err != nil {
			f.Fatal(err)
		}
		return s
	}
	// k3 signs in a token (version 3), with the same key pair as k2 (version 2): the ring
	// opens each only in its own scheme.
	tok := newFakeToken()
	k3 := inToken(tok, testKey("k3", 2, t0.Add(-2*time.Hour)))
	sealer := deterministic(1, testKey("k1", 1, t0), testKey("k2", 2, t0.Add(-time.Hour)), k3)
	k2Only := deterministic(2, testKey("k2", 2, t0)) // seals under k2, still in the ring
	k3Only, err := NewSealer(SealerConfig{Now: c.Now, Rand: rand.NewChaCha8([32]byte{3}), TokenKeys: tok})
	if err != nil {
		f.Fatal(err)
	}
	if err := k3Only.SetKeys([]SealingKey{k3}); err != nil {
		f.Fatal(err)
	}
	sealed := map[string]bool{}
	for _, s := range []*Sealer{sealer, k2Only, k3Only} {
		for _, cl := range []*Claims{fullClaims(t0), minimalClaims(t0)} {
			tok, err := s.Seal(cl)
			if err != nil {
				f.Fatal(err)
			}
			sealed[tok] = true
			f.Add(tok)
			f.Add(tok[:len(tok)/2])
			f.Add(tok + "A")
		}
	}
	f.Add("")
	f.Add("AQJrMQ")
	f.Add("AQJrMQAA")
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := sealer.Open(token)
		if err != nil {
			if claims != nil {
				t.Fatal("claims returned with an error")
			}
			return
		}
		if !sealed[token] {
			t.Fatalf("accepted a token the ring never sealed: %q", token)
		}
	})
}

// FuzzDecodeClaims: the claims decoder never panics and accepts only canonical encodings
// (decode then encode gives the input back). It reads only authenticated plaintext, so this
// is defence in depth.
func FuzzDecodeClaims(f *testing.F) {
	f.Add(appendClaims(nil, fullClaims(t0)))
	f.Add(appendClaims(nil, minimalClaims(t0)))
	f.Add(tagCountPrefix(1 << 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Claims
		if err := decodeClaims(string(b), &c); err != nil {
			return
		}
		if again := appendClaims(nil, &c); string(again) != string(b) {
			t.Fatalf("decoded claims re-encode differently:\n in %x\nout %x", b, again)
		}
	})
}
