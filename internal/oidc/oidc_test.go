package oidc_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/oidc"
	"github.com/phantom-perimeter/phantom/internal/oidc/oidctest"
)

// clock is a settable clock shared by the verifier and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newVerifier(t testing.TB, is *oidctest.Issuer, clk *clock, edit func(*oidc.Config)) *oidc.Verifier {
	t.Helper()
	cfg := oidc.Config{
		Providers:  []*config.OIDCProvider{is.Provider()},
		HTTPClient: is.Client(),
		Now:        clk.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	v, err := oidc.New(cfg)
	if err != nil {
		t.Fatalf("oidc.New: %v", err)
	}
	return v
}

// wantCode checks that err is an *oidc.Error with code and a message containing msg.
func wantCode(t *testing.T, err error, code, msg string) {
	t.Helper()
	var oe *oidc.Error
	if !errors.As(err, &oe) {
		t.Fatalf("error = %v, want *oidc.Error %s", err, code)
	}
	if oe.Code != code || !strings.Contains(oe.Message, msg) {
		t.Fatalf("error = %s: %q (cause %v), want %s: %q", oe.Code, oe.Message, oe.Err, code, msg)
	}
}

func TestVerifyValid(t *testing.T) {
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"} {
		t.Run(alg, func(t *testing.T) {
			is := oidctest.Start(t, oidctest.Options{Alg: alg, Path: "/tenant/a"})
			clk := newClock()
			v := newVerifier(t, is, clk, nil)
			claims := is.Claims("repo:org/app:ref:refs/heads/main", clk.Now())
			claims["amr"] = []string{"pwd", "mfa"}
			claims["azp"] = "web-app"
			id, err := v.Verify(context.Background(), is.Mint(t, claims))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			name := strings.TrimPrefix(is.URL, "https://")
			if !strings.HasSuffix(name, "/tenant/a") {
				t.Fatalf("issuer %s has no path", is.URL)
			}
			if id.Provider != name || id.ProviderARN != "arn:aws:iam::123456789012:oidc-provider/"+name ||
				id.Issuer != is.URL || id.Subject != "repo:org/app:ref:refs/heads/main" ||
				id.Audience != oidctest.DefaultClientID || id.AuthorizedParty != "web-app" ||
				!slices.Equal(id.AMR, []string{"pwd", "mfa"}) || id.Algorithm != alg ||
				id.KeyID != is.SigningKey().ID || !id.Expiry.Equal(clk.Now().Add(time.Hour)) ||
				!id.IssuedAt.Equal(clk.Now()) || id.Claims["azp"] != "web-app" {
				t.Fatalf("identity = %+v", id)
			}
			got := id.ConditionKeys()
			want := map[string][]string{
				name + ":sub":           {"repo:org/app:ref:refs/heads/main"},
				name + ":aud":           {oidctest.DefaultClientID},
				name + ":amr":           {"pwd", "mfa"},
				"aws:FederatedProvider": {id.ProviderARN},
			}
			if len(got) != len(want) {
				t.Fatalf("condition keys = %v, want %v", got, want)
			}
			for k, w := range want {
				if !slices.Equal(got[k], w) {
					t.Fatalf("condition key %s = %v, want %v", k, got[k], w)
				}
			}
		})
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func part(t *testing.T, token string, i int) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyDenials(t *testing.T) {
	is := oidctest.Start(t, oidctest.Options{ClientIDs: []string{"sts.amazonaws.com", "second-client"}})
	ec := is.AddKey(t, "ES256")
	pss := is.AddKey(t, "PS256") // an RSA key whose JWK says alg PS256
	is.AddKey(t, "RS256")        // a second RS256 key: a token without kid is ambiguous
	clk := newClock()
	v := newVerifier(t, is, clk, nil)
	now := clk.Now()
	signer := is.SigningKey()
	hdr := func(alg, kid string) map[string]any { return map[string]any{"alg": alg, "kid": kid, "typ": "JWT"} }
	claims := func(edit func(map[string]any)) map[string]any {
		c := is.Claims("alice", now)
		if edit != nil {
			edit(c)
		}
		return c
	}
	mint := func(edit func(map[string]any)) string { return is.Mint(t, claims(edit)) }
	good := mint(nil)

	tests := []struct {
		name  string
		token string
		code  string // "" means accepted
		msg   string
	}{
		{"valid token", good, "", ""},
		{"expired (RFC 7519 §4.1.4)", mint(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() }),
			oidc.CodeExpiredToken, "Token expired: current date/time"},
		{"expired within the 60s leeway is accepted", mint(func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() }), "", ""},
		{"exp missing", mint(func(c map[string]any) { delete(c, "exp") }), oidc.CodeIDPRejectedClaim, "exp"},
		{"exp not a number", mint(func(c map[string]any) { c["exp"] = "tomorrow" }), oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"exp absurdly far (overflow attempt)", mint(func(c map[string]any) { c["exp"] = 1e300 }), oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"not yet valid: nbf in the future (RFC 7519 §4.1.5)", mint(func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() }),
			oidc.CodeInvalidIdentityToken, "not yet valid"},
		{"nbf within leeway is accepted", mint(func(c map[string]any) { c["nbf"] = now.Add(30 * time.Second).Unix() }), "", ""},
		{"issued in the future", mint(func(c map[string]any) { c["iat"] = now.Add(5 * time.Minute).Unix() }),
			oidc.CodeInvalidIdentityToken, "issued in the future"},
		{"lifetime over 24h", mint(func(c map[string]any) { c["exp"] = now.Add(48 * time.Hour).Unix() }),
			oidc.CodeIDPRejectedClaim, "lifetime"},
		{"lifetime over 24h without iat", mint(func(c map[string]any) { delete(c, "iat"); c["exp"] = now.Add(25 * time.Hour).Unix() }),
			oidc.CodeIDPRejectedClaim, "lifetime"},
		{"wrong audience", mint(func(c map[string]any) { c["aud"] = "someone-else" }), oidc.CodeInvalidIdentityToken, "Incorrect token audience"},
		{"audience array with a client id", mint(func(c map[string]any) { c["aud"] = []string{"x", "second-client"} }), "", ""},
		{"audience array without a client id", mint(func(c map[string]any) { c["aud"] = []string{"x", "y"} }), oidc.CodeInvalidIdentityToken, "Incorrect token audience"},
		{"audience missing", mint(func(c map[string]any) { delete(c, "aud") }), oidc.CodeInvalidIdentityToken, "Incorrect token audience"},
		{"audience differs only in case", mint(func(c map[string]any) { c["aud"] = "STS.amazonaws.com" }), oidc.CodeInvalidIdentityToken, "Incorrect token audience"},
		{"azp is not accepted in place of aud", mint(func(c map[string]any) { c["aud"] = "x"; c["azp"] = "sts.amazonaws.com" }),
			oidc.CodeInvalidIdentityToken, "Incorrect token audience"},
		{"wrong issuer", mint(func(c map[string]any) { c["iss"] = "https://evil.example" }), oidc.CodeInvalidIdentityToken, "No OpenIDConnect provider found in your account for https://evil.example"},
		{"issuer with a trailing slash is another issuer", mint(func(c map[string]any) { c["iss"] = is.URL + "/" }), oidc.CodeInvalidIdentityToken, "No OpenIDConnect provider found"},
		{"issuer missing", mint(func(c map[string]any) { delete(c, "iss") }), oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"sub missing", mint(func(c map[string]any) { delete(c, "sub") }), oidc.CodeIDPRejectedClaim, "sub"},
		{"sub of 256 characters", mint(func(c map[string]any) { c["sub"] = strings.Repeat("s", 256) }), oidc.CodeIDPRejectedClaim, "sub"},
		{"unknown kid", oidctest.Sign(t, signer, hdr("RS256", "nope"), claims(nil)), oidc.CodeInvalidIdentityToken, "Couldn't retrieve verification key"},
		{"no kid with several RSA keys", oidctest.Sign(t, signer, map[string]any{"alg": "RS256"}, claims(nil)), oidc.CodeInvalidIdentityToken, "Couldn't retrieve verification key"},
		{"ES256 without kid: the only EC key", oidctest.Sign(t, ec, map[string]any{"alg": "ES256"}, claims(nil)), "", ""},
		{"alg none", oidctest.Sign(t, signer, hdr("none", signer.ID), claims(nil)), oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"alg none with a signature", strings.TrimSuffix(oidctest.Sign(t, signer, hdr("none", signer.ID), claims(nil)), ".") + ".AAAA",
			oidc.CodeInvalidIdentityToken, "algorithm is not supported"},
		{"HS256 keyed with the public key (algorithm confusion)", oidctest.Sign(t, signer, hdr("HS256", signer.ID), claims(nil)),
			oidc.CodeInvalidIdentityToken, "algorithm is not supported"},
		{"alg ES256 naming an RSA key", oidctest.Sign(t, ec, hdr("ES256", signer.ID), claims(nil)), oidc.CodeInvalidIdentityToken, "Couldn't retrieve verification key"},
		{"alg RS256 naming an EC key", oidctest.Sign(t, signer, hdr("RS256", ec.ID), claims(nil)), oidc.CodeInvalidIdentityToken, "Couldn't retrieve verification key"},
		{"alg RS256 with a key whose JWK says PS256", oidctest.Sign(t, pss, hdr("RS256", pss.ID), claims(nil)), oidc.CodeInvalidIdentityToken, "Couldn't retrieve verification key"},
		{"PS256 with the PS256 key", oidctest.Sign(t, pss, hdr("PS256", pss.ID), claims(nil)), "", ""},
		{"signed by another key under this kid", oidctest.Sign(t, is.NewKey(t, "RS256"), hdr("RS256", signer.ID), claims(nil)),
			oidc.CodeInvalidIdentityToken, "signature could not be verified"},
		{"crit header (RFC 7515 §4.1.11)", oidctest.Sign(t, signer, map[string]any{"alg": "RS256", "kid": signer.ID, "crit": []string{"exp"}}, claims(nil)),
			oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"oversized (20,000 character limit)", good + "." + strings.Repeat("A", 20000), oidc.CodeValidationError, "20000"},
		{"empty", "", oidc.CodeValidationError, "length"},
		{"two parts", good[:strings.LastIndex(good, ".")], oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"five parts (JWE)", "a.b.c.d.e", oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"not base64", "!!!." + strings.Split(good, ".")[1] + ".sig", oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"header is not JSON", b64([]byte("alg")) + ".e30.c2ln", oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"payload is a JSON array", strings.Split(good, ".")[0] + "." + b64([]byte("[1]")) + "." + strings.Split(good, ".")[2],
			oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"payload with a stray closing brace", strings.Split(good, ".")[0] + "." + b64(append(part(t, good, 1), '}')) + "." + strings.Split(good, ".")[2],
			oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		{"payload with trailing data", strings.Split(good, ".")[0] + "." + b64(append(part(t, good, 1), []byte("{}")...)) + "." + strings.Split(good, ".")[2],
			oidc.CodeInvalidIdentityToken, "not a valid JWT"},
	}

	// Tampering with a valid token: the payload, the signature, truncation.
	parts := strings.Split(good, ".")
	var c map[string]any
	if err := json.Unmarshal(part(t, good, 1), &c); err != nil {
		t.Fatal(err)
	}
	c["sub"] = "admin"
	forged, _ := json.Marshal(c)
	sig := part(t, good, 2)
	sig[10] ^= 1
	// base64url has one encoding per byte string: flipping a padding bit of the last
	// character (which a lenient decoder ignores) must not give "the same" token.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, good[len(good)-1])
	padded := good[:len(good)-1] + string(alphabet[last^1])
	tests = append(tests,
		struct{ name, token, code, msg string }{"signature with a non-zero padding bit", padded, oidc.CodeInvalidIdentityToken, "not a valid JWT"},
		struct{ name, token, code, msg string }{"truncated mid-signature", good[:len(good)-5], oidc.CodeInvalidIdentityToken, ""},
		struct{ name, token, code, msg string }{"tampered payload", parts[0] + "." + b64(forged) + "." + parts[2], oidc.CodeInvalidIdentityToken, "signature could not be verified"},
		struct{ name, token, code, msg string }{"tampered signature", parts[0] + "." + parts[1] + "." + b64(sig), oidc.CodeInvalidIdentityToken, "signature could not be verified"},
		struct{ name, token, code, msg string }{"truncated signature", parts[0] + "." + parts[1] + "." + b64(part(t, good, 2)[:200]), oidc.CodeInvalidIdentityToken, "signature could not be verified"},
		struct{ name, token, code, msg string }{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(mint(func(c map[string]any) { c["sub"] = "bob" }), ".")[2],
			oidc.CodeInvalidIdentityToken, "signature could not be verified"},
	)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tt.token)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if id.Subject != "alice" {
					t.Fatalf("subject = %q", id.Subject)
				}
				return
			}
			if id != nil {
				t.Fatalf("Verify accepted the token: %+v", id)
			}
			wantCode(t, err, tt.code, tt.msg)
		})
	}
	if n := is.JWKSRequests(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1 (unknown kids are rate-limited)", n)
	}
}

// An ECDSA signature in ASN.1 DER form (what crypto/ecdsa.SignASN1 makes) is not a JWS
// signature (RFC 7518 §3.4) and must be refused even though it is a valid signature.
func TestECDSADERSignatureRefused(t *testing.T) {
	is := oidctest.Start(t, oidctest.Options{Alg: "ES256"})
	clk := newClock()
	v := newVerifier(t, is, clk, nil)
	tok := is.Mint(t, is.Claims("alice", clk.Now()))
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	der := append([]byte{0x30, 0x44, 0x02, 0x20}, sig[:32]...)
	der = append(append(der, 0x02, 0x20), sig[32:]...)
	_, err := v.Verify(context.Background(), parts[0]+"."+parts[1]+"."+b64(der))
	wantCode(t, err, oidc.CodeInvalidIdentityToken, "signature could not be verified")
}

func TestKeyRotation(t *testing.T) {
	is := oidctest.Start(t, oidctest.Options{})
	clk := newClock()
	v := newVerifier(t, is, clk, nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, is.Mint(t, is.Claims("alice", clk.Now()))); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	old := is.Mint(t, is.Claims("alice", clk.Now()))
	is.Rotate(t, "ES256")

	// Within MinRefetchInterval of the last fetch the new kid is unknown and nothing is
	// fetched: tokens cannot make Phantom fetch on every request.
	_, err := v.Verify(ctx, is.Mint(t, is.Claims("alice", clk.Now())))
	wantCode(t, err, oidc.CodeInvalidIdentityToken, "Couldn't retrieve verification key")
	if n := is.JWKSRequests(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
	// The old key is still cached and its TTL has not run out.
	if _, err := v.Verify(ctx, old); err != nil {
		t.Fatalf("old token before refetch: %v", err)
	}

	clk.Advance(oidc.DefaultMinRefetchInterval + time.Second)
	id, err := v.Verify(ctx, is.Mint(t, is.Claims("alice", clk.Now())))
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if id.Algorithm != "ES256" || id.KeyID != is.SigningKey().ID {
		t.Fatalf("verified with %s %s", id.Algorithm, id.KeyID)
	}
	if n := is.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
	// The rotated-out key is gone from the refetched set.
	_, err = v.Verify(ctx, old)
	wantCode(t, err, oidc.CodeInvalidIdentityToken, "Couldn't retrieve verification key")
}

func TestUnknownKidRefetchedThenStillUnknown(t *testing.T) {
	is := oidctest.Start(t, oidctest.Options{})
	clk := newClock()
	v := newVerifier(t, is, clk, nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, is.Mint(t, is.Claims("alice", clk.Now()))); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		tok := oidctest.Sign(t, is.SigningKey(), map[string]any{"alg": "RS256", "kid": fmt.Sprintf("made-up-%d", i)}, is.Claims("alice", clk.Now()))
		_, err := v.Verify(ctx, tok)
		wantCode(t, err, oidc.CodeInvalidIdentityToken, "Couldn't retrieve verification key")
	}
	if n := is.JWKSRequests(); n != 1 {
		t.Fatalf("JWKS fetched %d times for 50 unknown kids, want 1", n)
	}
	clk.Advance(2 * oidc.DefaultMinRefetchInterval)
	tok := oidctest.Sign(t, is.SigningKey(), map[string]any{"alg": "RS256", "kid": "still-unknown"}, is.Claims("alice", clk.Now()))
	_, err := v.Verify(ctx, tok)
	wantCode(t, err, oidc.CodeInvalidIdentityToken, "Couldn't retrieve verification key")
	if n := is.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2 (one refetch for the unknown kid)", n)
	}
}

func TestProviderDownFailsClosed(t *testing.T) {
	is := oidctest.Start(t, oidctest.Options{})
	clk := newClock()
	v := newVerifier(t, is, clk, nil)
	ctx := context.Background()
	mint := func() string { return is.Mint(t, is.Claims("alice", clk.Now())) }

	is.SetStatus(http.StatusServiceUnavailable)
	_, err := v.Verify(ctx, mint())
	wantCode(t, err, oidc.CodeIDPCommunicationError, "Couldn't communicate with your identity provider")
	// The failure is remembered: no second request within MinRefetchInterval.
	_, err = v.Verify(ctx, mint())
	wantCode(t, err, oidc.CodeIDPCommunicationError, "")
	if n := is.DiscoveryRequests(); n != 1 {
		t.Fatalf("discovery fetched %d times, want 1", n)
	}

	is.SetStatus(0)
	clk.Advance(oidc.DefaultMinRefetchInterval)
	if _, err := v.Verify(ctx, mint()); err != nil {
		t.Fatalf("provider back: %v", err)
	}

	// Down again: cached keys serve until their TTL, then nothing does.
	is.SetStatus(http.StatusInternalServerError)
	clk.Advance(oidc.DefaultJWKSTTL - time.Minute)
	if _, err := v.Verify(ctx, mint()); err != nil {
		t.Fatalf("within the TTL: %v", err)
	}
	clk.Advance(2 * time.Minute)
	_, err = v.Verify(ctx, mint())
	wantCode(t, err, oidc.CodeIDPCommunicationError, "")
}

func TestJWKSDocuments(t *testing.T) {
	tests := []struct {
		name string
		jwks string
	}{
		{"not JSON", "<html>"},
		{"no keys", `{"keys":[]}`},
		{"only an HMAC key", `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"key-1"}]}`},
		{"RSA key of 1024 bits", ""}, // filled below
		{"EC point not on the curve", `{"keys":[{"kty":"EC","crv":"P-256","kid":"key-1","x":"` + b64(make([]byte, 32)) + `","y":"` + b64(append(make([]byte, 31), 1)) + `"}]}`},
		{"only an encryption key", ""},
		{"only a key with private material", ""},
		{"RSA key whose alg is ES256", ""},
		{"too large", `{"keys":[],"pad":"` + strings.Repeat("x", 300<<10) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := oidctest.Start(t, oidctest.Options{})
			jwks := tt.jwks
			if jwks == "" {
				k := is.SigningKey().JWK()
				switch tt.name {
				case "RSA key of 1024 bits":
					k["n"] = b64(append([]byte{0x80}, make([]byte, 127)...))
				case "only an encryption key":
					k["use"] = "enc"
				case "only a key with private material":
					k["d"] = b64([]byte("private"))
				case "RSA key whose alg is ES256":
					k["alg"] = "ES256"
				}
				b, _ := json.Marshal(map[string]any{"keys": []any{k}})
				jwks = string(b)
			}
			is.SetJWKS([]byte(jwks))
			clk := newClock()
			v := newVerifier(t, is, clk, nil)
			_, err := v.Verify(context.Background(), is.Mint(t, is.Claims("alice", clk.Now())))
			wantCode(t, err, oidc.CodeIDPCommunicationError, "")
		})
	}
}

func TestDiscovery(t *testing.T) {
	ctx := context.Background()

	t.Run("jwks_uri on another host is followed", func(t *testing.T) {
		is := oidctest.Start(t, oidctest.Options{})
		keys := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(map[string]any{"keys": []any{is.SigningKey().JWK()}})
		}))
		t.Cleanup(keys.Close)
		// keys.example.com (the test certificate covers *.example.com) resolves to the
		// second server.
		is.EditDiscovery(func(doc map[string]any) { doc["jwks_uri"] = "https://keys.example.com/certs" })
		pool := x509.NewCertPool()
		pool.AddCert(is.Server.Certificate())
		pool.AddCert(keys.Certificate())
		client := is.Client()
		tr := client.Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.RootCAs = pool
		keysAddr := keys.Listener.Addr().String()
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == "keys.example.com:443" {
				addr = keysAddr
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		clk := newClock()
		v := newVerifier(t, is, clk, func(c *oidc.Config) { c.HTTPClient = &http.Client{Transport: tr} })
		if _, err := v.Verify(ctx, is.Mint(t, is.Claims("alice", clk.Now()))); err != nil {
			t.Fatal(err)
		}
		if is.JWKSRequests() != 0 {
			t.Fatal("the issuer's own JWKS was fetched")
		}
	})

	denials := []struct {
		name string
		edit func(doc map[string]any, is *oidctest.Issuer)
	}{
		{"jwks_uri over http", func(doc map[string]any, is *oidctest.Issuer) {
			doc["jwks_uri"] = strings.Replace(is.JWKSURL(), "https:", "http:", 1)
		}},
		{"jwks_uri with credentials", func(doc map[string]any, is *oidctest.Issuer) {
			doc["jwks_uri"] = strings.Replace(is.JWKSURL(), "https://", "https://u:p@", 1)
		}},
		{"jwks_uri missing", func(doc map[string]any, is *oidctest.Issuer) { delete(doc, "jwks_uri") }},
		{"document for another issuer (OpenID Connect Discovery 1.0 §4.3)", func(doc map[string]any, is *oidctest.Issuer) {
			doc["issuer"] = "https://evil.example"
		}},
	}
	for _, tt := range denials {
		t.Run(tt.name, func(t *testing.T) {
			is := oidctest.Start(t, oidctest.Options{})
			is.EditDiscovery(func(doc map[string]any) { tt.edit(doc, is) })
			clk := newClock()
			v := newVerifier(t, is, clk, nil)
			_, err := v.Verify(ctx, is.Mint(t, is.Claims("alice", clk.Now())))
			wantCode(t, err, oidc.CodeIDPCommunicationError, "")
			if is.JWKSRequests() != 0 {
				t.Fatal("JWKS fetched despite a refused discovery document")
			}
		})
	}

	t.Run("configured jwksUrl skips discovery", func(t *testing.T) {
		is := oidctest.Start(t, oidctest.Options{JWKSPath: "/keys/v1"})
		p := is.Provider()
		p.JWKSURL = is.JWKSURL()
		is.SetStatus(0)
		is.EditDiscovery(func(doc map[string]any) { doc["jwks_uri"] = "https://evil.example/jwks" })
		clk := newClock()
		v := newVerifier(t, is, clk, func(c *oidc.Config) { c.Providers = []*config.OIDCProvider{p} })
		if _, err := v.Verify(ctx, is.Mint(t, is.Claims("alice", clk.Now()))); err != nil {
			t.Fatal(err)
		}
		if is.DiscoveryRequests() != 0 {
			t.Fatal("discovery fetched despite a configured jwksUrl")
		}
	})

	t.Run("redirect to http refused", func(t *testing.T) {
		is := oidctest.Start(t, oidctest.Options{})
		redirect := httptest.NewTLSServer(http.RedirectHandler("http://127.0.0.1:1/jwks", http.StatusFound))
		t.Cleanup(redirect.Close)
		p := is.Provider()
		p.JWKSURL = redirect.URL + "/jwks"
		clk := newClock()
		v := newVerifier(t, is, clk, func(c *oidc.Config) {
			c.Providers = []*config.OIDCProvider{p}
			c.HTTPClient = redirect.Client()
		})
		_, err := v.Verify(ctx, is.Mint(t, is.Claims("alice", clk.Now())))
		wantCode(t, err, oidc.CodeIDPCommunicationError, "")
		if !strings.Contains(err.Error(), "is not https") {
			t.Fatalf("error = %v, want the redirect refused", err)
		}
	})
}

func TestPlainHTTPIssuer(t *testing.T) {
	is := oidctest.Start(t, oidctest.Options{})
	// The same issuer, served over plain http on loopback.
	plain := httptest.NewServer(is.Server.Config.Handler)
	t.Cleanup(plain.Close)
	p := is.Provider()
	p.URL = plain.URL
	p.Name = strings.TrimPrefix(plain.URL, "http://")
	p.ARN = "arn:aws:iam::123456789012:oidc-provider/" + p.Name
	p.JWKSURL = plain.URL + "/jwks.json"

	if _, err := oidc.New(oidc.Config{Providers: []*config.OIDCProvider{p}}); err == nil || !strings.Contains(err.Error(), "not https") {
		t.Fatalf("New with an http issuer = %v, want refused", err)
	}
	v, err := oidc.New(oidc.Config{Providers: []*config.OIDCProvider{p}, AllowInsecureLoopback: true})
	if err != nil {
		t.Fatalf("New with AllowInsecureLoopback: %v", err)
	}
	claims := is.Claims("alice", time.Now())
	claims["iss"] = plain.URL
	if _, err := v.Verify(context.Background(), is.Mint(t, claims)); err != nil {
		t.Fatalf("Verify over loopback http: %v", err)
	}

	remote := *p
	remote.URL, remote.Name = "http://issuer.example", "issuer.example"
	remote.ARN = "arn:aws:iam::123456789012:oidc-provider/issuer.example"
	remote.JWKSURL = ""
	if _, err := oidc.New(oidc.Config{Providers: []*config.OIDCProvider{&remote}, AllowInsecureLoopback: true}); err == nil {
		t.Fatal("New accepted http to a non-loopback issuer")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := func() *config.OIDCProvider {
		return &config.OIDCProvider{URL: "https://issuer.example/t", Name: "issuer.example/t",
			ARN: "arn:aws:iam::123456789012:oidc-provider/issuer.example/t", ClientIDs: []string{"c"}}
	}
	if _, err := oidc.New(oidc.Config{Providers: []*config.OIDCProvider{good()}}); err != nil {
		t.Fatalf("good config: %v", err)
	}
	tests := []struct {
		name string
		edit func(c *oidc.Config)
	}{
		{"ARN names another provider", func(c *oidc.Config) { c.Providers[0].ARN = "arn:aws:iam::123456789012:oidc-provider/other" }},
		{"name is not host+path", func(c *oidc.Config) { c.Providers[0].Name = "issuer.example" }},
		{"no client ids", func(c *oidc.Config) { c.Providers[0].ClientIDs = nil }},
		{"an empty client id", func(c *oidc.Config) { c.Providers[0].ClientIDs = []string{""} }},
		{"twice", func(c *oidc.Config) { c.Providers = append(c.Providers, good()) }},
		{"http JWKS URL", func(c *oidc.Config) { c.Providers[0].JWKSURL = "http://issuer.example/jwks" }},
		{"nil provider", func(c *oidc.Config) { c.Providers = append(c.Providers, nil) }},
		{"leeway over 5m", func(c *oidc.Config) { c.Leeway = time.Hour }},
		{"refetch interval over the TTL", func(c *oidc.Config) { c.JWKSTTL = time.Minute; c.MinRefetchInterval = time.Hour }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := oidc.Config{Providers: []*config.OIDCProvider{good()}}
			tt.edit(&c)
			if _, err := oidc.New(c); err == nil {
				t.Fatal("New accepted the config")
			}
		})
	}
}

func TestConcurrentFirstUseFetchesOnce(t *testing.T) {
	is := oidctest.Start(t, oidctest.Options{Alg: "ES256"})
	clk := newClock()
	v := newVerifier(t, is, clk, nil)
	tok := is.Mint(t, is.Claims("alice", clk.Now()))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := is.JWKSRequests(); n != 1 {
		t.Fatalf("JWKS fetched %d times by 16 concurrent first requests, want 1", n)
	}
}
