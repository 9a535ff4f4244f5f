package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Test fixtures. Requests are signed with aws-sdk-go-v2's signer, an implementation we did
// not write, so a test cannot pass because signer and verifier share a bug.
const (
	testRegion  = "eu-west-1"
	testService = "execute-api"
	testAKID    = "AKIAIOSFODNN7EXAMPLE"
	testSecret  = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	testTempID  = "ASIAIOSFODNN7EXAMPLE"
	testToken   = "FwoGZXIvYXdzEXAMPLEsessiontoken//+=="
)

var testNow = time.Date(2026, 11, 29, 1, 30, 0, 0, time.UTC)

func testCreds() staticCreds {
	return staticCreds{
		testAKID:   {AccessKeyID: testAKID, SecretAccessKey: testSecret, Principal: "arn:aws:iam::123456789012:user/alice"},
		testTempID: {AccessKeyID: testTempID, SecretAccessKey: testSecret + "temp", SessionToken: testToken, Principal: "arn:aws:sts::123456789012:assumed-role/app/session", Expires: testNow.Add(time.Hour)},
	}
}

// newTestVerifier builds a verifier at testNow for testRegion/testService; mods adjust the
// config.
func newTestVerifier(t testing.TB, src CredentialSource, mods ...func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{Region: testRegion, Service: testService, Now: func() time.Time { return testNow }}
	for _, m := range mods {
		m(&cfg)
	}
	if src == nil {
		src = testCreds()
	}
	v, err := New(cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testRequest is the request most tests start from: a POST with a path that needs
// encoding, repeated query keys and a few headers.
func testRequest(t testing.TB, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, "https://api.example.com/prod/v1/things/a%20b?z=last&a=2&a=1&empty=", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Custom", "  one   two ")
	r.Header.Add("X-Multi", "first")
	r.Header.Add("X-Multi", "second")
	return r
}

type signOpts struct {
	akid, secret, token string
	region, service     string
	at                  time.Time
	payloadHash         string // "" means the body's hash
}

func (o *signOpts) fill(body []byte) {
	if o.akid == "" {
		o.akid, o.secret = testAKID, testSecret
	}
	if o.region == "" {
		o.region = testRegion
	}
	if o.service == "" {
		o.service = testService
	}
	if o.at.IsZero() {
		o.at = testNow
	}
	if o.payloadHash == "" {
		o.payloadHash = hashHex(body)
	}
}

// sdkSign signs r in place (Authorization header form) with aws-sdk-go-v2.
func sdkSign(t testing.TB, r *http.Request, body []byte, o signOpts) {
	t.Helper()
	o.fill(body)
	creds := aws.Credentials{AccessKeyID: o.akid, SecretAccessKey: o.secret, SessionToken: o.token}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, o.payloadHash, o.service, o.region, o.at); err != nil {
		t.Fatal(err)
	}
}

// sdkPresign presigns r with aws-sdk-go-v2 and returns the request to send: the presigned
// URL with the headers the signer says must accompany it.
func sdkPresign(t testing.TB, r *http.Request, body []byte, o signOpts) *http.Request {
	t.Helper()
	o.fill(body)
	creds := aws.Credentials{AccessKeyID: o.akid, SecretAccessKey: o.secret, SessionToken: o.token}
	uri, hdr, err := v4.NewSigner().PresignHTTP(context.Background(), creds, r, o.payloadHash, o.service, o.region, o.at)
	if err != nil {
		t.Fatal(err)
	}
	out, err := http.NewRequest(r.Method, uri, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		if k == "Host" {
			continue
		}
		out.Header[k] = vs
	}
	return out
}

// mustVerify fails the test unless r verifies.
func mustVerify(t testing.TB, v *Verifier, r *http.Request, body []byte) *Result {
	t.Helper()
	res, err := v.Verify(context.Background(), r, body)
	if err != nil {
		t.Fatalf("valid request rejected: %v\n%s", err, describe(err))
	}
	return res
}

// wantCode fails the test unless err is a *Error with the code (and, if given, exactly the
// message).
func wantCode(t testing.TB, err error, code string, msg ...string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v (%T), want *Error with code %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("code = %s (%s), want %s\nhint: %s", e.Code, e.Message, code, e.Hint)
	}
	if len(msg) > 0 && e.Message != msg[0] {
		t.Fatalf("message:\n got %q\nwant %q", e.Message, msg[0])
	}
	if e.GatewayType == "" || e.HTTPStatus < 400 || e.Message == "" {
		t.Fatalf("incomplete error: %+v", e)
	}
	if strings.Contains(e.Error()+e.CanonicalRequest+e.StringToSign+e.Hint, testSecret) {
		t.Fatalf("error leaks the secret: %+v", e)
	}
	return e
}

func readAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
