package egress

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
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
	p := ProxyPassword(k, "service-a-1", addr)
	if strings.ContainsAny(p, "+/=:") || len(p) != 43 {
		t.Fatalf("password %q is not unpadded base64url of 32 bytes", p)
	}
	if p == ProxyPassword(k, "service-a-2", addr) {
		t.Fatal("two nodes share a password")
	}
	if p == ProxyPassword(k, "service-a-1", addr2) {
		t.Fatal("a node's password does not change with its address")
	}
	if p != ProxyPassword(k, "service-a-1", netip.MustParseAddr("::ffff:10.0.1.15")) {
		t.Fatal("the IPv4-mapped spelling of the address gives another password")
	}
	other, _ := DeriveKey(bytes.Repeat([]byte{8}, 32))
	// The same 32 bytes spelled with the last character's two unused bits set: a lax
	// decoder would accept it as the password.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	respelled := p[:42] + string(alphabet[strings.IndexByte(alphabet, p[42])^1])
	for _, c := range []struct {
		name       string
		key        []byte
		node, pass string
		want       bool
	}{
		{"right", k, "service-a-1", p, true},
		{"other node", k, "service-a-2", p, false},
		{"other address", k, "service-a-1", ProxyPassword(k, "service-a-1", addr2), false},
		{"other key", other, "service-a-1", p, false},
		{"padded", k, "service-a-1", p + "=", false},
		{"empty", k, "service-a-1", "", false},
		{"truncated", k, "service-a-1", p[:42], false},
		{"other spelling of the same bytes", k, "service-a-1", respelled, false},
		{"no key", nil, "service-a-1", ProxyPassword(nil, "service-a-1", addr), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := checkPassword(c.key, c.node, addr, c.pass); got != c.want {
				t.Fatalf("checkPassword = %v, want %v", got, c.want)
			}
		})
	}
}
