package gateway

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding"
	"hash"
	"slices"
	"sync"
	"sync/atomic"
)

// A session's assertions to one API differ only after their head claims (iss, aud, sub,
// principal, account, accessKeyId, sessionName, role): the head's JSON, its base64url after
// the JOSE header and, for HS256, the HMAC's inner hash state over them are made once per
// session (or access key) and API and kept with the session's facts or in the spec
// state's keyHeadCache (assertionSlot); a call encodes and
// hashes only the rest. The token is byte for byte the one sign makes
// (TestSignHeadMatchesSign, FuzzSignHead).

// assertionHeadClaims are the claims an assertionHead was made from.
type assertionHeadClaims struct {
	iss, aud, sub, principal, account, keyID, session, role string
}

func headClaimsOf(a *Assertion) assertionHeadClaims {
	return assertionHeadClaims{a.Issuer, a.Audience, a.Subject, a.Principal, a.Account, a.AccessKeyID, a.SessionName, a.Role}
}

// assertionHead is the precomputed start of a session's tokens under one signer.
type assertionHead struct {
	signer *assertionSigner
	claims assertionHeadClaims
	enc    []byte // the signer's header, then the base64url of the head JSON's first 3k bytes
	rest   []byte // the head JSON's last len%3 bytes, encoded with the call's claims
	inner  []byte // HS256: the marshaled SHA-256 state after K⊕ipad and enc (RFC 2104)
}

// assertionSlot holds the head of a session's latest API: calls of a session mostly go to
// one API, and another API's call replaces it (still correct, only made again).
type assertionSlot struct{ p atomic.Pointer[assertionHead] }

// head returns the head for a's claims under s, made and kept in slot when it differs.
func (sl *assertionSlot) head(s *assertionSigner, a *Assertion) (*assertionHead, error) {
	c := headClaimsOf(a)
	if h := sl.p.Load(); h != nil && h.signer == s && h.claims == c {
		return h, nil
	}
	h, err := s.newHead(a, c)
	if err != nil {
		return nil, err
	}
	sl.p.Store(h)
	return h, nil
}

func (s *assertionSigner) newHead(a *Assertion, c assertionHeadClaims) (*assertionHead, error) {
	js := a.appendJSONHead(nil)
	n := len(js) - len(js)%3
	enc := b64.AppendEncode([]byte(s.header), js[:n])
	h := &assertionHead{signer: s, claims: c, enc: enc, rest: slices.Clone(js[n:])}
	if s.ed == nil {
		d := sha256.New()
		d.Write(s.ipad)
		d.Write(enc)
		st, err := d.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return nil, err
		}
		h.inner = st
	}
	return h, nil
}

// hmacPads sets s's K⊕ipad block and the SHA-256 state after K⊕opad (RFC 2104 §2; the key
// is at most a block: keys.BackendKey is 32 bytes, a longer one hashed first as there).
func (s *assertionSigner) hmacPads(key []byte) {
	if len(key) > sha256.BlockSize {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	ipad, opad := make([]byte, sha256.BlockSize), make([]byte, sha256.BlockSize)
	copy(ipad, key)
	copy(opad, key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	d := sha256.New()
	d.Write(opad)
	st, err := d.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic(err) // crypto/sha256's digest always marshals
	}
	s.ipad, s.outer = ipad, st
	s.digests = &sync.Pool{New: func() any { return sha256.New() }}
}

// signHead returns the compact JWS of a, whose head claims are h's.
func (s *assertionSigner) signHead(h *assertionHead, a *Assertion) (string, error) {
	sb := s.bufs.Get().(*signBuf)
	defer s.bufs.Put(sb)
	sb.claims = a.appendJSONTail(append(sb.claims[:0], h.rest...))
	buf := slices.Grow(sb.token[:0], len(h.enc)+b64.EncodedLen(len(sb.claims))+sigPartLen())
	buf = append(buf, h.enc...)
	buf = b64.AppendEncode(buf, sb.claims)
	var sig []byte
	if s.ed != nil {
		sig = ed25519.Sign(s.ed, buf)
	} else {
		d := s.digests.Get().(hash.Hash)
		u := d.(encoding.BinaryUnmarshaler)
		if err := u.UnmarshalBinary(h.inner); err != nil {
			s.digests.Put(d)
			return "", err
		}
		d.Write(buf[len(h.enc):])
		in := d.Sum(sb.sig[:0])
		if err := u.UnmarshalBinary(s.outer); err != nil {
			s.digests.Put(d)
			return "", err
		}
		d.Write(in)
		sig = d.Sum(sb.sig[:0])
		s.digests.Put(d)
	}
	return sb.finish(buf, sig), nil
}

// keyHeadCache holds the assertion slots of access keys without session claims (an IAM
// user's long-term keys), by access key id, under one spec. Bounded; cleared when full (an
// entry only saves encoding; a slot's head is used only for the claims it was made from).
type keyHeadCache struct {
	mu sync.RWMutex
	m  map[string]*assertionSlot
}

const keyHeadCacheSize = 4096

func (c *keyHeadCache) slot(keyID string) *assertionSlot {
	c.mu.RLock()
	sl, ok := c.m[keyID]
	c.mu.RUnlock()
	if ok {
		return sl
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if sl, ok := c.m[keyID]; ok {
		return sl
	}
	if c.m == nil || len(c.m) >= keyHeadCacheSize {
		c.m = make(map[string]*assertionSlot)
	}
	sl = new(assertionSlot)
	c.m[keyID] = sl
	return sl
}
