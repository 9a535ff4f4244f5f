package egress

import (
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/phantom-perimeter/phantom/internal/admission"
	"github.com/phantom-perimeter/phantom/internal/config"
)

// What the proxy bounds. The connections its listeners hold open (admission.Tracker, the
// gateway's and endpoints' own: in all and per source address) are counted from their
// accept, so a client opening connections it never uses, or keeps idle, runs into its
// share; a connection past the bound is reset and audited (eventName Accept, aggregated
// like every refusal). The tunnels and forwarded requests in flight are bounded in all,
// per node and per source address (slots): one node, or one host, cannot take every
// tunnel.

// slots counts the tunnels and forwarded requests in flight.
type slots struct {
	max, perNode, perSource int

	mu    sync.Mutex
	total int
	nodes map[string]int
	srcs  map[netip.Addr]int
}

func newSlots(max, perNode, perSource int) *slots {
	return &slots{max: max, perNode: perNode, perSource: perSource, nodes: map[string]int{}, srcs: map[netip.Addr]int{}}
}

// acquire takes a slot for node's request from src; it returns the release, or nil and
// which limit refused it.
func (s *slots) acquire(node string, src netip.Addr) (release func(), reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.total >= s.max:
		return nil, strconv.Itoa(s.max) + " tunnels and requests are in flight (the proxy's maximum)"
	case s.nodes[node] >= s.perNode:
		return nil, "node " + node + " has " + strconv.Itoa(s.perNode) + " tunnels and requests in flight (its maximum)"
	case s.srcs[src] >= s.perSource:
		return nil, src.String() + " has " + strconv.Itoa(s.perSource) + " tunnels and requests in flight (the maximum of one source address)"
	}
	s.total++
	s.nodes[node]++
	s.srcs[src]++
	var once sync.Once
	return func() { once.Do(func() { s.release(node, src) }) }, ""
}

func (s *slots) release(node string, src netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.nodes[node]--; s.nodes[node] <= 0 {
		delete(s.nodes, node)
	}
	if s.srcs[src]--; s.srcs[src] <= 0 {
		delete(s.srcs, src)
	}
}

// admitListener counts each accepted connection against the proxy's connection limits
// before anything is read from it.
type admitListener struct {
	net.Listener
	p *Proxy
}

func (l *admitListener) Accept() (net.Conn, error) {
	p := l.p
	lim := config.ConnectionLimits{MaxConnections: p.cfg.MaxConnections, MaxConnectionsPerSource: p.cfg.MaxConnectionsPerSource}
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src, port := admission.Addrs(c)
		// Every connection stays in the tracker's first stage: the proxy has no handshake
		// after which a source's connections would count apart.
		if ok, _ := p.conns.Admit(src.Addr(), lim); !ok {
			admission.Reset(c)
			reason := "the source address holds its maximum of " + strconv.Itoa(lim.MaxConnectionsPerSource) + " open connections (MaxConnectionsPerSource)"
			if total, _, _ := p.conns.Counts(src.Addr()); total >= lim.MaxConnections {
				reason = "the proxy holds its maximum of " + strconv.Itoa(lim.MaxConnections) + " open connections (MaxConnections)"
			}
			p.refusals.Note(admission.Refusal{Code: admission.CodeConnectionLimit, Src: src, LocalPort: port, Detail: map[string]any{"reason": reason}})
			continue
		}
		return p.conns.Wrap(c, src.Addr()), nil
	}
}
