package hsm

import (
	"bytes"
	"encoding/asn1"
	"testing"
)

// FuzzECPoint: CKA_EC_POINT as a token returns it is accepted only as 32 bare bytes or
// the DER OCTET STRING of 32 bytes (one encoding: it re-encodes to the input).
func FuzzECPoint(f *testing.F) {
	raw := bytes.Repeat([]byte{7}, 32)
	der, _ := asn1.Marshal(raw)
	f.Add(raw)
	f.Add(der)
	f.Add(der[:len(der)-1])
	f.Add(append(der, 0))
	f.Add([]byte{0x04, 0x81, 0x20})
	f.Fuzz(func(t *testing.T, v []byte) {
		pub, err := ecPoint(v)
		if err != nil {
			return
		}
		if len(pub) != 32 {
			t.Fatalf("a %d-byte key", len(pub))
		}
		if len(v) == 32 {
			return
		}
		again, _ := asn1.Marshal([]byte(pub))
		if !bytes.Equal(again, v) {
			t.Fatalf("accepted %x, which is not the DER of its key", v)
		}
	})
}
