package egress

import (
	"net/netip"
)

// guardedRange is a special-purpose range the proxy refuses unless a rule names an
// address inside it deliberately (IANA IPv4 and IPv6 Special-Purpose Address Registries,
// RFC 6890, plus cloud metadata addresses).
type guardedRange struct {
	prefix netip.Prefix
	reason string
}

// guarded is ordered most specific first: the first match is the range an allowing rule
// must lie within.
var guarded = func() []guardedRange {
	rs := []struct{ p, reason string }{
		// Metadata services: AWS IMDS (IPv4 and Nitro IPv6), ECS task metadata, the
		// Amazon DNS and time servers. A rule must name them exactly.
		{"169.254.169.254/32", "instance metadata service"},
		{"169.254.170.2/32", "container metadata service"},
		{"169.254.169.253/32", "link-local DNS resolver"},
		{"169.254.169.123/32", "link-local time service"},
		{"fd00:ec2::254/128", "instance metadata service"},
		{"fd00:ec2::23/128", "link-local DNS resolver"},
		{"fd00:ec2::123/128", "link-local time service"},
		{"255.255.255.255/32", "limited broadcast"},

		{"0.0.0.0/8", "unspecified (this network)"},
		{"10.0.0.0/8", "private (RFC 1918)"},
		{"100.64.0.0/10", "shared address space (CGNAT, RFC 6598)"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private (RFC 1918)"},
		{"192.0.0.0/24", "IETF protocol assignments"},
		{"192.0.2.0/24", "documentation (TEST-NET-1)"},
		{"192.31.196.0/24", "AS112 service"},
		{"192.52.193.0/24", "AMT"},
		{"192.88.99.0/24", "6to4 relay anycast (deprecated)"},
		{"192.168.0.0/16", "private (RFC 1918)"},
		{"192.175.48.0/24", "AS112 service"},
		{"198.18.0.0/15", "benchmarking (RFC 2544)"},
		{"198.51.100.0/24", "documentation (TEST-NET-2)"},
		{"203.0.113.0/24", "documentation (TEST-NET-3)"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved"},

		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::/96", "IPv4-compatible IPv6 (deprecated)"},
		{"64:ff9b:1::/48", "local-use IPv4/IPv6 translation"},
		{"100::/64", "discard-only"},
		{"2001::/32", "Teredo tunnel"},
		{"2001:2::/48", "benchmarking"},
		{"2001:db8::/32", "documentation"},
		{"2001::/23", "IETF protocol assignments"},
		{"3fff::/20", "documentation"},
		{"fc00::/7", "unique local (private)"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local (deprecated)"},
		{"ff00::/8", "multicast"},
	}
	out := make([]guardedRange, len(rs))
	for i, r := range rs {
		out[i] = guardedRange{netip.MustParsePrefix(r.p), r.reason}
	}
	return out
}()

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
	globalV6    = netip.MustParsePrefix("2000::/3")
)

// Guard returns the special-purpose range addr lies in and why it is refused, or ok false
// when addr is an ordinary global unicast address. IPv6 addresses that embed an IPv4
// address a router would reach (IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16) are
// judged by the embedded address; the returned range is then the IPv6 image of the IPv4
// range, so only a rule inside that image lifts the guard.
func Guard(addr netip.Addr) (rng netip.Prefix, reason string, ok bool) {
	addr = addr.WithZone("")
	if addr.Is4In6() {
		return Guard(addr.Unmap())
	}
	if addr.Is6() {
		if nat64Prefix.Contains(addr) {
			return embedded(addr, nat64Prefix, 12, "NAT64 of ")
		}
		if sixToFour.Contains(addr) {
			return embedded(addr, sixToFour, 2, "6to4 of ")
		}
	}
	for _, g := range guarded {
		if g.prefix.Contains(addr) {
			return g.prefix, g.reason, true
		}
	}
	if addr.Is6() && !globalV6.Contains(addr) {
		// Outside 2000::/3 nothing is global unicast today (IANA IPv6 Address Space).
		p, _ := addr.Prefix(3)
		return p, "reserved IPv6 space", true
	}
	return netip.Prefix{}, "", false
}

// embedded guards the IPv4 address stored at byte offset off of an IPv6 translation
// prefix.
func embedded(addr netip.Addr, outer netip.Prefix, off int, label string) (netip.Prefix, string, bool) {
	b := addr.As16()
	v4 := netip.AddrFrom4([4]byte(b[off : off+4]))
	r4, reason, ok := Guard(v4)
	if !ok {
		return netip.Prefix{}, "", false
	}
	bits := off*8 + r4.Bits()
	p, _ := addr.Prefix(bits)
	if bits < outer.Bits() {
		p = outer
	}
	return p, label + reason, true
}

// lifts reports whether an allowing prefix lifts the guard on range rng: the rule must lie
// within the guarded range, so 0.0.0.0/0 never opens the metadata address while
// 169.254.169.254/32 or 10.0.0.0/8 are deliberate.
func lifts(rule, rng netip.Prefix) bool {
	return rule.Bits() >= rng.Bits() && rng.Contains(rule.Addr())
}

// absolute reports whether no rule may open addr: a connection to an unspecified address
// reaches this host (0.0.0.0 and :: act as loopback on Linux), and TCP to a multicast or
// broadcast address is never a legitimate destination.
func absolute(addr netip.Addr) bool {
	addr = addr.Unmap()
	return addr.IsUnspecified() || addr.IsMulticast() || (addr.Is4() && addr.As4()[0] == 0) ||
		addr == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
