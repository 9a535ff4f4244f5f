package oidc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// b64 is base64url without padding (RFC 7515 §2). Strict refuses non-zero trailing bits,
// so every token has exactly one encoding and a flipped padding bit is not "the same"
// signature.
var b64 = base64.RawURLEncoding.Strict()

// algorithm is a JWS signature algorithm Phantom accepts (RFC 7518 §3.1). HMAC (HS*) and
// "none" are not algorithms here at all: a key from a JWKS is public, and treating it as an
// HMAC secret is the classic algorithm-confusion forgery.
type algorithm struct {
	name  string
	kty   string // the JWK key type the algorithm needs
	crv   string // for EC: the curve (RFC 7518 §3.4 pins ES256 to P-256, ES384 to P-384)
	hash  crypto.Hash
	pss   bool
	ecLen int // for EC: bytes of R and of S
}

var algorithms = map[string]*algorithm{
	"RS256": {name: "RS256", kty: "RSA", hash: crypto.SHA256},
	"RS384": {name: "RS384", kty: "RSA", hash: crypto.SHA384},
	"RS512": {name: "RS512", kty: "RSA", hash: crypto.SHA512},
	"PS256": {name: "PS256", kty: "RSA", hash: crypto.SHA256, pss: true},
	"PS384": {name: "PS384", kty: "RSA", hash: crypto.SHA384, pss: true},
	"PS512": {name: "PS512", kty: "RSA", hash: crypto.SHA512, pss: true},
	"ES256": {name: "ES256", kty: "EC", crv: "P-256", hash: crypto.SHA256, ecLen: 32},
	"ES384": {name: "ES384", kty: "EC", crv: "P-384", hash: crypto.SHA384, ecLen: 48},
}

// header is the JOSE header of a JWS (RFC 7515 §4.1). Header parameters that point at
// keys (jku, jwk, x5u, x5c) are ignored: keys come only from the provider's JWKS.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// jws is a parsed compact JWS whose signature has not been checked yet.
type jws struct {
	header    header
	alg       *algorithm
	signed    string // base64url(header) "." base64url(payload): the signing input
	payload   []byte
	signature []byte
}

// parseJWS splits and decodes a compact-serialized JWS (RFC 7515 §7.1). It checks shape
// and header only; the claims and the signature are the caller's.
func parseJWS(token string) (*jws, error) {
	h, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, malformed("not three dot-separated parts")
	}
	p, s, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(s, ".") {
		// Five parts would be a JWE (RFC 7516 §7.1); encrypted tokens are not accepted.
		return nil, malformed("not three dot-separated parts")
	}
	if h == "" || p == "" || s == "" {
		return nil, malformed("empty part (an unsecured JWS has no signature)")
	}
	hb, err := b64.DecodeString(h)
	if err != nil {
		return nil, malformed("header: %w", err)
	}
	var t jws
	if err := DecodeObject(hb, &t.header); err != nil {
		return nil, malformed("header: %w", err)
	}
	if t.header.Crit != nil {
		// RFC 7515 §4.1.11: a recipient that does not understand a critical extension must
		// reject the JWS; Phantom understands none.
		return nil, invalid(msgMalformed, errors.New("header has crit"))
	}
	alg, ok := algorithms[t.header.Alg]
	if !ok {
		return nil, invalid("The token's signing algorithm is not supported",
			fmt.Errorf("alg %q", printable(t.header.Alg)))
	}
	t.alg = alg
	if t.payload, err = b64.DecodeString(p); err != nil {
		return nil, malformed("payload: %w", err)
	}
	if t.signature, err = b64.DecodeString(s); err != nil {
		return nil, malformed("signature: %w", err)
	}
	t.signed = token[:len(h)+1+len(p)]
	return &t, nil
}

// DecodeObject decodes one JSON object and nothing after it, numbers as json.Number: the
// strict reading of what an identity provider sends (tokens, discovery documents, JWKS,
// token endpoint answers).
func DecodeObject(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	// b is trimmed, so the object must end exactly at its end.
	if d.InputOffset() != int64(len(b)) {
		return errors.New("data after the JSON object")
	}
	return nil
}

// verify checks the signature of t with key k. k's compatibility with t's algorithm has
// been checked by the caller (jwk.usableFor).
func (t *jws) verify(k *jwk) error {
	digest, err := hashOf(t.alg.hash, t.signed)
	if err != nil {
		return err
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if t.alg.pss {
			// RFC 7518 §3.5: the salt is as long as the hash.
			return rsa.VerifyPSS(pub, t.alg.hash, digest, t.signature,
				&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: t.alg.hash})
		}
		return rsa.VerifyPKCS1v15(pub, t.alg.hash, digest, t.signature)
	case *ecdsa.PublicKey:
		// RFC 7518 §3.4: the signature is R || S, each exactly the curve's size; ASN.1 DER
		// signatures are not JWS signatures.
		if len(t.signature) != 2*t.alg.ecLen {
			return fmt.Errorf("ECDSA signature is %d bytes, want %d", len(t.signature), 2*t.alg.ecLen)
		}
		r := new(big.Int).SetBytes(t.signature[:t.alg.ecLen])
		s := new(big.Int).SetBytes(t.signature[t.alg.ecLen:])
		if !ecdsa.Verify(pub, digest, r, s) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	default:
		return fmt.Errorf("key type %T", k.pub)
	}
}

func hashOf(h crypto.Hash, s string) ([]byte, error) {
	switch h {
	case crypto.SHA256:
		d := sha256.Sum256([]byte(s))
		return d[:], nil
	case crypto.SHA384:
		d := sha512.Sum384([]byte(s))
		return d[:], nil
	case crypto.SHA512:
		d := sha512.Sum512([]byte(s))
		return d[:], nil
	}
	return nil, fmt.Errorf("hash %v", h)
}

// jwk is one usable public key from a JWKS (RFC 7517 §4).
type jwk struct {
	kid string
	kty string
	crv string
	alg string // the JWK's own alg, empty when it does not name one
	pub crypto.PublicKey
}

// usableFor reports whether k may verify a signature made with alg: the key type and curve
// fit the algorithm, and a key that names its algorithm names this one (RFC 7517 §4.4).
func (k *jwk) usableFor(alg *algorithm) bool {
	if k.kty != alg.kty || (alg.crv != "" && k.crv != alg.crv) {
		return false
	}
	return k.alg == "" || k.alg == alg.name
}

// rawJWK is a JWK as it appears in a JWKS.
type rawJWK struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	D      string   `json:"d"`
}

// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3 requires 2048 bits).
const minRSABits = 2048

// maxRSABits bounds the work a hostile JWKS can make each verification cost.
const maxRSABits = 8192

// parseJWK turns a JWK into a usable key, or says why it is skipped. Skipped keys (other
// key types, encryption keys, private keys published by mistake) do not make the whole set
// unusable: a JWKS commonly holds keys for other purposes.
func parseJWK(r *rawJWK) (*jwk, error) {
	if r.Use != "" && r.Use != "sig" {
		return nil, fmt.Errorf("use %q", r.Use)
	}
	if r.KeyOps != nil && !slices.Contains(r.KeyOps, "verify") {
		return nil, errors.New("key_ops without verify")
	}
	if r.D != "" {
		// A private key in a public JWKS is a provider misconfiguration; never use it.
		return nil, errors.New("private key material")
	}
	if r.Alg != "" {
		a, ok := algorithms[r.Alg]
		if !ok || a.kty != r.Kty {
			return nil, fmt.Errorf("alg %q for kty %q", r.Alg, r.Kty)
		}
	}
	k := &jwk{kid: r.Kid, kty: r.Kty, alg: r.Alg}
	switch r.Kty {
	case "RSA":
		n, err := b64.DecodeString(r.N)
		if err != nil || len(n) == 0 || n[0] == 0 {
			return nil, errors.New("bad RSA modulus")
		}
		e, err := b64.DecodeString(r.E)
		if err != nil || len(e) == 0 || len(e) > 4 || e[0] == 0 {
			return nil, errors.New("bad RSA exponent")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("RSA modulus of %d bits", bits)
		}
		if pub.E < 3 || pub.E%2 == 0 || pub.N.Bit(0) == 0 {
			return nil, errors.New("bad RSA exponent or even modulus")
		}
		k.pub = pub
	case "EC":
		var curve elliptic.Curve
		var size int
		switch r.Crv {
		case "P-256":
			curve, size = elliptic.P256(), 32
		case "P-384":
			curve, size = elliptic.P384(), 48
		default:
			return nil, fmt.Errorf("curve %q", r.Crv)
		}
		x, errX := b64.DecodeString(r.X)
		y, errY := b64.DecodeString(r.Y)
		// RFC 7518 §6.2.1.2: x and y are exactly the curve's size.
		if errX != nil || errY != nil || len(x) != size || len(y) != size {
			return nil, errors.New("bad EC coordinates")
		}
		point := make([]byte, 0, 1+2*size)
		point = append(append(append(point, 4), x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			// Not on the curve: an invalid-curve key must never be used.
			return nil, fmt.Errorf("EC point: %w", err)
		}
		k.crv = r.Crv
		k.pub = pub
	default:
		return nil, fmt.Errorf("kty %q", r.Kty)
	}
	return k, nil
}
