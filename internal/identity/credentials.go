package identity

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"io"
)

// Access key id prefixes ("Understanding unique ID prefixes", IAM User Guide).
const (
	PrefixLongTerm  = "AKIA" // a user's long-term access key
	PrefixTemporary = "ASIA" // temporary (session) credentials issued by STS

	accessKeyIDLen = 20 // prefix + 16 characters, as AWS's ids
	secretKeyLen   = 40 // AWS secret access keys are 40 characters
)

// NewAccessKeyID returns prefix (PrefixLongTerm or PrefixTemporary) followed by 16 characters
// of AWS's access-key alphabet (upper-case base32, A-Z and 2-7), 80 bits from r (nil: crypto/rand).
func NewAccessKeyID(r io.Reader, prefix string) (string, error) {
	if prefix != PrefixLongTerm && prefix != PrefixTemporary {
		return "", fmt.Errorf("new access key id: prefix %q is neither %s nor %s", prefix, PrefixLongTerm, PrefixTemporary)
	}
	var b [10]byte // 10 bytes encode to exactly 16 base32 characters
	if err := readRandom(r, b[:]); err != nil {
		return "", fmt.Errorf("new access key id: %w", err)
	}
	return prefix + base32.StdEncoding.EncodeToString(b[:]), nil
}

// NewSecretAccessKey returns a 40-character secret access key (240 bits from r, nil:
// crypto/rand) in the standard base64 alphabet, which is what AWS's secrets use.
func NewSecretAccessKey(r io.Reader) (string, error) {
	var b [30]byte // 30 bytes encode to exactly 40 base64 characters, no padding
	if err := readRandom(r, b[:]); err != nil {
		return "", fmt.Errorf("new secret access key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// ValidAccessKeyID reports whether id is prefix followed by 16 characters of A-Z2-7.
func ValidAccessKeyID(id, prefix string) bool {
	if len(id) != accessKeyIDLen || id[:4] != prefix {
		return false
	}
	for i := 4; i < len(id); i++ {
		c := id[i]
		if !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// validSecret reports whether s looks like a secret access key this package generates or
// accepts: 40 printable ASCII characters without spaces.
func validSecret(s string) bool {
	if len(s) != secretKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func readRandom(r io.Reader, b []byte) error {
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("read random bytes: %w", err)
	}
	return nil
}
