package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// backendRequest is the request a backend receives: the assertion in its header, the
// request line as given.
func backendRequest(method, target, token, body string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Header.Set(hdrIdentity, token)
	return r
}

func newVerifier(t testing.TB, jwks []byte, now func() time.Time, max int) *AssertionVerifier {
	t.Helper()
	v, err := NewAssertionVerifier(AssertionVerifierConfig{JWKS: jwks, Audience: testAPI, Now: now, MaxInFlight: max})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAssertionVerifierBindsRequest: an assertion is good for the one request it names —
// method, path and query exactly as received — once; a body other than the one signed
// fails as it is read.
func TestAssertionVerifierBindsRequest(t *testing.T) {
	s := testSigner(t, 1)
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	body := `{"item":"book"}`
	sum := sha256.Sum256([]byte(body))
	a := testAssertion(now)
	a.Method, a.Path, a.Query, a.PayloadHash = "POST", "/svc/orders", "", hex.EncodeToString(sum[:])
	tok, err := s.sign(&a)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, target, body string
		want, readErr              error
	}{
		{"another method", "PUT", "/svc/orders", body, ErrAssertionRequest, nil},
		{"another path", "POST", "/svc/admin", body, ErrAssertionRequest, nil},
		{"a query added", "POST", "/svc/orders?admin=1", body, ErrAssertionRequest, nil},
		{"the path spelled otherwise", "POST", "/svc/%6Frders", body, ErrAssertionRequest, nil},
		{"another body", "POST", "/svc/orders", `{"item":"car"}`, nil, ErrAssertionPayload},
		{"no body", "POST", "/svc/orders", "", nil, ErrAssertionPayload},
		{"the request", "POST", "/svc/orders", body, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, s.jwks, clock, 0) // fresh: each case is a first use
			r := backendRequest(tc.method, tc.target, tok, tc.body)
			got, err := v.VerifyRequest(r)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyRequest: %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			read, err := io.ReadAll(r.Body)
			if !errors.Is(err, tc.readErr) {
				t.Fatalf("reading the body: %v, want %v", err, tc.readErr)
			}
			if tc.readErr == nil && (string(read) != body || got.ID != a.ID) {
				t.Fatalf("body %q, assertion %+v", read, got)
			}
		})
	}

	// Once: the same assertion again, for the same request or any other, is refused.
	v := newVerifier(t, s.jwks, clock, 0)
	if _, err := v.VerifyRequest(backendRequest("POST", "/svc/orders", tok, body)); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/svc/orders", "/svc/orders?admin=1"} {
		if _, err := v.VerifyRequest(backendRequest("POST", target, tok, body)); !errors.Is(err, ErrAssertionReplayed) && !errors.Is(err, ErrAssertionRequest) {
			t.Errorf("replay to %s: %v, want a refusal", target, err)
		}
	}
	if _, err := v.VerifyRequest(backendRequest("POST", "/svc/orders", tok, body)); !errors.Is(err, ErrAssertionReplayed) {
		t.Errorf("replay: %v, want ErrAssertionReplayed", err)
	}
	// Two headers, none: malformed.
	r := backendRequest("POST", "/svc/orders", tok, body)
	r.Header.Add(hdrIdentity, tok)
	if _, err := v.VerifyRequest(r); !errors.Is(err, ErrAssertionMalformed) {
		t.Errorf("two assertions: %v", err)
	}
	// An unsigned payload is not checked: the assertion says nobody vouches for it.
	u := testAssertion(now)
	u.ID, u.Method, u.Path, u.Query = "r2", "POST", "/svc/orders", ""
	utok, _ := s.sign(&u)
	ur := backendRequest("POST", "/svc/orders", utok, "anything")
	if _, err := v.VerifyRequest(ur); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(ur.Body); err != nil || string(b) != "anything" {
		t.Errorf("unsigned body: %q %v", b, err)
	}
}

// TestAssertionVerifierForgets: the replay cache keeps an id until its assertion expires,
// and refuses new ones (fails closed) when full.
func TestAssertionVerifierForgets(t *testing.T) {
	s := testSigner(t, 1)
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	clock := now
	v := newVerifier(t, s.jwks, func() time.Time { return clock }, 2)
	sign := func(id string) string {
		a := testAssertion(clock)
		a.ID = id
		tok, _ := s.sign(&a)
		return tok
	}
	for _, id := range []string{"a", "b"} {
		if _, err := v.Verify(sign(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(sign("c")); err == nil {
		t.Fatal("a third assertion accepted with a cache of 2")
	}
	clock = clock.Add(AssertionLifetime + assertionLeeway + time.Second)
	if _, err := v.Verify(sign("c")); err != nil {
		t.Fatalf("after the first two expired: %v", err)
	}
	if len(v.seen) != 1 {
		t.Errorf("%d ids kept, want 1", len(v.seen))
	}
}

// TestCapturedAssertionReplayed is the attack the issue names: an X-Phantom-Identity
// captured on the gateway-to-backend hop, replayed straight to the backend with new bodies
// and ?admin=1. On the old gateway it was good for two minutes, any number of times, for
// any body and query. The same holds of HS256 (the default) and EdDSA assertions.
func TestCapturedAssertionReplayed(t *testing.T) {
	for _, kind := range []config.AssertionKind{config.AssertionHS256, config.AssertionEdDSA} {
		t.Run(string(kind), func(t *testing.T) {
			testCapturedAssertionReplayed(t, newEnvFrom(t, "spec.yaml", map[string]string{"    name: orders\n": "    name: orders\n    assertion: " + string(kind) + "\n"}, nil))
		})
	}
}

func testCapturedAssertionReplayed(t *testing.T, e *env) {
	k := e.keys["alice"]
	status, _, _ := e.send(t, testCall{method: "POST", path: "/prod/orders", body: []byte(`{"item":1}`), creds: &k})
	if status != 200 {
		t.Fatalf("allowed POST: %d", status)
	}
	h := e.hit(t)
	v := e.backendVerifier(t, testAPI)
	first := backendRequest(h.Method, h.Path, h.Header.Get(hdrIdentity), h.Body)
	if _, err := v.VerifyRequest(first); err != nil {
		t.Fatalf("the backend refuses the gateway's own request: %v", err)
	}
	if b, err := io.ReadAll(first.Body); err != nil || string(b) != h.Body {
		t.Fatalf("the signed body does not check: %q %v", b, err)
	}
	for _, replay := range []struct{ target, body string }{
		{h.Path, h.Body},
		{h.Path, `{"item":2}`},
		{h.Path + "?admin=1", `{"item":3}`},
	} {
		if _, err := v.VerifyRequest(backendRequest("POST", replay.target, h.Header.Get(hdrIdentity), replay.body)); err == nil {
			t.Errorf("replay to %s with %s accepted", replay.target, replay.body)
		}
	}
	// A fresh verifier (another backend replica) still refuses the altered requests.
	w := e.backendVerifier(t, testAPI)
	r := backendRequest("POST", h.Path+"?admin=1", h.Header.Get(hdrIdentity), h.Body)
	if _, err := w.VerifyRequest(r); !errors.Is(err, ErrAssertionRequest) {
		t.Errorf("?admin=1 at another replica: %v", err)
	}
	r = backendRequest("POST", h.Path, h.Header.Get(hdrIdentity), `{"item":4}`)
	if _, err := w.VerifyRequest(r); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r.Body); !errors.Is(err, ErrAssertionPayload) {
		t.Errorf("a new body at another replica: %v", err)
	}
	// And after its 30 s, nothing.
	e.clock.Advance(AssertionLifetime + assertionLeeway + time.Second)
	if _, err := e.backendVerifier(t, testAPI).VerifyRequest(backendRequest(h.Method, h.Path, h.Header.Get(hdrIdentity), h.Body)); !errors.Is(err, ErrAssertionClaims) {
		t.Errorf("after its lifetime: %v", err)
	}
}
