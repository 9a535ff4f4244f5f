package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// Named secrets: written once (the first writer wins), sealed at rest and bound to their
// name.
func secretCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"Secrets", testSecrets},
		{"SecretFirstWriterWins", testSecretRace},
		{"SecretEncryptedAndBound", testSecretAtRest},
	}
}

func version(t *testing.T, s Store) int64 {
	t.Helper()
	v, err := s.Version(ctx(t))
	must(t, err)
	return v
}

func testSecrets(t *testing.T, s Store) {
	if _, err := s.GetSecret(ctx(t), "ca"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSecret(missing): err = %v, want ErrNotFound", err)
	}
	v0 := version(t, s)
	first := []byte("first\x00value\xff")
	got, err := s.PutSecretIfAbsent(ctx(t), "ca", first)
	must(t, err)
	if !bytes.Equal(got, first) {
		t.Errorf("PutSecretIfAbsent on an empty name returned %q, want %q", got, first)
	}
	got, err = s.PutSecretIfAbsent(ctx(t), "ca", []byte("second"))
	must(t, err)
	if !bytes.Equal(got, first) {
		t.Errorf("second PutSecretIfAbsent returned %q, want the stored %q", got, first)
	}
	got, err = s.GetSecret(ctx(t), "ca")
	must(t, err)
	if !bytes.Equal(got, first) {
		t.Errorf("GetSecret = %q, want %q", got, first)
	}
	if v := version(t, s); v != v0 {
		t.Errorf("Version after secret writes = %d, want unchanged %d", v, v0)
	}
	for name, c := range map[string]struct {
		name  string
		value []byte
	}{
		"empty name":     {"", []byte("x")},
		"name with tab":  {"a\tb", []byte("x")},
		"empty value":    {"empty", nil},
		"oversize value": {"big", make([]byte, 1<<20+1)},
	} {
		if _, err := s.PutSecretIfAbsent(ctx(t), c.name, c.value); err == nil {
			t.Errorf("PutSecretIfAbsent with %s accepted it", name)
		}
	}
	if _, err := s.GetSecret(ctx(t), "empty"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused secret was stored: err = %v", err)
	}

	s2, err := s.Reopen(t, s.MasterKey())
	must(t, err)
	got, err = s2.GetSecret(ctx(t), "ca")
	must(t, err)
	if !bytes.Equal(got, first) {
		t.Errorf("GetSecret after reopen = %q, want %q", got, first)
	}
}

func testSecretRace(t *testing.T, s Store) {
	const n = 16
	results := make([][]byte, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			v, err := s.PutSecretIfAbsent(ctx(t), "ca-key", fmt.Appendf(nil, "candidate-%02d", i))
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		})
	}
	close(start)
	wg.Wait()
	stored, err := s.GetSecret(ctx(t), "ca-key")
	must(t, err)
	if !bytes.HasPrefix(stored, []byte("candidate-")) {
		t.Fatalf("stored secret %q is none of the candidates", stored)
	}
	for i, r := range results {
		if !bytes.Equal(r, stored) {
			t.Errorf("caller %d got %q, want the stored %q", i, r, stored)
		}
	}
}

func testSecretAtRest(t *testing.T, s Store) {
	a := bytes.Repeat([]byte("CA-PRIVATE-KEY-A"), 4)
	b := bytes.Repeat([]byte("CA-PRIVATE-KEY-B"), 4)
	_, err := s.PutSecretIfAbsent(ctx(t), "secret-a", a)
	must(t, err)
	_, err = s.PutSecretIfAbsent(ctx(t), "secret-b", b)
	must(t, err)
	row := s.RawRow(t, KindSecret, "secret-a")
	if !bytes.Contains(row, []byte("secret-a")) {
		t.Fatal("raw secret row does not hold its name: the hook reads the wrong row")
	}
	if bytes.Contains(row, []byte("CA-PRIVATE-KEY")) {
		t.Error("secret stored in plain text")
	}
	// A ciphertext moved to another name does not decrypt there.
	s.SwapSecrets(t, KindSecret, "secret-a", "secret-b")
	for _, name := range []string{"secret-a", "secret-b"} {
		got, err := s.GetSecret(ctx(t), name)
		if !errors.Is(err, store.ErrDecrypt) {
			t.Errorf("GetSecret(%s) after swap: err = %v (value returned: %v), want ErrDecrypt", name, err, got != nil)
		}
		if _, err := s.PutSecretIfAbsent(ctx(t), name, []byte("x")); !errors.Is(err, store.ErrDecrypt) {
			t.Errorf("PutSecretIfAbsent(%s) after swap: err = %v, want ErrDecrypt", name, err)
		}
	}
}
