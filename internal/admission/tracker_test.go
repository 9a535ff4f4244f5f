package admission

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// TestTracker: a listener admits up to its total, each source up to its limit of
// connections in their handshake and, separately, of settled ones; an exempt connection
// counts against the total only; closing frees a place once.
func TestTracker(t *testing.T) {
	tr := NewTracker()
	lim := config.ConnectionLimits{MaxConnections: 5, MaxConnectionsPerSource: 2}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	admit := func(src netip.Addr) (*Conn, string) {
		ok, why := tr.Admit(src, lim)
		if !ok {
			return nil, why
		}
		c1, c2 := net.Pipe()
		c2.Close()
		return tr.Wrap(c1, src), ""
	}
	a1, _ := admit(a)
	a2, _ := admit(a)
	if c, why := admit(a); c != nil || !strings.Contains(why, "handshake") {
		t.Fatalf("third arriving from a: %v %q", c, why)
	}
	for _, c := range []*Conn{a1, a2} {
		if ok, why := c.Settle(lim, false); !ok {
			t.Fatalf("settle: %s", why)
		}
	}
	a3, _ := admit(a)
	if ok, why := a3.Settle(lim, false); ok || !strings.Contains(why, "maximum of 2 open") {
		t.Fatalf("third settled from a: %v %q", ok, why)
	}
	if ok, _ := a3.Settle(lim, true); !ok {
		t.Fatal("an exempt connection was refused")
	}
	if total, arr, set := tr.Counts(a); total != 3 || arr != 0 || set != 2 {
		t.Fatalf("counts %d %d %d", total, arr, set)
	}
	b1, _ := admit(b)
	b2, _ := admit(b)
	if c, why := admit(b); c != nil || !strings.Contains(why, "listener") {
		t.Fatalf("sixth in all: %v %q", c, why)
	}
	for _, c := range []*Conn{a1, a1, a3, b1, b2} {
		c.Close()
	}
	if total, arr, set := tr.Counts(a); total != 1 || arr != 0 || set != 1 {
		t.Fatalf("after closing: %d %d %d", total, arr, set)
	}
	if _, _, set := tr.Counts(b); set != 0 {
		t.Fatalf("b still counted")
	}
}
