package oidc_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/oidc/oidctest"
)

// The Verify benchmarks run against a cached JWKS: the steady state of the STS. Each has a
// baseline that does only the standard library's signature check of the same token, so one
// run shows what parsing and the claim checks add.

func benchVerify(b *testing.B, alg string) {
	is := oidctest.Start(b, oidctest.Options{Alg: alg})
	clk := newClock()
	v := newVerifier(b, is, clk, nil)
	tok := is.Mint(b, is.Claims("repo:org/app:ref:refs/heads/main", clk.Now()))
	ctx := context.Background()
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func benchBaseline(b *testing.B, alg string) {
	is := oidctest.Start(b, oidctest.Options{Alg: alg})
	tok := is.Mint(b, is.Claims("repo:org/app:ref:refs/heads/main", newClock().Now()))
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		b.Fatal(err)
	}
	pub := is.SigningKey().Public()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		digest := sha256.Sum256([]byte(tok[:i]))
		switch pub := pub.(type) {
		case *rsa.PublicKey:
			if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
				b.Fatal(err)
			}
		case *ecdsa.PublicKey:
			if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
				b.Fatal("bad signature")
			}
		}
	}
}

func BenchmarkVerifyRS256(b *testing.B)         { benchVerify(b, "RS256") }
func BenchmarkVerifyRS256Baseline(b *testing.B) { benchBaseline(b, "RS256") }
func BenchmarkVerifyES256(b *testing.B)         { benchVerify(b, "ES256") }
func BenchmarkVerifyES256Baseline(b *testing.B) { benchBaseline(b, "ES256") }
