package sigv4

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSDKSignedRequestsVerify: requests signed by aws-sdk-go-v2 verify in both forms, with
// long-term and temporary credentials, and the result says who signed what.
func TestSDKSignedRequestsVerify(t *testing.T) {
	body := []byte(`{"hello":"world"}`)
	v := newTestVerifier(t, nil)

	t.Run("header", func(t *testing.T) {
		r := testRequest(t, body)
		sdkSign(t, r, body, signOpts{})
		res := mustVerify(t, v, r, body)
		if res.AccessKeyID != testAKID || res.Credential.Principal != "arn:aws:iam::123456789012:user/alice" ||
			res.Region != testRegion || res.Service != testService || res.Presigned || res.UnsignedPayload ||
			!res.SigningTime.Equal(testNow) {
			t.Errorf("result = %+v", res)
		}
		if got := strings.Join(res.SignedHeaders, ";"); got != "content-length;content-type;host;x-amz-date;x-custom;x-multi" {
			t.Errorf("signed headers = %s", got)
		}
	})
	t.Run("header with session token", func(t *testing.T) {
		r := testRequest(t, body)
		sdkSign(t, r, body, signOpts{akid: testTempID, secret: testSecret + "temp", token: testToken})
		res := mustVerify(t, v, r, body)
		if res.Credential.SessionToken != testToken {
			t.Errorf("result = %+v", res)
		}
	})
	t.Run("presigned", func(t *testing.T) {
		r := testRequest(t, body)
		r.URL.RawQuery += "&X-Amz-Expires=300"
		pr := sdkPresign(t, r, body, signOpts{})
		res := mustVerify(t, v, pr, body)
		if !res.Presigned {
			t.Errorf("result = %+v", res)
		}
	})
	t.Run("presigned UNSIGNED-PAYLOAD", func(t *testing.T) {
		r := testRequest(t, nil)
		r.Method = http.MethodGet
		r.URL.RawQuery += "&X-Amz-Expires=300"
		pr := sdkPresign(t, r, nil, signOpts{payloadHash: unsignedPayload})
		res := mustVerify(t, v, pr, nil)
		if !res.Presigned || !res.UnsignedPayload {
			t.Errorf("result = %+v", res)
		}
	})
	t.Run("server side", func(t *testing.T) {
		// Through a real HTTP server, so RequestURI, Host and header maps are net/http's.
		srv := newVerifyServer(t, v)
		r, _ := http.NewRequest(http.MethodPut, srv.URL+"/prod/a//b/../c%2Fd?x=1+2&y=%7E", bytes.NewReader(body))
		r.Header.Set("X-Amz-Meta", "v")
		sdkSign(t, r, body, signOpts{})
		resp, err := srv.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out := readAll(t, resp.Body); resp.StatusCode != 200 {
			t.Fatalf("server said %d: %s", resp.StatusCode, out)
		}
	})
}

// TestTamper changes one signed part of a valid request at a time: each change must fail
// with the code AWS gives for it. Adding an unsigned header must not.
func TestTamper(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 8)
	v := newTestVerifier(t, nil)
	signed := func(t *testing.T) *http.Request {
		r := testRequest(t, body)
		sdkSign(t, r, body, signOpts{})
		mustVerify(t, v, r, body)
		return r
	}
	amzDate := testNow.Format(iso8601Basic)
	tests := []struct {
		name   string
		tamper func(r *http.Request, body []byte) []byte
		code   string // "" means: still valid
	}{
		{"method", func(r *http.Request, b []byte) []byte { r.Method = http.MethodPut; return b }, CodeSignatureDoesNotMatch},
		{"method case", func(r *http.Request, b []byte) []byte { r.Method = "post"; return b }, CodeSignatureDoesNotMatch},
		{"path", func(r *http.Request, b []byte) []byte {
			r.URL.Path = "/prod/v1/things/a%20c"
			r.URL.RawPath = ""
			return b
		}, CodeSignatureDoesNotMatch},
		{"path encoding", func(r *http.Request, b []byte) []byte {
			r.URL.RawPath = "/prod/v1/things/a+b" // a different path: '+' is not a space in paths
			r.URL.Path = "/prod/v1/things/a+b"
			return b
		}, CodeSignatureDoesNotMatch},
		{"path trailing slash", func(r *http.Request, b []byte) []byte { r.URL.Path += "/"; r.URL.RawPath = ""; return b }, CodeSignatureDoesNotMatch},
		{"query value", func(r *http.Request, b []byte) []byte {
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "z=last", "z=lasT", 1)
			return b
		}, CodeSignatureDoesNotMatch},
		{"query value order of a repeated key is canonical", func(r *http.Request, b []byte) []byte {
			// a=2&a=1 and a=1&a=2 are the same canonical query: AWS sorts values.
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "a=2&a=1", "a=1&a=2", 1)
			return b
		}, ""},
		{"query param added", func(r *http.Request, b []byte) []byte { r.URL.RawQuery += "&admin=true"; return b }, CodeSignatureDoesNotMatch},
		{"query param removed", func(r *http.Request, b []byte) []byte {
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "&empty=", "", 1)
			return b
		}, CodeSignatureDoesNotMatch},
		{"query empty value dropped", func(r *http.Request, b []byte) []byte {
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "empty=", "empty", 1)
			return b
		}, ""},
		{"signed header value", func(r *http.Request, b []byte) []byte { r.Header.Set("Content-Type", "text/plain"); return b }, CodeSignatureDoesNotMatch},
		{"signed header whitespace is canonical", func(r *http.Request, b []byte) []byte { r.Header.Set("X-Custom", "one two"); return b }, ""},
		{"signed header value added", func(r *http.Request, b []byte) []byte { r.Header.Add("X-Multi", "third"); return b }, CodeSignatureDoesNotMatch},
		{"signed header values reordered", func(r *http.Request, b []byte) []byte { r.Header["X-Multi"] = []string{"second", "first"}; return b }, CodeSignatureDoesNotMatch},
		{"signed header removed", func(r *http.Request, b []byte) []byte { r.Header.Del("X-Custom"); return b }, CodeSignatureDoesNotMatch},
		{"host", func(r *http.Request, b []byte) []byte { r.Host = "evil.example.com"; return b }, CodeSignatureDoesNotMatch},
		{"one body byte", func(r *http.Request, b []byte) []byte { c := bytes.Clone(b); c[len(c)/2] ^= 1; return c }, CodeSignatureDoesNotMatch},
		{"body truncated", func(r *http.Request, b []byte) []byte { return b[:len(b)-1] }, CodeSignatureDoesNotMatch},
		{"date by one second", func(r *http.Request, b []byte) []byte {
			r.Header.Set("X-Amz-Date", testNow.Add(time.Second).Format(iso8601Basic))
			return b
		}, CodeSignatureDoesNotMatch},
		{"scope region", func(r *http.Request, b []byte) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/"+testRegion+"/", "/us-east-1/", 1))
			return b
		}, CodeSignatureDoesNotMatch},
		{"scope service", func(r *http.Request, b []byte) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/"+testService+"/", "/sts/", 1))
			return b
		}, CodeSignatureDoesNotMatch},
		{"scope date", func(r *http.Request, b []byte) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/"+amzDate[:8]+"/", "/20261128/", 1))
			return b
		}, CodeSignatureDoesNotMatch},
		{"access key id", func(r *http.Request, b []byte) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), testAKID, testTempID, 1))
			return b
		}, CodeInvalidClientTokenID}, // the temporary key requires its session token
		{"signed headers list", func(r *http.Request, b []byte) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), ";x-custom;", ";", 1))
			return b
		}, CodeSignatureDoesNotMatch},
		{"signature", func(r *http.Request, b []byte) []byte {
			a := r.Header.Get("Authorization")
			last := a[len(a)-1]
			r.Header.Set("Authorization", a[:len(a)-1]+string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", last)+1)%16]))
			return b
		}, CodeSignatureDoesNotMatch},
		{"unsigned header added", func(r *http.Request, b []byte) []byte { r.Header.Set("X-Forwarded-For", "10.0.0.1"); return b }, ""},
		{"user agent changed", func(r *http.Request, b []byte) []byte { r.Header.Set("User-Agent", "curl/8"); return b }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := signed(t)
			b := tt.tamper(r, body)
			res, err := v.Verify(context.Background(), r, b)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if res != nil {
				t.Fatalf("tampered request accepted: %+v", res)
			}
			wantCode(t, err, tt.code)
		})
	}
}

// TestTamperPresigned does the same for the presigned form, where the signature lives in
// the URL.
func TestTamperPresigned(t *testing.T) {
	v := newTestVerifier(t, nil)
	presigned := func(t *testing.T) *http.Request {
		r := testRequest(t, nil)
		r.Method = http.MethodGet
		r.URL.RawQuery += "&X-Amz-Expires=600"
		pr := sdkPresign(t, r, nil, signOpts{})
		mustVerify(t, v, pr, nil)
		return pr
	}
	replaceQuery := func(r *http.Request, old, new string) {
		if !strings.Contains(r.URL.RawQuery, old) {
			panic("test bug: " + old + " not in " + r.URL.RawQuery)
		}
		r.URL.RawQuery = strings.Replace(r.URL.RawQuery, old, new, 1)
	}
	tests := []struct {
		name   string
		tamper func(r *http.Request) []byte
		code   string
	}{
		{"method", func(r *http.Request) []byte { r.Method = http.MethodDelete; return nil }, CodeSignatureDoesNotMatch},
		{"path", func(r *http.Request) []byte { r.URL.Path = "/prod/v1/other"; r.URL.RawPath = ""; return nil }, CodeSignatureDoesNotMatch},
		{"query value", func(r *http.Request) []byte { replaceQuery(r, "z=last", "z=first"); return nil }, CodeSignatureDoesNotMatch},
		{"expires lengthened", func(r *http.Request) []byte { replaceQuery(r, "X-Amz-Expires=600", "X-Amz-Expires=6000"); return nil }, CodeSignatureDoesNotMatch},
		{"date", func(r *http.Request) []byte {
			replaceQuery(r, "X-Amz-Date="+testNow.Format(iso8601Basic), "X-Amz-Date="+testNow.Add(time.Second).Format(iso8601Basic))
			return nil
		}, CodeSignatureDoesNotMatch},
		{"scope region", func(r *http.Request) []byte { replaceQuery(r, "%2F"+testRegion+"%2F", "%2Fus-east-1%2F"); return nil }, CodeSignatureDoesNotMatch},
		{"host", func(r *http.Request) []byte { r.Host = "other.example.com"; return nil }, CodeSignatureDoesNotMatch},
		{"body added", func(r *http.Request) []byte { return []byte("x") }, CodeSignatureDoesNotMatch},
		{"signed header added to list", func(r *http.Request) []byte {
			replaceQuery(r, "X-Amz-SignedHeaders=", "X-Amz-SignedHeaders=accept%3B")
			r.Header.Set("Accept", "*/*")
			return nil
		}, CodeSignatureDoesNotMatch},
		{"unsigned header added", func(r *http.Request) []byte { r.Header.Set("X-Forwarded-For", "10.0.0.1"); return nil }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := presigned(t)
			b := tt.tamper(r)
			res, err := v.Verify(context.Background(), r, b)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if res != nil {
				t.Fatalf("tampered request accepted: %+v", res)
			}
			wantCode(t, err, tt.code)
		})
	}
}

// TestBodyAlreadyRead: the verifier takes the body as bytes and never reads r.Body.
func TestBodyAlreadyRead(t *testing.T) {
	body := []byte("payload")
	v := newTestVerifier(t, nil)
	r := testRequest(t, body)
	sdkSign(t, r, body, signOpts{})
	r.Body = io.NopCloser(strings.NewReader("a different stream that must not be read"))
	mustVerify(t, v, r, body)
}
