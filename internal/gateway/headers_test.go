package gateway

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/handoff"
)

// strippedReference is strippedHeader as it was written before its length filter: the
// filter must change no answer.
func strippedReference(name string) bool {
	return isClientIdentityHeader(name) || overrideHeaders[textproto.CanonicalMIMEHeaderKey(name)]
}

// TestStrippedHeader: every override and client-identity header is stripped in any
// spelling a request may carry (canonical, lower case as HTTP/2 sends it, upper case),
// and the headers a backend needs are not.
func TestStrippedHeader(t *testing.T) {
	var names []string
	for name := range overrideHeaders {
		names = append(names, name)
	}
	names = append(names, handoff.HeaderSourceIP, handoff.HeaderAPIID, handoff.HeaderTLSVersion, handoff.HeaderTLSCipher, "X-Forwarded-For", "X-Forwarded-Host", "Forwarded")
	for _, name := range names {
		for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if !strippedHeader(spelled) {
				t.Errorf("%q not stripped", spelled)
			}
		}
	}
	for _, name := range []string{"Authorization", "Content-Type", "Accept", "User-Agent", "X-Amz-Date", "X-Real-Ip2", "X-Real Ip", "Real-Ip"} {
		if strippedHeader(name) {
			t.Errorf("%q stripped", name)
		}
	}
}

func FuzzStrippedHeader(f *testing.F) {
	for name := range overrideHeaders {
		f.Add(name)
		f.Add(strings.ToLower(name))
	}
	f.Add("x-real ip")
	f.Add("Authorization")
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := strippedHeader(name), strippedReference(name); got != want {
			t.Fatalf("strippedHeader(%q) = %v, the reference says %v", name, got, want)
		}
	})
}

// TestHeaderNamesCanonical: the names headerValue and the direct map reads are given
// are in canonical form, as a map read without canonicalizing needs (Header.Get would
// find a value these miss otherwise).
func TestHeaderNamesCanonical(t *testing.T) {
	for _, name := range []string{handoff.HeaderSourceIP, handoff.HeaderAPIID, handoff.HeaderTLSVersion, handoff.HeaderTLSCipher, hdrIdentity, hdrRequestID, "User-Agent"} {
		if c := textproto.CanonicalMIMEHeaderKey(name); c != name {
			t.Errorf("%q is not canonical (%q)", name, c)
		}
	}
	h := http.Header{}
	h.Add("user-agent", "ua")
	if got := headerValue(h, "User-Agent"); got != "ua" {
		t.Errorf("headerValue = %q", got)
	}
	if got := headerValue(h, handoff.HeaderSourceIP); got != "" {
		t.Errorf("headerValue of an absent header = %q", got)
	}
}

// TestAddrStrings: a handed over caller's address is spelled as
// a.Unmap().WithZone("").String() spells it, whether its slot is empty, holds it, or holds
// another address (IPv4, IPv4-mapped, IPv6 with and without a zone, the zero Addr).
func TestAddrStrings(t *testing.T) {
	var c addrStrings
	addrs := []netip.Addr{{}, netip.MustParseAddr("10.0.1.15"), netip.MustParseAddr("::ffff:10.0.1.15"), netip.MustParseAddr("fe80::1%eth0"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("::")}
	for range 2 {
		for _, a := range addrs {
			if got, want := c.string(a), a.Unmap().WithZone("").String(); got != want {
				t.Errorf("%v spelled %q, want %q", a, got, want)
			}
		}
	}
	for i := range 2000 { // more addresses than slots: each slot changes hands
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
		if got, want := c.string(a), a.String(); got != want {
			t.Fatalf("%v spelled %q", a, got)
		}
	}
}

func FuzzAddrStrings(f *testing.F) {
	f.Add([]byte{10, 0, 1, 15}, []byte{10, 0, 1, 16})
	f.Add(make([]byte, 16), []byte{0xfe, 0x80, 15: 1})
	var c addrStrings
	f.Fuzz(func(t *testing.T, x, y []byte) {
		for _, b := range [][]byte{x, y, x} {
			a, ok := netip.AddrFromSlice(b)
			if !ok {
				continue
			}
			if got, want := c.string(a), a.Unmap().WithZone("").String(); got != want {
				t.Fatalf("%v spelled %q, want %q", a, got, want)
			}
		}
	})
}
