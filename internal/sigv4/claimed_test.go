package sigv4

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestClaimedAccessKey(t *testing.T) {
	const key = "AKIAIOSFODNN7EXAMPLE"
	for _, tc := range []struct {
		name, target, auth, want string
	}{
		{"header", "/", "AWS4-HMAC-SHA256 Credential=" + key + "/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=x", key},
		{"presigned", "/?X-Amz-Credential=" + key + "%2F20150830%2Fus-east-1%2Fiam%2Faws4_request", "", key},
		// The header is what the verifier reads first, so it is what was claimed.
		{"header over query", "/?X-Amz-Credential=ASIAIOSFODNN7EXAMPLE%2Fx", "AWS4-HMAC-SHA256 Credential=" + key + "/x", key},
		{"a header without Credential leaves the query's", "/?X-Amz-Credential=" + key + "%2Fx", "Bearer abc", key},
		{"no credential", "/", "", ""},
		{"lower case is no key id", "/", "AWS4-HMAC-SHA256 Credential=akiaiosfodnn7example/x", ""},
		{"too short", "/", "AWS4-HMAC-SHA256 Credential=AKIA123/x", ""},
		{"too long", "/", "AWS4-HMAC-SHA256 Credential=" + string(make129()) + "/x", ""},
		{"no scope after it", "/", "AWS4-HMAC-SHA256 Credential=" + key + ", SignedHeaders=host", ""},
		{"log injection", "/", "AWS4-HMAC-SHA256 Credential=AKIA\nFORGED LINE00/x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if got := ClaimedAccessKey(r); got != tc.want {
				t.Errorf("ClaimedAccessKey = %q, want %q", got, tc.want)
			}
		})
	}
}

func make129() []byte {
	b := make([]byte, 129)
	for i := range b {
		b[i] = 'A'
	}
	return b
}

func FuzzClaimedAccessKey(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20150830/us-east-1/iam/aws4_request", "")
	f.Add("", "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20150830")
	f.Fuzz(func(t *testing.T, auth, query string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/", RawQuery: query}, Header: http.Header{}}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		id := ClaimedAccessKey(r)
		if id == "" {
			return
		}
		if len(id) < 16 || len(id) > 128 {
			t.Fatalf("ClaimedAccessKey = %q: not 16 to 128 characters", id)
		}
		for i := 0; i < len(id); i++ {
			if c := id[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				t.Fatalf("ClaimedAccessKey = %q: byte %q is no upper-case letter or digit", id, c)
			}
		}
	})
}
