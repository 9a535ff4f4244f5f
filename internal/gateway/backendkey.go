package gateway

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// BackendKey is one API's assertion MAC key (HS256, the spec's apis[].assertion: hs256):
// derived from the gateway's assertion key with the API id (keys.DeriveBackendAssertion),
// so every replica MACs with it and a backend holding it can verify its API's assertions
// and nothing else: it is no key of another API, and not the signing key. Its file form is
// a JWK (RFC 7517 §4, kty oct, RFC 7518 §6.4) that `phantom keys backend` writes.
type BackendKey struct {
	API string
	Key []byte // 32 bytes
}

// DeriveBackendKey derives api's key from the gateway's assertion key.
func DeriveBackendKey(assertionKey ed25519.PrivateKey, api string) (BackendKey, error) {
	if len(assertionKey) != ed25519.PrivateKeySize {
		return BackendKey{}, errors.New("gateway: derive a backend key: not an Ed25519 private key")
	}
	k, err := keys.DeriveBackendAssertion(assertionKey.Seed(), api)
	if err != nil {
		return BackendKey{}, fmt.Errorf("gateway: %w", err)
	}
	return BackendKey{API: api, Key: k}, nil
}

func (k BackendKey) check() error {
	if k.API == "" || strings.ContainsAny(k.API, ":\"\\") {
		return fmt.Errorf("gateway: backend key: API id %q", truncate(k.API, 64))
	}
	if len(k.Key) != keys.Size {
		return fmt.Errorf("gateway: backend key of API %s: %d bytes, want %d", k.API, len(k.Key), keys.Size)
	}
	return nil
}

// KeyID is the key's kid, API:CHECK: the API id and a check value of the key for that
// API (the first 16 characters of base64url HMAC-SHA256(key, "phantom/assertion/kid " +
// API), which tells nothing of the key). A token's kid names the API whose key made it;
// a key file from before a master key rotation, or relabelled for another API, does not
// match.
func (k BackendKey) KeyID() string {
	m := hmac.New(sha256.New, k.Key)
	m.Write([]byte("phantom/assertion/kid " + k.API))
	return k.API + ":" + b64.EncodeToString(m.Sum(nil))[:16]
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
	if err := k.check(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(backendJWK{Kty: "oct", Kid: k.KeyID(), Alg: algHS256, Use: "sig", K: b64.EncodeToString(k.Key)})
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
		return BackendKey{}, fmt.Errorf("gateway: backend key file: longer than %d bytes", maxBackendKeyFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j backendJWK
	if err := dec.Decode(&j); err != nil {
		return BackendKey{}, fmt.Errorf("gateway: backend key file: %w", err)
	}
	if dec.More() {
		return BackendKey{}, errors.New("gateway: backend key file: data after the key")
	}
	if j.Kty != "oct" || j.Alg != algHS256 || (j.Use != "" && j.Use != "sig") {
		return BackendKey{}, fmt.Errorf("gateway: backend key file: kty %q alg %q, want an oct key for HS256 (phantom keys backend)", truncate(j.Kty, 16), truncate(j.Alg, 16))
	}
	raw, err := b64Strict.DecodeString(j.K)
	if err != nil {
		return BackendKey{}, fmt.Errorf("gateway: backend key file: k: %w", err)
	}
	api, _, ok := strings.Cut(j.Kid, ":")
	k := BackendKey{API: api, Key: raw}
	if err := k.check(); err != nil {
		return BackendKey{}, err
	}
	if !ok || j.Kid != k.KeyID() {
		return BackendKey{}, fmt.Errorf("gateway: backend key file: kid %q is not API:CHECK of its key", truncate(j.Kid, 80))
	}
	return k, nil
}

// BackendKey returns api's key file (MarshalJWK): what `phantom up` gives its demo
// backend, as `phantom keys backend` does for a backend's operators.
func (g *Gateway) BackendKey(api string) ([]byte, error) {
	k, err := DeriveBackendKey(g.cfg.AssertionKey, api)
	if err != nil {
		return nil, err
	}
	return k.MarshalJWK()
}
