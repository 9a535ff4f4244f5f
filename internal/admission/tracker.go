// Package admission owns what a listener of the gateway or an endpoint admits before it
// reads any HTTP: the limits on the TCP connections it holds open, in all and from one
// source address, and the audit record of the connections it refuses (Recorder), which
// aggregates a flood of refusals without losing count of one.
//
// It does not accept connections or speak TLS (the gateway and the endpoint do), and it
// does not decide anything about requests.
package admission

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// CodeConnectionLimit is the audit errorCode of a connection refused by a limit.
const CodeConnectionLimit = "ConnectionLimitExceeded"

// Tracker counts one listener's open connections: in all, and per source address in two
// stages. A connection arrives (Admit, at accept) and counts against its source's
// arriving connections until its TLS handshake is done; then it settles (Settle) and
// counts against its source's settled connections, unless it is exempt. Each stage has
// the per-source limit, so one address cannot fill the listener with connections that
// never finish a handshake, and a verified peer that carries many callers (an endpoint,
// at the gateway) is not blocked by others sharing its address. Its methods are safe for
// concurrent use.
type Tracker struct {
	mu       sync.Mutex
	total    int
	arriving map[netip.Addr]int
	settled  map[netip.Addr]int
}

// NewTracker returns a tracker with nothing counted.
func NewTracker() *Tracker {
	return &Tracker{arriving: map[netip.Addr]int{}, settled: map[netip.Addr]int{}}
}

// Admit counts a new connection from src as arriving unless that would exceed lim: then
// nothing is counted and reason says which limit, for the audit record. The limits are
// passed on every call, so a spec reload applies to the next connection.
func (t *Tracker) Admit(src netip.Addr, lim config.ConnectionLimits) (ok bool, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if lim.MaxConnections > 0 && t.total >= lim.MaxConnections {
		return false, "the listener holds its maximum of " + strconv.Itoa(lim.MaxConnections) + " open connections (maxConnections)"
	}
	if lim.MaxConnectionsPerSource > 0 && t.arriving[src] >= lim.MaxConnectionsPerSource {
		return false, "the source address has its maximum of " + strconv.Itoa(lim.MaxConnectionsPerSource) + " connections in their TLS handshake (maxConnectionsPerSource)"
	}
	t.total++
	t.arriving[src]++
	return true, ""
}

// Counts returns the open connections in all, and those from src arriving and settled.
func (t *Tracker) Counts(src netip.Addr) (total, arriving, settled int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total, t.arriving[src], t.settled[src]
}

func dec(m map[netip.Addr]int, src netip.Addr) {
	if n := m[src] - 1; n > 0 {
		m[src] = n
	} else {
		delete(m, src)
	}
}

// Addrs returns a connection's source address and local port. IPv4-mapped IPv6
// addresses (a dual-stack [::] listener) are unmapped so IPv4 CIDRs and limits match them.
func Addrs(c net.Conn) (src netip.AddrPort, localPort uint16) {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		src = ta.AddrPort()
	} else if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		src = ap
	}
	src = netip.AddrPortFrom(src.Addr().Unmap().WithZone(""), src.Port())
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		localPort = uint16(ta.Port)
	} else if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
		localPort = ap.Port()
	}
	return src, localPort
}

// TCP is the TCP connection under c (an admitted one too), or nil.
func TCP(c net.Conn) *net.TCPConn {
	if ac, ok := c.(*Conn); ok {
		c = ac.Conn
	}
	if h, ok := c.(interface{ TCP() *net.TCPConn }); ok {
		return h.TCP() // a caller's socket handed over by an endpoint process (internal/handoff)
	}
	tc, _ := c.(*net.TCPConn)
	return tc
}

// TCP is the caller's TCP socket under c, nil when there is none (TCP above).
func (c *Conn) TCP() *net.TCPConn { return TCP(c.Conn) }

// Reset closes c with a TCP RST, as a refusing firewall does: no bytes, no FIN, and no
// TIME_WAIT state piling up under a flood.
func Reset(c net.Conn) {
	if tc := TCP(c); tc != nil {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// Conn is an admitted connection: closing it releases its count, once.
type Conn struct {
	net.Conn
	t     *Tracker
	src   netip.Addr
	mu    sync.Mutex
	stage int // arriving, settled, exempt or closed
}

const (
	arriving = iota
	settled
	exempt
	closed
)

// Wrap returns c as an admitted, arriving connection from src (Admit counted it).
func (t *Tracker) Wrap(c net.Conn, src netip.Addr) *Conn {
	return &Conn{Conn: c, t: t, src: src}
}

// Settle moves an arriving connection to its source's settled connections, unless that
// would exceed lim (then it stays arriving and the caller closes it), or, when exempt, off
// its source's counts altogether (it still counts against the listener's total).
func (c *Conn) Settle(lim config.ConnectionLimits, isExempt bool) (ok bool, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stage != arriving {
		return c.stage != closed, ""
	}
	t := c.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if !isExempt && lim.MaxConnectionsPerSource > 0 && t.settled[c.src] >= lim.MaxConnectionsPerSource {
		return false, "the source address holds its maximum of " + strconv.Itoa(lim.MaxConnectionsPerSource) + " open connections (maxConnectionsPerSource)"
	}
	dec(t.arriving, c.src)
	if isExempt {
		c.stage = exempt
	} else {
		t.settled[c.src]++
		c.stage = settled
	}
	return true, ""
}

// CloseWrite half-closes the connection (a TCP one under it, or another that can), so
// whoever relays through it can pass an end of stream on; an error when it cannot.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("admission: the connection cannot half-close")
}

// Close closes the connection and releases its count.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stage == closed {
		return err
	}
	t := c.t
	t.mu.Lock()
	t.total--
	switch c.stage {
	case arriving:
		dec(t.arriving, c.src)
	case settled:
		dec(t.settled, c.src)
	}
	t.mu.Unlock()
	c.stage = closed
	return err
}
