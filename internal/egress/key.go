package egress

import (
	"crypto/ed25519"
	"encoding/base64"
)

// passwordDomain separates the signed message from anything else the key could sign.
const passwordDomain = "phantom/egress-password/v1\x00"

// ProxyPassword is the node's egress proxy password: base64url, unpadded, of the Ed25519
// signature (RFC 8032) by key over "phantom/egress-password/v1\x00" + node. It is the
// password half of Proxy-Authorization: Basic NODE:PASSWORD. STS signs it with the key
// derived for keys.EgressPasswords; the proxy checks it with the public half only, so a
// host running the proxy can check passwords and cannot make one.
func ProxyPassword(key ed25519.PrivateKey, node string) string {
	return base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, passwordMessage(node)))
}

func passwordMessage(node string) []byte {
	return append([]byte(passwordDomain), node...)
}

// checkPassword reports whether password is node's proxy password under pub. The strict
// decoder gives a signature one spelling; the signature is over public data, so the
// check need not be constant-time.
func checkPassword(pub ed25519.PublicKey, node, password string) bool {
	sig, err := base64.RawURLEncoding.Strict().DecodeString(password)
	if err != nil || len(sig) != ed25519.SignatureSize || len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(pub, passwordMessage(node), sig)
}
