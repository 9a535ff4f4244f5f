package gateway

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

func testSigner(t testing.TB, seed byte) *assertionSigner {
	t.Helper()
	return newAssertionSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
}

// keysOf parses a JWKS for verifyToken.
func keysOf(t testing.TB, jwks []byte) []parsedKey {
	t.Helper()
	k, err := parseJWKS(jwks)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testAssertion is a complete assertion issued at now.
func testAssertion(now time.Time) Assertion {
	return Assertion{Issuer: AssertionIssuer, Audience: testAPI, Subject: aliceARN, Principal: aliceARN, RequestID: "r1", ID: "r1",
		Method: "GET", Path: "/svc/orders/1", Query: "a=1", PayloadHash: UnsignedPayload,
		IssuedAt: now.Unix(), ExpiresAt: now.Add(AssertionLifetime).Unix()}
}

func TestVerifyToken(t *testing.T) {
	s := testSigner(t, 1)
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	base := testAssertion(now)
	sign := func(a Assertion) string {
		tok, err := s.sign(&a)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign(base)
	if a, err := verifyToken(good, keysOf(t, s.jwks), testAPI, now); err != nil || *a != base {
		t.Fatalf("%+v %v", a, err)
	}
	lifetime := func(d int64) string {
		a := base
		a.ExpiresAt = a.IssuedAt + d
		return sign(a)
	}
	without := func(f func(*Assertion)) string {
		a := base
		f(&a)
		return sign(a)
	}
	other := testSigner(t, 2)
	parts := strings.Split(good, ".")
	noneHdr := b64.EncodeToString([]byte(`{"alg":"none","kid":"` + s.kid + `"}`))
	tests := []struct {
		name  string
		token string
		jwks  []byte
		aud   string
		now   time.Time
		want  error
	}{
		{"another key's JWKS", good, other.jwks, testAPI, now, ErrAssertionSignature},
		{"another key's signature", strings.Join(parts[:2], ".") + "." + strings.Split(sign2(t, other, base), ".")[2], s.jwks, testAPI, now, ErrAssertionSignature},
		{"claims changed", parts[0] + "." + b64.EncodeToString(mustJSON(t, Assertion{Issuer: AssertionIssuer, Audience: testAPI, Subject: "arn:aws:iam::123456789012:user/mallory", IssuedAt: base.IssuedAt, ExpiresAt: base.ExpiresAt})) + "." + parts[2], s.jwks, testAPI, now, ErrAssertionSignature},
		{"alg none", noneHdr + "." + parts[1] + ".", s.jwks, testAPI, now, ErrAssertionMalformed},
		{"wrong audience", good, s.jwks, otherAPI, now, ErrAssertionClaims},
		{"expired", good, s.jwks, testAPI, now.Add(AssertionLifetime + assertionLeeway + time.Second), ErrAssertionClaims},
		{"not yet valid", good, s.jwks, testAPI, now.Add(-assertionLeeway - time.Second), ErrAssertionClaims},
		{"lifetime over 30 seconds", lifetime(31), s.jwks, testAPI, now, ErrAssertionClaims},
		{"lifetime of two minutes (the old gateway's)", lifetime(120), s.jwks, testAPI, now, ErrAssertionClaims},
		{"no jti", without(func(a *Assertion) { a.ID = "" }), s.jwks, testAPI, now, ErrAssertionClaims},
		{"no method", without(func(a *Assertion) { a.Method = "" }), s.jwks, testAPI, now, ErrAssertionClaims},
		{"no path", without(func(a *Assertion) { a.Path = "" }), s.jwks, testAPI, now, ErrAssertionClaims},
		{"no payload hash", without(func(a *Assertion) { a.PayloadHash = "" }), s.jwks, testAPI, now, ErrAssertionClaims},
		{"wrong issuer", without(func(a *Assertion) { a.Issuer = "someone" }), s.jwks, testAPI, now, ErrAssertionClaims},
		{"two parts", parts[0] + "." + parts[1], s.jwks, testAPI, now, ErrAssertionMalformed},
		{"four parts", good + ".x", s.jwks, testAPI, now, ErrAssertionMalformed},
		{"empty", "", s.jwks, testAPI, now, ErrAssertionMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verifyToken(tt.token, keysOf(t, tt.jwks), tt.aud, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func sign2(t *testing.T, s *assertionSigner, a Assertion) string {
	tok, err := s.sign(&a)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The JWKS is RFC 8037's OKP form with an RFC 7638 thumbprint as kid.
func TestJWKSShape(t *testing.T) {
	s := testSigner(t, 1)
	var set jwkSet
	if err := json.Unmarshal(s.jwks, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("%s %v", s.jwks, err)
	}
	k := set.Keys[0]
	x, _ := b64.DecodeString(k.X)
	if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Alg != "EdDSA" || k.Use != "sig" || k.Kid != s.kid || !bytes.Equal(x, s.ed.Public().(ed25519.PublicKey)) {
		t.Fatalf("%+v", k)
	}
}

func FuzzVerifyAssertion(f *testing.F) {
	s := testSigner(f, 1)
	now := time.Unix(1_800_000_000, 0)
	a := testAssertion(now)
	tok, _ := s.sign(&a)
	keys := keysOf(f, s.jwks)
	f.Add(tok)
	f.Add("")
	f.Add("a.b.c")
	f.Add(s.header + "e30.")
	f.Fuzz(func(t *testing.T, token string) {
		a, err := verifyToken(token, keys, testAPI, now)
		if err == nil && (a.Audience != testAPI || a.Issuer != AssertionIssuer) {
			t.Fatalf("accepted %+v", a)
		}
		if err == nil && token != tok {
			// Ed25519 signatures are not malleable (RFC 8032 checks S < L) and decoding is
			// strict, so only the token the gateway signed verifies.
			t.Fatalf("a different token verified: %q", token)
		}
	})
}

// TestAssertionJSON: the claims the gateway signs are what json.Marshal would write, for
// every kind of character a principal, session name or path can carry.
func TestAssertionJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "ctl \x00\x01\b\f\n\r\t\x1f\x7f",
		"unicode é ✓ \U0001F600", "line sep \u2028 para \u2029", "bad utf-8 \xff\xfe \xc3", "\xed\xa0\x80 surrogate",
	} {
		checkAssertionJSON(t, s)
	}
}

func FuzzAssertionJSON(f *testing.F) {
	f.Add("arn:aws:sts::123456789012:assumed-role/r/s")
	f.Add("<\u2028\xff\"\\")
	f.Fuzz(checkAssertionJSON)
}

func checkAssertionJSON(t *testing.T, s string) {
	for _, a := range []Assertion{
		{Issuer: AssertionIssuer, Audience: s, RequestID: s, IssuedAt: -1, ExpiresAt: 1 << 40},
		{Issuer: s, Audience: "a", Subject: s, Principal: s, Account: s, AccessKeyID: s, SessionName: s, Role: s,
			VPCEndpoint: s, SourceIP: s, RequestID: "r", ID: s, Method: s, Path: s, Query: s, PayloadHash: s, IssuedAt: 1764380000, ExpiresAt: 1764380030},
	} {
		want, err := json.Marshal(&a)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.appendJSON(nil); string(got) != string(want) {
			t.Fatalf("appendJSON(%q):\n got %s\nwant %s", s, got, want)
		}
	}
}

// TestSignHeadMatchesSign: a token made from a session's head is byte for byte sign's,
// under HS256 and EdDSA, for head lengths of every remainder mod 3 and claims that need
// escaping; one slot serving changing heads remakes them.
func TestSignHeadMatchesSign(t *testing.T) {
	for _, s := range []string{
		"", "a", "ab", "abc", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "ctl \x00\x01\b\f\n\r\t\x1f\x7f",
		"unicode é ✓ \U0001F600", "line sep \u2028 para \u2029", "bad utf-8 \xff\xfe \xc3", "\xed\xa0\x80 surrogate",
	} {
		checkSignHead(t, s, s)
	}
}

func FuzzSignHead(f *testing.F) {
	f.Add("arn:aws:sts::123456789012:assumed-role/r/s", "/svc/a?b")
	f.Add("<\u2028\xff\"\\", "x")
	f.Fuzz(checkSignHead)
}

func checkSignHead(t *testing.T, head, rest string) {
	signers := []*assertionSigner{
		newMACSigner(keys.BackendKey{API: testAPI, Key: bytes.Repeat([]byte{3}, 32)}),
		newMACSigner(keys.BackendKey{API: testAPI, Key: bytes.Repeat([]byte{9}, 100)}), // longer than a block: hashed first
		testSigner(t, 5),
	}
	var slot assertionSlot
	for _, a := range []Assertion{
		{Issuer: AssertionIssuer, Audience: head, RequestID: rest, IssuedAt: -1, ExpiresAt: 1 << 40},
		{Issuer: head, Audience: "a", Subject: head, Principal: head, Account: head, AccessKeyID: head, SessionName: head, Role: head,
			VPCEndpoint: rest, SourceIP: rest, RequestID: "r", ID: rest, Method: rest, Path: rest, Query: rest, PayloadHash: rest, IssuedAt: 1764380000, ExpiresAt: 1764380030},
		{Issuer: AssertionIssuer, Audience: testAPI, Subject: head + "x", Principal: head, Role: "r" + head, RequestID: rest, ID: rest, Method: "GET", Path: "/" + rest},
		{Issuer: AssertionIssuer, Audience: testAPI, Subject: head + "xy", SessionName: head, RequestID: rest, ID: rest, Method: "PUT", Path: "/" + rest},
	} {
		for _, s := range signers {
			want, err := s.sign(&a)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // made, then reused
				h, err := slot.head(s, &a)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.signHead(h, &a)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("signHead(%q, %q):\n got %s\nwant %s", head, rest, got, want)
				}
			}
		}
	}
}
