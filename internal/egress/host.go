package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Host is a destination host as the proxy reads it: exactly one of Name (a lower-case DNS
// name without a trailing dot) and Addr (an IP address, IPv4-mapped IPv6 unmapped, no
// zone) is set.
type Host struct {
	Name string
	Addr netip.Addr
}

// IsAddr reports whether the host is an IP address.
func (h Host) IsAddr() bool { return h.Addr.IsValid() }

// String is the host's canonical spelling.
func (h Host) String() string {
	if h.Addr.IsValid() {
		return h.Addr.String()
	}
	return h.Name
}

// errHost is wrapped by every ParseHost refusal.
var errHost = errors.New("invalid host")

// ParseHost reads a destination host (a CONNECT authority's or URL's host, brackets
// allowed around IPv6) strictly, so that a spelling can never name a different address
// than the one the guards check:
//
//   - every IPv4 spelling inet_aton(3) and the WHATWG URL host parser accept — decimal
//     (2130706433), octal (0177.0.0.1), hex (0x7f.1), short forms (127.1) — is read as
//     the address it denotes; so is IPv4-mapped IPv6 (::ffff:127.0.0.1);
//   - a name whose last label is a number is an IPv4 address or nothing (WHATWG's
//     "ends in a number"), so 1.2.3.0x4g never reaches a resolver that reads it its way;
//   - case is folded and one trailing dot removed, as DNS compares names;
//   - percent-encoding, zone ids, empty labels and characters outside letters, digits,
//     '-' and '_' are refused, not decoded: a proxy request has no reason to carry them.
func ParseHost(s string) (Host, error) {
	if s == "" {
		return Host{}, fmt.Errorf("%w: empty", errHost)
	}
	if len(s) > 255 {
		return Host{}, fmt.Errorf("%w: longer than 255 bytes", errHost)
	}
	if strings.IndexByte(s, '%') >= 0 {
		return Host{}, fmt.Errorf("%w: %q is percent-encoded or has a zone id", errHost, s)
	}
	if s[0] == '[' {
		if s[len(s)-1] != ']' {
			return Host{}, fmt.Errorf("%w: %q has an unclosed bracket", errHost, s)
		}
		a, err := netip.ParseAddr(s[1 : len(s)-1])
		if err != nil || !a.Is6() {
			return Host{}, fmt.Errorf("%w: %q is not a bracketed IPv6 address", errHost, s)
		}
		return Host{Addr: a.Unmap()}, nil
	}
	if strings.IndexByte(s, ':') >= 0 {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() {
			return Host{}, fmt.Errorf("%w: %q is not an IPv6 address", errHost, s)
		}
		return Host{Addr: a.Unmap()}, nil
	}
	name := strings.ToLower(s)
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return Host{}, fmt.Errorf("%w: %q has no labels", errHost, s)
	}
	labels := strings.Split(name, ".")
	if numericLabel(labels[len(labels)-1]) {
		a, ok := parseIPv4(labels)
		if !ok {
			return Host{}, fmt.Errorf("%w: %q ends in a number but is not an IPv4 address", errHost, s)
		}
		return Host{Addr: a}, nil
	}
	if len(name) > 253 {
		return Host{}, fmt.Errorf("%w: name longer than 253 bytes", errHost)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return Host{}, fmt.Errorf("%w: %q has an empty or over-long label", errHost, s)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return Host{}, fmt.Errorf("%w: %q holds %q", errHost, s, c)
			}
		}
	}
	return Host{Name: name}, nil
}

// numericLabel reports whether a label is a number in some IPv4 part spelling: decimal
// digits, or 0x followed by hex digits (WHATWG URL "ends in a number").
func numericLabel(l string) bool {
	if l == "" {
		return false
	}
	if len(l) >= 2 && l[0] == '0' && l[1] == 'x' {
		for i := 2; i < len(l); i++ {
			if !isHex(l[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// parseIPv4 reads one to four lower-case parts as inet_aton(3) does: each part decimal,
// octal (leading 0) or hex (leading 0x); the last part fills the remaining bytes.
func parseIPv4(parts []string) (netip.Addr, bool) {
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v [4]uint64
	for i, p := range parts {
		n, ok := parseIPv4Part(p)
		if !ok {
			return netip.Addr{}, false
		}
		v[i] = n
	}
	last := len(parts) - 1
	for i := 0; i < last; i++ {
		if v[i] > 0xff {
			return netip.Addr{}, false
		}
	}
	if v[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	var ip uint32
	for i := 0; i < last; i++ {
		ip |= uint32(v[i]) << (24 - 8*i)
	}
	ip |= uint32(v[last])
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

func parseIPv4Part(p string) (uint64, bool) {
	base := uint64(10)
	switch {
	case p == "":
		return 0, false
	case strings.HasPrefix(p, "0x"):
		base, p = 16, p[2:]
		if p == "" {
			return 0, true // WHATWG reads "0x" as zero
		}
	case len(p) > 1 && p[0] == '0':
		base, p = 8, p[1:]
	}
	p = strings.TrimLeft(p, "0")
	if len(p) > 11 {
		return 0, false // far beyond 32 bits in any base
	}
	var n uint64
	for i := 0; i < len(p); i++ {
		c := p[i]
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		n = n*base + d
	}
	return n, true
}
