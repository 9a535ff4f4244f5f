package gateway

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// DeriveBackendKey derives api's assertion MAC key (keys.BackendKey) from the gateway's
// assertion key.
func DeriveBackendKey(assertionKey ed25519.PrivateKey, api string) (keys.BackendKey, error) {
	if len(assertionKey) != ed25519.PrivateKeySize {
		return keys.BackendKey{}, errors.New("gateway: derive a backend key: not an Ed25519 private key")
	}
	k, err := keys.DeriveBackendKey(assertionKey.Seed(), api)
	if err != nil {
		return keys.BackendKey{}, fmt.Errorf("gateway: %w", err)
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
