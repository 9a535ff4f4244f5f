package pki

import (
	"context"
	"crypto/x509"
	"strings"
	"sync"
	"testing"
)

// memSecrets is a SecretStore in memory with PutSecretIfAbsent's first-writer-wins rule.
type memSecrets struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memSecrets) PutSecretIfAbsent(_ context.Context, name string, value []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	if v, ok := s.m[name]; ok {
		return v, nil
	}
	s.m[name] = append([]byte(nil), value...)
	return value, nil
}

// TestSharedCAConcurrentStartsAgree: replicas starting at once against one store end up
// with one CA, and a certificate one issues verifies with another's verifier.
func TestSharedCAConcurrentStartsAgree(t *testing.T) {
	st := &memSecrets{}
	cas := make([]*CA, 6)
	var wg sync.WaitGroup
	for i := range cas {
		wg.Go(func() {
			ca, err := NewShared(t.Context(), Config{Account: testAccount}, st)
			if err != nil {
				t.Error(err)
			}
			cas[i] = ca
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, ca := range cas[1:] {
		if !ca.Certificate().Equal(cas[0].Certificate()) {
			t.Fatal("replicas hold different CAs")
		}
	}
	gw := Identity{Account: testAccount, Kind: KindGateway, Name: "gateway"}
	leaf, err := cas[3].Issue(Request{Identity: gw, Server: true, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cas[0].Verifier().Verify([]*x509.Certificate{leaf.Leaf}, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("a certificate from one replica's CA does not verify with another's: %v", err)
	}
}

// TestSharedCARefusesBadValue: a stored value that is not this account's CA fails closed.
func TestSharedCARefusesBadValue(t *testing.T) {
	other := &memSecrets{}
	if _, err := NewShared(t.Context(), Config{Account: "210987654321"}, other); err != nil {
		t.Fatal(err)
	}
	otherCA := other.m["pki/ca/210987654321"]
	half := otherCA[:strings.Index(string(otherCA), "-----BEGIN PRIVATE KEY")]
	for name, v := range map[string][]byte{
		"garbage":            []byte("not pem"),
		"certificate only":   half,
		"another account":    otherCA,
		"trailing extra PEM": append(append([]byte(nil), otherCA...), half...),
	} {
		t.Run(name, func(t *testing.T) {
			st := &memSecrets{m: map[string][]byte{"pki/ca/" + testAccount: v}}
			if _, err := NewShared(t.Context(), Config{Account: testAccount}, st); err == nil {
				t.Error("accepted")
			}
		})
	}
}
