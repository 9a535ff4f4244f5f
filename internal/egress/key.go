package egress

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// passwordDomain separates the signed message from anything else the key could sign (v3:
// bound to the node's address and to the validity of the role session it was issued
// with).
const passwordDomain = "phantom/egress-password/v3\x00"

// passwordSize is a password's bytes: issued and expires (8 bytes each, big-endian Unix
// nanoseconds), then the Ed25519 signature.
const passwordSize = 16 + ed25519.SignatureSize

// Credential is what a proxy password attests: a node, the address it is accepted from
// (the node's privateIp in the spec), and the validity of the role session it was issued
// with — from Issued (the session's aws:TokenIssueTime, which revocations compare with)
// until Expires.
type Credential struct {
	Node    string
	Addr    netip.Addr
	Issued  time.Time
	Expires time.Time
}

// ProxyPassword is the node's egress proxy password for c: base64url, unpadded, of
// issued || expires || the Ed25519 signature (RFC 8032) by key over
// "phantom/egress-password/v3\x00" + node + "\x00" + addr + "\x00" + issued || expires,
// issued and expires as 8-byte big-endian Unix nanoseconds. It is the password half of
// Proxy-Authorization: Basic NODE:PASSWORD. The proxy accepts it only from addr, only
// until it expires, and only while neither the node's role sessions nor the node were
// revoked after it was issued: STS hands a new one to the node's agent with every role
// session, so a copy taken off the node is of no use elsewhere, later, or after a
// revocation. STS signs it with the key derived for keys.EgressPasswords; the proxy checks
// it with the public half only, so a host running the proxy can check passwords and
// cannot make one.
func ProxyPassword(key ed25519.PrivateKey, c Credential) string {
	var b [passwordSize]byte
	binary.BigEndian.PutUint64(b[0:], uint64(c.Issued.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], uint64(c.Expires.UnixNano()))
	copy(b[16:], ed25519.Sign(key, passwordMessage(c.Node, c.Addr, b[:16])))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Passwords is the password a node's role session comes with, from STS's node API
// (sts.NodeConfig.ProxyPassword): for the node's address and the session's validity.
func Passwords(key ed25519.PrivateKey) func(n *config.Node, issued, expires time.Time) string {
	return func(n *config.Node, issued, expires time.Time) string {
		return ProxyPassword(key, Credential{Node: n.Name, Addr: n.PrivateIP, Issued: issued, Expires: expires})
	}
}

func passwordMessage(node string, addr netip.Addr, times []byte) []byte {
	b := append([]byte(passwordDomain), node...)
	b = append(b, 0)
	b = append(b, addr.Unmap().String()...)
	b = append(b, 0)
	return append(b, times...)
}

// checkPassword reports whether password is node's proxy password for addr under pub,
// and the validity it attests. It does not judge that validity (expiry, revocation): the
// caller does, on the perimeter's current state. The strict decoder gives a password one
// spelling; the signature is over public data, so the check need not be constant-time.
func checkPassword(pub ed25519.PublicKey, node string, addr netip.Addr, password string) (issued, expires time.Time, ok bool) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(password)
	if err != nil || len(b) != passwordSize || len(pub) != ed25519.PublicKeySize {
		return time.Time{}, time.Time{}, false
	}
	if !ed25519.Verify(pub, passwordMessage(node, addr, b[:16]), b[16:]) {
		return time.Time{}, time.Time{}, false
	}
	issued = time.Unix(0, int64(binary.BigEndian.Uint64(b[0:])))
	expires = time.Unix(0, int64(binary.BigEndian.Uint64(b[8:])))
	return issued, expires, true
}
