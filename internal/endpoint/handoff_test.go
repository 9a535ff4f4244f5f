package endpoint

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/handoff"
)

// splitEndpoint is an endpoint split as phantom endpoint --handoff fd|tunnel and phantom
// gateway split it: a boundary with its own auditor passing connections to an instance
// with the gateway in process and an auditor of its own.
type splitEndpoint struct {
	boundary, inner       *Endpoint
	boundaryAud, innerAud *memAuditor
	closeGateway          func() // the gateway's end of the transport
	addr                  string
	handed                atomic.Int32
	last                  atomic.Pointer[Handover]
}

// newSplitEndpoint splits the endpoint over the transport mode ("fd" or "tunnel"); the
// boundary reads spec, the gateway's instance inner (nil: spec too).
func newSplitEndpoint(t *testing.T, p *testPKI, mode string, spec, inner *config.Spec) *splitEndpoint {
	t.Helper()
	s := &splitEndpoint{boundaryAud: &memAuditor{}, innerAud: &memAuditor{}}
	if inner == nil {
		inner = spec
	}
	current := func() *config.Spec { return spec }
	var err error
	s.inner, err = New(Config{ID: testVPCE, Spec: func() *config.Spec { return inner }, Auditor: s.innerAud, Logger: quietSlog(),
		ServerCert: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.serverCert, nil },
		Local: func(w http.ResponseWriter, r *http.Request, h Handover) {
			s.handed.Add(1)
			s.last.Store(&h)
			io.WriteString(w, "from the gateway")
		}})
	if err != nil {
		t.Fatal(err)
	}
	bcfg := Config{ID: testVPCE, Spec: current, Auditor: s.boundaryAud, Logger: quietSlog()}
	ln, pass, closeGateway := handoffTransport(t, p, mode, testVPCE, current)
	bcfg.Handoff, s.closeGateway = pass, closeGateway
	if s.boundary, err = New(bcfg); err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = tcp.Addr().String()
	go s.inner.Serve(context.Background(), ln)
	go s.boundary.Serve(context.Background(), tcp)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.boundary.Shutdown(ctx)
		s.inner.Shutdown(ctx)
	})
	return s
}

// TestHandoffSplitsTheChecks: with the endpoint in a process of its own handing
// connections off, the boundary refuses plaintext and records it in its own chain, and the
// gateway's instance never sees it; a caller offering only TLS 1.1 is handed over and
// refused by the gateway's instance, which records it; an allowed call reaches the gateway
// with the caller's address; and when the gateway cannot be reached, the boundary records
// GatewayUnreachable for the connection it could not hand over.
func TestHandoffSplitsTheChecks(t *testing.T) {
	p := newTestPKI(t)
	s := newSplitEndpoint(t, p, "fd", testSpec(t, defaultSpecOpts()), nil)

	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /prod/orders HTTP/1.1\r\nHost: "+ordersHost+"\r\n\r\n")
	if got, _ := io.ReadAll(c); string(got) != plaintextReply {
		t.Errorf("plaintext reply = %q", got)
	}
	c.Close()
	s.boundaryAud.waitFor(t, eventConnect, codePlaintextRefused)

	if tc, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}); err == nil {
		tc.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	s.innerAud.waitFor(t, eventConnect, codeTLSHandshakeFailed)

	req, _ := http.NewRequest("GET", "https://"+s.addr+"/prod/orders", nil)
	req.Host = ordersHost
	req.Header.Set("X-Phantom-Source-Ip", "10.9.9.9")
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"}}, Timeout: 5 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "from the gateway" {
		t.Fatalf("allowed call: %d %q; events %s / %s", resp.StatusCode, b, s.boundaryAud.describe(), s.innerAud.describe())
	}
	if h := s.last.Load(); h == nil || h.Endpoint != testVPCE || h.SourceIP != netip.MustParseAddr("127.0.0.1") || h.APIID != apiOrders {
		t.Errorf("handover %+v", h)
	}
	for _, ev := range s.innerAud.events() {
		if ev.ErrorCode == codePlaintextRefused {
			t.Error("the gateway's instance recorded the boundary's refusal")
		}
	}
	for _, ev := range s.boundaryAud.events() {
		if ev.ErrorCode == codeTLSHandshakeFailed {
			t.Error("the boundary recorded a handshake it does not do")
		}
	}

	// The gateway goes away: the next caller is refused at the boundary, and recorded.
	cl.CloseIdleConnections()
	s.closeGateway()
	if resp, err := cl.Get("https://" + s.addr + "/prod/orders"); err == nil {
		resp.Body.Close()
		t.Fatalf("a call succeeded with the gateway gone: %d", resp.StatusCode)
	}
	s.boundaryAud.waitFor(t, eventConnect, codeGatewayUnreachable)
}

// TestHandoffGatewaySideSecurityGroup: the gateway's instance applies the security group
// again with the caller's address and destination port as the handoff delivers them, not
// the transport's: a caller outside the rules' CIDRs, or one that came in on a port no rule
// covers, is refused and recorded with its own address, and nothing is handed to the gateway.
func TestHandoffGatewaySideSecurityGroup(t *testing.T) {
	p := newTestPKI(t)
	spec := testSpec(t, specOpts{ingress: `[{protocol: tcp, ports: "8443", cidrs: [127.0.0.0/8]}]`, apis: []string{apiOrders}})
	aud := &memAuditor{}
	handed := atomic.Int32{}
	inner, err := New(Config{ID: testVPCE, Spec: func() *config.Spec { return spec }, Auditor: aud, Logger: quietSlog(),
		ServerCert: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.serverCert, nil },
		Local:      func(w http.ResponseWriter, _ *http.Request, _ Handover) { handed.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	l := handoff.NewListener(&net.TCPAddr{IP: net.IPv4zero})
	go inner.Serve(context.Background(), l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		inner.Shutdown(ctx)
	})
	deliver := func(src string, port uint16) net.Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		l.Deliver(handoff.NewConn(b, handoff.Preamble{Source: netip.MustParseAddrPort(src), DstPort: port}))
		return a
	}
	for _, tc := range []struct {
		src  string
		port uint16
	}{{"10.9.9.9:40000", 8443}, {"127.0.0.1:40000", 9999}} {
		a := deliver(tc.src, tc.port)
		a.SetDeadline(time.Now().Add(5 * time.Second))
		if n, err := a.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s to port %d: the connection was served (%d bytes)", tc.src, tc.port, n)
		}
	}
	want := map[string]bool{"10.9.9.9": false, "127.0.0.1": false}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range aud.events() {
			if ev.EventName == eventConnect && ev.ErrorCode == codeSecurityGroupDenied {
				want[ev.SourceIPAddress] = true
			}
		}
		if want["10.9.9.9"] && want["127.0.0.1"] {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !want["10.9.9.9"] || !want["127.0.0.1"] {
		t.Errorf("security group refusals recorded: %v; events %s", want, aud.describe())
	}
	if handed.Load() != 0 {
		t.Error("a refused connection reached the gateway")
	}
}

// TestHandoffBoundaryLimits: the boundary bounds the connections it holds. Through a
// tunnel it relays each caller's connection for as long as it lives, so its own limits
// (endpoints[].limits, per source and in all) apply to the boundary itself for that whole
// time, whatever the gateway allows: the third connection of a source limited to two is
// reset by the boundary and recorded in its own chain, and a closed one frees its place.
// Passing a descriptor, it holds a connection only until the gateway has it, so there the
// gateway's instance counts the open connections: the boundary refuses none of them.
func TestHandoffBoundaryLimits(t *testing.T) {
	p := newTestPKI(t)
	limited := defaultSpecOpts()
	limited.limits = "{maxConnections: 16, maxConnectionsPerSource: 2}"
	dial := func(t *testing.T, addr string) *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// served makes one call on c: once answered, the connection is settled wherever it
	// counts (the gateway's instance settles it after its handshake, which the caller's
	// handshake may finish before).
	served := func(t *testing.T, c *tls.Conn) {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /prod/orders HTTP/1.1\r\nHost: "+ordersHost+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("call: %d", resp.StatusCode)
		}
		c.SetDeadline(time.Time{})
	}
	refusals := func(a *memAuditor) (n int) {
		for _, ev := range a.events() {
			if ev.ErrorCode == codeConnectionLimit {
				n++
			}
		}
		return n
	}

	t.Run("tunnel", func(t *testing.T) {
		// The gateway's instance allows more: only the boundary can refuse.
		s := newSplitEndpoint(t, p, "tunnel", testSpec(t, limited), testSpec(t, defaultSpecOpts()))
		open := []*tls.Conn{dial(t, s.addr), dial(t, s.addr)}
		expectNoBytes(t, s.addr)
		ev := s.boundaryAud.waitFor(t, eventConnect, codeConnectionLimit)
		if r, _ := ev.AdditionalEventData["reason"].(string); !strings.Contains(r, "maximum of 2 open connections (maxConnectionsPerSource)") {
			t.Errorf("the boundary's refusal: %v", ev.AdditionalEventData)
		}
		if n := refusals(s.innerAud); n != 0 {
			t.Errorf("the gateway's instance refused %d connections; the boundary should have", n)
		}
		open[0].Close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"})
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a closed connection did not free its place at the boundary: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("fd", func(t *testing.T) {
		// The boundary allows two; the gateway's instance, which holds the connections,
		// counts them against its own limits.
		s := newSplitEndpoint(t, p, "fd", testSpec(t, limited), testSpec(t, limited))
		served(t, dial(t, s.addr))
		served(t, dial(t, s.addr))
		// The gateway's instance settles a connection after its TLS handshake: the third
		// completes one and is closed.
		third := dial(t, s.addr)
		third.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := third.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("the third connection stayed open: %v", err)
		}
		s.innerAud.waitFor(t, eventConnect, codeConnectionLimit)
		if n := refusals(s.boundaryAud); n != 0 {
			t.Errorf("the boundary refused %d connections it no longer holds", n)
		}
	})
}
