package egress

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// TestRefusedAndAudited is the list: through the egress proxy each of these is
// refused and audited with its reason — a host not in the role's rules, an allowed host
// on another port, the metadata addresses (169.254.169.254 and the agent's loopback IMDS
// listener), loopback and private addresses in every spelling (more in
// TestSpellingsRefused), a host name that resolves to a denied address, and DNS answers
// that change between check and connect (more in TestDNSRebinding).
func TestRefusedAndAudited(t *testing.T) {
	imds := netip.MustParseAddrPort("127.0.0.1:41234")
	res := newResolver(map[string][]string{
		"api.example.com":      {"93.184.216.34"},
		"internal.example.com": {"127.0.0.1"},
		"rebind.example.com":   {"93.184.216.35", "|", "169.254.169.254"},
	})
	tp := newTestProxy(t, loadSpec(t, specAddrs{}), res, func(c *Config) { c.Deny = []netip.AddrPort{imds} })
	tp.dial.fake = true
	for _, c := range []struct {
		name, method, target, node, code, reason string
	}{
		{"host not in the rules", "CONNECT", "evil.example.net:443", "service-a-1", CodeDestinationNotAllow, "no egress rule"},
		{"host not in the rules, absolute-form", "GET", "http://evil.example.net/", "service-a-1", CodeDestinationNotAllow, "no egress rule"},
		{"allowed host on another port", "CONNECT", "api.example.com:22", "service-a-1", CodePortNotAllowed, "port 22"},
		{"metadata", "CONNECT", "169.254.169.254:80", "service-a-1", CodeAddressNotAllowed, "instance metadata"},
		{"metadata, absolute-form", "GET", "http://169.254.169.254/latest/api/token", "service-a-1", CodeAddressNotAllowed, "instance metadata"},
		{"metadata IPv6", "CONNECT", "[fd00:ec2::254]:80", "service-a-1", CodeAddressNotAllowed, "instance metadata"},
		{"agent's loopback IMDS", "GET", "http://127.0.0.1:41234/latest/meta-data/", "service-a-1", CodeAddressNotAllowed, "metadata service"},
		{"agent's loopback IMDS under a rule opening loopback", "GET", "http://127.0.0.1:41234/latest/meta-data/", "open-1", CodeAddressNotAllowed, "metadata service"},
		{"agent's loopback IMDS, decimal, rule opening loopback", "CONNECT", "2130706433:41234", "open-1", CodeAddressNotAllowed, "metadata service"},
		{"loopback decimal", "CONNECT", "2130706434:8080", "service-a-1", CodeAddressNotAllowed, "loopback"},
		{"loopback octal", "CONNECT", "0177.0.0.2:8080", "service-a-1", CodeAddressNotAllowed, "loopback"},
		{"loopback hex", "CONNECT", "0x7f.2:8080", "service-a-1", CodeAddressNotAllowed, "loopback"},
		{"loopback IPv4-mapped", "CONNECT", "[::ffff:127.0.0.2]:8080", "service-a-1", CodeAddressNotAllowed, "loopback"},
		{"loopback trailing dot", "CONNECT", "127.0.0.2.:8080", "service-a-1", CodeAddressNotAllowed, "loopback"},
		{"private decimal", "CONNECT", "167772161:8080", "service-a-1", CodeAddressNotAllowed, "private"},
		{"private short form", "GET", "http://10.1:8080/", "service-a-1", CodeAddressNotAllowed, "private"},
		{"name resolving to a denied address", "CONNECT", "internal.example.com:443", "service-a-1", CodeAddressNotAllowed, "resolves to 127.0.0.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(tp.audit.all())
			w := tp.serve(c.method, c.target, c.node)
			if w.Code != http.StatusForbidden || !strings.HasPrefix(w.Body.String(), c.code+": ") {
				t.Fatalf("%d %q, want 403 %s", w.Code, w.Body.String(), c.code)
			}
			evs := tp.audit.all()
			if len(evs) != before+1 {
				t.Fatalf("%d events", len(evs)-before)
			}
			ev := evs[len(evs)-1]
			if ev.ErrorCode != c.code || !strings.Contains(ev.ErrorMessage, c.reason) || ev.EventSource != "egress.phantom.amazonaws.com" {
				t.Fatalf("event %s %q from %s, want %s containing %q", ev.ErrorCode, ev.ErrorMessage, ev.EventSource, c.code, c.reason)
			}
			if want := "arn:aws:sts::123456789012:assumed-role/"; !strings.HasPrefix(ev.UserIdentity.ARN, want) || ev.RequestParameters["host"] == nil {
				t.Fatalf("event identity %q params %v", ev.UserIdentity.ARN, ev.RequestParameters)
			}
		})
	}
	// DNS answers that change between check and connect: the first answer is checked and
	// dialled, the changed one is refused on the next lookup, never dialled.
	if w := tp.decideFor("CONNECT", "rebind.example.com:443", "service-a-1"); w.code != "" || w.addrs[0].String() != "93.184.216.35:443" {
		t.Fatalf("first answer: %s %v", w.code, w.addrs)
	}
	w := tp.serve("CONNECT", "rebind.example.com:443", "service-a-1")
	if w.Code != http.StatusForbidden || tp.audit.last(t).ErrorCode != CodeAddressNotAllowed {
		t.Fatalf("rebound answer: %d %s", w.Code, w.Body.String())
	}
	if d := tp.dial.all(); len(d) != 0 {
		t.Fatalf("dialled %v", d)
	}
}
