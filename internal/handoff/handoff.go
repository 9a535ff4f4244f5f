// Package handoff owns the wire contract by which an endpoint running in a process of its
// own hands a caller's connection, its TLS bytes untouched, to the gateway process that
// terminates it: a preamble saying who the caller is (its address, and the destination
// port it connected to, for the security group) and which bytes the endpoint already read,
// carried by one of two transports:
//
//   - same host: the accepted socket itself, passed over a Unix domain socket
//     (SCM_RIGHTS, unix(7)) whose peer is authenticated by its uid (SO_PEERCRED), each
//     side checking the other's; the gateway acknowledges an endpoint process it admits
//     with one byte, which the endpoint waits for before it passes a connection;
//   - across hosts: a mutually authenticated TLS connection from the endpoint to the
//     gateway, one per caller connection, pre-dialed so no caller waits for a handshake,
//     over which the caller's bytes are spliced both ways after the preamble: inside its
//     TLS, or, for a TLS 1.3 caller whose ClientHello the preamble carries, raw on its
//     socket, which the kernel splices and the gateway reads as sent (records.go says
//     why a network between them learns nothing it can use).
//
// The endpoint a connection comes from is never read from the preamble: the gateway knows
// it from the Unix socket it configured for that endpoint, or from the endpoint's
// certificate on the tunnel. Neither is anything a caller can send.
//
// It also names the headers of the other way an endpoint reaches the gateway, forwarding
// requests over mutual TLS (headers.go), so that the endpoint that sets them and the gateway
// that reads them cannot drift apart.
//
// It does not decide anything about callers: the endpoint applies its security group at
// accept and refuses plaintext on the first byte before handing a connection off, and the
// gateway's in-process endpoint (internal/endpoint, Config.Local) applies every check again
// with the values this package delivers.
package handoff

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// MaxConsumed bounds the bytes an endpoint may have read before the handoff: one TLS
// record, header and the largest plaintext fragment (RFC 8446 §5.1), enough for any
// ClientHello it might peek at.
const MaxConsumed = 5 + 1<<14

// Preamble wire format, version 2, all integers big-endian:
//
//	magic    "PHO" 0x02   4 bytes: the contract and its version
//	length   uint16       bytes that follow
//	flags    byte         0x01: raw (tunnels only: the caller's bytes follow outside TLS)
//	family   byte         4 or 6
//	source   4 or 16      the caller's address
//	srcPort  uint16       the caller's port
//	dstPort  uint16       the endpoint's port the caller connected to
//	consumed uint16 + n   bytes the endpoint read from the caller, n ≤ MaxConsumed
//
// The length must match the fields exactly, and unknown flags are refused.
var magic = [4]byte{'P', 'H', 'O', 2}

const flagRaw = 0x01

const (
	headerLen   = 6 // magic and length
	maxBodyLen  = 1 + 1 + 16 + 2 + 2 + 2 + MaxConsumed
	MaxPreamble = headerLen + maxBodyLen
)

// Preamble is what the endpoint tells the gateway about a caller's connection.
type Preamble struct {
	Source   netip.AddrPort // the caller's address and port
	DstPort  uint16         // the endpoint's port the caller connected to
	Consumed []byte         // bytes already read from the caller, to be read first
	// Raw says the caller's bytes after Consumed, a whole TLS 1.3 ClientHello, follow on
	// the tunnel's socket outside its TLS, for the endpoint to splice in the kernel and
	// the gateway to read as they came (TunnelServer).
	Raw bool
}

// ErrPreamble is wrapped by every refusal of a malformed preamble.
var ErrPreamble = errors.New("handoff: malformed preamble")

// Append encodes p after b.
func (p Preamble) Append(b []byte) ([]byte, error) {
	a := p.Source.Addr().Unmap()
	if !a.IsValid() || a.Zone() != "" {
		return nil, fmt.Errorf("%w: source %v is not an IPv4 or IPv6 address", ErrPreamble, p.Source)
	}
	if len(p.Consumed) > MaxConsumed {
		return nil, fmt.Errorf("%w: %d consumed bytes, more than %d", ErrPreamble, len(p.Consumed), MaxConsumed)
	}
	raw := a.AsSlice()
	n := 1 + 1 + len(raw) + 2 + 2 + 2 + len(p.Consumed)
	b = append(b, magic[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	var flags byte
	if p.Raw {
		flags |= flagRaw
	}
	b = append(b, flags)
	if a.Is4() {
		b = append(b, 4)
	} else {
		b = append(b, 6)
	}
	b = append(b, raw...)
	b = binary.BigEndian.AppendUint16(b, p.Source.Port())
	b = binary.BigEndian.AppendUint16(b, p.DstPort)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.Consumed)))
	return append(b, p.Consumed...), nil
}

// bodyLen reads the header of a preamble and returns the length of its body.
func bodyLen(h []byte) (int, error) {
	if len(h) < headerLen {
		return 0, fmt.Errorf("%w: %d bytes, short of a header", ErrPreamble, len(h))
	}
	if [4]byte(h[:4]) != magic {
		return 0, fmt.Errorf("%w: not a version 2 preamble", ErrPreamble)
	}
	n := int(binary.BigEndian.Uint16(h[4:6]))
	if n > maxBodyLen {
		return 0, fmt.Errorf("%w: body of %d bytes, more than %d", ErrPreamble, n, maxBodyLen)
	}
	return n, nil
}

// Parse decodes exactly one preamble, refusing a short, long or inconsistent one. The
// returned Consumed aliases b.
func Parse(b []byte) (Preamble, error) {
	n, err := bodyLen(b)
	if err != nil {
		return Preamble{}, err
	}
	if len(b) != headerLen+n {
		return Preamble{}, fmt.Errorf("%w: %d bytes where the header says %d", ErrPreamble, len(b), headerLen+n)
	}
	return parseBody(b[headerLen:])
}

func parseBody(b []byte) (Preamble, error) {
	var p Preamble
	if len(b) < 2 {
		return p, fmt.Errorf("%w: no flags or address family", ErrPreamble)
	}
	if b[0]&^flagRaw != 0 {
		return p, fmt.Errorf("%w: unknown flags %#x", ErrPreamble, b[0])
	}
	p.Raw = b[0]&flagRaw != 0
	b = b[1:]
	var alen int
	switch b[0] {
	case 4:
		alen = 4
	case 6:
		alen = 16
	default:
		return p, fmt.Errorf("%w: address family %d", ErrPreamble, b[0])
	}
	b = b[1:]
	if len(b) < alen+6 {
		return p, fmt.Errorf("%w: truncated", ErrPreamble)
	}
	a, _ := netip.AddrFromSlice(b[:alen])
	if a.Is4In6() {
		return p, fmt.Errorf("%w: an IPv4-mapped address sent as IPv6", ErrPreamble)
	}
	b = b[alen:]
	p.Source = netip.AddrPortFrom(a, binary.BigEndian.Uint16(b))
	p.DstPort = binary.BigEndian.Uint16(b[2:])
	c := int(binary.BigEndian.Uint16(b[4:]))
	b = b[6:]
	if c > MaxConsumed || len(b) != c {
		return p, fmt.Errorf("%w: %d consumed bytes declared, %d present", ErrPreamble, c, len(b))
	}
	if c > 0 {
		p.Consumed = b
	}
	if !a.IsValid() || a.IsUnspecified() || p.Source.Port() == 0 || p.DstPort == 0 {
		return p, fmt.Errorf("%w: source %v, destination port %d", ErrPreamble, p.Source, p.DstPort)
	}
	return p, nil
}

// Conn is a caller's connection as the gateway receives it: RemoteAddr is the caller's
// address from the preamble, LocalAddr the endpoint's port the caller connected to, and
// the first reads return the bytes the endpoint consumed. Under it is the caller's own TCP
// socket (fd passing) or the tunnel from the endpoint.
type Conn struct {
	net.Conn
	remote, local *net.TCPAddr
	pending       []byte
	groups        []tls.CurveID // a raw tunnel's: the caller's key shares the gateway can use
}

// NewConn returns c, the transport of a handed-off connection described by p.
func NewConn(c net.Conn, p Preamble) *Conn {
	return &Conn{
		Conn:    c,
		remote:  net.TCPAddrFromAddrPort(p.Source),
		local:   &net.TCPAddr{IP: net.IPv4zero, Port: int(p.DstPort)},
		pending: append([]byte(nil), p.Consumed...),
	}
}

func (c *Conn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *Conn) RemoteAddr() net.Addr { return c.remote }
func (c *Conn) LocalAddr() net.Addr  { return c.local }

// TCP is the caller's TCP socket under a passed descriptor, the tunnel's under a raw
// tunnel, nil inside a tunnel's TLS: a refusal resets it (admission.Reset) and a plaintext
// answer half-closes it.
func (c *Conn) TCP() *net.TCPConn {
	switch tc := c.Conn.(type) {
	case *net.TCPConn:
		return tc
	case *rawConn:
		return tc.TCPConn
	}
	return nil
}

// ServerTLS returns the TLS configuration the gateway's server must use on c: base, but
// for a caller whose bytes came raw through a tunnel a copy offering TLS 1.3 alone and only
// the groups the caller sent key shares for, so that it never sends a HelloRetryRequest
// asking for a second ClientHello, which nothing would vouch for (rawConn).
func (c *Conn) ServerTLS(base *tls.Config) *tls.Config {
	if c.groups == nil {
		return base
	}
	cfg := base.Clone()
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	cfg.CurvePreferences = c.groups
	return cfg
}

// Raw reports whether the caller's bytes came raw through a tunnel.
func (c *Conn) Raw() bool { return c.groups != nil }

// CloseWrite half-closes the caller's side where the transport can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("handoff: the connection cannot half-close")
}

// Listener is a net.Listener of handed-off connections, served by the gateway's
// in-process endpoint (endpoint.Endpoint.Serve). A transport delivers to it.
type Listener struct {
	addr  net.Addr
	ready chan net.Conn
	done  chan struct{}
	once  sync.Once
	stop  func() // closes the transport's own listener; nil: none
}

// NewListener returns a listener whose Addr is addr.
func NewListener(addr net.Addr) *Listener {
	return &Listener{addr: addr, ready: make(chan net.Conn), done: make(chan struct{})}
}

// Deliver hands c to Accept; false (and c closed) once the listener is closed.
func (l *Listener) Deliver(c net.Conn) bool {
	select {
	case l.ready <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Done is closed when the listener is.
func (l *Listener) Done() <-chan struct{} { return l.done }

func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		if l.stop != nil {
			l.stop()
		}
	})
	return nil
}

func (l *Listener) Addr() net.Addr { return l.addr }

// writeTimeout bounds a handoff's write to the gateway: a gateway that stopped reading
// must not hold the endpoint's connections.
const writeTimeout = 5 * time.Second
