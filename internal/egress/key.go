package egress

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/netip"
)

// passwordDomain separates the signed message from anything else the key could sign (v2:
// bound to the node's address).
const passwordDomain = "phantom/egress-password/v2\x00"

// ProxyPassword is the node's egress proxy password, bound to the node's address (its
// privateIp in the spec): base64url, unpadded, of the Ed25519 signature (RFC 8032) by key
// over "phantom/egress-password/v2\x00" + node + "\x00" + addr. It is the password half
// of Proxy-Authorization: Basic NODE:PASSWORD, and the proxy accepts it only from addr: a
// password copied off the node is of no use elsewhere, and one issued before the node's
// address changed stops working. STS signs it with the key derived for
// keys.EgressPasswords; the proxy checks it with the public half only, so a host running
// the proxy can check passwords and cannot make one.
func ProxyPassword(key ed25519.PrivateKey, node string, addr netip.Addr) string {
	return base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, passwordMessage(node, addr)))
}

func passwordMessage(node string, addr netip.Addr) []byte {
	b := append([]byte(passwordDomain), node...)
	b = append(b, 0)
	return append(b, addr.Unmap().String()...)
}

// checkPassword reports whether password is node's proxy password for addr under pub.
// The strict decoder gives a signature one spelling; the signature is over public data,
// so the check need not be constant-time.
func checkPassword(pub ed25519.PublicKey, node string, addr netip.Addr, password string) bool {
	sig, err := base64.RawURLEncoding.Strict().DecodeString(password)
	if err != nil || len(sig) != ed25519.SignatureSize || len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(pub, passwordMessage(node, addr), sig)
}
