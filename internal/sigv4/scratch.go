package sigv4

import (
	"crypto/sha256"
	"hash"
)

// scratch holds every buffer one verification needs, pooled per Verifier so that a
// steady-state Verify allocates only its Result. Nothing in it outlives the call.
type scratch struct {
	canon  []byte // canonical request
	tail   []byte // canonical headers and signed-header list
	sts    []byte // string-to-sign
	q      []byte // encoded query keys and values, referenced by pairs
	pairs  []qpair
	names  []string // signed header names (substrings of the request's list)
	hkey   []byte   // canonical MIME form of a header name, for map lookups
	kbuf   []byte   // "AWS4"+secret and the cache id input
	msg    []byte   // HMAC message staging
	h      hash.Hash
	pad    [64]byte
	inner  []byte
	khash  [32]byte
	sig    [32]byte
	want   [32]byte
	uriLen int // length of the canonical URI in canon

	pending Pending // the verification these buffers serve (Begin returns it)
}

// qpair is one query parameter, encoded, as offsets into scratch.q.
type qpair struct{ ks, ke, vs, ve int32 }

func newScratch() *scratch {
	return &scratch{
		canon: make([]byte, 0, 1024),
		tail:  make([]byte, 0, 512),
		sts:   make([]byte, 0, 256),
		q:     make([]byte, 0, 256),
		pairs: make([]qpair, 0, 16),
		names: make([]string, 0, 16),
		hkey:  make([]byte, 0, 64),
		kbuf:  make([]byte, 0, 128),
		msg:   make([]byte, 0, 64),
		h:     sha256.New(),
		inner: make([]byte, 0, sha256.Size),
	}
}

// maxPooledBuffer keeps a single huge request from pinning memory in the pool.
const maxPooledBuffer = 64 << 10

func (v *Verifier) getScratch() *scratch { return v.scratch.Get().(*scratch) }

func (v *Verifier) putScratch(s *scratch) {
	if cap(s.canon) > maxPooledBuffer || cap(s.tail) > maxPooledBuffer || cap(s.q) > maxPooledBuffer || cap(s.kbuf) > maxPooledBuffer {
		return
	}
	clear(s.names[:cap(s.names)]) // drop references into the request
	s.names = s.names[:0]
	clear(s.kbuf[:cap(s.kbuf)]) // the secret was staged here
	s.kbuf = s.kbuf[:0]
	v.scratch.Put(s)
}

// hmac computes HMAC-SHA256(key, msg) into out (RFC 2104) with the pooled hash, so that it
// allocates nothing, unlike crypto/hmac.New.
func (s *scratch) hmac(key, msg []byte, out *[32]byte) {
	if len(key) > sha256.BlockSize {
		s.khash = sha256.Sum256(key)
		key = s.khash[:]
	}
	for i := range s.pad {
		s.pad[i] = 0x36
	}
	for i, b := range key {
		s.pad[i] ^= b
	}
	s.h.Reset()
	s.h.Write(s.pad[:])
	s.h.Write(msg)
	s.inner = s.h.Sum(s.inner[:0])
	for i := range s.pad {
		s.pad[i] = 0x5c
	}
	for i, b := range key {
		s.pad[i] ^= b
	}
	s.h.Reset()
	s.h.Write(s.pad[:])
	s.h.Write(s.inner)
	s.h.Sum(out[:0])
	clear(s.pad[:])
}
