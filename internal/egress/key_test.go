package egress

import (
	"bytes"
	"crypto/ed25519"
	"net/netip"
	"strings"
	"testing"
)

func TestProxyPassword(t *testing.T) {
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub := k.Public().(ed25519.PublicKey)
	addr, addr2 := netip.MustParseAddr("10.0.1.15"), netip.MustParseAddr("10.0.1.16")
	p := ProxyPassword(k, "service-a-1", addr)
	if strings.ContainsAny(p, "+/=:") || len(p) != 86 {
		t.Fatalf("password %q is not unpadded base64url of a 64-byte signature", p)
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
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	// The same 64 bytes spelled with the last character's two unused bits set: a lax
	// decoder would accept it as the password.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	respelled := p[:85] + string(alphabet[strings.IndexByte(alphabet, p[85])^1])
	for _, c := range []struct {
		name       string
		key        ed25519.PublicKey
		node, pass string
		want       bool
	}{
		{"right", pub, "service-a-1", p, true},
		{"other node", pub, "service-a-2", p, false},
		{"other address", pub, "service-a-1", ProxyPassword(k, "service-a-1", addr2), false},
		{"other key", other, "service-a-1", p, false},
		{"padded", pub, "service-a-1", p + "==", false},
		{"empty", pub, "service-a-1", "", false},
		{"truncated", pub, "service-a-1", p[:85], false},
		{"other spelling of the same bytes", pub, "service-a-1", respelled, false},
		{"no key", nil, "service-a-1", p, false},
		// The public key is all the proxy has: using it as if it were a signing key (the
		// proxy could mint with the MAC key it held before) makes nothing valid.
		{"made with the public key", pub, "service-a-1", ProxyPassword(ed25519.NewKeyFromSeed(pub), "service-a-1", addr), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := checkPassword(c.key, c.node, addr, c.pass); got != c.want {
				t.Fatalf("checkPassword = %v, want %v", got, c.want)
			}
		})
	}
}
