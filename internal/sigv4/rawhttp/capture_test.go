package rawhttp

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The captures in testdata are curl 7.88's output for requests signed with --aws-sigv4
// and AWS's example key (AKIDEXAMPLE) at 20261207T051826Z: a GET over HTTP/2 (-v), a POST
// over HTTP/1.1 (-v, so without its body), the same POST over HTTP/2 (--trace-ascii,
// whose Authorization spans three dump lines) and a GET over HTTP/1.1 (--trace, hex).
const postAuthorization = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/execute-api/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=07894703b8c846e0e01644aecd84a029b249424b63ef6f1b2f6f4d7eaeaf0031"

func TestParseCapture(t *testing.T) {
	tests := []struct {
		file, format, method, target, proto, body, authorization string
	}{
		{file: "curl-v-http2.txt", format: FormatCurlV, method: "GET", target: "/prod/orders?x=1", proto: "HTTP/2.0",
			authorization: "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=1c99aa5f6ad1f0d816a15a6fb9bd0af510f527157924825196e478125c74e99f"},
		{file: "trace-ascii-http2-post.txt", format: FormatTraceASCII, method: "POST", target: "/prod/orders", proto: "HTTP/2.0",
			body: `{"item": "book"}`, authorization: postAuthorization},
		{file: "trace-http1.txt", format: FormatTrace, method: "GET", target: "/prod/orders", proto: "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			r, body, format, err := ParseCapture(data)
			if err != nil {
				t.Fatal(err)
			}
			if format != tt.format || r.Method != tt.method || r.RequestURI != tt.target || r.Proto != tt.proto || string(body) != tt.body {
				t.Fatalf("got %s %s %s %s body %q, want %s %s %s %s body %q", format, r.Method, r.RequestURI, r.Proto, body,
					tt.format, tt.method, tt.target, tt.proto, tt.body)
			}
			if r.Host != "127.0.0.1:43919" || r.Header.Get("X-Amz-Date") != "20261207T051826Z" {
				t.Fatalf("host %q, x-amz-date %q", r.Host, r.Header.Get("X-Amz-Date"))
			}
			if got := r.Header.Get("Authorization"); !strings.HasPrefix(got, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") || tt.authorization != "" && got != tt.authorization {
				t.Fatalf("Authorization %q, want %q", got, tt.authorization)
			}
			if len(r.Header["Authorization"]) != 1 {
				t.Fatalf("the response's or a second request's headers leaked in: %v", r.Header)
			}
		})
	}
}

func TestParseCaptureRefuses(t *testing.T) {
	post, err := os.ReadFile(filepath.Join("testdata", "curl-v-http1-post.txt"))
	if err != nil {
		t.Fatal(err)
	}
	trace, err := os.ReadFile(filepath.Join("testdata", "trace-ascii-http2-post.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// A dump line lost from the middle of the Authorization header.
	lost := bytes.Replace(trace, []byte("0071: us-east-1/execute-api/aws4_request, SignedHeaders=content-type;h\n"), nil, 1)
	if bytes.Equal(lost, trace) {
		t.Fatal("the trace does not hold the line this test removes")
	}
	tests := []struct {
		name, in, want string
	}{
		{"curl -v of a request with a body", string(post), "capture it with curl --trace-ascii"},
		{"trace with a line missing", string(lost), "block does not add up at offset 0x31"},
		{"trace without a request", "== Info: Trying 127.0.0.1:1...\n== Info: connect to 127.0.0.1 port 1 failed\n", "no \"=> Send header\" block"},
		{"curl -v without a request", "*   Trying 127.0.0.1:1...\n* connect failed\n", "no lines starting with"},
		{"trace block shorter than its size", "=> Send header, 40 bytes (0x28)\n0000: GET / HTTP/1.1\n0010: Host: h\n", "block does not add up at offset 0x10"},
		{"trace block without its dump", "=> Send header, 40 bytes (0x28)\n== Info: x\n", "shows 0 of its 40 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := ParseCapture([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestParseCaptureRaw: a raw request, HTTP/2 request line included, is read as Parse reads it.
func TestParseCaptureRaw(t *testing.T) {
	r, body, format, err := ParseCapture([]byte("POST /a HTTP/2\r\nhost: h\r\ncontent-length: 3\r\n\r\nabc"))
	if err != nil || format != FormatRaw || r.Proto != "HTTP/2.0" || r.ProtoMajor != 2 || r.Host != "h" || string(body) != "abc" {
		t.Fatalf("%v %s %+v %q", err, format, r, body)
	}
}

// FuzzParseCapture: any capture either parses or fails cleanly; what parses is what
// Parse makes of the request it extracted, and a raw request reads as Parse reads it.
func FuzzParseCapture(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("> GET / HTTP/2\r\n> Host: h\r\n> \r\n"))
	f.Add([]byte("=> Send header, 26 bytes (0x1a)\n0000: GET / HTTP/1.1\n0010: Host: h\n0019: \n"))
	f.Add([]byte("=> Send header, 18 bytes (0x12)\n0000: 47 45 54 20 2f 20 48 54 54 50 2f 31 2e 31 0d 0a GET / HTTP/1.1..\n0010: 0d 0a                                           ..\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, body, format, err := ParseCapture(data)
		if err != nil {
			if r != nil || body != nil {
				t.Fatal("error with a result")
			}
			return
		}
		if r.Method == "" || r.URL == nil || r.Header == nil || r.Body == nil || r.ContentLength != int64(len(body)) {
			t.Fatalf("incomplete request %+v", r)
		}
		if format == FormatRaw {
			r2, body2, err := Parse(data)
			if err != nil || r2.RequestURI != r.RequestURI || !bytes.Equal(body, body2) {
				t.Fatalf("ParseCapture and Parse disagree on a raw request: %v", err)
			}
		}
	})
}
