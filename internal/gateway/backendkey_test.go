package gateway

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"github.com/aws/aws-sdk-go-v2/aws"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/keys"
)

// testBackendKey is API api's key under the test signer's assertion key (seed).
func testBackendKey(t testing.TB, seed byte, api string) keys.BackendKey {
	t.Helper()
	k, err := DeriveBackendKey(testSigner(t, seed).ed, api)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyFile(t testing.TB, k keys.BackendKey) []byte {
	t.Helper()
	b, err := k.MarshalJWK()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func macKeys(k keys.BackendKey) verifyKeys {
	return verifyKeys{alg: algHS256, mac: &k, kid: k.KeyID()}
}

// hs256Token MACs a's claims with key under header kid, as a forger holding key would.
func hs256Token(t testing.TB, alg, kid string, key []byte, a Assertion) string {
	t.Helper()
	signing := joseHeader(alg, kid) + b64.EncodeToString(a.appendJSON(nil))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return signing + "." + b64.EncodeToString(m.Sum(nil))
}

// TestHS256Refusals: every way an HS256 assertion can be wrong is refused by the
// verifier of the API's key — forged, another API's, alg swapped in either direction,
// "none", expired, over its lifetime — and the good one verifies to its claims.
func TestHS256Refusals(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	mine := testBackendKey(t, 1, testAPI)
	theirs := testBackendKey(t, 1, otherAPI)
	ed := testSigner(t, 1)
	base := testAssertion(now)
	good, err := SignAssertionHS256(mine, &base)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := verifyWith(good, macKeys(mine), testAPI, now); err != nil || *a != base {
		t.Fatalf("the good token: %+v %v", a, err)
	}
	forAPI := func(api string) Assertion { a := base; a.Audience = api; return a }
	parts := strings.Split(good, ".")
	otherSeed := testBackendKey(t, 2, testAPI) // the same API under another perimeter's key
	edTok := sign2(t, ed, base)
	pub := ed.ed.Public().(ed25519.PublicKey)
	tests := []struct {
		name  string
		token string
		keys  verifyKeys
		want  error
	}{
		{"MAC'd under a guessed key", hs256Token(t, algHS256, mine.KeyID(), bytes.Repeat([]byte{9}, 32), base), macKeys(mine), ErrAssertionSignature},
		{"another perimeter's key for the same API", hs256Token(t, algHS256, mine.KeyID(), otherSeed.Key, base), macKeys(mine), ErrAssertionSignature},
		{"another API's key, its own kid", mustHS256(t, theirs, forAPI(testAPI)), macKeys(mine), ErrAssertionSignature},
		{"another API's key under this API's kid", hs256Token(t, algHS256, mine.KeyID(), theirs.Key, base), macKeys(mine), ErrAssertionSignature},
		{"another API's genuine token", mustHS256(t, theirs, forAPI(otherAPI)), macKeys(mine), ErrAssertionSignature},
		{"claims changed under the MAC", parts[0] + "." + b64.EncodeToString(forAPIJSON(base, "arn:aws:iam::123456789012:user/mallory")) + "." + parts[2], macKeys(mine), ErrAssertionSignature},
		{"MAC truncated", parts[0] + "." + parts[1] + "." + parts[2][:20], macKeys(mine), ErrAssertionMalformed},
		{"EdDSA token to an HS256 verifier (genuine signature)", edTok, macKeys(mine), ErrAssertionMalformed},
		{"HS256 token to an EdDSA verifier", good, verifyKeys{alg: algEdDSA, ed: keysOf(t, ed.jwks)}, ErrAssertionMalformed},
		{"HS256 MAC'd with the public key, to an EdDSA verifier", hs256Token(t, algHS256, ed.kid, pub, base), verifyKeys{alg: algEdDSA, ed: keysOf(t, ed.jwks)}, ErrAssertionMalformed},
		{"alg none", b64.EncodeToString([]byte(`{"alg":"none","kid":"`+mine.KeyID()+`"}`)) + "." + parts[1] + ".", macKeys(mine), ErrAssertionMalformed},
		{"alg hs256 in lower case", hs256Token(t, "hs256", mine.KeyID(), mine.Key, base), macKeys(mine), ErrAssertionMalformed},
		{"HS512", hs256Token(t, "HS512", mine.KeyID(), mine.Key, base), macKeys(mine), ErrAssertionMalformed},
		{"wrong audience (genuine MAC)", mustHS256(t, mine, forAPI(otherAPI)), macKeys(mine), ErrAssertionClaims},
		{"lifetime over 30 seconds", mustHS256(t, mine, func() Assertion { a := base; a.ExpiresAt = a.IssuedAt + 31; return a }()), macKeys(mine), ErrAssertionClaims},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := verifyWith(tt.token, tt.keys, testAPI, now); !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		if _, err := verifyWith(good, macKeys(mine), testAPI, now.Add(AssertionLifetime+assertionLeeway+time.Second)); !errors.Is(err, ErrAssertionClaims) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("not yet valid", func(t *testing.T) {
		if _, err := verifyWith(good, macKeys(mine), testAPI, now.Add(-assertionLeeway-time.Second)); !errors.Is(err, ErrAssertionClaims) {
			t.Fatalf("err %v", err)
		}
	})
}

func mustHS256(t testing.TB, k keys.BackendKey, a Assertion) string {
	t.Helper()
	tok, err := SignAssertionHS256(k, &a)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func forAPIJSON(a Assertion, principal string) []byte {
	a.Subject, a.Principal = principal, principal
	return a.appendJSON(nil)
}

// TestHS256VerifierBindsAndReplays: the verifier of the API's key file binds the
// assertion to its request and takes it once, as with EdDSA.
func TestHS256VerifierBindsAndReplays(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	k := testBackendKey(t, 1, testAPI)
	body := `{"item":"book"}`
	sum := sha256.Sum256([]byte(body))
	a := testAssertion(now)
	a.Method, a.Path, a.Query, a.PayloadHash = "POST", "/svc/orders", "", hex.EncodeToString(sum[:])
	tok := mustHS256(t, k, a)
	newV := func() *AssertionVerifier {
		v, err := NewAssertionVerifier(AssertionVerifierConfig{Key: keyFile(t, k), Audience: testAPI, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name, method, target, body string
		want, readErr              error
	}{
		{"another method", "PUT", "/svc/orders", body, ErrAssertionRequest, nil},
		{"another path", "POST", "/svc/admin", body, ErrAssertionRequest, nil},
		{"a query added", "POST", "/svc/orders?admin=1", body, ErrAssertionRequest, nil},
		{"another body", "POST", "/svc/orders", `{"item":"car"}`, nil, ErrAssertionPayload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := backendRequest(tc.method, tc.target, tok, tc.body)
			_, err := newV().VerifyRequest(r)
			if !errors.Is(err, tc.want) {
				t.Fatalf("verify: %v, want %v", err, tc.want)
			}
			if err == nil {
				if _, err := io.ReadAll(r.Body); !errors.Is(err, tc.readErr) {
					t.Fatalf("read: %v, want %v", err, tc.readErr)
				}
			}
		})
	}
	v := newV()
	r := backendRequest("POST", "/svc/orders", tok, body)
	if got, err := v.VerifyRequest(r); err != nil || got.ID != a.ID {
		t.Fatalf("the request: %+v %v", got, err)
	}
	if b, err := io.ReadAll(r.Body); err != nil || string(b) != body {
		t.Fatalf("body %q %v", b, err)
	}
	if _, err := v.VerifyRequest(backendRequest("POST", "/svc/orders", tok, body)); !errors.Is(err, ErrAssertionReplayed) {
		t.Fatalf("replayed: %v", err)
	}
}

// TestBackendKeyFile: the key file round-trips, and the verifier takes exactly one key
// kind, of its own API.
func TestBackendKeyFile(t *testing.T) {
	k := testBackendKey(t, 1, testAPI)
	file := keyFile(t, k)
	back, err := keys.ParseBackendKey(file)
	if err != nil || back.API != testAPI || !bytes.Equal(back.Key, k.Key) {
		t.Fatalf("%+v %v", back, err)
	}
	if !strings.HasPrefix(k.KeyID(), testAPI+":") || k.KeyID() == testBackendKey(t, 2, testAPI).KeyID() {
		t.Fatalf("kid %q does not name the API and its key", k.KeyID())
	}
	kid := k.KeyID()
	kk := b64.EncodeToString(k.Key)
	for name, bad := range map[string]string{
		"another kty":         `{"kty":"OKP","kid":"` + kid + `","alg":"HS256","use":"sig","k":"` + kk + `"}`,
		"another alg":         `{"kty":"oct","kid":"` + kid + `","alg":"HS512","use":"sig","k":"` + kk + `"}`,
		"no alg":              `{"kty":"oct","kid":"` + kid + `","use":"sig","k":"` + kk + `"}`,
		"use enc":             `{"kty":"oct","kid":"` + kid + `","alg":"HS256","use":"enc","k":"` + kk + `"}`,
		"a short key":         `{"kty":"oct","kid":"` + kid + `","alg":"HS256","use":"sig","k":"` + kk[:20] + `"}`,
		"kid of another key":  `{"kty":"oct","kid":"` + testBackendKey(t, 2, testAPI).KeyID() + `","alg":"HS256","use":"sig","k":"` + kk + `"}`,
		"kid of another API":  `{"kty":"oct","kid":"` + otherAPI + kid[len(testAPI):] + `","alg":"HS256","use":"sig","k":"` + kk + `"}`,
		"kid without the API": `{"kty":"oct","kid":"` + kid[len(testAPI)+1:] + `","alg":"HS256","use":"sig","k":"` + kk + `"}`,
		"unknown member":      `{"kty":"oct","kid":"` + kid + `","alg":"HS256","use":"sig","k":"` + kk + `","x":"1"}`,
		"two keys":            string(file) + string(file),
		"a JWKS":              string(testSigner(t, 1).jwks),
	} {
		if _, err := keys.ParseBackendKey([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, cfg := range map[string]AssertionVerifierConfig{
		"another API's key file": {Key: keyFile(t, testBackendKey(t, 1, otherAPI)), Audience: testAPI},
		"key file and JWKS":      {Key: file, JWKS: testSigner(t, 1).jwks, Audience: testAPI},
		"no key":                 {Audience: testAPI},
	} {
		if _, err := NewAssertionVerifier(cfg); err == nil {
			t.Errorf("%s: a verifier was made", name)
		}
	}
}

func FuzzVerifyHS256(f *testing.F) {
	k := testBackendKey(f, 1, testAPI)
	now := time.Unix(1_800_000_000, 0)
	a := testAssertion(now)
	tok := mustHS256(f, k, a)
	f.Add(tok)
	f.Add("")
	f.Add(joseHeader(algHS256, k.KeyID()) + "e30.")
	f.Fuzz(func(t *testing.T, token string) {
		got, err := verifyWith(token, macKeys(k), testAPI, now)
		if err == nil && (got.Audience != testAPI || got.Issuer != AssertionIssuer) {
			t.Fatalf("accepted %+v", got)
		}
		if err == nil && token != tok {
			// Strict base64 and a MAC over the exact bytes: only the gateway's token.
			t.Fatalf("a different token verified: %q", token)
		}
	})
}

// TestGatewayAssertionPerAPI: the gateway MACs an API's assertions under that API's key
// by default (its backend verifies with the key file, not the JWKS nor another API's
// key), and signs them with Ed25519 for an API with assertion: eddsa.
func TestGatewayAssertionPerAPI(t *testing.T) {
	for _, kind := range []config.AssertionKind{config.AssertionHS256, config.AssertionEdDSA} {
		t.Run(string(kind), func(t *testing.T) {
			e := newEnvFrom(t, "spec.yaml", map[string]string{"    name: orders\n": "    name: orders\n    assertion: " + string(kind) + "\n"}, nil)
			k := e.keys["alice"]
			if status, out, _ := e.send(t, testCall{method: "GET", path: "/prod/orders/1", creds: &k}); status != 200 {
				t.Fatalf("%d %s", status, out)
			}
			h := e.hit(t)
			tok := h.Header.Get(hdrIdentity)
			mine, err := e.gw.BackendKey(testAPI)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := e.gw.BackendKey(otherAPI)
			if err != nil {
				t.Fatal(err)
			}
			verify := func(cfg AssertionVerifierConfig) error {
				cfg.Audience, cfg.Now = testAPI, e.clock.Now
				v, err := NewAssertionVerifier(cfg)
				if err != nil {
					return err
				}
				_, err = v.VerifyRequest(backendRequest(h.Method, h.Path, tok, h.Body))
				return err
			}
			errKey, errJWKS := verify(AssertionVerifierConfig{Key: mine}), verify(AssertionVerifierConfig{JWKS: e.gw.JWKS()})
			// A verifier refuses another API's key file; the MAC does not check under it either.
			other, err := keys.ParseBackendKey(theirs)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := verifyWith(tok, macKeys(other), testAPI, e.clock.Now()); err == nil {
				t.Error("another API's key verified the assertion")
			}
			switch kind {
			case config.AssertionHS256:
				if errKey != nil || errJWKS == nil {
					t.Errorf("hs256: with the key file %v, with the JWKS %v", errKey, errJWKS)
				}
			case config.AssertionEdDSA:
				if errJWKS != nil || errKey == nil {
					t.Errorf("eddsa: with the JWKS %v, with the key file %v", errJWKS, errKey)
				}
			}
		})
	}
}

// TestSessionAssertionsFromHead: a role session's calls, whose assertions start from the
// head made on its first call, each carry the session's identity and their own request,
// and verify under the API's key (HS256) or the JWKS (EdDSA); another session of the
// same role gets its own head; an IAM user's long-term key has one too.
func TestSessionAssertionsFromHead(t *testing.T) {
	for _, kind := range []config.AssertionKind{config.AssertionHS256, config.AssertionEdDSA} {
		t.Run(string(kind), func(t *testing.T) {
			e := newEnvFrom(t, "spec.yaml", map[string]string{"    name: orders\n": "    name: orders\n    assertion: " + string(kind) + "\n"}, nil)
			seen := map[string]bool{}
			sessions := map[string]aws.Credentials{"s1": e.session("app", "s1", time.Hour), "s2": e.session("app", "s2", time.Hour), "alice": e.keys["alice"]}
			for _, c := range []struct{ session, path, backendPath string }{
				{"s1", "/prod/orders/1", "/svc/orders/1"}, {"s1", "/prod/orders/2", "/svc/orders/2"}, {"s2", "/prod/orders/1", "/svc/orders/1"}, {"s1", "/prod/orders/3", "/svc/orders/3"},
				{"alice", "/prod/orders/1", "/svc/orders/1"}, {"alice", "/prod/orders/4", "/svc/orders/4"},
			} {
				s := sessions[c.session]
				status, body, hdr := e.send(t, testCall{method: "GET", path: c.path, creds: &s})
				if status != 200 {
					t.Fatalf("%s %s: %d %s", c.session, c.path, status, body)
				}
				h := e.hit(t)
				a := verifyHit(t, e, h, hdr.Get("X-Amzn-Requestid"))
				arn, name, role := "arn:aws:sts::123456789012:assumed-role/app/"+c.session, c.session, appRoleARN
				if c.session == "alice" { // a long-term key: its head is kept by access key id
					arn, name, role = aliceARN, "", ""
				}
				if a.Subject != arn || a.Principal != arn || a.SessionName != name || a.Role != role || a.AccessKeyID != s.AccessKeyID ||
					a.Path != c.backendPath || a.Method != "GET" || seen[a.ID] {
					t.Errorf("%s %s: assertion %+v", c.session, c.path, a)
				}
				seen[a.ID] = true
			}
		})
	}
}
