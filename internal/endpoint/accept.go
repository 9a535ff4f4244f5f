package endpoint

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/accept"
	"github.com/phantom-perimeter/phantom/internal/admission"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/handoff"
)

// recordTypeHandshake is the first byte of a TLS handshake record (RFC 8446 §5.1,
// ContentType handshake(22)); every ClientHello starts with it.
const recordTypeHandshake = 0x16

// plaintextReply is what Go's own HTTPS server answers a plaintext HTTP client.
const plaintextReply = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"

// acceptLoop accepts on ln, applies the security group and hands each admitted connection
// to its own handshake goroutine, so a slow client never holds up the loop.
func (e *Endpoint) acceptLoop(ln net.Listener, cl *connListener) {
	var backoff accept.Backoff
	for {
		c, err := ln.Accept()
		if err != nil {
			if cl.isClosed() {
				return
			}
			if backoff.Retry(err, cl.done) {
				e.log.Warn("endpoint accept failed; retrying", "error", err, "retry_in", backoff.Wait())
				continue
			}
			if !cl.isClosed() {
				cl.fail(err)
			}
			return
		}
		backoff.Reset()
		e.admit(c, cl)
	}
}

// admit applies the security group to a new connection. It runs on the accept loop and
// does no I/O but the close of a refused connection.
func (e *Endpoint) admit(c net.Conn, cl *connListener) {
	src, port := admission.Addrs(c)
	ep, _ := e.endpointSpec()
	if d := securityGroup(ep, src.Addr(), port); !d.allowed {
		admission.Reset(c)
		e.ref.Note(admission.Refusal{Code: codeSecurityGroupDenied, Src: src, LocalPort: port, Detail: d.detail(ep, port)})
		return
	}
	if ok, reason := cl.conns.Admit(src.Addr(), ep.Limits); !ok {
		admission.Reset(c)
		e.ref.Note(admission.Refusal{Code: codeConnectionLimit, Src: src, LocalPort: port, Detail: map[string]any{"reason": reason}})
		return
	}
	tc := cl.conns.Wrap(c, src.Addr())
	select {
	case e.slots <- struct{}{}:
	default:
		admission.Reset(tc)
		e.ref.Note(admission.Refusal{Code: codeConnectionLimit, Src: src, LocalPort: port, Detail: map[string]any{"reason": "too many TLS handshakes in progress", "limit": e.lim.maxHandshakes}})
		return
	}
	e.inflight.Add(1)
	go e.handshake(tc, cl, src, port)
}

// handshake refuses plaintext, completes the TLS handshake within the handshake timeout
// and hands the connection to the HTTP server.
func (e *Endpoint) handshake(c net.Conn, cl *connListener, src netip.AddrPort, port uint16) {
	defer e.inflight.Done()
	defer func() { <-e.slots }()
	deadline := time.Now().Add(e.lim.handshakeTimeout) // wall clock: deadlines are the kernel's
	_ = c.SetDeadline(deadline)
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		c.Close()
		reason := "connection closed before a ClientHello"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason = "no ClientHello within " + e.lim.handshakeTimeout.String()
		}
		e.ref.Note(admission.Refusal{Code: codeTLSHandshakeFailed, Src: src, LocalPort: port, Detail: map[string]any{"reason": reason}})
		return
	}
	if first[0] != recordTypeHandshake {
		e.refusePlaintext(c)
		e.ref.Note(admission.Refusal{Code: codePlaintextRefused, Src: src, LocalPort: port, Detail: map[string]any{
			"reason":    "the first byte is not a TLS handshake record; the endpoint serves TLS only",
			"firstByte": first[0],
		}})
		return
	}
	if e.cfg.Handoff != nil {
		e.handOff(c, src, port, first[0])
		return
	}
	tc := tls.Server(&peekConn{Conn: c, first: first[0], pending: true}, e.serverTLS(c))
	ctx, cancel := context.WithDeadline(e.baseCtx, deadline)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		c.Close()
		e.ref.Note(admission.Refusal{Code: codeTLSHandshakeFailed, Src: src, LocalPort: port, Detail: map[string]any{"reason": err.Error()}})
		return
	}
	_ = c.SetDeadline(time.Time{})
	if ac, ok := c.(*admission.Conn); ok {
		if ok, reason := ac.Settle(e.connLimits(), false); !ok {
			tc.Close()
			e.ref.Note(admission.Refusal{Code: codeConnectionLimit, Src: src, LocalPort: port, Detail: map[string]any{"reason": reason}})
			return
		}
	}
	if m := e.cfg.Metrics; m != nil {
		m.Connection("")
	}
	if !cl.deliver(tc) {
		tc.Close()
	}
}

// serverTLS is the TLS configuration for c: the endpoint's, or what a connection handed
// off raw through a tunnel requires of it (handoff.Conn.ServerTLS).
func (e *Endpoint) serverTLS(c net.Conn) *tls.Config {
	if ac, ok := c.(*admission.Conn); ok {
		c = ac.Conn
	}
	if hc, ok := c.(*handoff.Conn); ok {
		return hc.ServerTLS(e.tlsCfg)
	}
	return e.tlsCfg
}

// handOff passes a connection the endpoint admitted, its first byte read, to the gateway
// that terminates it. The connection settles here (its handshake is the gateway's) and
// counts against this listener's limits for as long as this process holds it: through a
// tunnel, until the relay ends, so one source cannot hold the boundary's descriptors,
// goroutines and buffers past maxConnectionsPerSource whatever the gateway allows; passed
// as a descriptor, until the gateway has it (Handoff closes c), after which the gateway's
// instance, which holds it, counts it against the same limits.
func (e *Endpoint) handOff(c net.Conn, src netip.AddrPort, port uint16, first byte) {
	_ = c.SetDeadline(time.Time{})
	if ac, ok := c.(*admission.Conn); ok {
		if ok, reason := ac.Settle(e.connLimits(), false); !ok {
			admission.Reset(c)
			e.ref.Note(admission.Refusal{Code: codeConnectionLimit, Src: src, LocalPort: port, Detail: map[string]any{"reason": reason}})
			return
		}
	}
	if err := e.cfg.Handoff(c, handoff.Preamble{Source: src, DstPort: port, Consumed: []byte{first}}); err != nil {
		e.log.Warn("endpoint could not hand a connection to the gateway", "error", err)
		e.ref.Note(admission.Refusal{Code: codeGatewayUnreachable, Src: src, LocalPort: port, Detail: map[string]any{"reason": err.Error()}})
	}
	// Metrics.Connection("") is the gateway's instance's to call, when the handshake is done.
}

// refusePlaintext answers a plaintext client as Go's HTTPS server does, then half-closes
// and drains briefly so the answer is not lost to a reset from unread request bytes.
func (e *Endpoint) refusePlaintext(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c, plaintextReply)
	if tc := admission.TCP(c); tc != nil {
		_ = tc.CloseWrite()
		_, _ = io.CopyN(io.Discard, c, 64<<10)
	}
	c.Close()
}

// peekConn gives back the byte read to tell TLS from plaintext.
type peekConn struct {
	net.Conn
	first   byte
	pending bool
}

func (p *peekConn) Read(b []byte) (int, error) {
	if p.pending && len(b) > 0 {
		p.pending = false
		b[0] = p.first
		return 1, nil
	}
	return p.Conn.Read(b)
}

// endpointSpec returns this endpoint in the current spec, or nil once a reload removed it.
func (e *Endpoint) endpointSpec() (*config.Endpoint, *config.Spec) {
	s := e.cfg.Spec()
	if s == nil {
		return nil, nil
	}
	ep, _ := s.Endpoint(e.id)
	return ep, s
}

// sgDecision is the security group's answer for one connection.
type sgDecision struct {
	allowed bool
	rule    int // index of the admitting rule
	// portRules counts the rules whose port range covers the local port; when it is zero
	// the port is closed, otherwise the source is outside every CIDR of those rules.
	portRules int
}

// securityGroup applies ep's ingress rules to a TCP connection from src to local port
// port, as a security group does: allowed when some rule for TCP covers the port and has
// a CIDR containing the source. A nil endpoint (removed from the spec) admits nothing.
func securityGroup(ep *config.Endpoint, src netip.Addr, port uint16) sgDecision {
	d := sgDecision{rule: -1}
	if ep == nil || !src.IsValid() {
		return d
	}
	for i := range ep.Ingress {
		r := &ep.Ingress[i]
		if (r.Protocol != "tcp" && r.Protocol != "") || !r.Ports.Contains(port) {
			continue
		}
		d.portRules++
		for _, p := range r.CIDRs {
			if p.Contains(src) {
				d.allowed, d.rule = true, i
				return d
			}
		}
	}
	return d
}

// detail describes a refusal for additionalEventData: the port and the rules that cover it.
func (d sgDecision) detail(ep *config.Endpoint, port uint16) map[string]any {
	m := map[string]any{"localPort": port}
	switch {
	case ep == nil:
		m["reason"] = "the endpoint is not in the current spec"
	case d.portRules == 0:
		m["reason"] = "no ingress rule covers the port"
	default:
		m["reason"] = "the source address is in no CIDR of the rules covering the port"
		var rules []map[string]any
		for _, r := range ep.Ingress {
			if !r.Ports.Contains(port) {
				continue
			}
			cidrs := make([]string, len(r.CIDRs))
			for i, p := range r.CIDRs {
				cidrs[i] = p.String()
			}
			rules = append(rules, map[string]any{
				"protocol": r.Protocol, "fromPort": r.Ports.From, "toPort": r.Ports.To,
				"cidrs": cidrs, "description": r.Description,
			})
		}
		m["rulesCoveringPort"] = rules
	}
	return m
}

// connListener is the net.Listener the HTTP server serves: it yields connections whose
// TLS handshake the endpoint has finished. Closing it closes the TCP listener too.
type connListener struct {
	ln    net.Listener
	conns *admission.Tracker // its open connections, against the endpoint's limits
	ready chan net.Conn      // connections whose handshake is done
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	err   error
}

func newConnListener(ln net.Listener) *connListener {
	return &connListener{ln: ln, conns: admission.NewTracker(), ready: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// deliver hands c to the server; false when the listener closed first.
func (l *connListener) deliver(c net.Conn) bool {
	select {
	case l.ready <- c:
		return true
	case <-l.done:
		return false
	}
}

// fail stops the listener with the TCP listener's error, which Serve returns.
func (l *connListener) fail(err error) {
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
	l.Close()
}

func (l *connListener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.ln.Close()
	})
	return nil
}

func (l *connListener) Addr() net.Addr { return l.ln.Addr() }

// connLimits is the endpoint's connection limits in the current spec (none when the
// spec no longer has the endpoint).
func (e *Endpoint) connLimits() config.ConnectionLimits {
	if ep, _ := e.endpointSpec(); ep != nil {
		return ep.Limits
	}
	return config.ConnectionLimits{}
}
