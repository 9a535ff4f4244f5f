package egress

import (
	"bytes"
	"crypto/ed25519"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestProxyPassword(t *testing.T) {
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := k.Public().(ed25519.PublicKey)
	addr, addr2 := netip.MustParseAddr("10.0.1.15"), netip.MustParseAddr("10.0.1.16")
	issued := time.Date(2026, 11, 29, 4, 0, 0, 123456789, time.UTC)
	c := Credential{Node: "service-a-1", Addr: addr, Issued: issued, Expires: issued.Add(time.Hour)}
	p := ProxyPassword(k, c)
	if strings.ContainsAny(p, "+/=:") || len(p) != 107 {
		t.Fatalf("password %q is not unpadded base64url of 80 bytes (validity and signature)", p)
	}
	with := func(f func(*Credential)) string {
		o := c
		f(&o)
		return ProxyPassword(k, o)
	}
	if p == with(func(o *Credential) { o.Node = "service-a-2" }) {
		t.Fatal("two nodes share a password")
	}
	if p == with(func(o *Credential) { o.Addr = addr2 }) {
		t.Fatal("a node's password does not change with its address")
	}
	if p == with(func(o *Credential) { o.Issued = issued.Add(time.Nanosecond) }) {
		t.Fatal("a node's password does not change with its session")
	}
	if p != with(func(o *Credential) { o.Addr = netip.MustParseAddr("::ffff:10.0.1.15") }) {
		t.Fatal("the IPv4-mapped spelling of the address gives another password")
	}
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	// The same 80 bytes spelled with the last character's two unused bits set: a lax
	// decoder would accept it as the password.
	respelled := p[:106] + string(alphabet[strings.IndexByte(alphabet, p[106])^1])
	// One bit of the signature.
	flipped := p[:60] + string(alphabet[strings.IndexByte(alphabet, p[60])^1]) + p[61:]
	// Times edited in the clear, signature kept: a forged validity.
	forged := with(func(o *Credential) { o.Expires = issued.Add(1000 * time.Hour) })[:22] + p[22:]
	for _, tc := range []struct {
		name       string
		key        ed25519.PublicKey
		node, pass string
		want       bool
	}{
		{"right", pub, "service-a-1", p, true},
		{"other node", pub, "service-a-2", p, false},
		{"other address", pub, "service-a-1", with(func(o *Credential) { o.Addr = addr2 }), false},
		{"other key", other, "service-a-1", p, false},
		{"padded", pub, "service-a-1", p + "=", false},
		{"empty", pub, "service-a-1", "", false},
		{"truncated", pub, "service-a-1", p[:100], false},
		{"other spelling of the same bytes", pub, "service-a-1", respelled, false},
		{"one bit of the signature", pub, "service-a-1", flipped, false},
		{"validity edited", pub, "service-a-1", forged, false},
		{"the v2 shape (no validity)", pub, "service-a-1", p[22:], false},
		{"no key", nil, "service-a-1", p, false},
		// The public key is all the proxy has: using it as if it were a signing key (the
		// proxy could mint with the MAC key it held before) makes nothing valid.
		{"made with the public key", pub, "service-a-1", ProxyPassword(ed25519.NewKeyFromSeed(pub), c), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotIssued, gotExpires, got := checkPassword(tc.key, tc.node, addr, tc.pass)
			if got != tc.want {
				t.Fatalf("checkPassword = %v, want %v", got, tc.want)
			}
			if got && (!gotIssued.Equal(c.Issued) || !gotExpires.Equal(c.Expires)) {
				t.Fatalf("validity %s..%s, want %s..%s", gotIssued, gotExpires, c.Issued, c.Expires)
			}
		})
	}
}
