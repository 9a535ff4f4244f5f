package identity

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestNewAccessKeyID(t *testing.T) {
	seen := map[string]bool{}
	for _, prefix := range []string{PrefixLongTerm, PrefixTemporary} {
		for i := 0; i < 200; i++ {
			id, err := NewAccessKeyID(nil, prefix)
			if err != nil {
				t.Fatal(err)
			}
			if !ValidAccessKeyID(id, prefix) {
				t.Fatalf("%q is not %s + 16 characters of A-Z2-7", id, prefix)
			}
			if seen[id] {
				t.Fatalf("duplicate id %s", id)
			}
			seen[id] = true
		}
	}
	if _, err := NewAccessKeyID(nil, "AIDA"); err == nil {
		t.Error("AIDA prefix accepted for an access key id")
	}
	if _, err := NewAccessKeyID(bytes.NewReader([]byte{1, 2, 3}), PrefixLongTerm); err == nil {
		t.Error("short random source accepted")
	}
	// The all-zero and all-one inputs map to the alphabet's ends.
	if id, _ := NewAccessKeyID(bytes.NewReader(make([]byte, 10)), PrefixLongTerm); id != "AKIAAAAAAAAAAAAAAAAA" {
		t.Errorf("zero bytes gave %q", id)
	}
	if id, _ := NewAccessKeyID(bytes.NewReader(bytes.Repeat([]byte{0xff}, 10)), PrefixTemporary); id != "ASIA7777777777777777" {
		t.Errorf("0xff bytes gave %q", id)
	}
}

func TestValidAccessKeyID(t *testing.T) {
	for _, tc := range []struct {
		id     string
		prefix string
		want   bool
	}{
		{"AKIAIOSFODNN7EXAMPLE", PrefixLongTerm, true}, // AWS documentation's example key
		{"AKIAIOSFODNN7EXAMPLE", PrefixTemporary, false},
		{"AKIAIOSFODNN7EXAMPL", PrefixLongTerm, false},   // 19 characters
		{"AKIAIOSFODNN7EXAMPLE1", PrefixLongTerm, false}, // 21
		{"AKIAIOSFODNN8EXAMPLE", PrefixLongTerm, false},  // 8 is not base32
		{"AKIAiosfodnn7example", PrefixLongTerm, false},  // lower case
		{"", PrefixLongTerm, false},
	} {
		if got := ValidAccessKeyID(tc.id, tc.prefix); got != tc.want {
			t.Errorf("ValidAccessKeyID(%q, %q) = %v, want %v", tc.id, tc.prefix, got, tc.want)
		}
	}
}

func TestNewSecretAccessKey(t *testing.T) {
	a, err := NewSecretAccessKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSecretAccessKey(nil)
	if len(a) != 40 || !validSecret(a) || a == b {
		t.Fatalf("secrets %q, %q: want two different 40-character secrets", a, b)
	}
	if strings.Trim(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") != "" {
		t.Errorf("secret %q outside the base64 alphabet", a)
	}
	if _, err := NewSecretAccessKey(bytes.NewReader(make([]byte, 29))); err == nil {
		t.Error("short random source accepted")
	}
}

func TestNewSealingKey(t *testing.T) {
	k, err := NewSealingKey(nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.ID) != 8 || !validKeyID(k.ID) || len(k.Key) != 32 || !k.CreatedAt.Equal(t0) || !k.RetireAfter.IsZero() {
		t.Fatalf("key %q (%d bytes), created %v, retire %v", k.ID, len(k.Key), k.CreatedAt, k.RetireAfter)
	}
	if _, err := NewSealingKey(bytes.NewReader(nil), t0); err == nil {
		t.Error("empty random source accepted")
	}
}

func TestErrorsCarryNoSecrets(t *testing.T) {
	for _, err := range []error{ErrTokenMalformed, ErrTokenTruncated, ErrTokenUnknownKey, ErrTokenTampered,
		ErrTokenExpired, ErrTokenMismatch, ErrTokenMissing, ErrTokenUnexpected, ErrSessionRevoked,
		ErrAccessKeyUnknown, ErrAccessKeyInactive} {
		var ce *CredentialError
		if !errors.As(err, &ce) {
			t.Errorf("%v is not a *CredentialError", err)
		}
		if !strings.HasPrefix(err.Error(), "identity: ") {
			t.Errorf("%q lacks the package prefix", err)
		}
	}
}
