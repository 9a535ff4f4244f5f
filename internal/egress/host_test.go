package egress

import (
	"net/netip"
	"testing"
)

func TestParseHost(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     string // canonical; "" means refused
	}{
		{"dotted decimal", "127.0.0.1", "127.0.0.1"},
		{"decimal dword (inet_aton)", "2130706433", "127.0.0.1"},
		{"octal parts", "0177.0.0.1", "127.0.0.1"},
		{"octal with many zeros", "0177.0000.0000.00000001", "127.0.0.1"},
		{"hex two parts", "0x7f.1", "127.0.0.1"},
		{"hex dword", "0x7F000001", "127.0.0.1"},
		{"short form a.b", "127.1", "127.0.0.1"},
		{"short form a.b.c", "127.0.1", "127.0.0.1"},
		{"mixed bases", "0x7f.0.0.01", "127.0.0.1"},
		{"trailing dot on an address", "127.0.0.1.", "127.0.0.1"},
		{"octal ten", "012.0.0.1", "10.0.0.1"},
		{"decimal metadata", "2852039166", "169.254.169.254"},
		{"hex metadata", "0xa9fea9fe", "169.254.169.254"},
		{"octal metadata", "0251.0376.0251.0376", "169.254.169.254"},
		{"zero", "0", "0.0.0.0"},
		{"bare 0x is zero (WHATWG)", "0x", "0.0.0.0"},
		{"all ones", "4294967295", "255.255.255.255"},
		{"IPv4-mapped bracketed", "[::ffff:127.0.0.1]", "127.0.0.1"},
		{"IPv4-mapped hex", "[::ffff:7f00:1]", "127.0.0.1"},
		{"IPv4-mapped long", "[0:0:0:0:0:ffff:127.0.0.1]", "127.0.0.1"},
		{"IPv6 loopback", "[::1]", "::1"},
		{"IPv6 unbracketed", "::1", "::1"},
		{"IPv6 upper case", "[FD00:EC2::254]", "fd00:ec2::254"},
		{"mixed-case name", "API.Example.COM", "api.example.com"},
		{"name with trailing dot", "api.example.com.", "api.example.com"},
		{"name with digits", "1.2.3.4.nip.io", "1.2.3.4.nip.io"},
		{"underscore", "_srv.example.com", "_srv.example.com"},
		{"overflowing dword", "4294967296", ""},
		{"part over 255", "256.0.0.1", ""},
		{"last part too big for a.b", "127.16777216", ""},
		{"five parts", "1.2.3.4.5", ""},
		{"bad octal digit", "08.0.0.1", ""},
		{"bad hex digit ends in number", "0x7g.1", ""},
		{"name ending in a number", "example.123", ""},
		{"name ending in hex", "example.0x1", ""},
		{"empty label", "a..b", ""},
		{"two trailing dots", "127.0.0.1..", ""},
		{"only a dot", ".", ""},
		{"percent-encoded", "%31%32%37.0.0.1", ""},
		{"zone id", "[fe80::1%25eth0]", ""},
		{"raw zone", "fe80::1%eth0", ""},
		{"unclosed bracket", "[::1", ""},
		{"bracketed IPv4", "[127.0.0.1]", ""},
		{"unicode", "exämple.com", ""},
		{"space", "a b.com", ""},
		{"empty", "", ""},
		{"slash", "a/b", ""},
		{"backslash", `a\b.com`, ""},
		{"userinfo", "u@a.com", ""},
		{"long label", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := ParseHost(c.in)
			if c.want == "" {
				if err == nil {
					t.Fatalf("ParseHost(%q) = %v, want refusal", c.in, h)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHost(%q): %v", c.in, err)
			}
			if h.String() != c.want {
				t.Fatalf("ParseHost(%q) = %s, want %s", c.in, h, c.want)
			}
		})
	}
}

func TestGuard(t *testing.T) {
	for _, c := range []struct {
		addr    string
		guarded bool
		rng     string
	}{
		{"127.0.0.1", true, "127.0.0.0/8"},
		{"10.1.2.3", true, "10.0.0.0/8"},
		{"172.31.255.255", true, "172.16.0.0/12"},
		{"172.32.0.1", false, ""},
		{"192.168.0.1", true, "192.168.0.0/16"},
		{"100.64.0.1", true, "100.64.0.0/10"},
		{"100.128.0.1", false, ""},
		{"169.254.169.254", true, "169.254.169.254/32"},
		{"169.254.1.1", true, "169.254.0.0/16"},
		{"169.254.170.2", true, "169.254.170.2/32"},
		{"0.0.0.0", true, "0.0.0.0/8"},
		{"224.0.0.1", true, "224.0.0.0/4"},
		{"255.255.255.255", true, "255.255.255.255/32"},
		{"240.0.0.1", true, "240.0.0.0/4"},
		{"192.0.2.1", true, "192.0.2.0/24"},
		{"198.18.0.1", true, "198.18.0.0/15"},
		{"198.51.100.7", true, "198.51.100.0/24"},
		{"203.0.113.9", true, "203.0.113.0/24"},
		{"8.8.8.8", false, ""},
		{"93.184.216.34", false, ""},
		{"::1", true, "::1/128"},
		{"::", true, "::/128"},
		{"::ffff:127.0.0.1", true, "127.0.0.0/8"},
		{"::127.0.0.1", true, "::/96"},
		{"fd00:ec2::254", true, "fd00:ec2::254/128"},
		{"fd12::1", true, "fc00::/7"},
		{"fe80::1", true, "fe80::/10"},
		{"ff02::1", true, "ff00::/8"},
		{"2001:db8::1", true, "2001:db8::/32"},
		{"2001:0:4136:e378::1", true, "2001::/32"},
		{"64:ff9b::7f00:1", true, "64:ff9b::7f00:0/104"},
		{"64:ff9b::a9fe:a9fe", true, "64:ff9b::a9fe:a9fe/128"},
		{"64:ff9b::808:808", false, ""},
		{"2002:7f00:1::", true, "2002:7f00::/24"},
		{"2002:c0a8:101::1", true, "2002:c0a8::/32"},
		{"2002:808:808::1", false, ""},
		{"2606:4700::1111", false, ""},
		{"4000::1", true, "4000::/3"},
	} {
		t.Run(c.addr, func(t *testing.T) {
			rng, reason, ok := Guard(netip.MustParseAddr(c.addr))
			if ok != c.guarded {
				t.Fatalf("Guard(%s) guarded = %v (%s), want %v", c.addr, ok, reason, c.guarded)
			}
			if ok && rng.String() != c.rng {
				t.Fatalf("Guard(%s) range %s, want %s", c.addr, rng, c.rng)
			}
		})
	}
}

func TestLifts(t *testing.T) {
	for _, c := range []struct {
		rule, rng string
		want      bool
	}{
		{"10.0.0.0/8", "10.0.0.0/8", true},
		{"10.20.0.0/16", "10.0.0.0/8", true},
		{"0.0.0.0/0", "10.0.0.0/8", false},
		{"0.0.0.0/0", "169.254.169.254/32", false},
		{"169.254.0.0/16", "169.254.169.254/32", false},
		{"169.254.169.254/32", "169.254.169.254/32", true},
		{"127.0.0.1/32", "127.0.0.0/8", true},
		{"::/0", "::1/128", false},
	} {
		if got := lifts(netip.MustParsePrefix(c.rule), netip.MustParsePrefix(c.rng)); got != c.want {
			t.Errorf("lifts(%s, %s) = %v, want %v", c.rule, c.rng, got, c.want)
		}
	}
}

func TestSplitHostPort(t *testing.T) {
	for _, c := range []struct {
		in, def, host string
		port          uint16
		ok            bool
	}{
		{"a.com:443", "", "a.com", 443, true},
		{"a.com", "80", "a.com", 80, true},
		{"a.com", "", "", 0, false},
		{"[::1]:443", "", "[::1]", 443, true},
		{"[::1]", "80", "[::1]", 80, true},
		{"::1:443", "", "", 0, false},
		{"a.com:0", "", "", 0, false},
		{"a.com:65536", "", "", 0, false},
		{"a.com:+443", "", "", 0, false},
		{"a.com:", "80", "", 0, false},
		{"u:p@a.com:443", "", "", 0, false},
		{":443", "", "", 0, false},
		{"[::1]x:443", "", "", 0, false},
		{"a.com:0443", "", "a.com", 443, true},
	} {
		h, p, err := SplitHostPort(c.in, c.def)
		if (err == nil) != c.ok || h != c.host || p != c.port {
			t.Errorf("SplitHostPort(%q, %q) = %q, %d, %v; want %q, %d, ok %v", c.in, c.def, h, p, err, c.host, c.port, c.ok)
		}
	}
}
