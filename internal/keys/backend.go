package keys

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// BackendKey is one API's assertion MAC key (HS256, the spec's apis[].assertion: hs256):
// derived from the gateway's assertion key with the API id (DeriveBackendAssertion), so
// every gateway replica MACs with it and a backend holding it can verify its API's
// assertions and nothing else: it is no key of another API, and not the signing key. Its
// file form is a JWK (RFC 7517 §4, kty oct, RFC 7518 §6.4) that `phantom keys backend`
// writes.
type BackendKey struct {
	API string
	Key []byte // Size bytes
}

// DeriveBackendKey derives api's key from the gateway's assertion key (the Assertion
// purpose's key, the Ed25519 seed).
func DeriveBackendKey(assertion []byte, api string) (BackendKey, error) {
	k, err := DeriveBackendAssertion(assertion, api)
	if err != nil {
		return BackendKey{}, err
	}
	return BackendKey{API: api, Key: k}, nil
}

// Check reports what is wrong with k, if anything.
func (k BackendKey) Check() error {
	if k.API == "" || len(k.API) > 128 || strings.ContainsAny(k.API, ":\"\\") {
		return fmt.Errorf("backend key: API id %q", k.API)
	}
	if len(k.Key) != Size {
		return fmt.Errorf("backend key of API %s: %d bytes, want %d", k.API, len(k.Key), Size)
	}
	return nil
}

var b64url = base64.RawURLEncoding

// KeyID is the key's kid, API:CHECK: the API id and a check value of the key for that
// API (the first 16 characters of base64url HMAC-SHA256(key, "phantom/assertion/kid " +
// API), which tells nothing of the key). A token's kid names the API whose key made it;
// a key file from before a master key rotation, or relabelled for another API, does not
// match.
func (k BackendKey) KeyID() string {
	m := hmac.New(sha256.New, k.Key)
	m.Write([]byte("phantom/assertion/kid " + k.API))
	return k.API + ":" + b64url.EncodeToString(m.Sum(nil))[:16]
}

// backendJWK is a BackendKey's file form.
type backendJWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	K   string `json:"k"`
}

// MarshalJWK returns the key file: one JWK, {"kty":"oct","kid":…,"alg":"HS256","use":"sig","k":…}.
func (k BackendKey) MarshalJWK() ([]byte, error) {
	if err := k.Check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(backendJWK{Kty: "oct", Kid: k.KeyID(), Alg: "HS256", Use: "sig", K: b64url.EncodeToString(k.Key)})
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// maxBackendKeyFile bounds a key file ParseBackendKey reads.
const maxBackendKeyFile = 4 << 10

// ParseBackendKey reads a key file MarshalJWK wrote: one oct JWK for HS256 whose kid is
// API:CHECK of its own k (KeyID). Anything else (another kty or alg, a public key, a key of
// another length, a kid that does not match k) is refused.
func ParseBackendKey(data []byte) (BackendKey, error) {
	if len(data) > maxBackendKeyFile {
		return BackendKey{}, fmt.Errorf("backend key file: longer than %d bytes", maxBackendKeyFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j backendJWK
	if err := dec.Decode(&j); err != nil {
		return BackendKey{}, fmt.Errorf("backend key file: %w", err)
	}
	if dec.More() {
		return BackendKey{}, errors.New("backend key file: data after the key")
	}
	if j.Kty != "oct" || j.Alg != "HS256" || (j.Use != "" && j.Use != "sig") {
		return BackendKey{}, fmt.Errorf("backend key file: kty %q alg %q, want an oct key for HS256 (phantom keys backend)", short(j.Kty, 16), short(j.Alg, 16))
	}
	raw, err := b64url.Strict().DecodeString(j.K)
	if err != nil {
		return BackendKey{}, fmt.Errorf("backend key file: k: %w", err)
	}
	api, _, ok := strings.Cut(j.Kid, ":")
	k := BackendKey{API: api, Key: raw}
	if err := k.Check(); err != nil {
		return BackendKey{}, err
	}
	if !ok || j.Kid != k.KeyID() {
		return BackendKey{}, fmt.Errorf("backend key file: kid %q is not API:CHECK of its key", short(j.Kid, 80))
	}
	return k, nil
}

// short bounds a value quoted in an error.
func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
