package handoff

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// A TLS record's header (RFC 8446 §5.1) and the record types a caller sends.
const (
	recordHeaderLen      = 5
	maxRecordBody        = 1<<14 + 256 // TLSCiphertext: the plaintext limit and AEAD expansion
	recordChangeCipher   = 20
	recordAlert          = 21
	recordHandshake      = 22
	recordApplication    = 23
	handshakeClientHello = 1
	extSupportedVersions = 43
	extKeyShare          = 51
	versionTLS13         = 0x0304
)

// errHello is wrapped by every refusal of a first record as a raw handoff's ClientHello.
var errHello = errors.New("handoff: not a whole TLS 1.3 ClientHello")

// rawGroups are the key exchange groups a gateway may pick for a raw handoff, those of
// Go's TLS 1.3 server: a caller's key share in any other is not one the gateway can use.
var rawGroups = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
	tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}

// helloShares reads rec, a caller's first TLS record, as a raw handoff requires it: one
// handshake record holding exactly one ClientHello that offers TLS 1.3, and returns the
// groups of its key shares the gateway can use, in the caller's order (at least one).
//
// A gateway that answers with one of those groups never sends a HelloRetryRequest, so the
// caller sends no second plaintext ClientHello, and every byte after rec is under keys
// that only the caller's ephemeral key share and the gateway derive.
func helloShares(rec []byte) ([]tls.CurveID, error) {
	if len(rec) < recordHeaderLen || rec[0] != recordHandshake {
		return nil, fmt.Errorf("%w: not a handshake record", errHello)
	}
	if n := int(binary.BigEndian.Uint16(rec[3:5])); n != len(rec)-recordHeaderLen {
		return nil, fmt.Errorf("%w: record of %d bytes, %d present", errHello, n, len(rec)-recordHeaderLen)
	}
	msg := rec[recordHeaderLen:]
	if len(msg) < 4 || msg[0] != handshakeClientHello {
		return nil, fmt.Errorf("%w: not a ClientHello", errHello)
	}
	if n := int(msg[1])<<16 | int(binary.BigEndian.Uint16(msg[2:4])); n != len(msg)-4 {
		return nil, fmt.Errorf("%w: a ClientHello of %d bytes in a record with %d (split or followed by another message)", errHello, n, len(msg)-4)
	}
	r := reader(msg[4:])
	// legacy_version, random, legacy_session_id, cipher_suites, legacy_compression_methods
	if !r.skip(2+32) || !r.skipVec(1) || !r.skipVec(2) || !r.skipVec(1) {
		return nil, fmt.Errorf("%w: truncated", errHello)
	}
	exts, ok := r.vec(2)
	if !ok || len(r) != 0 {
		return nil, fmt.Errorf("%w: malformed extensions", errHello)
	}
	var tls13, sawVersions, sawShares bool
	var groups []tls.CurveID
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		body, ok2 := exts.vec(2)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: malformed extension", errHello)
		}
		switch typ {
		case extSupportedVersions:
			if sawVersions {
				return nil, fmt.Errorf("%w: supported_versions twice", errHello)
			}
			sawVersions = true
			vs, ok := body.vec(1)
			if !ok || len(body) != 0 || len(vs)%2 != 0 {
				return nil, fmt.Errorf("%w: malformed supported_versions", errHello)
			}
			for len(vs) > 0 {
				v, _ := vs.u16()
				tls13 = tls13 || v == versionTLS13
			}
		case extKeyShare:
			if sawShares {
				return nil, fmt.Errorf("%w: key_share twice", errHello)
			}
			sawShares = true
			shares, ok := body.vec(2)
			if !ok || len(body) != 0 {
				return nil, fmt.Errorf("%w: malformed key_share", errHello)
			}
			for len(shares) > 0 {
				g, ok1 := shares.u16()
				if !ok1 || !shares.skipVec(2) {
					return nil, fmt.Errorf("%w: malformed key_share entry", errHello)
				}
				if id := tls.CurveID(g); slices.Contains(rawGroups, id) && !slices.Contains(groups, id) {
					groups = append(groups, id)
				}
			}
		}
	}
	if !tls13 {
		return nil, fmt.Errorf("%w: TLS 1.3 not offered", errHello)
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("%w: no key share in a group the gateway supports", errHello)
	}
	return groups, nil
}

// reader reads a TLS message's fields (RFC 8446 §3), refusing to run past its end.
type reader []byte

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) u16() (uint16, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := binary.BigEndian.Uint16(*r)
	*r = (*r)[2:]
	return v, true
}

// vec reads a vector whose length prefix is lenBytes (1 or 2) long.
func (r *reader) vec(lenBytes int) (reader, bool) {
	if len(*r) < lenBytes {
		return nil, false
	}
	n := int((*r)[0])
	if lenBytes == 2 {
		n = int(binary.BigEndian.Uint16(*r))
	}
	*r = (*r)[lenBytes:]
	if len(*r) < n {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

func (r *reader) skipVec(lenBytes int) bool {
	_, ok := r.vec(lenBytes)
	return ok
}
