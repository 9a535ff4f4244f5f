package oidc_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/oidc"
	"github.com/phantom-perimeter/phantom/internal/oidc/oidctest"
)

// FuzzParseJWT feeds arbitrary tokens to Verify against a live test issuer. Verify must
// never panic, every refusal must be an *oidc.Error, and every token it accepts must carry
// a signature that the standard library, checked independently here, accepts under one of
// the issuer's published keys.
func FuzzParseJWT(f *testing.F) {
	is := oidctest.Start(f, oidctest.Options{})
	ec := is.AddKey(f, "ES256")
	clk := newClock()
	v := newVerifier(f, is, clk, nil)
	claims := is.Claims("alice", clk.Now())
	rs := is.Mint(f, claims)
	es := oidctest.Sign(f, ec, map[string]any{"alg": "ES256", "kid": ec.ID}, claims)
	for _, seed := range []string{
		rs, es,
		oidctest.Sign(f, is.SigningKey(), map[string]any{"alg": "none"}, claims),
		oidctest.Sign(f, is.SigningKey(), map[string]any{"alg": "HS256", "kid": is.SigningKey().ID}, claims),
		oidctest.Sign(f, ec, map[string]any{"alg": "ES256", "kid": is.SigningKey().ID}, claims),
		rs[:len(rs)-10], strings.Replace(rs, ".", "..", 1), "a.b.c", "e30.e30.", "....",
	} {
		f.Add(seed)
	}
	keys := []*oidctest.Key{is.SigningKey(), ec}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(context.Background(), token)
		if err != nil {
			var oe *oidc.Error
			if !errors.As(err, &oe) || oe.Code == "" || oe.Message == "" {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if id == nil || id.Subject == "" || id.Audience == "" {
			t.Fatalf("accepted with identity %+v", id)
		}
		if !signedByOneOf(token, keys) {
			t.Fatalf("accepted a token no published key signed: %q", token)
		}
	})
}

// signedByOneOf checks a compact JWS's RS256 or ES256 signature with the standard library
// directly, without any of the package's code.
func signedByOneOf(token string, keys []*oidctest.Key) bool {
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(token[i+1:])
	if err != nil {
		return false
	}
	digest := sha256.Sum256([]byte(token[:i]))
	for _, k := range keys {
		switch pub := k.Public().(type) {
		case *rsa.PublicKey:
			if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil {
				return true
			}
		case *ecdsa.PublicKey:
			if len(sig) == 64 && ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
				return true
			}
		}
	}
	return false
}
