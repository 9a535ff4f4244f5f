package sigv4

import (
	"crypto/sha256"
	"sync"
)

// keyCache holds derived signing keys, bounded to max entries. A derived key is four
// HMAC-SHA256 rounds over the secret (kDate, kRegion, kService, kSigning: "Calculate the
// signature", IAM User Guide) and is valid for one date, region and service, so caching it
// makes steady-state verification one HMAC over the string-to-sign.
//
// Entries are keyed by SHA-256 over ("AWS4"+secret, date, region, service), never by the
// plain secret, so the cache's keys reveal nothing a memory dump of the map would not already
// reveal through the derived keys themselves, and a rotated secret never hits a stale entry.
type keyCache struct {
	mu  sync.RWMutex
	max int
	m   map[[32]byte][32]byte
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, m: make(map[[32]byte][32]byte, min(max, 1024))}
}

func (c *keyCache) get(id *[32]byte) ([32]byte, bool) {
	c.mu.RLock()
	k, ok := c.m[*id]
	c.mu.RUnlock()
	return k, ok
}

func (c *keyCache) put(id *[32]byte, key *[32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[*id]; !ok && len(c.m) >= c.max {
		// Evict an arbitrary entry (map iteration order is unspecified and randomized).
		// Keys are cheap to re-derive, so a simple bound beats LRU bookkeeping on the hot path.
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[*id] = *key
}

func (c *keyCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// signingKey returns the derived key for secret/date/region/service, from the cache when
// possible. All buffers come from s, so a cache hit allocates nothing.
func (v *Verifier) signingKey(s *scratch, secret, date, region, service string) [32]byte {
	b := s.kbuf[:0]
	b = append(b, "AWS4"...)
	b = append(b, secret...)
	n := len(b)
	b = append(b, 0)
	b = append(b, date...)
	b = append(b, 0)
	b = append(b, region...)
	b = append(b, 0)
	b = append(b, service...)
	s.kbuf = b
	id := sha256.Sum256(b)
	if k, ok := v.keys.get(&id); ok {
		return k
	}
	var k [32]byte
	s.msg = append(s.msg[:0], date...)
	s.hmac(b[:n], s.msg, &k)
	s.msg = append(s.msg[:0], region...)
	s.hmac(k[:], s.msg, &k)
	s.msg = append(s.msg[:0], service...)
	s.hmac(k[:], s.msg, &k)
	s.msg = append(s.msg[:0], terminator...)
	s.hmac(k[:], s.msg, &k)
	v.keys.put(&id, &k)
	return k
}
