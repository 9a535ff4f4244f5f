// Package requestid makes the random identifiers AWS uses for request ids and CloudTrail
// event ids: version 4 UUIDs (RFC 9562 §5.4) in their 36-character text form.
package requestid

import (
	"crypto/rand"
	"encoding/hex"
)

// New returns a random version 4 UUID.
func New() string {
	var s [36]byte
	fill(s[:])
	return string(s[:])
}

// Two returns two random version 4 UUIDs, in one allocation: a request's id and its
// event's.
func Two() (string, string) {
	var s [72]byte
	fill(s[:36])
	fill(s[36:])
	both := string(s[:])
	return both[:36], both[36:]
}

// fill writes a random version 4 UUID into s (36 bytes).
func fill(s []byte) {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:36], b[10:])
}
