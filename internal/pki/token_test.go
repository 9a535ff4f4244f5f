package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct{ t atomic.Int64 }

func newClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.t.Store(t.UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.t.Add(int64(d)) }

func newTokens(t *testing.T) (*Tokens, *MemoryTokenStore, *fakeClock) {
	t.Helper()
	clock := newClock(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	store := NewMemoryTokenStore()
	return NewTokens(TokensConfig{Now: clock.Now}, store), store, clock
}

func TestJoinTokenSingleUse(t *testing.T) {
	ctx := context.Background()
	tokens, store, _ := newTokens(t)
	tok, _, err := tokens.Create(ctx, "service-a-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := tokens.Redeem(ctx, tok)
	if err != nil || rec.Node != "service-a-1" {
		t.Fatalf("first redeem = %+v, %v", rec, err)
	}
	if _, err := tokens.Redeem(ctx, tok); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("second redeem = %v, want ErrTokenInvalid", err)
	}
	if len(store.tokens) != 0 {
		t.Errorf("store still holds %d tokens", len(store.tokens))
	}
}

func TestJoinTokenStoredAsHashOnly(t *testing.T) {
	ctx := context.Background()
	tokens, store, _ := newTokens(t)
	tok, _, err := tokens.Create(ctx, "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	id, secret, ok := parseToken(tok)
	if !ok {
		t.Fatalf("Create made an unparsable token %q", tok)
	}
	rec, ok := store.tokens[id]
	if !ok || len(store.tokens) != 1 {
		t.Fatalf("store = %v", store.tokens)
	}
	if rec.Hash != sha256.Sum256(secret) {
		t.Error("stored hash is not SHA-256 of the secret")
	}
	enc := base64.RawURLEncoding.EncodeToString(secret)
	if strings.Contains(rec.ID+rec.Node, enc) {
		t.Error("the store holds the secret")
	}
}

func TestJoinTokenConcurrentRedeemOnce(t *testing.T) {
	ctx := context.Background()
	tokens, _, _ := newTokens(t)
	tok, _, err := tokens.Create(ctx, "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tokens.Redeem(ctx, tok); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, ErrTokenInvalid) {
				t.Errorf("losing redeem: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d redemptions succeeded, want 1", wins.Load())
	}
}

func TestJoinTokenExpiry(t *testing.T) {
	ctx := context.Background()
	tokens, store, clock := newTokens(t)
	tok, expires, err := tokens.Create(ctx, "n1", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !expires.Equal(clock.Now().Add(10 * time.Minute)) {
		t.Errorf("expires = %v", expires)
	}
	clock.Advance(10 * time.Minute) // expiry is exclusive: at the instant it expires, it is gone
	if _, err := tokens.Redeem(ctx, tok); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("redeem at expiry = %v, want ErrTokenExpired", err)
	}
	if len(store.tokens) != 0 {
		t.Error("expired token not deleted")
	}
	if _, err := tokens.Redeem(ctx, tok); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("redeem after expiry = %v, want ErrTokenInvalid", err)
	}
	for _, ttl := range []time.Duration{-time.Second, MaxTokenTTL + time.Second} {
		if _, _, err := tokens.Create(ctx, "n1", ttl); err == nil {
			t.Errorf("Create accepted ttl %s", ttl)
		}
	}
}

func TestJoinTokenTampered(t *testing.T) {
	ctx := context.Background()
	tokens, store, _ := newTokens(t)
	tok, _, err := tokens.Create(ctx, "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	id, enc, _ := strings.Cut(strings.TrimPrefix(tok, tokenPrefix), ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name string
		tok  string
	}{
		{"secret changed", tokenPrefix + id + "." + flip(enc, 5)},
		{"secret's last character changed", tokenPrefix + id + "." + flip(enc, len(enc)-1)},
		{"id changed", tokenPrefix + otherHex(id[:1]) + id[1:] + "." + enc},
		{"truncated", tok[:len(tok)-1]},
		{"extended", tok + "A"},
		{"no prefix", strings.TrimPrefix(tok, tokenPrefix)},
		{"upper-case id", tokenPrefix + strings.ToUpper(id) + "." + enc},
		{"no separator", tokenPrefix + id + enc},
		{"empty", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tok == tok {
				t.Fatal("test case did not change the token")
			}
			if _, err := tokens.Redeem(ctx, tc.tok); !errors.Is(err, ErrTokenInvalid) {
				t.Fatalf("Redeem = %v, want ErrTokenInvalid", err)
			}
		})
	}
	// None of the attempts consumed the real token.
	if len(store.tokens) != 1 {
		t.Fatalf("store holds %d tokens, want 1", len(store.tokens))
	}
	if _, err := tokens.Redeem(ctx, tok); err != nil {
		t.Fatalf("the real token no longer redeems: %v", err)
	}
}

func otherHex(c string) string {
	if c == "0" {
		return "1"
	}
	return "0"
}

func TestEnroll(t *testing.T) {
	ctx := context.Background()
	ca := newTestCA(t, nil)
	tokens, store, _ := newTokens(t)
	tok, _, err := tokens.Create(ctx, "service-a-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The CSR asks to be a gateway; the CA must ignore everything but its key.
	gw, _ := url.Parse("spiffe://phantom/123456789012/gateway/gateway")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "gateway"}, URIs: []*url.URL{gw}, DNSNames: []string{"gateway"},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}

	// A request with a broken signature is refused before the token is spent.
	bad := *csr
	bad.Signature = append([]byte(nil), csr.Signature...)
	bad.Signature[len(bad.Signature)-1] ^= 0xff
	if _, _, err := ca.Enroll(ctx, tokens, tok, &bad); err == nil {
		t.Fatal("Enroll accepted a CSR with a bad signature")
	}
	if len(store.tokens) != 1 {
		t.Fatal("a bad CSR spent the token")
	}

	cert, rec, err := ca.Enroll(ctx, tokens, tok, csr)
	if err != nil {
		t.Fatal(err)
	}
	id, err := ca.Verifier().Verify([]*x509.Certificate{cert}, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	if id != (Identity{testAccount, KindNode, "service-a-1"}) || rec.Node != "service-a-1" {
		t.Errorf("enrolled as %v (token for %s)", id, rec.Node)
	}
	if len(cert.DNSNames) != 0 || !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Errorf("certificate took names from the CSR or lost its key: %v", cert.DNSNames)
	}
	if _, _, err := ca.Enroll(ctx, tokens, tok, csr); !errors.Is(err, ErrTokenInvalid) {
		t.Errorf("second enrollment with the same token = %v", err)
	}
}

// failingStore wraps a store and fails the way a real database can.
type failingStore struct {
	*MemoryTokenStore
	getErr, delErr error
	lostRace       bool // DeleteJoinToken reports another caller removed the token
}

func (f *failingStore) GetJoinToken(ctx context.Context, id string) (JoinToken, error) {
	if f.getErr != nil {
		return JoinToken{}, f.getErr
	}
	return f.MemoryTokenStore.GetJoinToken(ctx, id)
}

func (f *failingStore) DeleteJoinToken(ctx context.Context, id string) (bool, error) {
	if f.delErr != nil {
		return false, f.delErr
	}
	if f.lostRace {
		return false, nil
	}
	return f.MemoryTokenStore.DeleteJoinToken(ctx, id)
}

// TestJoinTokenStoreFailuresFailClosed: whatever the store does wrong, no redemption
// succeeds.
func TestJoinTokenStoreFailuresFailClosed(t *testing.T) {
	ctx := context.Background()
	dbDown := errors.New("database is locked")
	tests := []struct {
		name  string
		store *failingStore
		want  error
	}{
		{"lookup fails", &failingStore{getErr: dbDown}, dbDown},
		{"delete fails", &failingStore{delErr: dbDown}, dbDown},
		{"another redemption deleted it first", &failingStore{lostRace: true}, ErrTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.store.MemoryTokenStore = NewMemoryTokenStore()
			tokens := NewTokens(TokensConfig{}, tc.store)
			tok, _, err := tokens.Create(ctx, "n1", 0)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := tokens.Redeem(ctx, tok)
			if !errors.Is(err, tc.want) || rec.Node != "" {
				t.Fatalf("Redeem = %+v, %v; want %v", rec, err, tc.want)
			}
		})
	}
}
