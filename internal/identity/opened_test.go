package identity

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

func openedLen(s *Sealer) int {
	s.openedMu.RLock()
	defer s.openedMu.RUnlock()
	return len(s.opened)
}

// A token opened once is found again by its exact text; a token differing from it in any
// one character is not (it is opened, and refused), and adds nothing to the cache.
func TestOpenSharedExactText(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c, testKey("k1", 1, t0))
	tok, err := s.Seal(fullClaims(t0))
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.openShared(tok)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.openShared(tok)
	if err != nil || again != first {
		t.Fatalf("second open: %p %v, want the cached claims %p", again, err, first)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range len(tok) {
		for _, d := range []byte{alphabet[(indexByte(alphabet, tok[i])+1)%64], '=', '\n'} {
			forged := tok[:i] + string(d) + tok[i+1:]
			if got, err := s.openShared(forged); err == nil {
				t.Fatalf("character %d changed to %q: opened as %+v", i, d, got)
			}
		}
	}
	if n := openedLen(s); n != 1 {
		t.Fatalf("%d tokens cached, want the one genuine token", n)
	}
}

func indexByte(s string, b byte) int {
	for i := range len(s) {
		if s[i] == b {
			return i
		}
	}
	return -1
}

// A cached token is refused from its expiry on, as Open refuses it.
func TestOpenSharedExpiry(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c, testKey("k1", 1, t0))
	tok, _ := s.Seal(minimalClaims(t0)) // 15 minutes
	if _, err := s.openShared(tok); err != nil {
		t.Fatal(err)
	}
	c.Advance(15*time.Minute - time.Nanosecond)
	if _, err := s.openShared(tok); err != nil {
		t.Fatalf("one nanosecond before expiry: %v", err)
	}
	c.Advance(time.Nanosecond)
	if _, err := s.openShared(tok); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("cached token at expiry: %v, want ErrTokenExpired", err)
	}
	if n := openedLen(s); n != 0 {
		t.Fatalf("%d tokens cached after expiry", n)
	}
}

// A cached token stands only while the very key that opened it is in the ring: retired,
// dropped, or replaced by another key under the same id, the token is refused.
func TestOpenSharedKeyGone(t *testing.T) {
	k1, k2 := testKey("k1", 1, t0), testKey("k2", 2, t0.Add(time.Minute))
	tests := []struct {
		name string
		ring func() []SealingKey
		want error
	}{
		{"retired", func() []SealingKey {
			r := k1
			r.RetireAfter = t0.Add(3 * time.Second) // in the ring until then
			return []SealingKey{r, k2}
		}, ErrTokenUnknownKey},
		{"dropped", func() []SealingKey { return []SealingKey{k2} }, ErrTokenUnknownKey},
		{"another key under its id", func() []SealingKey {
			other := testKey("k1", 9, t0)
			return []SealingKey{other, k2}
		}, ErrTokenTampered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock(t0)
			s := newTestSealer(t, c, k1)
			tok, err := s.Seal(minimalClaims(t0))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.openShared(tok); err != nil {
				t.Fatal(err)
			}
			c.Advance(2 * time.Second)
			if tt.name == "another key under its id" {
				// The ring refuses new bytes under a known id: drop k1 first.
				if err := s.SetKeys([]SealingKey{k2}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.SetKeys(tt.ring()); err != nil {
				t.Fatal(err)
			}
			c.Advance(2 * time.Second)
			if got, err := s.openShared(tok); !errors.Is(err, tt.want) {
				t.Fatalf("cached token after its key was %s: %+v %v, want %v", tt.name, got, err, tt.want)
			}
		})
	}
}

// The cache holds at most maxOpened tokens; an evicted token opens again.
func TestOpenSharedBounded(t *testing.T) {
	c := newClock(t0)
	s := newTestSealer(t, c, testKey("k1", 1, t0))
	s.maxOpened = 8
	var toks []string
	for range 3 * s.maxOpened {
		tok, err := s.Seal(minimalClaims(t0)) // a random nonce: a new token each time
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
		if _, err := s.openShared(tok); err != nil {
			t.Fatal(err)
		}
		if n := openedLen(s); n > s.maxOpened {
			t.Fatalf("%d tokens cached, bound %d", n, s.maxOpened)
		}
	}
	for i, tok := range toks {
		if _, err := s.openShared(tok); err != nil {
			t.Fatalf("token %d after eviction: %v", i, err)
		}
	}
}

// Revocation is checked on every lookup: a session whose token is cached is refused on
// its next call after its role's sessions (or its node's) are revoked.
func TestRevokeCachedSession(t *testing.T) {
	ctx := context.Background()
	c := newClock(t0)
	st := newFakeStore()
	st.putNode(store.Node{Name: "web-1", Role: "app", CertSerial: "01", EnrolledAt: t0.Add(-time.Hour)})
	s := newTestService(t, st, c)
	sess, tok := sessionFor(t, s, "app-writer")
	node, nodeTok := nodeSession(t, s, "web-1")
	for _, k := range []struct{ id, tok string }{{sess.AccessKeyID, tok}, {node.AccessKeyID, nodeTok}} {
		for range 2 {
			if _, err := s.LookupCredential(ctx, k.id, k.tok); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.Advance(time.Millisecond)
	if _, err := s.RevokeSessions(ctx, "app-writer"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupCredential(ctx, sess.AccessKeyID, tok); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("cached session after its role's sessions were revoked: %v", err)
	}
	if _, err := s.RevokeNode(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupCredential(ctx, node.AccessKeyID, nodeTok); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("cached session after its node was revoked: %v", err)
	}
	// The access key id is still matched against the token's on every lookup.
	if _, err := s.LookupCredential(ctx, node.AccessKeyID, tok); !errors.Is(err, ErrTokenMismatch) {
		t.Fatalf("another session's cached token: %v", err)
	}
}
