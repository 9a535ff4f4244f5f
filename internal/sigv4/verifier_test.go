package sigv4

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// rotatingCreds returns whatever secret it currently holds for testAKID.
type rotatingCreds struct {
	mu     sync.Mutex
	secret string
}

func (c *rotatingCreds) set(s string) { c.mu.Lock(); c.secret = s; c.mu.Unlock() }

func (c *rotatingCreds) LookupCredential(_ context.Context, id, _ string) (Credential, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id != testAKID {
		return Credential{}, ErrUnknownAccessKey
	}
	return Credential{AccessKeyID: id, SecretAccessKey: c.secret}, nil
}

// TestKeyCache: the cache stays within its bound, is keyed by the secret (a rotated secret
// never reuses the old key) and not by the plain secret.
func TestKeyCache(t *testing.T) {
	src := &rotatingCreds{secret: "s0"}
	v := newTestVerifier(t, src, func(c *Config) { c.KeyCacheSize = 3 })
	for i := range 10 {
		secret := "secret-" + strings.Repeat("x", i)
		src.set(secret)
		r := craft("", "")
		sdkSign(t, r, nil, signOpts{akid: testAKID, secret: secret})
		mustVerify(t, v, r, nil)
		mustVerify(t, v, r, nil) // from the cache
		if n := v.keys.len(); n > 3 {
			t.Fatalf("cache holds %d keys, bound is 3", n)
		}
	}
	// Rotation: a request signed with the previous secret fails once the source says the
	// secret changed, although its key is still cached.
	r := craft("", "")
	sdkSign(t, r, nil, signOpts{akid: testAKID, secret: "old"})
	src.set("old")
	mustVerify(t, v, r, nil)
	src.set("new")
	_, err := v.Verify(context.Background(), r, nil)
	wantCode(t, err, CodeSignatureDoesNotMatch)

	v.keys.mu.RLock()
	defer v.keys.mu.RUnlock()
	for id := range v.keys.m {
		if bytes.Contains(id[:], []byte("new")) || bytes.Contains(id[:], []byte("old")) {
			t.Fatalf("cache key %x holds the secret", id)
		}
	}
}

// TestConcurrentVerify: one Verifier serves many goroutines (run with -race).
func TestConcurrentVerify(t *testing.T) {
	v := newTestVerifier(t, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				body := []byte(strings.Repeat("b", g*i))
				r := testRequest(t, body)
				sdkSign(t, r, body, signOpts{at: testNow.Add(-time.Duration(i) * time.Second)})
				if _, err := v.Verify(context.Background(), r, body); err != nil {
					t.Error(err)
					return
				}
				body = append(body, 'x')
				if _, err := v.Verify(context.Background(), r, body); err == nil {
					t.Error("changed body accepted")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestMismatchReport: a mismatch carries what we computed, in AWS's and API Gateway's
// shapes, and hints at the likely cause; never the secret.
func TestMismatchReport(t *testing.T) {
	body := []byte(`{"a":1}`)
	v := newTestVerifier(t, nil)

	t.Run("body changed", func(t *testing.T) {
		r := testRequest(t, body)
		sdkSign(t, r, body, signOpts{})
		_, err := v.Verify(context.Background(), r, []byte(`{"a":2}`))
		e := wantCode(t, err, CodeSignatureDoesNotMatch, msgSignatureMismatch)
		if !strings.HasPrefix(e.CanonicalRequest, "POST\n/prod/v1/things/a%2520b\na=1&a=2&empty=&z=last\ncontent-length:7\ncontent-type:application/json\nhost:api.example.com\n") ||
			!strings.HasSuffix(e.CanonicalRequest, "\n"+hashHex([]byte(`{"a":2}`))) {
			t.Errorf("canonical request:\n%s", e.CanonicalRequest)
		}
		if !strings.Contains(e.CanonicalRequest, "\nx-custom:one two\nx-multi:first,second\n") {
			t.Errorf("canonical headers:\n%s", e.CanonicalRequest)
		}
		if !strings.HasPrefix(e.StringToSign, "AWS4-HMAC-SHA256\n20261129T013000Z\n20261129/eu-west-1/execute-api/aws4_request\n") {
			t.Errorf("string to sign:\n%s", e.StringToSign)
		}
		if !strings.Contains(e.Hint, "SHA-256 of the 7-byte body") {
			t.Errorf("hint %q does not mention the body", e.Hint)
		}
		if !strings.Contains(e.GatewayMessage, "The Canonical String for this request should have been\n'"+e.CanonicalRequest+"'") ||
			!strings.Contains(e.GatewayMessage, "The String-to-Sign should have been\n'"+e.StringToSign+"'") {
			t.Errorf("gateway message %q", e.GatewayMessage)
		}
	})
	t.Run("signed header dropped by a proxy", func(t *testing.T) {
		r := testRequest(t, body)
		sdkSign(t, r, body, signOpts{})
		r.Header.Del("X-Custom")
		_, err := v.Verify(context.Background(), r, body)
		e := wantCode(t, err, CodeSignatureDoesNotMatch)
		if !strings.Contains(e.Hint, "signed header 'x-custom' is not in the request") {
			t.Errorf("hint %q", e.Hint)
		}
	})
	t.Run("scope region", func(t *testing.T) {
		r := testRequest(t, body)
		sdkSign(t, r, body, signOpts{region: "us-east-2"})
		_, err := v.Verify(context.Background(), r, body)
		e := wantCode(t, err, CodeSignatureDoesNotMatch, "Credential should be scoped to a valid region, not 'us-east-2'. ")
		if !strings.Contains(e.Hint, "configure the client's region as 'eu-west-1'") {
			t.Errorf("hint %q", e.Hint)
		}
	})
	t.Run("clock skew", func(t *testing.T) {
		r := testRequest(t, body)
		sdkSign(t, r, body, signOpts{at: testNow.Add(-20 * time.Minute)})
		_, err := v.Verify(context.Background(), r, body)
		e := wantCode(t, err, CodeRequestExpired)
		if !strings.Contains(e.Hint, "20m0s behind the server clock") {
			t.Errorf("hint %q", e.Hint)
		}
	})
	t.Run("body hash header", func(t *testing.T) {
		r := testRequest(t, body)
		r.Header.Set("X-Amz-Content-Sha256", hashHex(body))
		sdkSign(t, r, body, signOpts{})
		_, err := v.Verify(context.Background(), r, []byte("other"))
		e := wantCode(t, err, CodeContentSHA256Mismatch, "The provided 'x-amz-content-sha256' header does not match what was computed.")
		if !strings.Contains(e.Hint, hashHex([]byte("other"))) {
			t.Errorf("hint %q", e.Hint)
		}
	})
	t.Run("host not signed", func(t *testing.T) {
		r := craft(authHeader(scope(testAKID, testNow, testRegion, testService, terminator), "x-amz-date", fakeSig), testNow.Format(iso8601Basic))
		_, err := v.Verify(context.Background(), r, nil)
		e := wantCode(t, err, CodeIncompleteSignature)
		if !strings.Contains(e.Hint, "host is not in SignedHeaders") {
			t.Errorf("hint %q", e.Hint)
		}
	})
}

// TestReadBody: bodies are read up to the bound and put back for the next reader.
func TestReadBody(t *testing.T) {
	v := newTestVerifier(t, nil, func(c *Config) { c.MaxBodyBytes = 8 })
	r, _ := http.NewRequest(http.MethodPost, "https://h/", strings.NewReader("12345678"))
	b, err := v.ReadBody(r)
	if err != nil || string(b) != "12345678" {
		t.Fatalf("ReadBody = %q, %v", b, err)
	}
	if again, _ := io.ReadAll(r.Body); string(again) != "12345678" {
		t.Fatalf("body not restored: %q", again)
	}
	r, _ = http.NewRequest(http.MethodPost, "https://h/", strings.NewReader("123456789"))
	r.ContentLength = -1 // unknown length: the limit applies while reading
	_, err = v.ReadBody(r)
	var e *Error
	if !errors.As(err, &e) || e.HTTPStatus != http.StatusRequestEntityTooLarge {
		t.Fatalf("err = %v", err)
	}
	r, _ = http.NewRequest(http.MethodGet, "https://h/", nil)
	if b, err := v.ReadBody(r); b != nil || err != nil {
		t.Fatalf("ReadBody(no body) = %q, %v", b, err)
	}
}

// TestNilRequest: nonsense input is refused, never a panic.
func TestNilRequest(t *testing.T) {
	v := newTestVerifier(t, nil)
	_, err := v.Verify(context.Background(), nil, nil)
	wantCode(t, err, CodeMissingAuthToken)
	_, err = v.Verify(context.Background(), &http.Request{}, nil)
	wantCode(t, err, CodeMissingAuthToken)
}
