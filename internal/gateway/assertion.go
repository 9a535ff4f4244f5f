package gateway

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/jsonstr"
	"github.com/phantom-perimeter/phantom/internal/keys"
)

// The identity assertion is a compact JWS (RFC 7515) sent to backends as X-Phantom-Identity:
// MAC'd with HMAC-SHA256 (HS256, RFC 7518 §3.2) under its API's own key by default, or
// signed with Ed25519 (EdDSA, RFC 8037) for an API with assertion: eddsa. Both keys come
// from the assertion key, derived from the perimeter's master key (keys.Assertion, in the
// gateway's key file; an API's MAC key is keys.DeriveBackendKey of it with the API id), so
// every gateway replica makes the same assertions and publishes the same JWKS. A MAC
// costs the gateway a hash per call where a signature cost ~25 µs; a backend holding its
// API's key can check, and make, that API's assertions only.
//
// It says what the gateway authorized, and only that: the request's method, path and query
// as the backend receives them, the payload hash the client signed, the API (aud), who
// called through which endpoint from where; it lives 30 seconds and carries a unique id
// (jti), so an AssertionVerifier at the backend refuses it for any other request, after
// its time, or a second time. docs/backends.md shows backend authors how to check it.

// AssertionIssuer is the assertions' iss.
const AssertionIssuer = "phantom-gateway"

// AssertionLifetime is how long an assertion is valid (exp - iat): long enough for a
// backend to verify it on arrival, short enough that its replay cache stays small.
const AssertionLifetime = 30 * time.Second

// assertionLeeway is the clock difference between gateway and backend a verifier
// tolerates on iat and exp.
const assertionLeeway = 5 * time.Second

// UnsignedPayload is the payloadHash of an assertion whose body no signature covers (the
// client signed UNSIGNED-PAYLOAD, or the route takes anonymous calls): the backend must
// not take the body as the caller's word.
const UnsignedPayload = "UNSIGNED-PAYLOAD"

// maxAssertionLen bounds a token VerifyAssertion parses.
const maxAssertionLen = 16 << 10

// Assertion is what the gateway tells a backend about a request it authorized.
type Assertion struct {
	Issuer   string `json:"iss"`
	Audience string `json:"aud"` // the API id
	Subject  string `json:"sub"` // the principal ARN; "" for anonymous (NONE routes)

	Principal   string `json:"principal,omitempty"` // user ARN or assumed-role session ARN
	Account     string `json:"account,omitempty"`
	AccessKeyID string `json:"accessKeyId,omitempty"`
	SessionName string `json:"sessionName,omitempty"`
	Role        string `json:"role,omitempty"` // role ARN of a role session
	VPCEndpoint string `json:"vpce,omitempty"` // the endpoint the request came through
	SourceIP    string `json:"sourceIp,omitempty"`
	RequestID   string `json:"requestId"`
	// ID is the assertion's unique id (RFC 7519 jti): a verifier refuses a second use.
	ID string `json:"jti"`
	// Method, Path and Query bind the assertion to the request as the backend receives
	// it: the method, the escaped path (the backend URL's path prefix included) and the
	// raw query ("" for none).
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	// PayloadHash is what the client's signature says about the body: the hex SHA-256 of
	// the body it signed, or UnsignedPayload.
	PayloadHash string `json:"payloadHash"`

	IssuedAt  int64 `json:"iat"`
	ExpiresAt int64 `json:"exp"`
}

var (
	b64 = base64.RawURLEncoding
	// b64Strict decodes: one spelling per value (no non-zero padding bits), so a token that
	// verifies is byte for byte the token the gateway signed.
	b64Strict = base64.RawURLEncoding.Strict()
)

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

type jwkSet struct {
	Keys []jwk `json:"keys"`
}

// assertionSigner makes the compact JWS of assertions under one key: the gateway's
// Ed25519 key (EdDSA, every API with assertion: eddsa) or one API's MAC key (HS256).
type assertionSigner struct {
	ed     ed25519.PrivateKey // EdDSA; nil for HS256
	macs   *sync.Pool         // HS256: of hash.Hash, HMAC-SHA256 under the API's key
	kid    string
	header string     // base64url of the JOSE header, with the trailing "."
	jwks   []byte     // EdDSA: the JWKS publishing the public key
	bufs   *sync.Pool // of *signBuf
	// HS256 for signHead: the K⊕ipad block, the SHA-256 state after K⊕opad, and a pool
	// of SHA-256 digests.
	ipad, outer []byte
	digests     *sync.Pool
}

// joseHeader is the protected header of a token: the alg, the key id, typ JWT.
func joseHeader(alg, kid string) string {
	hdr, _ := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{alg, kid, "JWT"})
	return b64.EncodeToString(hdr) + "."
}

func newAssertionSigner(key ed25519.PrivateKey) *assertionSigner {
	pub := key.Public().(ed25519.PublicKey)
	x := b64.EncodeToString(pub)
	// RFC 7638 thumbprint: the required members in lexicographic order, no whitespace.
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	kid := b64.EncodeToString(sum[:])
	jwks, _ := json.Marshal(jwkSet{Keys: []jwk{{Kty: "OKP", Crv: "Ed25519", X: x, Kid: kid, Use: "sig", Alg: "EdDSA"}}})
	return &assertionSigner{ed: key, kid: kid, header: joseHeader(algEdDSA, kid), jwks: jwks, bufs: newSignBufs()}
}

// newMACSigner is the signer of one API's HS256 assertions.
func newMACSigner(k keys.BackendKey) *assertionSigner {
	key := slices.Clone(k.Key)
	s := &assertionSigner{
		macs:   &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }},
		kid:    k.KeyID(),
		header: joseHeader(algHS256, k.KeyID()),
		bufs:   newSignBufs(),
	}
	s.hmacPads(key)
	return s
}

func newSignBufs() *sync.Pool { return &sync.Pool{New: func() any { return new(signBuf) }} }

// The two algorithms an assertion is made with (RFC 7518 §3.2, RFC 8037 §3.1).
const (
	algHS256 = "HS256"
	algEdDSA = "EdDSA"
)

// SignAssertion signs a as the gateway holding key would (keys.Assertion, derived from the
// master key) for an API with assertion: eddsa: for tools and tests that play the gateway
// to a backend.
func SignAssertion(key ed25519.PrivateKey, a *Assertion) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", errors.New("gateway: sign assertion: not an Ed25519 private key")
	}
	return newAssertionSigner(key).sign(a)
}

// SignAssertionHS256 makes a's token under an API's key as the gateway would for an API
// with assertion: hs256 (the default): for tools and tests that play the gateway.
func SignAssertionHS256(k keys.BackendKey, a *Assertion) (string, error) {
	if err := k.Check(); err != nil {
		return "", err
	}
	return newMACSigner(k).sign(a)
}

// sign returns the compact JWS of a.
func (s *assertionSigner) sign(a *Assertion) (string, error) {
	sb := s.bufs.Get().(*signBuf)
	defer s.bufs.Put(sb)
	sb.claims = a.appendJSON(sb.claims[:0])
	n := len(s.header) + b64.EncodedLen(len(sb.claims))
	buf := slices.Grow(sb.token[:0], n+sigPartLen())
	buf = append(buf, s.header...)
	buf = b64.AppendEncode(buf, sb.claims)
	var sig []byte
	if s.ed != nil {
		sig = ed25519.Sign(s.ed, buf)
	} else {
		h := s.macs.Get().(hash.Hash)
		h.Reset()
		h.Write(buf)
		sig = h.Sum(sb.sig[:0])
		s.macs.Put(h)
	}
	return sb.finish(buf, sig), nil
}

// sigPartLen is the longest signature part finish appends: '.' and the base64url of an
// Ed25519 signature (an HS256 MAC is shorter).
func sigPartLen() int { return 1 + b64.EncodedLen(ed25519.SignatureSize) }

// finish appends the signature part of a compact JWS (RFC 7515 §7.1: '.' then
// BASE64URL(signature)) to the signing input buf, keeps buf as sb's token scratch for the
// next call, and returns the token.
func (sb *signBuf) finish(buf, sig []byte) string {
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	sb.token = buf
	return string(buf)
}

// signBuf is sign's scratch, pooled.
type signBuf struct {
	claims, token []byte
	sig           [sha256.Size]byte
}

// appendJSON appends the claims as json.Marshal(a) spells them (same members, order and
// escaping; TestAssertionJSON holds the two together) without reflection: the gateway
// signs one assertion per request.
func (a *Assertion) appendJSON(b []byte) []byte {
	return a.appendJSONTail(a.appendJSONHead(b))
}

// appendJSONHead appends the opening brace and the claims of the head (iss to role), the
// same on every call of a session to one API.
func (a *Assertion) appendJSONHead(b []byte) []byte {
	b = append(b, `{"iss":`...)
	b = jsonstr.Append(b, a.Issuer)
	b = append(b, `,"aud":`...)
	b = jsonstr.Append(b, a.Audience)
	b = append(b, `,"sub":`...)
	b = jsonstr.Append(b, a.Subject)
	b = appendOptClaim(b, "principal", a.Principal)
	b = appendOptClaim(b, "account", a.Account)
	b = appendOptClaim(b, "accessKeyId", a.AccessKeyID)
	b = appendOptClaim(b, "sessionName", a.SessionName)
	b = appendOptClaim(b, "role", a.Role)
	return b
}

// appendOptClaim appends the member name: v, omitted when v is empty (omitempty).
func appendOptClaim(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return jsonstr.Append(b, v)
}

// appendJSONTail appends the claims after the head's (vpce on) and the closing brace:
// a.appendJSONTail(a.appendJSONHead(b)) is a.appendJSON(b).
func (a *Assertion) appendJSONTail(b []byte) []byte {
	b = appendOptClaim(b, "vpce", a.VPCEndpoint)
	b = appendOptClaim(b, "sourceIp", a.SourceIP)
	b = append(b, `,"requestId":`...)
	b = jsonstr.Append(b, a.RequestID)
	b = append(b, `,"jti":`...)
	b = jsonstr.Append(b, a.ID)
	b = append(b, `,"method":`...)
	b = jsonstr.Append(b, a.Method)
	b = append(b, `,"path":`...)
	b = jsonstr.Append(b, a.Path)
	b = append(b, `,"query":`...)
	b = jsonstr.Append(b, a.Query)
	b = append(b, `,"payloadHash":`...)
	b = jsonstr.Append(b, a.PayloadHash)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, a.IssuedAt, 10)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, a.ExpiresAt, 10)
	return append(b, '}')
}

// Errors an AssertionVerifier returns (wrapped with detail).
var (
	ErrAssertionMalformed = errors.New("gateway: identity assertion is malformed")
	ErrAssertionSignature = errors.New("gateway: identity assertion signature does not verify")
	ErrAssertionClaims    = errors.New("gateway: identity assertion claims are not acceptable")
	// ErrAssertionRequest: the assertion is for another request (method, path, query).
	ErrAssertionRequest = errors.New("gateway: identity assertion is for another request")
	// ErrAssertionReplayed: the assertion was used before.
	ErrAssertionReplayed = errors.New("gateway: identity assertion was already used")
	// ErrAssertionPayload: the body is not the one the client signed.
	ErrAssertionPayload = errors.New("gateway: the request body does not match the identity assertion's payload hash")
)

// parsedKey is one Ed25519 key of a JWKS.
type parsedKey struct {
	kid string
	pub ed25519.PublicKey
}

// parseJWKS reads the Ed25519 signing keys of a JWKS (RFC 7517, RFC 8037).
func parseJWKS(jwks []byte) ([]parsedKey, error) {
	var set jwkSet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, fmt.Errorf("gateway: parse JWKS: %w", err)
	}
	var keys []parsedKey
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Kid == "" || (k.Alg != "" && k.Alg != "EdDSA") || (k.Use != "" && k.Use != "sig") {
			continue
		}
		x, err := b64.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			continue
		}
		keys = append(keys, parsedKey{kid: k.Kid, pub: x})
	}
	if len(keys) == 0 {
		return nil, errors.New("gateway: the JWKS holds no Ed25519 signing key")
	}
	return keys, nil
}

// verifyKeys is what a verifier checks tokens with: one algorithm and its keys, never
// both kinds, so a token cannot choose how it is checked (no alg confusion: an HS256
// token under an EdDSA verifier, or the reverse, or "none", is refused before any key is
// used).
type verifyKeys struct {
	alg string           // algEdDSA or algHS256
	ed  []parsedKey      // EdDSA: the JWKS's keys
	mac *keys.BackendKey // HS256: the API's key
	kid string           // HS256: mac's kid
}

// verifyToken checks an EdDSA token against a JWKS's keys (verifyWith).
func verifyToken(token string, keys []parsedKey, aud string, now time.Time) (*Assertion, error) {
	return verifyWith(token, verifyKeys{alg: algEdDSA, ed: keys}, aud, now)
}

// verifyWith checks an X-Phantom-Identity token's form, signature or MAC (alg as vk's
// only; the kid must name one of its keys), iss, aud and times: now within [iat, exp]
// give or take assertionLeeway, exp no more than AssertionLifetime after iat. Binding to
// a request and the replay check are the AssertionVerifier's.
func verifyWith(token string, vk verifyKeys, aud string, now time.Time) (*Assertion, error) {
	if len(token) > maxAssertionLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrAssertionMalformed, maxAssertionLen)
	}
	if strings.ContainsAny(token, "\r\n") {
		// The base64 decoder skips line breaks; refuse them so no second spelling verifies.
		return nil, fmt.Errorf("%w: line break in the token", ErrAssertionMalformed)
	}
	h, rest, ok := strings.Cut(token, ".")
	c, s, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(s, ".") {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrAssertionMalformed)
	}
	hdrJSON, err := b64Strict.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrAssertionMalformed, err)
	}
	var hdr struct {
		Alg  string          `json:"alg"`
		Kid  string          `json:"kid"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrAssertionMalformed, err)
	}
	if hdr.Alg != vk.alg {
		return nil, fmt.Errorf("%w: alg %q, want %s", ErrAssertionMalformed, truncate(hdr.Alg, 32), vk.alg)
	}
	if hdr.Crit != nil {
		return nil, fmt.Errorf("%w: unsupported crit header", ErrAssertionMalformed)
	}
	sig, err := b64Strict.DecodeString(s)
	signed := []byte(token[:len(h)+1+len(c)])
	switch vk.alg {
	case algEdDSA:
		if err != nil || len(sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("%w: signature encoding", ErrAssertionMalformed)
		}
		var pub ed25519.PublicKey
		for _, k := range vk.ed {
			if k.kid == hdr.Kid {
				pub = k.pub
				break
			}
		}
		if pub == nil {
			return nil, fmt.Errorf("%w: no Ed25519 key with kid %q in the JWKS", ErrAssertionSignature, truncate(hdr.Kid, 80))
		}
		if !ed25519.Verify(pub, signed, sig) {
			return nil, ErrAssertionSignature
		}
	case algHS256:
		if err != nil || len(sig) != sha256.Size {
			return nil, fmt.Errorf("%w: MAC encoding", ErrAssertionMalformed)
		}
		if vk.mac == nil || hdr.Kid != vk.kid {
			return nil, fmt.Errorf("%w: kid %q is not this API's key (%s)", ErrAssertionSignature, truncate(hdr.Kid, 80), vk.kid)
		}
		m := hmac.New(sha256.New, vk.mac.Key)
		m.Write(signed)
		if !hmac.Equal(m.Sum(nil), sig) {
			return nil, ErrAssertionSignature
		}
	default:
		return nil, fmt.Errorf("%w: the verifier has no key", ErrAssertionSignature)
	}
	claims, err := b64Strict.DecodeString(c)
	if err != nil {
		return nil, fmt.Errorf("%w: claims encoding", ErrAssertionMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(claims))
	dec.DisallowUnknownFields()
	a := new(Assertion)
	if err := dec.Decode(a); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrAssertionMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the claims", ErrAssertionMalformed)
	}
	leeway := int64(assertionLeeway / time.Second)
	switch {
	case a.Issuer != AssertionIssuer:
		return nil, fmt.Errorf("%w: iss %q", ErrAssertionClaims, a.Issuer)
	case a.Audience != aud:
		return nil, fmt.Errorf("%w: aud %q, want %q", ErrAssertionClaims, a.Audience, aud)
	case a.ID == "" || a.Method == "" || a.Path == "" || a.PayloadHash == "":
		return nil, fmt.Errorf("%w: jti, method, path and payloadHash are required", ErrAssertionClaims)
	case a.ExpiresAt < a.IssuedAt || a.ExpiresAt-a.IssuedAt > int64(AssertionLifetime/time.Second):
		return nil, fmt.Errorf("%w: lifetime iat %d exp %d is over %s", ErrAssertionClaims, a.IssuedAt, a.ExpiresAt, AssertionLifetime)
	case now.Unix() < a.IssuedAt-leeway:
		return nil, fmt.Errorf("%w: issued in the future (iat %d)", ErrAssertionClaims, a.IssuedAt)
	case now.Unix() > a.ExpiresAt+leeway:
		return nil, fmt.Errorf("%w: expired (exp %d)", ErrAssertionClaims, a.ExpiresAt)
	}
	return a, nil
}
