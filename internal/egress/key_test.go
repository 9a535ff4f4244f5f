package egress

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestProxyPassword(t *testing.T) {
	master := bytes.Repeat([]byte{7}, 32)
	k, err := DeriveKey(master)
	if err != nil {
		t.Fatal(err)
	}
	if len(k) != KeySize {
		t.Fatalf("key is %d bytes", len(k))
	}
	k2, _ := DeriveKey(master)
	if !bytes.Equal(k, k2) {
		t.Fatal("DeriveKey is not deterministic")
	}
	if _, err := DeriveKey(master[:16]); err == nil {
		t.Fatal("a 16-byte master key was accepted")
	}
	addr, addr2 := netip.MustParseAddr("10.0.1.15"), netip.MustParseAddr("10.0.1.16")
	issued := time.Date(2026, 11, 29, 4, 0, 0, 123456789, time.UTC)
	c := Credential{Node: "service-a-1", Addr: addr, Issued: issued, Expires: issued.Add(time.Hour)}
	p := ProxyPassword(k, c)
	if strings.ContainsAny(p, "+/=:") || len(p) != 64 {
		t.Fatalf("password %q is not unpadded base64url of 48 bytes", p)
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
	other, _ := DeriveKey(bytes.Repeat([]byte{8}, 32))
	// The same 48 bytes spelled with the last character's two unused bits set: a lax
	// decoder would accept it as the password. (48 bytes are 64 characters exactly: no
	// unused bits, so flip a low bit of the MAC instead.)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	flipped := p[:63] + string(alphabet[strings.IndexByte(alphabet, p[63])^1])
	// Times edited in the clear, MAC kept: a forged validity.
	forged := with(func(o *Credential) { o.Expires = issued.Add(1000 * time.Hour) })[:22] + p[22:]
	for _, tc := range []struct {
		name       string
		key        []byte
		node, pass string
		want       bool
	}{
		{"right", k, "service-a-1", p, true},
		{"other node", k, "service-a-2", p, false},
		{"other address", k, "service-a-1", with(func(o *Credential) { o.Addr = addr2 }), false},
		{"other key", other, "service-a-1", p, false},
		{"padded", k, "service-a-1", p + "=", false},
		{"empty", k, "service-a-1", "", false},
		{"truncated", k, "service-a-1", p[:60], false},
		{"one bit of the MAC", k, "service-a-1", flipped, false},
		{"validity edited", k, "service-a-1", forged, false},
		{"the v2 shape (no validity)", k, "service-a-1", p[22:], false},
		{"no key", nil, "service-a-1", ProxyPassword(nil, c), false},
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
