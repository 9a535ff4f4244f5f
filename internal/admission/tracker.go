// Package admission owns what a listener of the gateway or an endpoint admits before it
// reads any HTTP: the limits on the TCP connections it holds open, in all and from one
// source address, and the audit record of the connections it refuses (Recorder), which
// aggregates a flood of refusals without losing count of one.
//
// It does not accept connections or speak TLS (the gateway and the endpoint do), and it
// does not decide anything about requests.
package admission

import (
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// CodeConnectionLimit is the audit errorCode of a connection refused by a limit.
const CodeConnectionLimit = "ConnectionLimitExceeded"

// Tracker counts one listener's open connections, in all and per source address. Its
// methods are safe for concurrent use.
type Tracker struct {
	mu    sync.Mutex
	total int
	per   map[netip.Addr]int
}

// NewTracker returns a tracker with nothing counted.
func NewTracker() *Tracker { return &Tracker{per: map[netip.Addr]int{}} }

// Admit counts a new connection from src unless that would exceed lim: then nothing is
// counted and reason says which limit, for the audit record. The limits are passed on
// every call, so a spec reload applies to the next connection.
func (t *Tracker) Admit(src netip.Addr, lim config.ConnectionLimits) (ok bool, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if lim.MaxConnections > 0 && t.total >= lim.MaxConnections {
		return false, "the listener holds its maximum of " + strconv.Itoa(lim.MaxConnections) + " open connections"
	}
	if lim.MaxConnectionsPerSource > 0 && t.per[src] >= lim.MaxConnectionsPerSource {
		return false, "the source address holds its maximum of " + strconv.Itoa(lim.MaxConnectionsPerSource) + " open connections"
	}
	t.total++
	t.per[src]++
	return true, ""
}

// Counts returns the open connections in all and from src.
func (t *Tracker) Counts(src netip.Addr) (total, fromSrc int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total, t.per[src]
}

// release uncounts one connection; fromSrc says whether it still counts against src.
func (t *Tracker) release(src netip.Addr, fromSrc bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total--
	if fromSrc {
		t.unsource(src)
	}
}

func (t *Tracker) unsource(src netip.Addr) {
	if n := t.per[src] - 1; n > 0 {
		t.per[src] = n
	} else {
		delete(t.per, src)
	}
}

// Conn is an admitted connection: closing it releases its count, once.
type Conn struct {
	net.Conn
	t      *Tracker
	src    netip.Addr
	once   sync.Once
	mu     sync.Mutex
	exempt bool
}

// Wrap returns c as an admitted connection from src (Admit must have counted it).
func (t *Tracker) Wrap(c net.Conn, src netip.Addr) *Conn {
	return &Conn{Conn: c, t: t, src: src}
}

// Exempt stops the connection counting against its source address: the gateway exempts
// an endpoint's, which carries the calls of many callers from one address. It still
// counts against the listener's total.
func (c *Conn) Exempt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exempt {
		return
	}
	c.exempt = true
	c.t.mu.Lock()
	c.t.unsource(c.src)
	c.t.mu.Unlock()
}

// Close closes the connection and releases its count.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.mu.Lock()
		exempt := c.exempt
		c.exempt = true // a late Exempt must not uncount the source twice
		c.mu.Unlock()
		c.t.release(c.src, !exempt)
	})
	return err
}
