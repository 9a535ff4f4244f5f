package handoff

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func mustAppend(t testing.TB, p Preamble) []byte {
	t.Helper()
	b, err := p.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPreambleRoundTrip(t *testing.T) {
	for _, p := range []Preamble{
		{Source: netip.MustParseAddrPort("192.0.2.7:50123"), DstPort: 8443, Consumed: []byte{0x16}},
		{Source: netip.MustParseAddrPort("[2001:db8::1]:1"), DstPort: 443},
		{Source: netip.MustParseAddrPort("10.0.0.1:65535"), DstPort: 1, Consumed: bytes.Repeat([]byte{7}, MaxConsumed)},
		{Source: netip.MustParseAddrPort("10.0.0.1:443"), DstPort: 443, Consumed: []byte{0x16, 3, 1}, Raw: true},
	} {
		b := mustAppend(t, p)
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("%v: %v", p.Source, err)
		}
		if got.Source != p.Source || got.DstPort != p.DstPort || !bytes.Equal(got.Consumed, p.Consumed) || got.Raw != p.Raw {
			t.Errorf("round trip %+v = %+v", p, got)
		}
		r, err := ReadPreamble(bytes.NewReader(append(b, "rest"...)))
		if err != nil || r.Source != p.Source {
			t.Errorf("ReadPreamble = %+v, %v", r, err)
		}
	}
	if _, err := (Preamble{Source: netip.MustParseAddrPort("10.0.0.1:1"), DstPort: 1, Consumed: make([]byte, MaxConsumed+1)}).Append(nil); err == nil {
		t.Error("Append took more than MaxConsumed bytes")
	}
}

// TestParseRefuses: every malformed preamble is refused, none half-read.
func TestParseRefuses(t *testing.T) {
	good := mustAppend(t, Preamble{Source: netip.MustParseAddrPort("192.0.2.7:50123"), DstPort: 8443, Consumed: []byte{0x16}})
	v6 := mustAppend(t, Preamble{Source: netip.MustParseAddrPort("[2001:db8::1]:5"), DstPort: 443})
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short header", good[:5]},
		{"other magic", mod(good, func(b []byte) []byte { b[0] = 'X'; return b })},
		{"version 1", mod(good, func(b []byte) []byte { b[3] = 1; return b })},
		{"other version", mod(good, func(b []byte) []byte { b[3] = 3; return b })},
		{"truncated body", good[:len(good)-1]},
		{"trailing bytes", append(append([]byte(nil), good...), 0)},
		{"length over the maximum", mod(good, func(b []byte) []byte { b[4], b[5] = 0xff, 0xff; return b })},
		{"unknown flag", mod(good, func(b []byte) []byte { b[6] = 0x02; return b })},
		{"raw with an unknown flag", mod(good, func(b []byte) []byte { b[6] = 0x81; return b })},
		{"family 5", mod(good, func(b []byte) []byte { b[7] = 5; return b })},
		{"family 6 with 4 bytes", mod(good, func(b []byte) []byte { b[7] = 6; return b })},
		{"consumed length larger than present", mod(good, func(b []byte) []byte { b[len(b)-2] = 2; return b })},
		{"source port 0", mod(good, func(b []byte) []byte { b[12], b[13] = 0, 0; return b })},
		{"destination port 0", mod(good, func(b []byte) []byte { b[14], b[15] = 0, 0; return b })},
		{"unspecified source", mod(good, func(b []byte) []byte { copy(b[8:12], []byte{0, 0, 0, 0}); return b })},
		{"IPv4-mapped as IPv6", mod(v6, func(b []byte) []byte {
			copy(b[8:24], netip.MustParseAddr("::ffff:10.0.0.1").AsSlice())
			return b
		})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if p, err := Parse(tc.b); err == nil {
				t.Fatalf("Parse accepted %x as %+v", tc.b, p)
			} else if !errors.Is(err, ErrPreamble) {
				t.Errorf("error %v does not wrap ErrPreamble", err)
			}
			if p, err := ReadPreamble(bytes.NewReader(tc.b)); err == nil && len(tc.b) == len(good) {
				t.Errorf("ReadPreamble accepted %x as %+v", tc.b, p)
			}
		})
	}
}

// FuzzParse: the parser never panics, what it accepts re-encodes to the same bytes, and
// ReadPreamble agrees with it on a stream.
func FuzzParse(f *testing.F) {
	f.Add(mustAppend(f, Preamble{Source: netip.MustParseAddrPort("192.0.2.7:50123"), DstPort: 8443, Consumed: []byte{0x16}}))
	f.Add(mustAppend(f, Preamble{Source: netip.MustParseAddrPort("[2001:db8::1]:5"), DstPort: 443}))
	f.Add(mustAppend(f, Preamble{Source: netip.MustParseAddrPort("10.0.0.1:443"), DstPort: 443, Consumed: []byte{0x16}, Raw: true}))
	f.Add([]byte("PHO\x02\x00\x00"))
	f.Add([]byte("PHO\x02\xff\xff\x00\x04"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		r, rerr := ReadPreamble(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrPreamble) {
				t.Fatalf("error %v does not wrap ErrPreamble", err)
			}
			return
		}
		again, aerr := p.Append(nil)
		if aerr != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, re-encodes to %x (%v)", b, again, aerr)
		}
		if rerr != nil || r.Source != p.Source || r.DstPort != p.DstPort || !bytes.Equal(r.Consumed, p.Consumed) || r.Raw != p.Raw {
			t.Fatalf("ReadPreamble = %+v, %v; Parse = %+v", r, rerr, p)
		}
	})
}

// socketPath is a short path for a Unix socket (at most 108 bytes).
func socketPath(t testing.TB) string {
	dir, err := os.MkdirTemp("", "handoff-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

// callerPair is a caller's TCP connection: the caller's end and the endpoint's accepted end.
func callerPair(t testing.TB) (caller net.Conn, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	caller, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caller.Close() })
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return caller, a.(*net.TCPConn)
}

func preambleOf(c *net.TCPConn, consumed ...byte) Preamble {
	return Preamble{Source: c.RemoteAddr().(*net.TCPAddr).AddrPort(), DstPort: uint16(c.LocalAddr().(*net.TCPAddr).Port), Consumed: consumed}
}

// accepted returns the next connection l delivers within d, or nil. One goroutine per
// listener accepts, so a wait that timed out does not take a later connection.
func accepted(l net.Listener, d time.Duration) net.Conn {
	ch, ok := acceptors.Load(l)
	if !ok {
		c := make(chan net.Conn, 16)
		go func() {
			for {
				a, err := l.Accept()
				if err != nil {
					return
				}
				c <- a
			}
		}()
		acceptors.Store(l, c)
		ch = c
	}
	select {
	case c := <-ch.(chan net.Conn):
		return c
	case <-time.After(d):
		return nil
	}
}

var acceptors sync.Map // net.Listener -> chan net.Conn

// closedByPeer reports whether the caller's end sees its connection end within 5s.
func closedByPeer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestFDPassesConnection: the gateway receives the caller's own socket, with the consumed
// byte first, the caller's address and the port it connected to.
func TestFDPassesConnection(t *testing.T) {
	fc := FDConfig{Path: socketPath(t), Logger: quiet()}
	l, err := ListenFD(fc)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fi, err := os.Stat(fc.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	s := NewFDSender(fc)
	defer s.Close()
	caller, c := callerPair(t)
	io.WriteString(caller, "\x16hello")
	var first [1]byte
	io.ReadFull(c, first[:])
	p := preambleOf(c, first[0])
	if err := s.Send(c, p); err != nil {
		t.Fatal(err)
	}
	c.Close() // the endpoint's own descriptor
	got := accepted(l, 5*time.Second)
	if got == nil {
		t.Fatal("nothing delivered")
	}
	defer got.Close()
	b := make([]byte, 6)
	if _, err := io.ReadFull(got, b); err != nil || string(b) != "\x16hello" {
		t.Fatalf("read %q, %v", b, err)
	}
	if got.RemoteAddr().String() != caller.LocalAddr().String() || got.LocalAddr().(*net.TCPAddr).Port != int(p.DstPort) {
		t.Errorf("addresses %v %v, want %v and port %d", got.RemoteAddr(), got.LocalAddr(), caller.LocalAddr(), p.DstPort)
	}
	io.WriteString(got, "answer")
	b = make([]byte, 6)
	if _, err := io.ReadFull(caller, b); err != nil || string(b) != "answer" {
		t.Fatalf("caller read %q, %v", b, err)
	}
}

// TestFDRefusesPeerUID: the gateway refuses an endpoint process running as a uid it does
// not allow, and the endpoint learns it (its send fails: it records the caller as
// GatewayUnreachable rather than losing it silently); the endpoint refuses a socket served
// by another uid; the caller's connection is closed, never delivered.
func TestFDRefusesPeerUID(t *testing.T) {
	other := func(*net.UnixConn) (Cred, error) { return Cred{PID: 1, UID: 4242}, nil }
	fc := FDConfig{Path: socketPath(t), Logger: quiet(), PeerCred: other}
	l, err := ListenFD(fc)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := NewFDSender(FDConfig{Path: fc.Path, Logger: quiet()}) // itself, it trusts this uid
	defer s.Close()
	caller, c := callerPair(t)
	// The kernel completes the connect before the gateway looks at the peer: the endpoint
	// waits for the gateway's acceptance, so it knows it was refused and passes nothing.
	if err := s.Send(c, preambleOf(c, 0x16)); err == nil || !strings.Contains(err.Error(), "did not accept this endpoint process") {
		t.Errorf("send to a gateway that refuses this endpoint: %v", err)
	}
	c.Close()
	if got := accepted(l, 300*time.Millisecond); got != nil {
		got.Close()
		t.Fatal("a connection from a peer of another uid was delivered")
	}
	if !closedByPeer(caller) {
		t.Error("the caller's connection stayed open")
	}
	if err := NewFDSender(FDConfig{Path: fc.Path, PeerCred: other}).Connect(); err == nil {
		t.Error("the endpoint connected to a socket whose listener runs as another uid")
	}
}

// TestFDRefusesForgedSource: the passed socket says who the caller is; a preamble naming
// another address or port is refused, the connection closed.
func TestFDRefusesForgedSource(t *testing.T) {
	for _, forge := range []func(*Preamble){
		func(p *Preamble) { p.Source = netip.MustParseAddrPort("10.9.9.9:40000") },
		func(p *Preamble) { p.DstPort++ },
	} {
		fc := FDConfig{Path: socketPath(t), Logger: quiet()}
		l, err := ListenFD(fc)
		if err != nil {
			t.Fatal(err)
		}
		s := NewFDSender(fc)
		caller, c := callerPair(t)
		p := preambleOf(c, 0x16)
		forge(&p)
		if err := s.Send(c, p); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if got := accepted(l, 300*time.Millisecond); got != nil {
			t.Errorf("delivered with a forged preamble %+v", p)
			got.Close()
		}
		if !closedByPeer(caller) {
			t.Error("the caller's connection stayed open")
		}
		s.Close()
		l.Close()
	}
}

// TestFDRefusesDescriptorCount: a message carries exactly one descriptor; none or two end
// the peer's session, the descriptors closed.
func TestFDRefusesDescriptorCount(t *testing.T) {
	for _, n := range []int{0, 2} {
		fc := FDConfig{Path: socketPath(t), Logger: quiet()}
		l, err := ListenFD(fc)
		if err != nil {
			t.Fatal(err)
		}
		uc, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: fc.Path, Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		caller, c := callerPair(t)
		f, _ := c.File()
		var fds []int
		for range n {
			fds = append(fds, int(f.Fd()))
		}
		var oob []byte
		if n > 0 {
			oob = syscall.UnixRights(fds...)
		}
		if _, _, err := uc.WriteMsgUnix(mustAppend(t, preambleOf(c, 0x16)), oob, nil); err != nil {
			t.Fatal(err)
		}
		f.Close()
		c.Close()
		if got := accepted(l, 300*time.Millisecond); got != nil {
			t.Errorf("%d descriptors: delivered", n)
			got.Close()
		}
		if n > 0 && !closedByPeer(caller) {
			t.Errorf("%d descriptors: the caller's connection stayed open", n)
		}
		uc.Close()
		l.Close()
	}
}

// tunnelPKI is a perimeter CA with a gateway certificate and endpoint certificates.
type tunnelPKI struct {
	ca     *pki.CA
	gw     *tls.Certificate
	issued func(kind pki.Kind, name string, client bool) *tls.Certificate
}

func newTunnelPKI(t testing.TB) *tunnelPKI {
	t.Helper()
	ca, err := pki.New(pki.Config{Dir: t.TempDir(), Account: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(kind pki.Kind, name string, client bool) *tls.Certificate {
		c, err := ca.Issue(pki.Request{Identity: pki.Identity{Account: "123456789012", Kind: kind, Name: name},
			IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: !client, Client: client})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return &tunnelPKI{ca: ca, gw: issue(pki.KindGateway, "gateway", false), issued: issue}
}

const (
	servedVPCE   = "vpce-0123456789abcdef0"
	unservedVPCE = "vpce-0fedcba9876543210"
)

func startTunnels(t testing.TB, p *tunnelPKI) *TunnelServer {
	t.Helper()
	return startTunnelsTelling(t, p, nil)
}

// startTunnelsTelling starts a tunnel server for servedVPCE that tells delivered (nil:
// nobody) of each caller it delivers.
func startTunnelsTelling(t testing.TB, p *tunnelPKI, delivered func(string, bool)) *TunnelServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ServeTunnels(ln, TunnelServerConfig{
		Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.gw, nil },
		Peer:        VerifyEndpoint(p.ca.Verifier()), Endpoints: []string{servedVPCE}, Delivered: delivered, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tunnelTo dials s as a peer with cert (nil: none) offering protos, and sends a preamble.
func tunnelTo(t testing.TB, s *TunnelServer, cert *tls.Certificate, protos []string, preamble []byte) *tls.Conn {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: protos, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.Dial("tcp", s.Addr().String(), cfg)
	if err != nil {
		return nil // refused in the handshake
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(preamble)
	return c
}

// TestTunnelRefusesPeers: only an endpoint this gateway serves, by a certificate of the
// perimeter CA for client auth, gets a connection delivered; the endpoint comes from the
// certificate, never from the preamble.
func TestTunnelRefusesPeers(t *testing.T) {
	p := newTunnelPKI(t)
	s := startTunnels(t, p)
	preamble := mustAppend(t, Preamble{Source: netip.MustParseAddrPort("192.0.2.7:50123"), DstPort: 8443, Consumed: []byte{0x16}})
	foreign := newTunnelPKI(t)
	cases := []struct {
		name   string
		cert   *tls.Certificate
		protos []string
	}{
		{"no certificate", nil, []string{TunnelProto}},
		{"a gateway's certificate", p.issued(pki.KindGateway, "gateway", true), []string{TunnelProto}},
		{"a gateway's certificate with the endpoint's name", p.issued(pki.KindGateway, servedVPCE, true), []string{TunnelProto}},
		{"an endpoint the gateway does not serve", p.issued(pki.KindEndpoint, unservedVPCE, true), []string{TunnelProto}},
		{"another CA's endpoint certificate", foreign.issued(pki.KindEndpoint, servedVPCE, true), []string{TunnelProto}},
		{"a server-only certificate", p.issued(pki.KindEndpoint, servedVPCE, false), []string{TunnelProto}},
		{"another ALPN protocol", p.issued(pki.KindEndpoint, servedVPCE, true), []string{"http/1.1"}},
		{"no ALPN", p.issued(pki.KindEndpoint, servedVPCE, true), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tunnelTo(t, s, tc.cert, tc.protos, preamble)
			if got := accepted(s.Listener(servedVPCE), 300*time.Millisecond); got != nil {
				got.Close()
				t.Fatal("delivered")
			}
			if c != nil && !closedByPeer(c) {
				t.Error("the tunnel stayed open")
			}
		})
	}
	t.Run("the served endpoint", func(t *testing.T) {
		c := tunnelTo(t, s, p.issued(pki.KindEndpoint, servedVPCE, true), []string{TunnelProto}, preamble)
		got := accepted(s.Listener(servedVPCE), 5*time.Second)
		if c == nil || got == nil {
			t.Fatal("not delivered")
		}
		defer got.Close()
		b := make([]byte, 1)
		if _, err := got.Read(b); err != nil || b[0] != 0x16 || got.RemoteAddr().String() != "192.0.2.7:50123" || got.LocalAddr().(*net.TCPAddr).Port != 8443 {
			t.Errorf("delivered %v→%v first byte %x, %v", got.RemoteAddr(), got.LocalAddr(), b, err)
		}
	})
}

// TestTunnelRefusesMalformedPreamble: an authenticated endpoint's malformed, oversized or
// truncated preamble closes the tunnel; nothing is delivered.
func TestTunnelRefusesMalformedPreamble(t *testing.T) {
	p := newTunnelPKI(t)
	s := startTunnels(t, p)
	cert := p.issued(pki.KindEndpoint, servedVPCE, true)
	good := mustAppend(t, Preamble{Source: netip.MustParseAddrPort("192.0.2.7:50123"), DstPort: 8443, Consumed: []byte{0x16}})
	for name, b := range map[string][]byte{
		"garbage":   []byte("GET / HTTP/1.1\r\n\r\n"),
		"oversized": append([]byte("PHO\x02\xff\xff"), make([]byte, 100)...),
		"version 1": append([]byte("PHO\x01"), good[4:]...),
		"bad body":  append(append([]byte(nil), good[:6]...), make([]byte, len(good)-6)...),
	} {
		t.Run(name, func(t *testing.T) {
			c := tunnelTo(t, s, cert, []string{TunnelProto}, b)
			if got := accepted(s.Listener(servedVPCE), 300*time.Millisecond); got != nil {
				got.Close()
				t.Fatal("delivered")
			}
			if c == nil || !closedByPeer(c) {
				t.Error("the tunnel stayed open")
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		c := tunnelTo(t, s, cert, []string{TunnelProto}, good[:len(good)-1])
		c.CloseWrite()
		if got := accepted(s.Listener(servedVPCE), 300*time.Millisecond); got != nil {
			got.Close()
			t.Fatal("delivered")
		}
		if !closedByPeer(c) {
			t.Error("the tunnel stayed open")
		}
	})
}

// TestTunnelDialerSkipsDeadWarmTunnels: tunnels dialed ahead to a gateway that has since
// restarted are closed on its side; a caller arriving then goes through a fresh tunnel to
// the new gateway, not into one of the dead ones.
func TestTunnelDialerSkipsDeadWarmTunnels(t *testing.T) {
	p := newTunnelPKI(t)
	s := startTunnels(t, p)
	addr := s.Addr().String()
	d := endpointDialer(t, p, addr, 4)
	deadline := time.Now().Add(5 * time.Second)
	for len(d.warm) < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the gateway's port cannot be taken again: %v", err)
	}
	s2, err := ServeTunnels(ln, TunnelServerConfig{
		Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.gw, nil },
		Peer:        VerifyEndpoint(p.ca.Verifier()), Endpoints: []string{servedVPCE}, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	time.Sleep(50 * time.Millisecond) // the old tunnels' FINs arrive
	caller, c := callerPair(t)
	if err := d.Handoff(c, preambleOf(c, 0x16)); err != nil {
		t.Fatal(err)
	}
	got := accepted(s2.Listener(servedVPCE), 5*time.Second)
	if got == nil {
		t.Fatal("the caller went into a dead tunnel")
	}
	defer got.Close()
	io.WriteString(caller, "x")
	b := make([]byte, 2)
	if _, err := io.ReadFull(got, b); err != nil || string(b) != "\x16x" {
		t.Errorf("read %q, %v", b, err)
	}
}

// TestFDSenderReconnects: after the gateway restarts, the endpoint passes the next
// connection over a new connection to the new socket.
func TestFDSenderReconnects(t *testing.T) {
	fc := FDConfig{Path: socketPath(t), Logger: quiet()}
	l, err := ListenFD(fc)
	if err != nil {
		t.Fatal(err)
	}
	s := NewFDSender(fc)
	defer s.Close()
	if err := s.Connect(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l2, err := ListenFD(fc)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	_, c := callerPair(t)
	if err := s.Send(c, preambleOf(c, 0x16)); err != nil {
		t.Fatalf("send after the gateway restarted: %v", err)
	}
	c.Close()
	if got := accepted(l2, 5*time.Second); got == nil {
		t.Fatal("not delivered to the new gateway")
	} else {
		got.Close()
	}
}

// TestFDListenRefusesTakeover: a gateway starting on the socket path of another that still
// serves there refuses to start and leaves the other's socket alone (its endpoint
// processes' connections keep reaching it); a socket of another type that answers is left
// alone too; a socket nobody listens on (a gateway killed with kill -9 leaves its file) is
// replaced.
func TestFDListenRefusesTakeover(t *testing.T) {
	fc := FDConfig{Path: socketPath(t), Logger: quiet()}
	first, err := ListenFD(fc)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if l, err := ListenFD(fc); err == nil {
		l.Close()
		t.Fatal("a second gateway took over the socket another serves on")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("refusal: %v", err)
	}
	s := NewFDSender(fc)
	defer s.Close()
	_, c := callerPair(t)
	if err := s.Send(c, preambleOf(c, 0x16)); err != nil {
		t.Fatalf("send after the refused takeover: %v", err)
	}
	c.Close()
	if got := accepted(first, 5*time.Second); got == nil {
		t.Fatal("the serving gateway no longer gets its endpoint's connections")
	} else {
		got.Close()
	}

	// A live socket of another type at the path: not ours to remove either.
	stream := socketPath(t)
	sl, err := net.ListenUnix("unix", &net.UnixAddr{Name: stream, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	if l, err := ListenFD(FDConfig{Path: stream, Logger: quiet()}); err == nil {
		l.Close()
		t.Fatal("a gateway replaced a live stream socket")
	}
	if _, err := os.Lstat(stream); err != nil {
		t.Fatalf("the live socket's file: %v", err)
	}

	// A dead socket: its file stays when its listener goes without unlinking it.
	dead := socketPath(t)
	dl, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: dead, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	dl.SetUnlinkOnClose(false)
	dl.Close()
	if _, err := os.Lstat(dead); err != nil {
		t.Fatalf("the dead socket's file: %v", err)
	}
	dc := FDConfig{Path: dead, Logger: quiet()}
	l, err := ListenFD(dc)
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}
	defer l.Close()
	s2 := NewFDSender(dc)
	defer s2.Close()
	_, c = callerPair(t)
	if err := s2.Send(c, preambleOf(c, 0x16)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := accepted(l, 5*time.Second); got == nil {
		t.Fatal("nothing delivered on the replaced socket")
	} else {
		got.Close()
	}
}

// failingListener fails Accept with errs in turn before accepting from its listener, and
// counts the calls.
type failingListener struct {
	net.Listener
	mu    sync.Mutex
	errs  []error
	calls int
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls++
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

func (l *failingListener) Calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// TestTunnelAcceptBacksOff: the tunnel server waits out a full descriptor table as the
// gateway's listener does (internal/accept) and serves the next tunnel; an error that
// cannot pass ends its accept loop instead of retrying it forever.
func TestTunnelAcceptBacksOff(t *testing.T) {
	p := newTunnelPKI(t)
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	serve := func(errs ...error) (*TunnelServer, *failingListener) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fl := &failingListener{Listener: ln, errs: errs}
		s, err := ServeTunnels(fl, TunnelServerConfig{
			Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.gw, nil },
			Peer:        VerifyEndpoint(p.ca.Verifier()), Endpoints: []string{servedVPCE}, Logger: quiet(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, fl
	}
	preamble := mustAppend(t, Preamble{Source: netip.MustParseAddrPort("192.0.2.7:50123"), DstPort: 8443, Consumed: []byte{0x16}})
	s, _ := serve(emfile, emfile, emfile)
	start := time.Now()
	tunnelTo(t, s, p.issued(pki.KindEndpoint, servedVPCE, true), []string{TunnelProto}, preamble)
	if got := accepted(s.Listener(servedVPCE), 5*time.Second); got == nil {
		t.Fatal("no tunnel served after EMFILE")
	} else {
		got.Close()
	}
	if d := time.Since(start); d < 35*time.Millisecond {
		t.Errorf("three EMFILEs waited %v in all, less than 5+10+20 ms", d)
	}

	bad := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EINVAL)}
	_, fl := serve(bad, bad, bad)
	time.Sleep(200 * time.Millisecond)
	if n := fl.Calls(); n != 1 {
		t.Errorf("Accept called %d times after an error that cannot pass, want 1", n)
	}
}
