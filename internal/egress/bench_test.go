package egress

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

type nopAudit struct{}

func (nopAudit) Record(context.Context, *audit.Event) error { return nil }

// BenchmarkDecision is the cost of one CONNECT decision (authenticate, parse, match,
// resolve through an in-memory resolver, guard), without I/O. The baseline is parsing
// the same target with net.SplitHostPort and netip.ParseAddr, the least any proxy does.
func BenchmarkDecision(b *testing.B) {
	spec := loadSpec(b, specAddrs{})
	tp := newTestProxy(b, spec, testResolver(), func(c *Config) { c.Auditor = nopAudit{} })
	for _, c := range []struct{ name, target string }{
		{"ip-cidr", "10.20.3.4:443"},
		{"name-wildcard", "bucket.s3.us-east-1.amazonaws.com:443"},
		{"api-private-dns", "orders.internal.example:8443"},
		{"denied-decimal-loopback", "2130706433:8080"},
	} {
		r := newReq(http.MethodConnect, c.target)
		r.Header.Set("Proxy-Authorization", tp.auth("service-a-1"))
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				q := &request{r: r, spec: spec}
				q.ev = tp.newEvent(spec, "Connect", r)
				tp.decide(r.Context(), q)
			}
		})
	}
	b.Run("baseline-parse-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h, _, _ := net.SplitHostPort("10.20.3.4:443")
			_, _ = netipParse(h)
		}
	})
}

// sinkServer accepts connections and discards what they send; on EOF it answers one byte.
func sinkServer(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
				c.Write([]byte{1})
			}()
		}
	}()
	return ln.Addr().String()
}

// benchProxy is a proxy whose spec allows the sink server's address and port.
func benchProxy(b *testing.B, sink string) (*testProxy, string) {
	spec := loadSpec(b, specAddrs{Allowed: mustAddrPort(sink)})
	tp := newTestProxy(b, spec, testResolver(), func(c *Config) { c.Auditor = nopAudit{}; c.Dialer = nil })
	return tp, startProxy(b, tp)
}

// connectVia opens a tunnel to target through the proxy.
func connectVia(b *testing.B, proxy, target, auth string) net.Conn {
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		b.Fatal(err)
	}
	io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\nProxy-Authorization: "+auth+"\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		b.Fatalf("CONNECT: %q %v", line, err)
	}
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	return c
}

// BenchmarkConnectSetup: a TCP connection to the sink, direct versus a CONNECT tunnel
// through the proxy (a second connection, the decision, the audit call, the 200).
func BenchmarkConnectSetup(b *testing.B) {
	sink := sinkServer(b)
	tp, proxy := benchProxy(b, sink)
	auth := tp.auth("service-a-1")
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, err := net.Dial("tcp", sink)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("proxy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			connectVia(b, proxy, sink, auth).Close()
		}
	})
}

// BenchmarkTunnelThroughput: bytes to the sink over one connection, direct versus through
// a tunnel.
func BenchmarkTunnelThroughput(b *testing.B) {
	sink := sinkServer(b)
	tp, proxy := benchProxy(b, sink)
	chunk := make([]byte, 64<<10)
	run := func(b *testing.B, c net.Conn) {
		b.SetBytes(int64(len(chunk)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			b.Fatalf("ack: %v", err)
		}
		c.Close()
	}
	b.Run("direct", func(b *testing.B) {
		c, err := net.Dial("tcp", sink)
		if err != nil {
			b.Fatal(err)
		}
		run(b, c)
	})
	b.Run("proxy", func(b *testing.B) {
		run(b, connectVia(b, proxy, sink, tp.auth("service-a-1")))
	})
}
