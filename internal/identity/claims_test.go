package identity

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"
)

// TestClaimsEncodingSize measures the binary claims encoding against encoding/json of the
// same struct: the reason the token uses the binary form.
func TestClaimsEncodingSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		claims *Claims
	}{
		{"full AssumeRole session", fullClaims(t0)},
		{"minimal session", minimalClaims(t0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := appendClaims(nil, tc.claims)
			js, err := json.Marshal(tc.claims)
			if err != nil {
				t.Fatal(err)
			}
			token := tokenEncoding.EncodedLen(2 + 2 + 2 + nonceLen + len(bin) + tagLen)
			t.Logf("claims: binary %d bytes, JSON %d bytes (%.0f%%); token %d characters", len(bin), len(js), 100*float64(len(bin))/float64(len(js)), token)
			if len(bin) >= len(js) {
				t.Errorf("binary encoding (%d) is not smaller than JSON (%d)", len(bin), len(js))
			}
		})
	}
}

func TestDecodeClaimsRejects(t *testing.T) {
	good := appendClaims(nil, fullClaims(t0))
	ipOff := bytes.Index(good, []byte{4, 10, 0, 12, 34}) // IP length byte then 10.0.12.34
	if ipOff < 0 {
		t.Fatal("cannot find the IP in the encoding")
	}
	mod := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown flag bit", mod(func(b []byte) []byte { b[0] |= 4; return b })},
		{"an MFA time without MFA", mod(func(b []byte) []byte { b[0] = flagMFAAt; return b })},
		{"issue time beyond int64", mod(func(b []byte) []byte { b[1] = 0x80; return b })},
		{"trailing byte", mod(func(b []byte) []byte { return append(b, 0) })},
		{"cut by one byte", good[:len(good)-1]},
		{"IP length 5", mod(func(b []byte) []byte { b[ipOff] = 5; return b })},
		{"tag count larger than the input (nothing allocated for it)", tagCountPrefix(1 << 30)},
		{"varint overflow", append(append([]byte{0}, make([]byte, 16)...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Claims
			if err := decodeClaims(string(tc.b), &c); !errors.Is(err, errClaims) {
				t.Fatalf("decode = %v, want errClaims", err)
			}
		})
	}
}

// tagCountPrefix encodes claims up to the tag count, which is n, and nothing after it.
func tagCountPrefix(n uint64) []byte {
	c := minimalClaims(t0)
	b := appendClaims(nil, c)
	off := 17
	for _, s := range []string{c.AccessKeyID, c.SecretAccessKey, c.Principal, c.Role, c.SourceIdentity, c.SessionName} {
		off += 1 + len(s)
	}
	return binary.AppendUvarint(b[:off:off], n)
}
