package egress

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/netip"
)

// keyHKDFInfo separates the proxy-credential key from every other key derived from the
// master key; passwordLabel versions the MAC input (v2: bound to the node's address).
const (
	keyHKDFInfo   = "phantom/egress/v1"
	passwordLabel = "phantom/egress/v2\x00"
	// KeySize is the length of the key DeriveKey returns.
	KeySize = 32
)

// DeriveKey derives the key behind every node's proxy password from the perimeter master
// key (HKDF-SHA256, RFC 5869, info "phantom/egress/v1"), so STS (which hands the password
// to a node's agent) and every egress replica agree without storing anything.
func DeriveKey(masterKey []byte) ([]byte, error) {
	if len(masterKey) < 32 {
		return nil, fmt.Errorf("derive egress key: master key is %d bytes, want at least 32", len(masterKey))
	}
	k, err := hkdf.Key(sha256.New, masterKey, nil, keyHKDFInfo, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive egress key: %w", err)
	}
	return k, nil
}

// ProxyPassword is the node's egress proxy password, bound to the node's address (its
// privateIp in the spec): base64url(HMAC-SHA256(key, "phantom/egress/v2\x00" + node +
// "\x00" + addr)), without padding. It is the password half of Proxy-Authorization:
// Basic NODE:PASSWORD, and the proxy accepts it only from addr: a password copied off
// the node is of no use elsewhere, and one issued before the node's address changed
// stops working.
func ProxyPassword(key []byte, node string, addr netip.Addr) string {
	return base64.RawURLEncoding.EncodeToString(passwordMAC(key, node, addr))
}

func passwordMAC(key []byte, node string, addr netip.Addr) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(passwordLabel))
	m.Write([]byte(node))
	m.Write([]byte{0})
	m.Write([]byte(addr.Unmap().String()))
	return m.Sum(nil)
}

// checkPassword reports, in constant time, whether password is node's proxy password
// for addr.
func checkPassword(key []byte, node string, addr netip.Addr, password string) bool {
	got, err := base64.RawURLEncoding.Strict().DecodeString(password)
	if err != nil {
		// Compare anyway so a malformed password costs the same as a wrong one.
		got = nil
	}
	want := passwordMAC(key, node, addr)
	return subtle.ConstantTimeCompare(got, want) == 1 && len(key) > 0
}
