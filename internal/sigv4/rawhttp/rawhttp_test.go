package rawhttp

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// suiteRel is the AWS SigV4 conformance suite in ../shared.
const suiteRel = "conformance/sigv4/aws-c-auth-v4"

func TestParse(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		method     string
		requestURI string
		rawPath    string
		rawQuery   string
		host       string
		header     map[string][]string
		body       string
	}{
		{
			name:       "conformance style: bare LF, no space after colon",
			in:         "GET /?Param1=value1 HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\n\n",
			method:     "GET",
			requestURI: "/?Param1=value1",
			rawQuery:   "Param1=value1",
			host:       "example.amazonaws.com",
			header:     map[string][]string{"X-Amz-Date": {"20150830T123600Z"}},
		},
		{
			name:       "CRLF and a space after colon, body cut at Content-Length",
			in:         "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\n",
			method:     "POST",
			requestURI: "/a",
			host:       "h",
			header:     map[string][]string{"Content-Length": {"3"}},
			body:       "abc",
		},
		{
			name:       "target with a space and UTF-8",
			in:         "GET /example space/\xe1\x88\xb4?a=b c HTTP/1.1\nHost:h\n\n",
			method:     "GET",
			requestURI: "/example space/\xe1\x88\xb4?a=b c",
			rawPath:    "/example space/\xe1\x88\xb4",
			rawQuery:   "a=b c",
			host:       "h",
		},
		{
			name:       "escaped target keeps its escaping",
			in:         "GET /a%2Fb/c%20d HTTP/1.1\nHost:h\n\n",
			method:     "GET",
			requestURI: "/a%2Fb/c%20d",
			rawPath:    "/a%2Fb/c%20d",
			host:       "h",
		},
		{
			name:       "repeated headers in order, obsolete folding",
			in:         "GET / HTTP/1.1\nHost:h\nMy-Header1:value4\nmy-header1:value1\nMy-Header2:value1\n  value2\n\tvalue3\n\n",
			method:     "GET",
			requestURI: "/",
			host:       "h",
			header:     map[string][]string{"My-Header1": {"value4", "value1"}, "My-Header2": {"value1 value2 value3"}},
		},
		{
			name:       "absolute-form target",
			in:         "GET https://example.com:8443/p?q=1 HTTP/1.1\n\n",
			method:     "GET",
			requestURI: "https://example.com:8443/p?q=1",
			rawQuery:   "q=1",
			host:       "example.com:8443",
		},
		{
			name:       "no blank line, no body",
			in:         "GET / HTTP/1.1\nHost:h",
			method:     "GET",
			requestURI: "/",
			host:       "h",
		},
		{
			name:       "body without Content-Length is kept whole",
			in:         "PUT / HTTP/1.0\nHost:h\n\nline1\nline2\n",
			method:     "PUT",
			requestURI: "/",
			host:       "h",
			body:       "line1\nline2\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, body, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if r.Method != tt.method || r.RequestURI != tt.requestURI || r.URL.RawQuery != tt.rawQuery || r.Host != tt.host {
				t.Errorf("method %q uri %q query %q host %q", r.Method, r.RequestURI, r.URL.RawQuery, r.Host)
			}
			if tt.rawPath != "" && r.URL.Opaque != tt.rawPath && r.URL.EscapedPath() != tt.rawPath {
				t.Errorf("opaque %q, escaped %q, want %q", r.URL.Opaque, r.URL.EscapedPath(), tt.rawPath)
			}
			if got := r.URL.RequestURI(); strings.HasPrefix(tt.requestURI, "/") && got != tt.requestURI {
				t.Errorf("URL.RequestURI() = %q, want %q", got, tt.requestURI)
			}
			if string(body) != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if r.ContentLength != int64(len(tt.body)) {
				t.Errorf("ContentLength %d", r.ContentLength)
			}
			if _, ok := r.Header["Host"]; ok {
				t.Error("Host left in Header")
			}
			for k, want := range tt.header {
				if got := r.Header[k]; strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "empty input"},
		{"no protocol", "GET /\n\n", "malformed request line"},
		{"HTTP/0.9", "GET / HTTP/0.9\n\n", "unsupported protocol"},
		{"SPDY", "GET / SPDY/3\n\n", "unsupported protocol"},
		{"bad method", "G(T / HTTP/1.1\n\n", "invalid method"},
		{"relative target", "GET a/b HTTP/1.1\n\n", "neither a path"},
		{"header without colon", "GET / HTTP/1.1\nHost h\n\n", "has no name"},
		{"bad header name", "GET / HTTP/1.1\nBad Name: v\n\n", "invalid header name"},
		{"continuation first", "GET / HTTP/1.1\n  v\n\n", "continuation"},
		{"two hosts", "GET / HTTP/1.1\nHost:a\nHost:b\n\n", "more than one Host"},
		{"short body", "POST / HTTP/1.1\nContent-Length: 10\n\nabc", "only 3 body bytes"},
		{"bad content length", "POST / HTTP/1.1\nContent-Length: -1\n\n", "invalid Content-Length"},
		{"two content lengths", "POST / HTTP/1.1\nContent-Length: 1\nContent-Length: 1\n\na", "more than one Content-Length"},
		{"too many headers", "GET / HTTP/1.1\n" + strings.Repeat("X-A: b\n", 1001) + "\n", "more than 1000 header lines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestParseConformanceFiles reads every request file of the AWS suite.
func TestParseConformanceFiles(t *testing.T) {
	suiteDir := testenv.Shared(t, suiteRel)
	files, err := filepath.Glob(filepath.Join(suiteDir, "*", "*request.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("the AWS SigV4 conformance suite at %s holds no request files (err %v)", suiteDir, err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "canonical-request.txt") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := Parse(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if r.Host != "example.amazonaws.com" {
			t.Errorf("%s: host %q", f, r.Host)
		}
		first, _, _ := bytes.Cut(b, []byte("\n"))
		if want := string(first[len(r.Method)+1 : len(first)-len(" HTTP/1.1")]); r.RequestURI != want {
			t.Errorf("%s: RequestURI %q, want %q", f, r.RequestURI, want)
		}
		n++
	}
	if n < 100 {
		t.Fatalf("parsed only %d request files", n)
	}
}

// FuzzRawHTTP: Parse never panics, and whatever it accepts is self-consistent.
func FuzzRawHTTP(f *testing.F) {
	var files []string
	if dir, ok := testenv.SharedOptional(f, suiteRel); ok {
		files, _ = filepath.Glob(filepath.Join(dir, "*", "*request.txt"))
	}
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("GET http://h/x?y HTTP/1.1\nA:\n b\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, body, err := Parse(data)
		if err != nil {
			if r != nil || body != nil {
				t.Fatal("error with a result")
			}
			return
		}
		if r.Method == "" || r.URL == nil || r.Header == nil || r.Body == nil {
			t.Fatalf("incomplete request %+v", r)
		}
		if r.ContentLength != int64(len(body)) {
			t.Fatalf("ContentLength %d, body %d bytes", r.ContentLength, len(body))
		}
		if !bytes.Contains(data, body) {
			t.Fatal("body is not from the input")
		}
		if !strings.Contains(string(data), r.RequestURI) {
			t.Fatal("RequestURI is not from the input")
		}
	})
}
