package handoff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// records follows the TLS record boundaries (RFC 8446 §5.1) of a byte stream as it is
// read, without buffering it: the header bytes it has, and how much of the current
// record's body is left.
type records struct {
	hdr  [recordHeaderLen]byte
	have int // header bytes seen of the next record
	left int // body bytes left of the current record
}

// limit is how many bytes the next read may take without passing the end of the current
// record's header or body.
func (r *records) limit() int {
	if r.left > 0 {
		return r.left
	}
	return recordHeaderLen - r.have
}

// scan walks b, the next bytes of the stream, calling header for each record header
// completed in it; it stops at the first one header refuses, with header's error.
func (r *records) scan(b []byte, header func(typ byte, n int) error) error {
	for len(b) > 0 {
		if r.left > 0 {
			k := min(r.left, len(b))
			r.left -= k
			b = b[k:]
			continue
		}
		k := copy(r.hdr[r.have:], b)
		r.have += k
		b = b[k:]
		if r.have < recordHeaderLen {
			break
		}
		r.have = 0
		typ, n := r.hdr[0], int(binary.BigEndian.Uint16(r.hdr[3:5]))
		if err := header(typ, n); err != nil {
			return err
		}
		r.left = n
	}
	return nil
}

// exactConn reads a tunnel's TLS records one at a time, never a byte past the record it
// is in, while exact is set: crypto/tls reads ahead into a buffer of its own, and when the
// tunnel turns raw after its preamble the bytes that follow must still be in the socket.
type exactConn struct {
	net.Conn
	rec   records
	exact bool
}

func (c *exactConn) Read(b []byte) (int, error) {
	if !c.exact {
		return c.Conn.Read(b)
	}
	if n := c.rec.limit(); len(b) > n {
		b = b[:n]
	}
	n, err := c.Conn.Read(b)
	// Every record header is accepted: crypto/tls judges them; this only counts.
	_ = c.rec.scan(b[:n], acceptRecord)
	return n, err
}

func acceptRecord(byte, int) error { return nil }

// errRawHandshake refuses a plaintext handshake record on a raw handoff.
var errRawHandshake = errors.New("handoff: a plaintext handshake record after the ClientHello on a raw handoff")

// rawConn is a caller's TLS bytes arriving raw from an endpoint process, after the
// ClientHello its tunnel's preamble carried. Nothing authenticates these bytes on the way
// from the endpoint, so its guard refuses what TLS 1.3 would not protect.
type rawConn struct {
	*net.TCPConn
	g guard
}

func (c *rawConn) Read(b []byte) (int, error) {
	if c.g.settled {
		return c.TCPConn.Read(b)
	}
	if c.g.err != nil {
		return 0, c.g.err
	}
	n, err := c.TCPConn.Read(b)
	if gerr := c.g.check(b[:n]); gerr != nil {
		return 0, gerr
	}
	return n, err
}

// TCP is the caller's socket, for a reset or a half-close.
func (c *rawConn) TCP() *net.TCPConn { return c.TCPConn }

// guard follows the records of a raw handoff. Until the caller's first application-data
// record, which it sends only under keys derived from its own key share, only
// change_cipher_spec and alert records may come, never a handshake record: that would be
// a second ClientHello (the gateway sends no HelloRetryRequest on a raw handoff) or a TLS
// 1.2 key exchange, each a way for a host on the path to finish the handshake under the
// caller's address with a key of its own. Once that record has come, crypto/tls refuses
// any unprotected record itself, and bytes pass unexamined.
type guard struct {
	rec     records
	settled bool
	err     error // sticky: once refused, always refused
}

// check walks b, the stream's next bytes, and refuses it if it breaks the rule.
func (g *guard) check(b []byte) error {
	if g.settled || g.err != nil {
		return g.err
	}
	g.err = g.rec.scan(b, g.header)
	return g.err
}

func (g *guard) header(typ byte, n int) error {
	switch {
	case g.settled:
		return nil
	case typ == recordApplication:
		g.settled = true
		return nil
	case typ != recordChangeCipher && typ != recordAlert:
		return fmt.Errorf("%w: record type %d", errRawHandshake, typ)
	case n > maxRecordBody:
		return fmt.Errorf("%w: a record of %d bytes", errRawHandshake, n)
	}
	return nil
}
