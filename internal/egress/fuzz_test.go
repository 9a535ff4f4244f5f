package egress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// FuzzParseHost: whatever ParseHost accepts is unambiguous. An address is its own
// canonical spelling's address (so the guard sees what a connection would reach); a name
// is something no IP parser reads as an address, so it can only reach a resolver, whose
// answers are checked.
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "[::ffff:127.0.0.1]", "[::1]", "::1",
		"localhost.", "LOCALHOST", "%31%32%37.0.0.1", "[fe80::1%25eth0]", "0x7f.0x0.0x0.0x1", "0xa9fea9fe",
		"169.254.169.254.", "api.example.com", "*.example.com", "1.2.3.4.nip.io", "0x", "0", "4294967296",
		"[64:ff9b::7f00:1]", "[2002:7f00:1::]", "example.0x1", "a..b", "09.1.1.1", "1e1.1.1.1", "\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHost(s)
		if err != nil {
			inner := s
			if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
				inner = s[1 : len(s)-1]
			}
			if a, perr := netip.ParseAddr(inner); perr == nil && a.Zone() == "" && (inner == s || a.Is6()) && !strings.ContainsAny(inner, "[]") {
				t.Fatalf("ParseHost(%q) refused a plain address %s: %v", s, a, err)
			}
			return
		}
		if h.IsAddr() == (h.Name != "") {
			t.Fatalf("ParseHost(%q) = %+v: exactly one of Name and Addr", s, h)
		}
		if h.IsAddr() {
			a := h.Addr
			if a.Zone() != "" || a.Is4In6() {
				t.Fatalf("ParseHost(%q) = %s: zoned or IPv4-mapped", s, a)
			}
			again, err := ParseHost(a.String())
			if err != nil || again.Addr != a {
				t.Fatalf("ParseHost(%q) = %s, but its canonical spelling parses to %v, %v", s, a, again, err)
			}
			if p, perr := netip.ParseAddr(strings.Trim(s, "[]")); perr == nil && p.Unmap() != a {
				t.Fatalf("ParseHost(%q) = %s, netip reads %s", s, a, p)
			}
			if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil {
				if na, _ := netip.AddrFromSlice(ip); na.Unmap() != a {
					t.Fatalf("ParseHost(%q) = %s, net.ParseIP reads %s", s, a, ip)
				}
			}
			return
		}
		n := h.Name
		if n != strings.ToLower(n) || strings.HasSuffix(n, ".") || strings.ContainsAny(n, "%:[]/@\\ \t\x00") {
			t.Fatalf("ParseHost(%q) = name %q is not canonical", s, n)
		}
		if _, err := netip.ParseAddr(n); err == nil || net.ParseIP(n) != nil {
			t.Fatalf("ParseHost(%q) = name %q, which is an IP address", s, n)
		}
		labels := strings.Split(n, ".")
		if numericLabel(labels[len(labels)-1]) {
			t.Fatalf("ParseHost(%q) = name %q ends in a number", s, n)
		}
		if _, ok := parseIPv4(labels); ok {
			t.Fatalf("ParseHost(%q) = name %q, which inet_aton reads as an address", s, n)
		}
	})
}

// refusingDialer records what the proxy dials and connects nowhere.
type refusingDialer struct {
	mu     sync.Mutex
	dialed []string
}

func (d *refusingDialer) DialContext(_ context.Context, _, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, addr)
	d.mu.Unlock()
	return nil, errors.New("refused by the fuzz dialer")
}

// FuzzProxyRequest feeds raw proxy requests through the handler. Every request net/http
// can read gets exactly one audit event whose code the response carries, and every
// address the proxy dials is one the test spec allows that node (never a guarded address
// no rule names).
func FuzzProxyRequest(f *testing.F) {
	key := testPasswordKey()
	spec := loadSpec(f, specAddrs{})
	auth := func(node string) string {
		n, _ := spec.Node(node)
		return "Proxy-Authorization: Basic " + b64(node+":"+testPassword(key, node, n.PrivateIP)) + "\r\n"
	}
	for _, s := range []string{
		"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n" + auth("service-a-1") + "\r\n",
		"CONNECT 127.0.0.1:8443 HTTP/1.1\r\nHost: x\r\n" + auth("service-a-1") + "\r\n",
		"CONNECT orders.internal.example:8443 HTTP/1.1\r\nHost: x\r\n" + auth("service-a-1") + "\r\n",
		"CONNECT 2130706433:8080 HTTP/1.1\r\nHost: x\r\n" + auth("service-a-1") + "\r\n",
		"CONNECT [::ffff:169.254.169.254]:80 HTTP/1.1\r\nHost: x\r\n" + auth("open-1") + "\r\n",
		"CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: x\r\n" + auth("open-1") + "\r\n",
		"GET http://api.example.com:8000/a?b HTTP/1.1\r\nHost: api.example.com:8000\r\n" + auth("service-a-1") + "\r\n",
		"GET http://0x7f.1:8080/ HTTP/1.1\r\nHost: x\r\n" + auth("service-a-1") + "\r\n",
		"GET http://internal.example.com:443/ HTTP/1.1\r\nHost: x\r\n" + auth("service-a-1") + "\r\n",
		"GET https://api.example.com/ HTTP/1.1\r\nHost: x\r\n" + auth("service-a-1") + "\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT api.example.com:443 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic Og==\r\n\r\n",
		"CONNECT localhost:443 HTTP/1.1\r\nHost: x\r\n" + auth("service-a-1") + "\r\n",
		"CONNECT rebind.example.com:443 HTTP/1.1\r\nHost: x\r\n" + auth("service-a-1") + "\r\n",
	} {
		f.Add([]byte(s))
	}
	allowed := map[string]map[string]bool{
		"service-a-1": {"127.0.0.1:8443": true, "127.0.0.1:9443": true, "127.0.0.1:9080": true},
		"open-1":      {"169.254.169.254:80": true},
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		// From the address of the node the request names, where its password is accepted.
		r.RemoteAddr = "127.0.0.1:50000"
		if user, _, ok := r.BasicAuth(); ok {
			if n, ok := spec.Node(user); ok {
				r.RemoteAddr = n.PrivateIP.String() + ":50000"
			}
		}
		if v := r.Header.Get("Proxy-Authorization"); v != "" {
			pr := &http.Request{Header: http.Header{"Authorization": {v}}}
			if user, _, ok := pr.BasicAuth(); ok {
				if n, ok := spec.Node(user); ok {
					r.RemoteAddr = n.PrivateIP.String() + ":50000"
				}
			}
		}
		tp := newTestProxy(t, spec, testResolver(), nil)
		d := &refusingDialer{}
		tp.cfg.Dialer = d
		w := httptest.NewRecorder()
		tp.ServeHTTP(w, r)
		evs := tp.audit.all()
		if len(evs) != 1 {
			t.Fatalf("%d audit events for one request", len(evs))
		}
		ev := evs[0]
		if w.Header().Get("X-Phantom-Egress-Error") != ev.ErrorCode && w.Code != http.StatusBadGateway {
			t.Fatalf("response %d %q, audit %q", w.Code, w.Header().Get("X-Phantom-Egress-Error"), ev.ErrorCode)
		}
		node, _ := ev.AdditionalEventData["node"].(string)
		for _, a := range d.dialed {
			ap := netip.MustParseAddrPort(a)
			cidr := node == "service-a-1" && ap.Port() == 443 && netip.MustParsePrefix("10.20.0.0/16").Contains(ap.Addr())
			if _, _, guarded := Guard(ap.Addr()); guarded && !allowed[node][a] && !cidr {
				t.Fatalf("node %q: dialled %s, a guarded address no rule names (request %q)", node, a, raw)
			}
			if ev.ErrorCode == CodeAuthRequired {
				t.Fatalf("dialled %s for an unauthenticated request", a)
			}
		}
	})
}
