package sigv4_test

// aws-sdk-go-v2 (v1.48.0) round trips: v4.Signer.SignHTTP and PresignHTTP sign generated
// requests, Go's HTTP client sends them to an in-process server, and the server's handler
// verifies them.
//
// Where aws-sdk-go-v2 departs from the spec ("Create a canonical request", IAM User Guide)
// for non-S3 services, and so what the generator keeps out of its inputs:
//   - It does not normalize the path: its canonical URI is URL.EscapedPath() encoded once
//     more, with "." and ".." segments and empty segments ("//") kept, where the spec (and
//     botocore, aws-c-auth) removes dot segments (RFC 3986 §5.2.4) and collapses repeated
//     slashes first: "/a/./b/../c//d" is signed as "/a/./b/../c//d", the spec says "/a/c/d".
//     TestSDKPathNotNormalized pins this down. (The verifier currently also accepts the
//     unnormalized form as an alternative canonical request; the generated requests never
//     depend on that, because each one's SDK canonical request must equal the spec's.)
//   - SignHTTP rewrites the request's query to its canonical query string (it sets
//     URL.RawQuery), so what it sends is always sorted and %20-encoded whatever the caller
//     built; PresignHTTP does the same with the X-Amz-* parameters added.
//   - Nothing else: its path escaping (RFC 3986 unreserved kept, everything else %XX
//     upper-case, applied to the escaped path so "%20" becomes "%2520"), query encoding and
//     sorting (encoded names, then encoded values), header trimming and joining of repeated
//     headers all match the spec for every generated input.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/logging"
)

// sdkProfile: everything except dot segments and empty segments (see the file comment).
var sdkProfile = func() genProfile { p := fullProfile; p.dotSegments = false; return p }()

const sdkRequests = 300 // per form (header, presigned)

// sdkSigner returns a signer that hands its canonical request to *canonical.
func sdkSigner(canonical *string) *v4.Signer {
	return v4.NewSigner(func(o *v4.SignerOptions) {
		o.LogSigning = true
		o.Logger = logging.LoggerFunc(func(_ logging.Classification, format string, v ...interface{}) {
			if len(v) > 0 && strings.Contains(format, "CANONICAL STRING") {
				*canonical = fmt.Sprint(v[0])
			}
		})
	})
}

func bodyHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newSDKRequest builds the http.Request for g against base (the test server's URL).
func newSDKRequest(t testing.TB, base string, g genRequest) *http.Request {
	t.Helper()
	u := base + g.path
	if q := g.rawQuery(); q != "" {
		u += "?" + q
	}
	r, err := http.NewRequest(g.method, u, bytes.NewReader(g.body))
	if err != nil {
		t.Fatalf("%s: %v", g.name, err)
	}
	if got := r.URL.EscapedPath(); got != g.path {
		t.Fatalf("%s: Go would send the path as %q, not %q", g.name, got, g.path)
	}
	for _, h := range g.header {
		r.Header.Add(h.k, h.v)
	}
	return r
}

// send sends r and decodes the server's verdict.
func send(t testing.TB, r *http.Request) verdict {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v verdict
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("decode verdict (status %s): %v", resp.Status, err)
	}
	if v.Valid != (resp.StatusCode == http.StatusOK) {
		t.Fatalf("status %s does not agree with verdict %+v", resp.Status, v)
	}
	return v
}

func TestSDKSignHTTPRoundTrip(t *testing.T) {
	p := newVerifierPair(t, func() time.Time { return clientTime.Add(90 * time.Second) })
	srv := newVerifyServer(t, p)
	g := newGen(20261129, sdkProfile)
	for range sdkRequests {
		req := g.next(false)
		t.Run(req.name, func(t *testing.T) {
			r := newSDKRequest(t, srv.URL, req)
			var canonical string
			creds := aws.Credentials{AccessKeyID: req.akid(), SecretAccessKey: req.secret(), SessionToken: req.token()}
			if err := sdkSigner(&canonical).SignHTTP(context.Background(), creds, r, bodyHash(req.body), clientService, clientRegion, clientTime); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %s signed %v", r.Method, r.URL.RequestURI(), v4SignedHeaders(r))
			v := send(t, r)
			checkVerdict(t, v, req.akid(), canonical)
			if v.Presigned {
				t.Error("header-signed request reported as presigned")
			}
		})
	}
}

func TestSDKPresignHTTPRoundTrip(t *testing.T) {
	// Presigned URLs are valid from X-Amz-Date until X-Amz-Expires later: verify 10
	// minutes in.
	p := newVerifierPair(t, func() time.Time { return clientTime.Add(10 * time.Minute) })
	srv := newVerifyServer(t, p)
	g := newGen(7, sdkProfile)
	for range sdkRequests {
		req := g.next(true)
		t.Run(req.name, func(t *testing.T) {
			r := newSDKRequest(t, srv.URL, req)
			// PresignHTTP takes the lifetime from X-Amz-Expires in the query.
			r.URL.RawQuery = req.rawQuery()
			if r.URL.RawQuery != "" {
				r.URL.RawQuery += "&"
			}
			r.URL.RawQuery += "X-Amz-Expires=900"

			var canonical string
			creds := aws.Credentials{AccessKeyID: req.akid(), SecretAccessKey: req.secret(), SessionToken: req.token()}
			uri, signed, err := sdkSigner(&canonical).PresignHTTP(context.Background(), creds, r, bodyHash(req.body), clientService, clientRegion, clientTime)
			if err != nil {
				t.Fatal(err)
			}
			out, err := http.NewRequest(req.method, uri, bytes.NewReader(req.body))
			if err != nil {
				t.Fatal(err)
			}
			// Send the signed headers the signer returned, and the request's other
			// headers too: an unsigned header must not matter.
			for _, h := range req.header {
				out.Header.Add(h.k, h.v)
			}
			for k, vs := range signed {
				if strings.EqualFold(k, "host") {
					continue
				}
				out.Header[http.CanonicalHeaderKey(k)] = vs
			}
			t.Logf("%s %s", out.Method, out.URL.RequestURI())
			v := send(t, out)
			checkVerdict(t, v, req.akid(), canonical)
			if !v.Presigned {
				t.Error("presigned request not reported as presigned")
			}
		})
	}
}

// TestSDKPathNotNormalized records exactly how aws-sdk-go-v2's canonical URI differs from
// the spec's for paths with dot segments and empty segments: the SDK keeps them, the spec
// removes them. The spec's form is what the verifier reports as its canonical request.
func TestSDKPathNotNormalized(t *testing.T) {
	p := newVerifierPair(t, func() time.Time { return clientTime })
	srv := newVerifyServer(t, p)
	tests := []struct {
		name, path, sdkURI, specURI string
	}{
		{name: "dot segment", path: "/a/./b", sdkURI: "/a/./b", specURI: "/a/b"},
		{name: "dot-dot segment", path: "/a/b/../c", sdkURI: "/a/b/../c", specURI: "/a/c"},
		{name: "empty segments", path: "//a///b", sdkURI: "//a///b", specURI: "/a/b"},
		{name: "all three, escaped", path: "/x%20y/./z/..//w", sdkURI: "/x%2520y/./z/..//w", specURI: "/x%2520y/w"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			var canonical string
			creds := aws.Credentials{AccessKeyID: clientAKID, SecretAccessKey: clientSecret}
			if err := sdkSigner(&canonical).SignHTTP(context.Background(), creds, r, bodyHash(nil), clientService, clientRegion, clientTime); err != nil {
				t.Fatal(err)
			}
			v := send(t, r)
			if got := canonicalURI(canonical); got != tt.sdkURI {
				t.Errorf("SDK canonical URI = %q, want %q", got, tt.sdkURI)
			}
			if got := canonicalURI(v.SpecCanonical); got != tt.specURI {
				t.Errorf("spec canonical URI = %q, want %q", got, tt.specURI)
			}
		})
	}
}

// canonicalURI is the second line of a canonical request.
func canonicalURI(canonical string) string {
	lines := strings.SplitN(canonical, "\n", 3)
	if len(lines) < 2 {
		return ""
	}
	return lines[1]
}

// v4SignedHeaders is the SignedHeaders list of r's Authorization header.
func v4SignedHeaders(r *http.Request) string {
	_, after, _ := strings.Cut(r.Header.Get("Authorization"), "SignedHeaders=")
	list, _, _ := strings.Cut(after, ",")
	return list
}
