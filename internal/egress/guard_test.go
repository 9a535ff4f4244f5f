package egress

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestSpellingsRefused sends CONNECT and absolute-form requests for loopback, private and
// metadata addresses in every spelling through the proxy: each is refused, nothing is
// dialled, and the refusal is audited with its reason. Port 8080 is allowed to every
// address by a 0.0.0.0/0 and ::/0 rule, which must not open special-purpose ranges.
func TestSpellingsRefused(t *testing.T) {
	spec := loadSpec(t, specAddrs{})
	spellings := []struct{ host, means string }{
		{"127.0.0.2", "loopback"},
		{"2130706434", "loopback"},
		{"0177.0.0.2", "loopback"},
		{"0x7f.2", "loopback"},
		{"0x7F000002", "loopback"},
		{"127.2", "loopback"},
		{"127.0.2", "loopback"},
		{"127.0.0.2.", "loopback"},
		{"[::ffff:127.0.0.2]", "loopback"},
		{"[::FFFF:7F00:2]", "loopback"},
		{"[::1]", "loopback"},
		{"[0:0:0:0:0:0:0:1]", "loopback"},
		{"[64:ff9b::7f00:2]", "NAT64 of loopback"},
		{"[2002:7f00:2::]", "6to4 of loopback"},
		{"[::127.0.0.2]", "IPv4-compatible"},
		{"0", "unspecified"},
		{"0.0.0.0", "unspecified"},
		{"[::]", "unspecified"},
		{"10.0.0.1", "private"},
		{"012.0.0.1", "private"},
		{"0xa.0.0.1", "private"},
		{"167772161", "private"},
		{"10.1", "private"},
		{"[::ffff:10.0.0.1]", "private"},
		{"192.168.1.1", "private"},
		{"3232235777", "private"},
		{"0300.0250.1.1", "private"},
		{"172.16.0.1", "private"},
		{"100.64.0.1", "shared address space"},
		{"[fc00::1]", "unique local"},
		{"[FD12:3456::1]", "unique local"},
		{"169.254.169.254", "instance metadata"},
		{"2852039166", "instance metadata"},
		{"0xa9fea9fe", "instance metadata"},
		{"0251.0376.0251.0376", "instance metadata"},
		{"169.254.43518", "instance metadata"},
		{"[::ffff:169.254.169.254]", "instance metadata"},
		{"[::ffff:a9fe:a9fe]", "instance metadata"},
		{"[fd00:ec2::254]", "instance metadata"},
		{"[FD00:EC2:0::254]", "instance metadata"},
		{"169.254.170.2", "container metadata"},
		{"[fe80::1]", "link-local"},
		{"224.0.0.1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"4294967295", "broadcast"},
		{"198.18.0.1", "benchmarking"},
		{"192.0.2.1", "documentation"},
		{"240.0.0.1", "reserved"},
		// Refused as malformed rather than read.
		{"%31%32%37.0.0.1", "invalid host"},
		{"[fe80::1%25lo]", "invalid host"},
		{"127.0.0.1..", "invalid host"},
		{"0x7f.0x0.0x0.0x1g", "invalid host"},
	}
	tp := newTestProxy(t, spec, testResolver(), nil)
	for _, s := range spellings {
		for _, target := range []struct{ method, uri string }{
			{http.MethodConnect, s.host + ":8080"},
			{http.MethodConnect, s.host + ":443"},
			{http.MethodGet, "http://" + s.host + ":8080/latest/meta-data/"},
		} {
			t.Run(target.method+" "+target.uri, func(t *testing.T) {
				before := len(tp.audit.all())
				w := tp.serve(target.method, target.uri, "service-a-1")
				if w.Code < 400 {
					t.Fatalf("status %d: allowed", w.Code)
				}
				evs := tp.audit.all()
				if len(evs) != before+1 {
					t.Fatalf("%d audit events, want 1", len(evs)-before)
				}
				ev := evs[len(evs)-1]
				if ev.ErrorCode == "" || ev.ErrorMessage == "" || ev.ErrorCode != w.Header().Get("X-Phantom-Egress-Error") {
					t.Fatalf("audit errorCode %q message %q, response %q", ev.ErrorCode, ev.ErrorMessage, w.Header().Get("X-Phantom-Egress-Error"))
				}
				if s.means != "invalid host" && ev.ErrorCode == CodeInvalidRequest {
					t.Fatalf("%s was refused as malformed (%s), want read as %s", s.host, ev.ErrorMessage, s.means)
				}
				if ev.ErrorCode == CodeAddressNotAllowed && !strings.Contains(strings.ToLower(ev.ErrorMessage), strings.ToLower(s.means)) {
					t.Fatalf("reason %q does not say %q", ev.ErrorMessage, s.means)
				}
			})
		}
	}
	if d := tp.dial.all(); len(d) != 0 {
		t.Fatalf("dialled %v", d)
	}
}

// TestNameResolvingToDenied: a name an allowed rule names but whose answer is a denied
// address is refused, whatever the spelling of the answer.
func TestNameResolvingToDenied(t *testing.T) {
	for _, answer := range []string{"127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254", "fd00:ec2::254", "10.0.0.1", "0.0.0.0", "64:ff9b::a9fe:a9fe"} {
		t.Run(answer, func(t *testing.T) {
			res := newResolver(map[string][]string{"api.example.com": {"93.184.216.34", answer}})
			tp := newTestProxy(t, loadSpec(t, specAddrs{}), res, nil)
			w := tp.serve(http.MethodConnect, "api.example.com:443", "service-a-1")
			if w.Code != http.StatusForbidden {
				t.Fatalf("status %d", w.Code)
			}
			ev := tp.audit.last(t)
			if ev.ErrorCode != CodeAddressNotAllowed || !strings.Contains(ev.ErrorMessage, "api.example.com resolves to") {
				t.Fatalf("audit %s %q", ev.ErrorCode, ev.ErrorMessage)
			}
			if got := ev.RequestParameters["resolvedAddresses"].([]string); len(got) != 2 {
				t.Fatalf("resolvedAddresses %v", got)
			}
			if d := tp.dial.all(); len(d) != 0 {
				t.Fatalf("dialled %v: one allowed answer must not carry a denied one", d)
			}
		})
	}
}

// TestDNSRebinding: the resolver answers a public address first and loopback after. The
// proxy looks the name up once and dials exactly the address it checked, so the second
// answer is never used; a lookup that gets the loopback answer is refused.
func TestDNSRebinding(t *testing.T) {
	res := newResolver(map[string][]string{"rebind.example.com": {"93.184.216.35", "|", "127.0.0.1"}})
	tp := newTestProxy(t, loadSpec(t, specAddrs{}), res, nil)
	tp.dial.fake = true
	addr := startProxy(t, tp)

	resp := rawConnect(t, addr, "rebind.example.com:443", tp.auth("service-a-1"))
	if resp != "HTTP/1.1 200 Connection established" {
		t.Fatalf("first CONNECT: %q", resp)
	}
	if n := res.count("rebind.example.com"); n != 1 {
		t.Fatalf("%d lookups for one CONNECT, want 1", n)
	}
	if d := tp.dial.all(); len(d) != 1 || d[0] != "93.184.216.35:443" {
		t.Fatalf("dialled %v, want the checked 93.184.216.35:443 only", d)
	}
	ev := tp.audit.last(t)
	if ev.ErrorCode != "" || ev.ResponseElements["connectedAddress"] != "93.184.216.35:443" {
		t.Fatalf("allowed event: %s %v", ev.ErrorCode, ev.ResponseElements)
	}

	// The next lookup rebinds to loopback: refused, nothing more dialled.
	resp = rawConnect(t, addr, "rebind.example.com:443", tp.auth("service-a-1"))
	if !strings.HasPrefix(resp, "HTTP/1.1 403") {
		t.Fatalf("second CONNECT: %q", resp)
	}
	if n := res.count("rebind.example.com"); n != 2 {
		t.Fatalf("%d lookups after two CONNECTs", n)
	}
	if d := tp.dial.all(); len(d) != 1 {
		t.Fatalf("dialled %v", d)
	}
	if ev := tp.audit.last(t); ev.ErrorCode != CodeAddressNotAllowed {
		t.Fatalf("second event %s", ev.ErrorCode)
	}
}

// TestDenyList: the agent's IMDS listener is refused even under a rule that allows every
// loopback port.
func TestDenyList(t *testing.T) {
	imds := netip.MustParseAddrPort("127.0.0.1:40123")
	tp := newTestProxy(t, loadSpec(t, specAddrs{}), testResolver(), func(c *Config) {
		c.Deny = []netip.AddrPort{imds, netip.MustParseAddrPort("[::ffff:127.0.0.1]:40124")}
	})
	for _, target := range []string{"127.0.0.1:40123", "2130706433:40123", "0x7f.0.0.1:40124", "[::ffff:127.0.0.1]:40123"} {
		q := tp.decideFor(http.MethodConnect, target, "open-1")
		if q.code != CodeAddressNotAllowed || !strings.Contains(q.reason, "metadata") {
			t.Errorf("%s: %q %q", target, q.code, q.reason)
		}
	}
	if q := tp.decideFor(http.MethodConnect, "127.0.0.1:40125", "open-1"); q.code != "" {
		t.Errorf("another loopback port under the open rule: %s %s", q.code, q.reason)
	}
}

// TestAuditFailureRefuses: an allowed CONNECT whose event cannot be written is refused and
// the upstream connection closed before any byte is relayed.
func TestAuditFailureRefuses(t *testing.T) {
	tp := newTestProxy(t, loadSpec(t, specAddrs{}), testResolver(), nil)
	tp.dial.fake = true
	tp.audit.fail = true
	addr := startProxy(t, tp)
	if resp := rawConnect(t, addr, "api.example.com:443", tp.auth("service-a-1")); !strings.HasPrefix(resp, "HTTP/1.1 500") {
		t.Fatalf("allowed CONNECT with a failing audit: %q", resp)
	}
	if resp := rawConnect(t, addr, "evil.example.net:443", tp.auth("service-a-1")); !strings.HasPrefix(resp, "HTTP/1.1 500") {
		t.Fatalf("refused CONNECT with a failing audit: %q", resp)
	}
	w := tp.serve(http.MethodGet, "http://api.example.com:8000/", "service-a-1")
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("forward with a failing audit: %d", w.Code)
	}
}

// TestLimits: a request head over MaxHeaderBytes is refused by the server (431) and a
// client that never finishes its head is cut off after ReadHeaderTimeout.
func TestLimits(t *testing.T) {
	tp := newTestProxy(t, loadSpec(t, specAddrs{}), testResolver(), func(c *Config) {
		c.MaxHeaderBytes = 4 << 10
		c.ReadHeaderTimeout = 300 * time.Millisecond
	})
	addr := startProxy(t, tp)
	big := "X-Pad: " + strings.Repeat("a", 16<<10) + "\r\n"
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT api.example.com:443 HTTP/1.1\r\nHost: x\r\n"+big+"\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 431") {
		t.Fatalf("oversized head: %q", line)
	}

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "CONNECT api.example.com:443 HTTP/1.1\r\n")
	start := time.Now()
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("slow client: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("an unfinished head held the connection for %s", d)
	}
	if d := tp.dial.all(); len(d) != 0 {
		t.Fatalf("dialled %v", d)
	}
}

// TestTooManyTunnels: past MaxTunnels a CONNECT is refused with 503, audited.
func TestTooManyTunnels(t *testing.T) {
	tp := newTestProxy(t, loadSpec(t, specAddrs{}), testResolver(), func(c *Config) { c.MaxTunnels = 1 })
	tp.dial.fake = true
	addr := startProxy(t, tp)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT api.example.com:443 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: "+tp.auth("service-a-1")+"\r\n\r\n")
	if line, _ := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("first tunnel: %q", line)
	}
	if line := rawConnect(t, addr, "api.example.com:443", tp.auth("service-a-1")); !strings.HasPrefix(line, "HTTP/1.1 503") {
		t.Fatalf("second tunnel: %q", line)
	}
	if ev := tp.audit.last(t); ev.ErrorCode != CodeTooManyTunnels {
		t.Fatalf("audit %q", ev.ErrorCode)
	}
}
