package sigv4_test

// curl --aws-sigv4 round trips: curl signs and sends requests to an in-process server whose
// handler verifies them with the real clock.
//
// curl 7.88's SigV4 differs from the spec for non-S3 services; TestCurlDivergences proves
// each difference by recomputing curl's signature over the canonical request it actually
// signed. curl 7.88 signs:
//   - the path as sent, neither encoded again nor normalized: "/a%20b" is signed as
//     "/a%20b" (spec: "/a%2520b"), "/a:b" as "/a:b" (spec: "/a%3Ab"), "//a//b" as "//a//b"
//     (spec: "/a/b"). ("." and ".." never reach the wire: curl removes them from the URL
//     before sending, unless --path-as-is.)
//   - the query exactly as sent: not sorted ("b=1&a=2"), no '=' added to a bare key
//     ("flag", spec "flag="), '+' kept as '+' (spec: a space, "%20"), escapes not
//     normalized ("%c3%bc", spec "%C3%BC"), reserved characters not encoded ("*", spec
//     "%2A");
//   - a header given twice as two canonical lines, listed twice in SignedHeaders
//     ("x-a:1\nx-a:2", "x-a;x-a"; spec: "x-a:1,2", "x-a").
// So the generator gives curl paths of unreserved characters only, no repeated headers, and
// sends the query already in canonical form (sorted, %XX upper-case, every key with '='),
// which curl then signs per spec. (An empty -H "Name:" value makes curl drop the header, so
// there are no empty headers either.) What curl does sign per spec: header names
// lower-cased and sorted, values trimmed with inner runs of spaces collapsed, every -H
// header signed (x-amz-security-token included), the body's SHA-256.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

// curlProfile: see the file comment.
var curlProfile = genProfile{}

const curlRequests = 60

// curlArgs returns curl's arguments to send g to base.
func curlArgs(t testing.TB, base string, g genRequest, query string) []string {
	t.Helper()
	args := []string{"-sS", "-o", os.DevNull, "-w", "%{http_code}",
		"--aws-sigv4", "aws:amz:" + clientRegion + ":" + clientService,
		"--user", g.akid() + ":" + g.secret(),
		"-X", g.method}
	for _, h := range g.header {
		args = append(args, "-H", h.k+": "+h.v)
	}
	if g.temp {
		args = append(args, "-H", "x-amz-security-token: "+clientToken)
	}
	if len(g.body) > 0 {
		f := filepath.Join(t.TempDir(), "body")
		if err := os.WriteFile(f, g.body, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--data-binary", "@"+f)
	}
	u := base + g.path
	if query != "" {
		u += "?" + query
	}
	return append(args, u)
}

// runCurl runs curl and returns the verdict the server recorded for its request.
func runCurl(t testing.TB, srv *verifyServer, args []string) verdict {
	t.Helper()
	srv.mu.Lock()
	n := len(srv.verdicts)
	srv.mu.Unlock()
	cmd := exec.Command("curl", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.verdicts) != n+1 {
		t.Fatalf("server saw %d requests from one curl run (status %s)", len(srv.verdicts)-n, out)
	}
	v := srv.verdicts[n]
	if want := map[bool]string{true: "200", false: "403"}[v.Valid]; string(out) != want {
		t.Fatalf("curl got status %s, verdict %+v", out, v)
	}
	return v
}

func newCurlServer(t testing.TB) *verifyServer {
	t.Helper()
	needTool(t, "curl", "--version")
	return newVerifyServer(t, newVerifierPair(t, time.Now))
}

func TestCurlRoundTrip(t *testing.T) {
	srv := newCurlServer(t)
	fixed := []genRequest{
		{name: "get-vanilla", method: "GET", path: "/"},
		{name: "post-body-with-session-token", method: "POST", path: "/prod/items", temp: true,
			header: []kv{{k: "Content-Type", v: "application/json"}}, body: []byte(`{"name":"widget","qty":3}`)},
		{name: "put-binary-body-with-session-token", method: "PUT", path: "/prod/blob", temp: true,
			body: []byte{0, 1, 2, 0xff, 0xfe, '\r', '\n', 0x80}},
		{name: "header-whitespace", method: "GET", path: "/prod",
			header: []kv{{k: "X-Custom", v: "inner   run   of    spaces"}, {k: "X-Trace-Tag", v: "a, b"}}},
		{name: "dot-segments-removed-by-curl", method: "GET", path: "/prod/./a/../items/"},
		{name: "query-canonical-order", method: "DELETE", path: "/prod/items/7",
			query: []kv{{k: "a", v: "1"}, {k: "a", v: "2"}, {k: "b", v: "x y"}, {k: "ключ", v: "ü"}}},
	}
	g := newGen(88, curlProfile)
	reqs := fixed
	for range curlRequests {
		reqs = append(reqs, g.next(false))
	}
	for _, req := range reqs {
		t.Run(req.name, func(t *testing.T) {
			args := curlArgs(t, srv.URL, req, req.canonicalQuery())
			t.Logf("curl %s", strings.Join(args, " "))
			v := runCurl(t, srv, args)
			checkVerdict(t, v, req.akid(), "")
			if req.temp && !hasSigned(v.SignedHeaders, "x-amz-security-token") {
				t.Errorf("curl did not sign the session token header: %v", v.SignedHeaders)
			}
		})
	}
}

func hasSigned(list []string, name string) bool {
	for _, n := range list {
		if n == name {
			return true
		}
	}
	return false
}

// sigv4Signature computes the signature over a canonical request: the check that proves
// which canonical request curl signed when it differs from the spec's.
func sigv4Signature(secret, amzDate, canonical string) string {
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	sum := sha256.Sum256([]byte(canonical))
	scope := amzDate[:8] + "/" + clientRegion + "/" + clientService + "/aws4_request"
	sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	k := mac([]byte("AWS4"+secret), amzDate[:8])
	k = mac(k, clientRegion)
	k = mac(k, clientService)
	k = mac(k, "aws4_request")
	return hex.EncodeToString(mac(k, sts))
}

// TestCurlDivergences proves, for each way curl 7.88 departs from the spec, the canonical
// request curl signed: the signature in its Authorization header must be the HMAC over
// exactly that canonical request. The verifier must reject each one, with one exception
// noted in its row.
func TestCurlDivergences(t *testing.T) {
	srv := newCurlServer(t)
	host := strings.TrimPrefix(srv.URL, "http://")
	// line returns a function that replaces line i of the spec's canonical request.
	line := func(i int, s string) func(string, verdict) string {
		return func(c string, _ verdict) string {
			lines := strings.Split(c, "\n")
			lines[i] = s
			return strings.Join(lines, "\n")
		}
	}
	const emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	tests := []struct {
		name      string
		req       genRequest
		query     string
		wantValid bool   // what the verifier answers
		wantCode  string // when not valid
		// curlCanonical is the canonical request curl signed, from the spec's.
		curlCanonical func(spec string, v verdict) string
	}{
		{name: "escaped path is encoded once, not twice", req: genRequest{method: "GET", path: "/a%20b/%C3%A9/a%2Fb"},
			wantCode: "SignatureDoesNotMatch", curlCanonical: line(1, "/a%20b/%C3%A9/a%2Fb")},
		{name: "reserved path characters are not encoded", req: genRequest{method: "GET", path: "/a:b/user@host/p!q"},
			wantCode: "SignatureDoesNotMatch", curlCanonical: line(1, "/a:b/user@host/p!q")},
		// The spec collapses "//"; curl does not. The verifier accepts this one through its
		// alternative canonical form for unnormalized paths (added for aws-sdk-go-v2), which
		// is the canonical request curl signed.
		{name: "empty path segments are kept", req: genRequest{method: "GET", path: "//a//b"},
			wantValid: true, curlCanonical: line(1, "//a//b")},
		{name: "query is not sorted", req: genRequest{method: "GET", path: "/"}, query: "b=1&a=2",
			wantCode: "SignatureDoesNotMatch", curlCanonical: line(2, "b=1&a=2")},
		{name: "key without value gets no '='", req: genRequest{method: "GET", path: "/"}, query: "a=1&flag",
			wantCode: "SignatureDoesNotMatch", curlCanonical: line(2, "a=1&flag")},
		{name: "'+' in the query is signed as '+'", req: genRequest{method: "GET", path: "/"}, query: "a=x+y",
			wantCode: "SignatureDoesNotMatch", curlCanonical: line(2, "a=x+y")},
		{name: "query escapes are not re-encoded", req: genRequest{method: "GET", path: "/"}, query: "a=%c3%bc&b=*",
			wantCode: "SignatureDoesNotMatch", curlCanonical: line(2, "a=%c3%bc&b=*")},
		// A header given twice is signed as two canonical header lines and listed twice in
		// SignedHeaders instead of one line with the values joined by ','; the verifier
		// refuses the duplicated SignedHeaders entry before computing anything.
		{name: "repeated header signed twice", req: genRequest{method: "GET", path: "/", header: []kv{{k: "X-A", v: "1"}, {k: "X-A", v: "2"}}},
			wantCode: "IncompleteSignature", curlCanonical: func(_ string, v verdict) string {
				return "GET\n/\n\nhost:" + host + "\nx-a:1\nx-a:2\nx-amz-date:" + v.AmzDate + "\n\nhost;x-a;x-a;x-amz-date\n" + emptyHash
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := runCurl(t, srv, curlArgs(t, srv.URL, tt.req, tt.query))
			switch {
			case v.Valid != tt.wantValid:
				t.Fatalf("valid = %v (%s %s), want %v", v.Valid, v.Code, v.Message, tt.wantValid)
			case !v.Valid && v.Code != tt.wantCode:
				t.Fatalf("code = %s (%s), want %s", v.Code, v.Message, tt.wantCode)
			}
			// The verifier recognizes curl 7's as-sent form and says so, without accepting it.
			if asSent := strings.Contains(v.Hint, "exactly as sent"); asSent != (v.Code == "SignatureDoesNotMatch") {
				t.Errorf("hint %q: want the as-sent explanation exactly when the signature does not match", v.Hint)
			}
			curl := tt.curlCanonical(v.SpecCanonical, v)
			if curl == v.SpecCanonical {
				t.Fatalf("row does not describe a divergence: curl's canonical request is the spec's")
			}
			if got := sigv4Signature(tt.req.secret(), v.AmzDate, curl); got != v.Signature {
				t.Errorf("curl did not sign the canonical request we think it did:\n%s\nspec:\n%s", curl, v.SpecCanonical)
			}
		})
	}
}

// TestCurlS3: for service s3 curl 7.88's as-sent path is S3's canonical URI (encoded once,
// not normalized), so escaped paths verify against a verifier in S3 mode.
func TestCurlS3(t *testing.T) {
	needTool(t, "curl", "--version")
	srv := newVerifyServer(t, newVerifierPair(t, time.Now, func(c *sigv4.Config) {
		c.Service = "s3"
		c.DisablePathNormalization = true
	}))
	tests := []genRequest{
		{name: "escaped key", method: "GET", path: "/bucket/my%20photo%20%C3%A9t%C3%A9.jpg"},
		{name: "put with session token", method: "PUT", path: "/bucket/dir/file%2Bplus.bin", temp: true, body: []byte{0, 1, 2, 3, 0xff}},
	}
	for _, req := range tests {
		t.Run(req.name, func(t *testing.T) {
			args := curlArgs(t, srv.URL, req, "")
			for i, a := range args {
				if strings.HasPrefix(a, "aws:amz:") {
					args[i] = "aws:amz:" + clientRegion + ":s3"
				}
			}
			v := runCurl(t, srv, args)
			checkVerdictFor(t, v, req.akid(), "s3", "")
		})
	}
}
