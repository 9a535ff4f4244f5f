package egress

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// testResolver answers the names of the test spec's rules.
func testResolver() *fakeResolver {
	return newResolver(map[string][]string{
		"bucket.s3.us-east-1.amazonaws.com": {"52.216.1.1"},
		"a.b.s3.us-east-1.amazonaws.com":    {"52.216.1.2", "2600:1f18::1"},
		"api.example.com":                   {"93.184.216.34"},
		"internal.example.com":              {"10.20.1.5"},
		"localhost":                         {"127.0.0.1", "::1"},
		"rebind.example.com":                {"93.184.216.35", "|", "127.0.0.1"},
		"mapped.example.com":                {"::ffff:10.0.0.1"},
	})
}

func TestDecide(t *testing.T) {
	spec := loadSpec(t, specAddrs{})
	for _, c := range []struct {
		name, method, target, node string
		code                       string   // "" = allowed
		dial                       []string // the checked addresses
		rule                       string
	}{
		// Rule kinds.
		{name: "api endpoint by listen address", target: "127.0.0.1:8443", dial: []string{"127.0.0.1:8443"}, rule: "api:a1b2c3d4e5 via vpce-0123456789abcdef0"},
		{name: "api endpoint by private DNS name, no DNS query", target: "orders.internal.example:8443", dial: []string{"127.0.0.1:8443"}, rule: "api:a1b2c3d4e5 via vpce-0123456789abcdef0"},
		{name: "private DNS name mixed case, trailing dot", target: "Orders.Internal.Example.:8443", dial: []string{"127.0.0.1:8443"}},
		{name: "private DNS name on another port", target: "orders.internal.example:443", code: CodePortNotAllowed},
		{name: "endpoint address on another port", target: "127.0.0.1:22", code: CodePortNotAllowed},
		{name: "wildcard host", target: "bucket.s3.us-east-1.amazonaws.com:443", dial: []string{"52.216.1.1:443"}, rule: "host:*.s3.us-east-1.amazonaws.com:443"},
		{name: "wildcard, two labels, every answer dialled in order", target: "a.b.s3.us-east-1.amazonaws.com:443", dial: []string{"52.216.1.2:443", "[2600:1f18::1]:443"}},
		{name: "wildcard does not match the domain itself", target: "s3.us-east-1.amazonaws.com:443", code: CodeDestinationNotAllow},
		{name: "wildcard is not a substring match", target: "evils3.us-east-1.amazonaws.com:443", code: CodeDestinationNotAllow},
		{name: "exact host", target: "api.example.com:443", dial: []string{"93.184.216.34:443"}},
		{name: "exact host, port range", target: "api.example.com:8001", dial: []string{"93.184.216.34:8001"}},
		{name: "allowed host on another port", target: "api.example.com:8443", code: CodePortNotAllowed},
		{name: "host not in the rules", target: "evil.example.net:443", code: CodeDestinationNotAllow},
		{name: "subdomain of an exact host", target: "x.api.example.com:443", code: CodeDestinationNotAllow},
		{name: "IP host rule", target: "93.184.216.34:443", dial: []string{"93.184.216.34:443"}},
		{name: "IP host rule, other port", target: "93.184.216.34:80", code: CodePortNotAllowed},
		{name: "public IP only the broad rule names, other port", target: "8.8.8.8:443", code: CodePortNotAllowed},
		{name: "public IPv6 only the broad rule names, other port", target: "[2606:4700::1111]:443", code: CodePortNotAllowed},
		{name: "CIDR rule lifts the private guard", target: "10.20.3.4:443", dial: []string{"10.20.3.4:443"}, rule: "cidr:10.20.0.0/16:443"},
		{name: "private address outside the CIDR", target: "10.21.0.1:443", code: CodeAddressNotAllowed},
		{name: "broad CIDR allows public addresses", target: "8.8.8.8:8080", dial: []string{"8.8.8.8:8080"}},
		{name: "broad CIDR does not lift the loopback guard", target: "127.0.0.2:8080", code: CodeAddressNotAllowed},
		{name: "broad CIDR does not lift the metadata guard", target: "169.254.169.254:8080", code: CodeAddressNotAllowed},
		{name: "broad IPv6 CIDR does not lift ::1", target: "[::1]:8080", code: CodeAddressNotAllowed},
		{name: "name resolving to a CIDR-allowed private address", target: "internal.example.com:443", dial: []string{"10.20.1.5:443"}},
		{name: "name resolving to loopback", target: "localhost:443", code: CodeAddressNotAllowed},
		{name: "name resolving to IPv4-mapped private", target: "mapped.example.com:443", code: CodeDestinationNotAllow},
		{name: "unresolvable allowed name", target: "nx.s3.us-east-1.amazonaws.com:443", code: CodeDNSFailed},
		{name: "the test server's CIDR", target: "127.0.0.1:9443", dial: []string{"127.0.0.1:9443"}},
		{name: "metadata", target: "169.254.169.254:80", code: CodeAddressNotAllowed},
		{name: "metadata IPv6", target: "[fd00:ec2::254]:80", code: CodeAddressNotAllowed},
		{name: "role without egress rules", target: "api.example.com:443", node: "batch-1", code: CodeDestinationNotAllow},
		{name: "rules are per role", target: "127.0.0.1:9443", node: "batch-1", code: CodeAddressNotAllowed},
		{name: "exact metadata rule lifts the guard", target: "169.254.169.254:80", node: "open-1", dial: []string{"169.254.169.254:80"}},
		// Forward (absolute-form).
		{name: "forward to allowed host", method: "GET", target: "http://api.example.com:8000/x?y", dial: []string{"93.184.216.34:8000"}},
		{name: "forward default port 80 not allowed", method: "GET", target: "http://api.example.com/x", code: CodePortNotAllowed},
		{name: "forward https refused", method: "GET", target: "https://api.example.com/", code: CodeInvalidRequest},
		{name: "forward other scheme", method: "GET", target: "ftp://api.example.com/", code: CodeInvalidRequest},
		{name: "origin-form is not a proxy request", method: "GET", target: "/latest/meta-data/", code: CodeInvalidRequest},
		{name: "forward with userinfo", method: "GET", target: "http://u:p@api.example.com:8000/", code: CodeInvalidRequest},
		{name: "forward to metadata decimal", method: "GET", target: "http://2852039166/latest/meta-data/", code: CodeAddressNotAllowed},
		{name: "CONNECT without port", target: "api.example.com", code: CodeInvalidRequest},
		// Authentication.
		{name: "no credentials", target: "api.example.com:443", node: "-", code: CodeAuthRequired},
		{name: "unknown node", target: "api.example.com:443", node: "ghost", code: CodeAuthRequired},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := newTestProxy(t, spec, testResolver(), nil)
			method := c.method
			if method == "" {
				method = http.MethodConnect
			}
			node := c.node
			switch node {
			case "":
				node = "service-a-1"
			case "-":
				node = ""
			}
			q := tp.decideFor(method, c.target, node)
			if q.code != c.code {
				t.Fatalf("%s %s: code %q (%s), want %q", method, c.target, q.code, q.reason, c.code)
			}
			if c.code != "" {
				if q.reason == "" {
					t.Fatal("a refusal without a reason")
				}
				if len(q.addrs) != 0 {
					t.Fatalf("a refusal left addresses to dial: %v", q.addrs)
				}
				return
			}
			var got []string
			for _, a := range q.addrs {
				got = append(got, a.String())
			}
			if !slices.Equal(got, c.dial) {
				t.Fatalf("checked addresses %v, want %v", got, c.dial)
			}
			if c.rule != "" && !strings.HasPrefix(q.rule, c.rule) {
				t.Fatalf("rule %q, want %q", q.rule, c.rule)
			}
			if strings.Contains(c.target, "orders.internal.example") && tp.res.count("orders.internal.example") != 0 {
				t.Fatal("a private DNS name of an allowed endpoint was looked up")
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	tp := newTestProxy(t, loadSpec(t, specAddrs{}), testResolver(), nil)
	for _, c := range []struct{ name, header string }{
		{"wrong password", "Basic " + b64("service-a-1:nope")},
		{"another node's password", "Basic " + b64("service-a-1:"+tp.password("batch-1"))},
		{"not basic", "Bearer " + tp.password("service-a-1")},
		{"not base64", "Basic !!!"},
		{"no colon", "Basic " + b64("service-a-1")},
		{"empty user", "Basic " + b64(":"+tp.password(""))},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReq(http.MethodConnect, "api.example.com:443")
			r.Header.Set("Proxy-Authorization", c.header)
			w := newRecorder()
			tp.ServeHTTP(w, r)
			if w.Code != http.StatusProxyAuthRequired || w.Header().Get("Proxy-Authenticate") != `Basic realm="phantom-egress"` {
				t.Fatalf("status %d, Proxy-Authenticate %q", w.Code, w.Header().Get("Proxy-Authenticate"))
			}
			ev := tp.audit.last(t)
			if ev.ErrorCode != CodeAuthRequired || ev.UserIdentity.ARN != "" {
				t.Fatalf("audit %s identity %+v", ev.ErrorCode, ev.UserIdentity)
			}
			if strings.Contains(ev.ErrorMessage+fmt.Sprint(ev.RequestParameters["proxyUser"]), "nope") {
				t.Fatal("the password reached the audit event")
			}
		})
	}
	// Two headers: refused even if one is right.
	r := newReq(http.MethodConnect, "api.example.com:443")
	r.Header.Add("Proxy-Authorization", tp.auth("service-a-1"))
	r.Header.Add("Proxy-Authorization", tp.auth("open-1"))
	w := newRecorder()
	tp.ServeHTTP(w, r)
	if w.Code != http.StatusProxyAuthRequired {
		t.Fatalf("two Proxy-Authorization headers: status %d", w.Code)
	}
}

// TestUnspecifiedNeverOpens: a rule naming 0.0.0.0 or :: does not open them; a connection
// there would reach this host.
func TestUnspecifiedNeverOpens(t *testing.T) {
	spec := loadSpec(t, specAddrs{})
	rs := compileRules(spec, "open", 0)
	rs.prefixes = append(rs.prefixes,
		prefixRule{mustPrefix("0.0.0.0/8"), portRule{ports: defaultPorts, desc: "cidr:0.0.0.0/8"}},
		prefixRule{mustPrefix("::/128"), portRule{ports: defaultPorts, desc: "cidr:::/128"}},
		prefixRule{mustPrefix("224.0.0.0/4"), portRule{ports: defaultPorts, desc: "cidr:224.0.0.0/4"}},
	)
	for _, a := range []string{"0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0", "224.0.0.1", "255.255.255.255"} {
		if v := rs.checkAddr(mustAddr(a), 443, ""); v.code == "" {
			t.Errorf("%s opened by %s", a, v.rule)
		}
	}
}

// TestSelfAndRefusedTargetRecorded: the proxy refuses a tunnel to its own listener even
// under a rule that allows it, and a 407 event still names the requested destination.
func TestSelfAndRefusedTargetRecorded(t *testing.T) {
	tp := newTestProxy(t, loadSpec(t, specAddrs{}), testResolver(), nil)
	addr := startProxy(t, tp)
	if line := rawConnectFrom(t, "127.0.0.3", addr, addr, tp.auth("open-1")); !strings.HasPrefix(line, "HTTP/1.1 403") {
		t.Fatalf("CONNECT to the proxy itself: %q", line)
	}
	if ev := tp.audit.last(t); !strings.Contains(ev.ErrorMessage, "this proxy") {
		t.Fatalf("audit %q", ev.ErrorMessage)
	}
	if line := rawConnect(t, addr, "api.example.com:443", ""); !strings.HasPrefix(line, "HTTP/1.1 407") {
		t.Fatalf("no credentials: %q", line)
	}
	ev := tp.audit.last(t)
	if ev.ErrorCode != CodeAuthRequired || ev.RequestParameters["host"] != "api.example.com" || ev.RequestParameters["port"] != 443 {
		t.Fatalf("407 event %s %v", ev.ErrorCode, ev.RequestParameters)
	}
}
