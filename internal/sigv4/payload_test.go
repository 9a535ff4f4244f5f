package sigv4

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestPayloadHashValues: PayloadHash returns the hash, whichever way it is spelled.
func TestPayloadHashValues(t *testing.T) {
	for _, v := range []string{emptyPayloadHash, unsignedPayload, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"} {
		var r Result
		r.payloadLen = copy(r.payload[:], v)
		if got := r.PayloadHash(); got != v {
			t.Fatalf("PayloadHash() = %q, want %q", got, v)
		}
	}
	sum := sha256.Sum256(nil)
	if hex.EncodeToString(sum[:]) != emptyPayloadHash {
		t.Fatal("emptyPayloadHash is not the SHA-256 of no bytes")
	}
}
