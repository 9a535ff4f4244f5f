package egress

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// keyHKDFInfo separates the proxy-credential key from every other key derived from the
// master key; passwordLabel versions the MAC input (v3: bound to the node's address and
// to the validity of the role session it was issued with).
const (
	keyHKDFInfo   = "phantom/egress/v1"
	passwordLabel = "phantom/egress/v3\x00"
	// KeySize is the length of the key DeriveKey returns.
	KeySize = 32
	// passwordSize is a password's bytes: issued and expires (8 bytes each, big-endian
	// Unix nanoseconds), then the 32-byte MAC.
	passwordSize = 16 + sha256.Size
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

// ProxyPassword is the node's egress proxy password for c:
// base64url(issued || expires || HMAC-SHA256(key, "phantom/egress/v3\x00" + node + "\x00"
// + addr + "\x00" + issued || expires)), without padding, issued and expires as 8-byte
// big-endian Unix nanoseconds. It is the password half of Proxy-Authorization: Basic
// NODE:PASSWORD. The proxy accepts it only from addr, only until it expires, and only
// while neither the node's role sessions nor the node were revoked after it was issued:
// STS hands a new one to the node's agent with every role session, so a copy taken off
// the node is of no use elsewhere, later, or after a revocation.
func ProxyPassword(key []byte, c Credential) string {
	var b [passwordSize]byte
	binary.BigEndian.PutUint64(b[0:], uint64(c.Issued.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], uint64(c.Expires.UnixNano()))
	copy(b[16:], passwordMAC(key, c.Node, c.Addr, b[:16]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Passwords is the password a node's role session comes with, from STS's node API
// (sts.NodeConfig.ProxyPassword): for the node's address and the session's validity.
func Passwords(key []byte) func(n *config.Node, issued, expires time.Time) string {
	return func(n *config.Node, issued, expires time.Time) string {
		return ProxyPassword(key, Credential{Node: n.Name, Addr: n.PrivateIP, Issued: issued, Expires: expires})
	}
}

func passwordMAC(key []byte, node string, addr netip.Addr, times []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(passwordLabel))
	m.Write([]byte(node))
	m.Write([]byte{0})
	m.Write([]byte(addr.Unmap().String()))
	m.Write([]byte{0})
	m.Write(times)
	return m.Sum(nil)
}

// checkPassword reports, in constant time, whether password is a proxy password of node
// for addr, and the validity it attests. It does not judge that validity (expiry,
// revocation): the caller does, on the perimeter's current state.
func checkPassword(key []byte, node string, addr netip.Addr, password string) (issued, expires time.Time, ok bool) {
	var b [passwordSize]byte
	got, err := base64.RawURLEncoding.Strict().DecodeString(password)
	if err != nil || len(got) != passwordSize {
		// Compare anyway so a malformed password costs the same as a wrong one.
		got = nil
	} else {
		copy(b[:], got)
		got = b[16:]
	}
	want := passwordMAC(key, node, addr, b[:16])
	if subtle.ConstantTimeCompare(got, want) == 1 && len(key) > 0 {
		issued = time.Unix(0, int64(binary.BigEndian.Uint64(b[0:])))
		expires = time.Unix(0, int64(binary.BigEndian.Uint64(b[8:])))
		return issued, expires, true
	}
	return time.Time{}, time.Time{}, false
}
