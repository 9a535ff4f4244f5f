// Package requestid makes the random identifiers AWS uses for request ids and CloudTrail
// event ids: version 4 UUIDs (RFC 9562 §5.4) in their 36-character text form.
package requestid

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	mrand "math/rand/v2"
	"sync"
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

// generators holds ChaCha8 generators, each seeded with 32 bytes of crypto/rand: the
// package's one piece of shared state, a CSPRNG source like crypto/rand's own. ChaCha8 is
// a cryptographically secure generator (math/rand/v2, C2SP chacha8rand): ids reveal
// nothing of other ids, and it rekeys from its own output every 1 KiB, so a generator's
// memory, if read, shows at most its next ids, never earlier ones. A generator belongs to
// one caller at a time (sync.Pool), so callers take no lock; one the pool drops is
// replaced by a freshly seeded one. It costs less than a crypto/rand read for every id
// (BenchmarkNew).
var generators = sync.Pool{New: func() any {
	var seed [32]byte
	rand.Read(seed[:]) // crypto/rand.Read never fails (Go 1.24+)
	return mrand.NewChaCha8(seed)
}}

// fill writes a random version 4 UUID into s (36 bytes).
func fill(s []byte) {
	g := generators.Get().(*mrand.ChaCha8)
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], g.Uint64())
	binary.LittleEndian.PutUint64(b[8:], g.Uint64())
	generators.Put(g)
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
