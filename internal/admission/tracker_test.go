package admission

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// TestTracker: a listener admits up to its total and each source up to its own limit;
// closing a connection frees its place once, and an exempt connection counts against the
// total only.
func TestTracker(t *testing.T) {
	tr := NewTracker()
	lim := config.ConnectionLimits{MaxConnections: 3, MaxConnectionsPerSource: 2}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var conns []*Conn
	admit := func(src netip.Addr) (bool, string) {
		ok, why := tr.Admit(src, lim)
		if ok {
			c1, c2 := net.Pipe()
			c2.Close()
			conns = append(conns, tr.Wrap(c1, src))
		}
		return ok, why
	}
	for i := range 2 {
		if ok, why := admit(a); !ok {
			t.Fatalf("connection %d from a refused: %s", i, why)
		}
	}
	if ok, why := admit(a); ok || !strings.Contains(why, "source address") {
		t.Fatalf("third from a: %v %q", ok, why)
	}
	if ok, _ := admit(b); !ok {
		t.Fatal("first from b refused")
	}
	if ok, why := admit(b); ok || !strings.Contains(why, "listener") {
		t.Fatalf("fourth in all: %v %q", ok, why)
	}
	conns[0].Exempt()
	conns[0].Exempt()
	if total, fromA := tr.Counts(a); total != 3 || fromA != 1 {
		t.Fatalf("after exempting: total %d, from a %d", total, fromA)
	}
	conns[0].Close()
	conns[0].Close()
	conns[1].Close()
	if total, fromA := tr.Counts(a); total != 1 || fromA != 0 {
		t.Fatalf("after closing: total %d, from a %d", total, fromA)
	}
	if ok, why := admit(a); !ok {
		t.Fatalf("a after closing: %s", why)
	}
}
