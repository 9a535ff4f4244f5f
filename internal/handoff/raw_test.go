package handoff

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

// clientHello returns the first TLS record a crypto/tls client with cfg sends.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cfg = cfg.Clone()
	cfg.InsecureSkipVerify = true
	go tls.Client(a, cfg).Handshake()
	rec := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(b, rec); err != nil {
		t.Fatal(err)
	}
	rec = append(rec, make([]byte, binary.BigEndian.Uint16(rec[3:5]))...)
	if _, err := io.ReadFull(b, rec[recordHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	return rec
}

// p256First is a client that sends a key share for P-256 alone and supports P-384: a
// server preferring P-384 answers it with a HelloRetryRequest.
var p256First = &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP256, tls.CurveP384}}

// TestHelloShares: a raw handoff takes a whole ClientHello offering TLS 1.3 with a key
// share the gateway can use, and nothing else.
func TestHelloShares(t *testing.T) {
	hello13 := clientHello(t, &tls.Config{})
	groups, err := helloShares(hello13)
	if err != nil || len(groups) == 0 {
		t.Fatalf("Go's default ClientHello: %v, %v", groups, err)
	}
	// A key share for P-256 alone, though P-384 is supported too.
	g, err := helloShares(clientHello(t, p256First))
	if err != nil || !slices.Equal(g, []tls.CurveID{tls.CurveP256}) {
		t.Errorf("a share for P-256 alone: %v, %v", g, err)
	}
	mod := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), hello13...)) }
	cases := map[string][]byte{
		"empty":                 nil,
		"TLS 1.2 only":          clientHello(t, &tls.Config{MaxVersion: tls.VersionTLS12}),
		"not a handshake":       mod(func(b []byte) []byte { b[0] = recordApplication; return b }),
		"not a ClientHello":     mod(func(b []byte) []byte { b[5] = 2; return b }),
		"record cut short":      hello13[:len(hello13)-1],
		"message split":         mod(func(b []byte) []byte { b[8]++; return b }),
		"message then another":  mod(func(b []byte) []byte { b = append(b, 20, 0, 0, 0); b[4] += 4; return b }),
		"record longer":         mod(func(b []byte) []byte { b[4]++; return b }),
		"truncated in a vector": hello13[:recordHeaderLen+4+2+32+1],
	}
	for name, rec := range cases {
		if g, err := helloShares(rec); err == nil {
			t.Errorf("%s: accepted, groups %v", name, g)
		} else if !errors.Is(err, errHello) {
			t.Errorf("%s: %v does not wrap errHello", name, err)
		}
	}
}

// FuzzHelloShares: what helloShares accepts is one whole handshake record with at least
// one key share, each in a group the gateway has.
func FuzzHelloShares(f *testing.F) {
	f.Add(clientHello(f, &tls.Config{}))
	f.Add(clientHello(f, &tls.Config{MaxVersion: tls.VersionTLS12}))
	f.Add(clientHello(f, &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP256}}))
	f.Fuzz(func(t *testing.T, rec []byte) {
		groups, err := helloShares(rec)
		if err != nil {
			return
		}
		if rec[0] != recordHandshake || int(binary.BigEndian.Uint16(rec[3:5])) != len(rec)-recordHeaderLen || len(groups) == 0 {
			t.Fatalf("accepted %x: groups %v", rec, groups)
		}
		for _, g := range groups {
			if !slices.Contains(rawGroups, g) {
				t.Fatalf("group %v the gateway does not have", g)
			}
		}
	})
}

// record is one TLS record of type typ with body.
func record(typ byte, body []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

// guardRefuses is the reference for guard: whether stream breaks its rule, read whole.
func guardRefuses(stream []byte) bool {
	for len(stream) >= recordHeaderLen {
		typ, n := stream[0], int(binary.BigEndian.Uint16(stream[3:5]))
		switch {
		case typ == recordApplication:
			return false
		case typ != recordChangeCipher && typ != recordAlert, n > maxRecordBody:
			return true
		}
		stream = stream[min(len(stream), recordHeaderLen+n):]
	}
	return false
}

// TestGuard: a raw handoff refuses a handshake record after the ClientHello, the second
// ClientHello or TLS 1.2 key exchange a host on the path would send, however the bytes
// are split; change_cipher_spec and alerts pass, and after the first application-data
// record anything does (crypto/tls judges it).
func TestGuard(t *testing.T) {
	ccs, alert := record(recordChangeCipher, []byte{1}), record(recordAlert, []byte{2, 40})
	app, hs := record(recordApplication, bytes.Repeat([]byte{9}, 40)), record(recordHandshake, clientHello(t, &tls.Config{})[5:])
	cases := []struct {
		name   string
		stream []byte
		refuse bool
	}{
		{"ccs then application data", slices.Concat(ccs, app, app), false},
		{"alert", alert, false},
		{"a second ClientHello", slices.Concat(ccs, hs), true},
		{"a handshake record first", hs, true},
		{"an unknown type", record(0x30, []byte{1}), true},
		{"an oversized ccs", append([]byte{recordChangeCipher, 3, 3, 0xff, 0xff}, 1), true},
		{"handshake after application data", slices.Concat(app, hs), false},
	}
	for _, tc := range cases {
		if guardRefuses(tc.stream) != tc.refuse {
			t.Fatalf("%s: the reference disagrees with the case", tc.name)
		}
		for _, step := range []int{1, 2, 5, 7, len(tc.stream)} {
			var g guard
			var err error
			for b := tc.stream; len(b) > 0 && err == nil; b = b[min(step, len(b)):] {
				err = g.check(b[:min(step, len(b))])
			}
			if (err != nil) != tc.refuse || (err != nil && !errors.Is(err, errRawHandshake)) {
				t.Errorf("%s in steps of %d: %v", tc.name, step, err)
			}
		}
	}
}

// FuzzGuard: the guard agrees with the reference on any stream split anywhere.
func FuzzGuard(f *testing.F) {
	f.Add(slices.Concat(record(recordChangeCipher, []byte{1}), record(recordApplication, []byte{1, 2})), uint8(3))
	f.Add(slices.Concat(record(recordChangeCipher, []byte{1}), record(recordHandshake, []byte{1, 0, 0, 0})), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		s := max(int(step), 1)
		var g guard
		var err error
		for b := stream; len(b) > 0 && err == nil; b = b[min(s, len(b)):] {
			err = g.check(b[:min(s, len(b))])
		}
		if want := guardRefuses(stream); (err != nil) != want {
			t.Fatalf("guard says %v on %x in steps of %d; the reference refuses: %v", err, stream, s, want)
		}
	})
}

func caPool(p *tunnelPKI) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Certificate())
	return pool
}

// endpointDialer is a TunnelDialer of endpoint servedVPCE to the gateway at addr,
// keeping warm tunnels dialed.
func endpointDialer(t testing.TB, p *tunnelPKI, addr string, warm int) *TunnelDialer {
	t.Helper()
	d, err := NewTunnelDialer(TunnelDialerConfig{
		Gateways: []string{addr},
		ClientCert: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return p.issued(pki.KindEndpoint, servedVPCE, true), nil
		},
		VerifyGateway: func(tls.ConnectionState) error { return nil },
		Warm:          warm, Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(t.Context()) })
	return d
}

// throughTunnel connects a TLS client with cfg to a boundary that hands its connection
// to d as an endpoint process does (first byte read), and returns the client's
// connection, not yet handshaken, and the gateway's end as s delivers it.
func throughTunnel(t *testing.T, d *TunnelDialer, s *TunnelServer, cfg *tls.Config) (*tls.Conn, *Conn) {
	t.Helper()
	caller, c := callerPair(t)
	client := tls.Client(caller, cfg)
	go client.Handshake()
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		t.Fatal(err)
	}
	if err := d.Handoff(c, preambleOf(c, first[0])); err != nil {
		t.Fatal(err)
	}
	got := accepted(s.Listener(servedVPCE), 5*time.Second)
	if got == nil {
		t.Fatal("nothing delivered")
	}
	t.Cleanup(func() { got.Close() })
	return client, got.(*Conn)
}

// TestRawTunnel: a TLS 1.3 caller's bytes cross raw, on the tunnel's socket, and the
// gateway's TLS server completes its handshake with them, including a caller whose key
// share would draw a HelloRetryRequest from the gateway's own preferences (ServerTLS
// keeps it from asking); a TLS 1.2 caller's cross inside the tunnel. Either way the
// caller's exchange works.
func TestRawTunnel(t *testing.T) {
	p := newTunnelPKI(t)
	told := make(chan string, 8)
	s := startTunnelsTelling(t, p, func(endpoint string, raw bool) { told <- fmt.Sprint(endpoint, " raw=", raw) })
	d := endpointDialer(t, p, s.Addr().String(), 2)
	base := &tls.Config{Certificates: []tls.Certificate{*p.gw}, CurvePreferences: []tls.CurveID{tls.CurveP384, tls.X25519MLKEM768, tls.X25519}}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		raw  bool
	}{
		{"TLS 1.3", &tls.Config{}, true},
		{"TLS 1.3, a share for P-256 alone", p256First, true},
		{"TLS 1.2", &tls.Config{MaxVersion: tls.VersionTLS12}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg.Clone()
			cfg.RootCAs = caPool(p)
			cfg.ServerName = "127.0.0.1"
			client, got := throughTunnel(t, d, s, cfg)
			if got.Raw() != tc.raw || (got.TCP() != nil) != tc.raw {
				t.Fatalf("raw %v, TCP %v; want raw %v", got.Raw(), got.TCP(), tc.raw)
			}
			if want := fmt.Sprint(servedVPCE, " raw=", tc.raw); len(told) != 1 || <-told != want {
				t.Errorf("the server told of its delivery otherwise than %q", want)
			}
			srv := tls.Server(got, got.ServerTLS(base))
			srv.SetDeadline(time.Now().Add(5 * time.Second))
			client.SetDeadline(time.Now().Add(5 * time.Second))
			go func() {
				b := make([]byte, 4)
				if _, err := io.ReadFull(srv, b); err == nil {
					srv.Write(append(b, '!'))
				}
			}()
			if _, err := client.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 5)
			if _, err := io.ReadFull(client, b); err != nil || string(b) != "ping!" {
				t.Fatalf("read %q, %v", b, err)
			}
			if v := client.ConnectionState().Version; tc.raw && v != tls.VersionTLS13 {
				t.Errorf("version %x on a raw tunnel", v)
			}
		})
	}
}

// TestRawTunnelGuardsTheHandshake: on a raw tunnel whose gateway answered with a
// HelloRetryRequest (a server preferring P-384, without ServerTLS), the caller's second
// ClientHello, plaintext and vouched for by nobody, is refused: a host on the path could
// have sent one of its own with its own key share.
func TestRawTunnelGuardsTheHandshake(t *testing.T) {
	p := newTunnelPKI(t)
	s := startTunnels(t, p)
	d := endpointDialer(t, p, s.Addr().String(), 2)
	cfg := p256First.Clone()
	cfg.RootCAs, cfg.ServerName = caPool(p), "127.0.0.1"
	client, got := throughTunnel(t, d, s, cfg)
	srv := tls.Server(got, &tls.Config{Certificates: []tls.Certificate{*p.gw}, CurvePreferences: []tls.CurveID{tls.CurveP384}})
	srv.SetDeadline(time.Now().Add(5 * time.Second))
	client.SetDeadline(time.Now().Add(5 * time.Second))
	if err := srv.Handshake(); !errors.Is(err, errRawHandshake) {
		t.Fatalf("the gateway's handshake after a HelloRetryRequest: %v, want the guard's refusal", err)
	}
}

// TestRawTunnelKeepsBytesAfterPreamble: bytes the endpoint sends right behind a raw
// preamble, before the gateway has read it, reach the gateway's raw end intact, none
// swallowed by the tunnel's TLS reading ahead.
func TestRawTunnelKeepsBytesAfterPreamble(t *testing.T) {
	p := newTunnelPKI(t)
	s := startTunnels(t, p)
	hello := clientHello(t, &tls.Config{})
	raw := slices.Concat(record(recordChangeCipher, []byte{1}), record(recordApplication, bytes.Repeat([]byte{7}, 300)))
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{TunnelProto}, MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{*p.issued(pki.KindEndpoint, servedVPCE, true)}}
	tc, err := tls.Dial("tcp", s.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.NetConn().Close()
	pre := mustAppend(t, Preamble{Source: netip.MustParseAddrPort("192.0.2.7:50123"), DstPort: 8443, Consumed: hello, Raw: true})
	if _, err := tc.Write(pre); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.NetConn().Write(raw); err != nil {
		t.Fatal(err)
	}
	got := accepted(s.Listener(servedVPCE), 5*time.Second)
	if got == nil {
		t.Fatal("nothing delivered")
	}
	defer got.Close()
	got.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, len(hello)+len(raw))
	if _, err := io.ReadFull(got, b); err != nil || !bytes.Equal(b, slices.Concat(hello, raw)) {
		t.Fatalf("the gateway read %x, %v", b, err)
	}
}

// TestRawTunnelRefusesPreambles: a raw preamble whose consumed bytes are not a whole
// ClientHello that a raw tunnel takes is refused, nothing delivered: the gateway decides
// what crosses raw, not the endpoint's word alone.
func TestRawTunnelRefusesPreambles(t *testing.T) {
	p := newTunnelPKI(t)
	s := startTunnels(t, p)
	cert := p.issued(pki.KindEndpoint, servedVPCE, true)
	hello := clientHello(t, &tls.Config{})
	for name, consumed := range map[string][]byte{
		"the first byte alone":   {recordHandshake},
		"a TLS 1.2 ClientHello":  clientHello(t, &tls.Config{MaxVersion: tls.VersionTLS12}),
		"a ClientHello cut":      hello[:len(hello)-3],
		"application data first": record(recordApplication, []byte{1}),
	} {
		c := tunnelTo(t, s, cert, []string{TunnelProto}, mustAppend(t, Preamble{Source: netip.MustParseAddrPort("192.0.2.7:50123"), DstPort: 8443, Consumed: consumed, Raw: true}))
		if c == nil {
			t.Fatalf("%s: refused in the handshake", name)
		}
		if got := accepted(s.Listener(servedVPCE), 300*time.Millisecond); got != nil {
			got.Close()
			t.Errorf("%s: delivered", name)
		}
		if !closedByPeer(c) {
			t.Errorf("%s: the tunnel stays open", name)
		}
	}
}
