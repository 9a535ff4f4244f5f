package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// The AWS SigV4 conformance suite (aws-c-auth's) in ../shared.
const conformanceRel = "conformance/sigv4/aws-c-auth-v4"

// Credentials and time of every conformance case (each case's context.json).
const (
	suiteAKID   = "AKIDEXAMPLE"
	suiteSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	suiteToken  = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
	suiteTime   = "20150830T123600Z"
)

func suiteFile(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(testenv.Shared(t, conformanceRel), name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("conformance suite: %v", err)
	}
	return p
}

// writeFile writes data to a file in a per-test directory and returns its path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type cliResult struct {
	code           int
	stdout, stderr string
	out            verifyOutput
}

// runVerify runs "phantom sigv4 verify" in process with the suite's key unless the args
// name another; stdin feeds "--request -".
func runVerify(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"sigv4", "verify"}, args...), strings.NewReader(stdin), &stdout, &stderr)
	res := cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	if code == 0 || code == 1 {
		if err := json.Unmarshal(stdout.Bytes(), &res.out); err != nil {
			t.Fatalf("exit %d with output that is not JSON: %v\n%s", code, err, stdout.String())
		}
		if res.out.Valid != (code == 0) {
			t.Fatalf("exit %d but valid=%v", code, res.out.Valid)
		}
	} else if stdout.Len() != 0 {
		t.Fatalf("exit %d printed to stdout: %s", code, stdout.String())
	}
	return res
}

func suiteKey(extra ...string) []string {
	return append([]string{"--access-key-id", suiteAKID, "--secret-access-key", suiteSecret}, extra...)
}

func TestSigv4VerifyValid(t *testing.T) {
	tests := []struct {
		name          string
		file          string
		args          []string
		wantSigned    []string
		wantPresigned bool
	}{
		{name: "header form, scope from the request", file: "get-vanilla/header-signed-request.txt",
			args: suiteKey("--time", suiteTime), wantSigned: []string{"host", "x-amz-date"}},
		{name: "header form, scope given", file: "get-vanilla-query-order-key-case/header-signed-request.txt",
			args: suiteKey("--time", suiteTime, "--region", "us-east-1", "--service", "service"), wantSigned: []string{"host", "x-amz-date"}},
		{name: "presigned URL, 30 minutes into its hour", file: "get-vanilla/query-signed-request.txt",
			args: suiteKey("--time", "20150830T130600Z"), wantSigned: []string{"host"}, wantPresigned: true},
		{name: "session token checked", file: "get-vanilla-with-session-token/header-signed-request.txt",
			args: suiteKey("--time", suiteTime, "--session-token", suiteToken), wantSigned: []string{"host", "x-amz-date", "x-amz-security-token"}},
		{name: "session token not given: the request's is accepted", file: "get-vanilla-with-session-token/header-signed-request.txt",
			args: suiteKey("--time", suiteTime), wantSigned: []string{"host", "x-amz-date", "x-amz-security-token"}},
		{name: "POST with a body", file: "post-x-www-form-urlencoded/header-signed-request.txt",
			args: suiteKey("--time", suiteTime), wantSigned: []string{"content-length", "content-type", "host", "x-amz-content-sha256", "x-amz-date"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runVerify(t, "", append([]string{"--request", suiteFile(t, tt.file)}, tt.args...)...)
			if res.code != 0 {
				t.Fatalf("exit %d, want 0\n%s%s", res.code, res.stdout, res.stderr)
			}
			o := res.out
			if o.AccessKeyID != suiteAKID || o.Region != "us-east-1" || o.Service != "service" {
				t.Errorf("got %s/%s/%s, want %s/us-east-1/service", o.AccessKeyID, o.Region, o.Service, suiteAKID)
			}
			if strings.Join(o.SignedHeaders, ";") != strings.Join(tt.wantSigned, ";") {
				t.Errorf("signedHeaders = %v, want %v", o.SignedHeaders, tt.wantSigned)
			}
			if o.Presigned != tt.wantPresigned || o.SigningTime != suiteTime {
				t.Errorf("presigned=%v signingTime=%s, want %v %s", o.Presigned, o.SigningTime, tt.wantPresigned, suiteTime)
			}
			if o.Code != "" || o.CanonicalRequest != "" {
				t.Errorf("valid result carries error fields: %+v", o)
			}
		})
	}
}

func TestSigv4VerifyStdin(t *testing.T) {
	data, err := os.ReadFile(suiteFile(t, "get-vanilla-query/header-signed-request.txt"))
	if err != nil {
		t.Fatal(err)
	}
	res := runVerify(t, string(data), suiteKey("--request", "-", "--time", suiteTime)...)
	if res.code != 0 || res.out.AccessKeyID != suiteAKID {
		t.Fatalf("exit %d, want 0\n%s%s", res.code, res.stdout, res.stderr)
	}
	// The same request with CRLF line ends, as saved from the wire.
	crlf := strings.ReplaceAll(string(data), "\n", "\r\n")
	if res := runVerify(t, crlf, suiteKey("--request", "-", "--time", suiteTime)...); res.code != 0 {
		t.Fatalf("CRLF: exit %d, want 0\n%s%s", res.code, res.stdout, res.stderr)
	}
}

func TestSigv4VerifyInvalid(t *testing.T) {
	vanilla, err := os.ReadFile(suiteFile(t, "get-vanilla/header-signed-request.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(string(vanilla), "GET / HTTP/1.1", "GET /admin HTTP/1.1", 1)
	tests := []struct {
		name     string
		request  string
		args     []string
		wantCode string
		// wantIn are substrings of the named output fields.
		wantIn map[string]string
	}{
		{name: "tampered path", request: tampered, args: suiteKey("--time", suiteTime), wantCode: "SignatureDoesNotMatch",
			wantIn: map[string]string{
				"canonicalRequest": "GET\n/admin\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
				"stringToSign":     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n",
				"message":          "The request signature we calculated does not match",
				"hint":             "compare",
			}},
		{name: "wrong secret", request: string(vanilla),
			args: []string{"--access-key-id", suiteAKID, "--secret-access-key", "not-the-secret", "--time", suiteTime}, wantCode: "SignatureDoesNotMatch",
			wantIn: map[string]string{"canonicalRequest": "GET\n/\n\nhost:example.amazonaws.com\n", "credentialScope": "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"}},
		{name: "request older than 5 minutes", request: string(vanilla), args: suiteKey("--time", "20150830T124200Z"), wantCode: "RequestExpired",
			wantIn: map[string]string{"message": "Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z", "checkedAgainst": "us-east-1/service at 20150830T124200Z"}},
		{name: "real clock by default", request: string(vanilla), args: suiteKey(), wantCode: "RequestExpired"},
		{name: "region given differs from the scope", request: string(vanilla), args: suiteKey("--time", suiteTime, "--region", "eu-west-1"), wantCode: "SignatureDoesNotMatch",
			wantIn: map[string]string{"message": "Credential should be scoped to a valid region, not 'us-east-1'", "credentialScope": "/us-east-1/"}},
		{name: "service given differs from the scope", request: string(vanilla), args: suiteKey("--time", suiteTime, "--service", "execute-api"), wantCode: "SignatureDoesNotMatch",
			wantIn: map[string]string{"message": "Credential should be scoped to correct service: 'execute-api'"}},
		{name: "other access key", request: string(vanilla), args: []string{"--access-key-id", "AKIDOTHER", "--secret-access-key", suiteSecret, "--time", suiteTime}, wantCode: "InvalidClientTokenId",
			wantIn: map[string]string{"hint": "signed with access key id 'AKIDEXAMPLE' but --access-key-id is 'AKIDOTHER'"}},
		{name: "wrong session token", request: mustRead(t, suiteFile(t, "get-vanilla-with-session-token/header-signed-request.txt")),
			args: suiteKey("--time", suiteTime, "--session-token", "other-token"), wantCode: "InvalidClientTokenId"},
		{name: "scope that no endpoint can have", request: strings.Replace(string(vanilla), "/us-east-1/", "/us east 1/", 1), args: suiteKey("--time", suiteTime), wantCode: "SignatureDoesNotMatch",
			wantIn: map[string]string{"message": "Credential should be scoped to a valid region, not 'us east 1'", "checkedAgainst": "unknown-region/unknown-service"}},
		{name: "no signature at all", request: mustRead(t, suiteFile(t, "get-vanilla/request.txt")), args: suiteKey("--time", suiteTime), wantCode: "MissingAuthenticationToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runVerify(t, "", append([]string{"--request", writeFile(t, "req.txt", []byte(tt.request))}, tt.args...)...)
			if res.code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", res.code, res.stdout, res.stderr)
			}
			if res.out.Code != tt.wantCode {
				t.Fatalf("code = %s (%s), want %s", res.out.Code, res.out.Message, tt.wantCode)
			}
			if res.out.Message == "" {
				t.Error("no message")
			}
			var fields map[string]any
			if err := json.Unmarshal([]byte(res.stdout), &fields); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.wantIn {
				got, _ := fields[k].(string)
				if !strings.Contains(got, want) {
					t.Errorf("%s = %q, want it to contain %q", k, got, want)
				}
			}
			if strings.Contains(res.stdout, suiteSecret) {
				t.Error("output contains the secret")
			}
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sdkSignedRequest signs a request with aws-sdk-go-v2 and returns it as the bytes a
// client sends.
func sdkSignedRequest(t *testing.T, target, payloadHash string, body []byte, opt func(*v4.SignerOptions)) []byte {
	t.Helper()
	r, err := http.NewRequest(http.MethodPut, "https://bucket.example.com"+target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("X-Amz-Content-Sha256", payloadHash)
	creds := aws.Credentials{AccessKeyID: suiteAKID, SecretAccessKey: suiteSecret}
	at := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	var opts []func(*v4.SignerOptions)
	if opt != nil {
		opts = append(opts, opt)
	}
	if err := v4.NewSigner(opts...).SignHTTP(context.Background(), creds, r, payloadHash, "s3", "us-east-1", at); err != nil {
		t.Fatal(err)
	}
	raw, err := httputil.DumpRequestOut(r, true)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestSigv4VerifyModes(t *testing.T) {
	body := []byte("object bytes")
	sum := sha256.Sum256(body)
	// S3 signs the path encoded once: "/my%20key" stays "/my%20key" in the canonical URI,
	// where every other service encodes it again ("/my%2520key").
	s3 := sdkSignedRequest(t, "/my%20key/a", hex.EncodeToString(sum[:]), body, func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	unsigned := sdkSignedRequest(t, "/key", "UNSIGNED-PAYLOAD", body, nil)
	tests := []struct {
		name     string
		request  []byte
		args     []string
		wantCode string // "" = valid
	}{
		{name: "S3 path without --s3", request: s3, args: suiteKey("--time", suiteTime), wantCode: "SignatureDoesNotMatch"},
		{name: "S3 path with --s3", request: s3, args: suiteKey("--time", suiteTime, "--s3")},
		{name: "UNSIGNED-PAYLOAD refused by default", request: unsigned, args: suiteKey("--time", suiteTime), wantCode: "AccessDenied"},
		{name: "UNSIGNED-PAYLOAD with --unsigned-payload", request: unsigned, args: suiteKey("--time", suiteTime, "--unsigned-payload")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runVerify(t, "", append([]string{"--request", writeFile(t, "req.http", tt.request)}, tt.args...)...)
			if tt.wantCode == "" {
				if res.code != 0 || res.out.Service != "s3" {
					t.Fatalf("exit %d, want 0 for service s3\n%s%s", res.code, res.stdout, res.stderr)
				}
				return
			}
			if res.code != 1 || res.out.Code != tt.wantCode {
				t.Fatalf("exit %d code %s, want 1 %s\n%s%s", res.code, res.out.Code, tt.wantCode, res.stdout, res.stderr)
			}
		})
	}
	// --unsigned-payload says so in the result: the body is not authenticated.
	res := runVerify(t, "", append([]string{"--request", writeFile(t, "req.http", unsigned)}, suiteKey("--time", suiteTime, "--unsigned-payload")...)...)
	if !res.out.UnsignedPayload {
		t.Errorf("unsignedPayload not reported: %s", res.stdout)
	}
}

func TestSigv4VerifyUnusable(t *testing.T) {
	good := suiteFile(t, "get-vanilla/header-signed-request.txt")
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantStderr string
	}{
		{name: "missing file", args: suiteKey("--request", filepath.Join(t.TempDir(), "nope.txt")), wantStderr: "no such file"},
		{name: "directory", args: suiteKey("--request", t.TempDir()), wantStderr: "read request"},
		{name: "not an HTTP request", args: suiteKey("--request", writeFile(t, "junk", []byte("hello world\n"))), wantStderr: "not a usable HTTP request"},
		{name: "empty stdin", args: suiteKey("--request", "-"), wantStderr: "stdin is not a usable HTTP request"},
		{name: "HTTP/0.9 request line", args: suiteKey("--request", "-"), stdin: "GET / HTTP/0.9\nHost: x\n\n", wantStderr: "HTTP/1.x, HTTP/2 or HTTP/3"},
		{name: "curl -v of a request with a body", args: suiteKey("--request", "-"), stdin: "> POST / HTTP/2\r\n> Host: x\r\n> Content-Length: 2\r\n> \r\n} [2 bytes data]\n", wantStderr: "read as curl -v"},
		{name: "missing --request", args: suiteKey(), wantStderr: `"request" not set`},
		{name: "missing --secret-access-key", args: []string{"--request", good, "--access-key-id", suiteAKID}, wantStderr: `"secret-access-key" not set`},
		{name: "missing --access-key-id", args: []string{"--request", good, "--secret-access-key", suiteSecret}, wantStderr: `"access-key-id" not set`},
		{name: "bad --time", args: suiteKey("--request", good, "--time", "2015-08-30T12:36:00Z"), wantStderr: "ISO 8601 basic format"},
		{name: "unknown flag", args: suiteKey("--request", good, "--regoin", "x"), wantStderr: "unknown flag: --regoin"},
		{name: "bad --region", args: suiteKey("--request", good, "--region", "eu west 1"), wantStderr: "region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runVerify(t, tt.stdin, tt.args...)
			if res.code != 2 {
				t.Fatalf("exit %d, want 2\n%s%s", res.code, res.stdout, res.stderr)
			}
			if !strings.Contains(res.stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", res.stderr, tt.wantStderr)
			}
		})
	}
}

// captureCurl runs curl --aws-sigv4 against a listener that saves the raw bytes of the
// request it receives, as a user would save a failing request, and returns them.
func captureCurl(t *testing.T, target string, extra ...string) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 1)
	go func() {
		defer close(got)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		var raw bytes.Buffer
		r, err := http.ReadRequest(bufio.NewReader(io.TeeReader(conn, &raw)))
		if err != nil {
			return
		}
		io.Copy(io.Discard, r.Body)
		io.WriteString(conn, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
		got <- raw.Bytes()
	}()
	args := append([]string{"-sS", "-o", os.DevNull, "--aws-sigv4", "aws:amz:eu-west-1:execute-api",
		"--user", suiteAKID + ":" + suiteSecret}, extra...)
	out, err := exec.Command("curl", append(args, "http://"+ln.Addr().String()+target)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	raw := <-got
	if raw == nil {
		t.Fatal("no request captured")
	}
	return raw
}

// TestSigv4VerifyCurlDebugOutput feeds verify what the README says to: curl's own debug
// output of requests it signed and sent, over HTTP/2 and HTTP/1.1 (-v for a GET; for a
// POST, whose body -v does not show, --trace-ascii and --trace). The old code refused
// each ("invalid method \">\"", "unsupported protocol \"HTTP/2\"").
func TestSigv4VerifyCurlDebugOutput(t *testing.T) {
	testenv.LookPath(t, "curl")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	const akid, secret = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	for _, tc := range []struct {
		name string
		args []string // how curl saves the capture to FILE
	}{
		{"curl -v, HTTP/2 GET", []string{"-v", "--http2"}},
		{"curl -v, HTTP/1.1 GET", []string{"-v", "--http1.1"}},
		{"--trace-ascii, HTTP/2 POST", []string{"--trace-ascii", "FILE", "--http2", "-H", "content-type: application/json", "--data", `{"item": "book", "note": "a value long enough to wrap the dump line"}`}},
		{"--trace, HTTP/1.1 POST with bytes --trace-ascii cannot show", []string{"--trace", "FILE", "--http1.1", "--data-binary", "caf\xc3\xa9\nline two\r\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			capture := filepath.Join(t.TempDir(), "req.txt")
			args := []string{"-sS", "-k", "-o", os.DevNull, "--aws-sigv4", "aws:amz:us-east-1:execute-api", "--user", akid + ":" + secret}
			for _, a := range tc.args {
				if a == "FILE" {
					a = capture
				}
				args = append(args, a)
			}
			cmd := exec.Command("curl", append(args, srv.URL+"/prod/orders?x=1")...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("curl: %v\n%s", err, stderr.String())
			}
			if tc.args[0] == "-v" {
				if err := os.WriteFile(capture, stderr.Bytes(), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			res := runVerify(t, "", "--request", capture, "--access-key-id", akid, "--secret-access-key", secret)
			if res.code != 0 || res.out.AccessKeyID != akid || res.out.Service != "execute-api" {
				data, _ := os.ReadFile(capture)
				t.Fatalf("exit %d, want a valid signature\n%s%s\ncapture:\n%s", res.code, res.stdout, res.stderr, data)
			}
		})
	}
}

// TestSigv4VerifyCurlCapture uses the tool as a user would on requests curl really sent:
// one curl 7 signs per spec, and one it signs over the path and query as sent.
func TestSigv4VerifyCurlCapture(t *testing.T) {
	testenv.LookPath(t, "curl")
	t.Run("valid", func(t *testing.T) {
		raw := captureCurl(t, "/prod/items?a=1&b=2", "-H", "X-Custom:  spaced   value ", "--data-binary", "{}")
		res := runVerify(t, string(raw), suiteKey("--request", "-")...)
		if res.code != 0 || res.out.Region != "eu-west-1" || res.out.Service != "execute-api" {
			t.Fatalf("exit %d, want 0 in eu-west-1/execute-api\n%s%s\n%s", res.code, res.stdout, res.stderr, raw)
		}
	})
	t.Run("curl 7 as-sent signature explained", func(t *testing.T) {
		raw := captureCurl(t, "/prod/a%20b?b=1&a=2")
		res := runVerify(t, string(raw), suiteKey("--request", "-", "--region", "eu-west-1", "--service", "execute-api")...)
		if res.code != 1 || res.out.Code != "SignatureDoesNotMatch" {
			t.Fatalf("exit %d code %s, want 1 SignatureDoesNotMatch\n%s", res.code, res.out.Code, res.stdout)
		}
		if !strings.Contains(res.out.CanonicalRequest, "\n/prod/a%2520b\na=2&b=1\n") {
			t.Errorf("canonicalRequest %q does not show the spec's path and query", res.out.CanonicalRequest)
		}
		if !strings.Contains(res.out.Hint, "exactly as sent") {
			t.Errorf("hint %q does not explain curl's as-sent signature", res.out.Hint)
		}
	})
}
