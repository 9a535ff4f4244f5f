package gateway

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// FuzzParsePath: normalization never yields a dot or empty segment, a decoded segment never
// holds a separator, is UTF-8 and, decoded again and again, never becomes a separator or a
// dot segment; and it is idempotent (the forwarded path normalizes to itself), so the path
// authorized, the path routed and the path the backend gets are one path.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/prod/orders", "/prod/a/../admin", "/prod//x/./y/", "/%2e%2E/x", "/a%2Fb", "/a%zz", "/../../", "/prod/a%20b/%7E", "", "x", "/\x00",
		"/prod/public/..;/private", "/a;v=1/b", "/%252e%252e/x", "/%c0%ae%c0%ae/x", "/%e0%80%af", "/%25252f", "/a%3Bb", "/%2e%2e%3b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, why := parsePath(s)
		var scratch [4]string
		if q, qwhy := parsePathIn(s, scratch[:]); qwhy != why || !slices.Equal(q.raw, p.raw) || !slices.Equal(q.dec, p.dec) || q.params != p.params {
			t.Fatalf("with scratch: %q %q %s, without: %q %q %s", q.raw, q.dec, qwhy, p.raw, p.dec, why)
		}
		if why != "" {
			return
		}
		if p.is(s) != (s == "/"+strings.Join(p.raw, "/")) {
			t.Fatalf("is(%q) = %v for %q", s, p.is(s), p.raw)
		}
		if len(p.raw) != len(p.dec) {
			t.Fatalf("raw %q dec %q", p.raw, p.dec)
		}
		for i, d := range p.dec {
			if d == "" || d == "." || d == ".." || strings.ContainsAny(d, "/\\\x00") || !utf8.ValidString(d) {
				t.Fatalf("segment %q of %q", d, s)
			}
			if u, err := url.PathUnescape(p.raw[i]); err != nil || u != d {
				t.Fatalf("raw %q does not decode to %q", p.raw[i], d)
			}
			for cur, n := d, 0; n < maxDecodes; n++ {
				next, err := url.PathUnescape(cur)
				if err != nil || next == cur {
					break
				}
				if next == "." || next == ".." || strings.ContainsAny(next, "/\\\x00") {
					t.Fatalf("segment %q of %q decodes again to %q", d, s, next)
				}
				cur = next
			}
			if name, _, params := strings.Cut(d, ";"); params && (name == "" || name == "." || name == "..") {
				t.Fatalf("segment %q of %q is a dot segment with parameters", d, s)
			}
		}
		q, why := parsePath("/" + strings.Join(p.raw, "/"))
		if why != "" || !slices.Equal(q.raw, p.raw) || !slices.Equal(q.dec, p.dec) || q.params != p.params {
			t.Fatalf("not idempotent: %q -> %q -> %q (%s)", s, p.raw, q.raw, why)
		}
	})
}

// FuzzRoute matches arbitrary methods and paths against the test spec's API: a match names
// a stage of the API and a route whose template and methods accept the request.
func FuzzRoute(f *testing.F) {
	spec := fuzzSpec(f)
	api, _ := spec.API(testAPI)
	for _, s := range []string{"/prod/orders", "/prod/orders/1", "/beta/admin/a/b/c", "/prod/private/open", "/prod/health", "/dev/orders", "/prod", "/"} {
		f.Add("GET", s)
	}
	f.Add("PUT", "/prod/admin/x")
	f.Add("get", "/prod/admin/x")
	f.Fuzz(func(t *testing.T, method, path string) {
		p, why := parsePath(path)
		if why != "" {
			return
		}
		m, ok := match(api, method, p)
		if !ok {
			return
		}
		if !slices.Contains(api.Stages, m.stage) || !methodAllowed(m.route.Methods, method) || !segmentsMatch(m.route.Segments, m.rest.dec) {
			t.Fatalf("%s %s matched %s %v", method, path, m.stage, m.route.Path)
		}
		// The most specific route wins: no other matching route is more specific.
		for _, r := range api.Routes {
			if r != m.route && methodAllowed(r.Methods, method) && segmentsMatch(r.Segments, m.rest.dec) && moreSpecific(r.Segments, m.route.Segments) {
				t.Fatalf("%s %s: %s chosen over the more specific %s", method, path, m.route.Path, r.Path)
			}
		}
	})
}

// FuzzSelectAPI: whatever the Host and x-apigw-api-id say, the API chosen is one of the
// spec's, and through an endpoint one the endpoint lists when the only-API rule applies.
func FuzzSelectAPI(f *testing.F) {
	spec := fuzzSpec(f)
	ep, _ := spec.Endpoint(testEndpoint)
	f.Add("a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", "", false)
	f.Add("a1b2c3d4e5-vpce-0123456789abcdef0.execute-api.us-east-1.amazonaws.com:443", "", true)
	f.Add("127.0.0.1:8443", "b2c3d4e5f6", false)
	f.Add("[::1]:1", "", true)
	f.Add("A1B2C3D4E5", "x", false)
	f.Fuzz(func(t *testing.T, host, hdr string, viaEndpoint bool) {
		h := http.Header{}
		if hdr != "" {
			h.Set("X-Apigw-Api-Id", hdr)
		}
		var e *config.Endpoint
		if viaEndpoint {
			e = ep
		}
		api, ok := selectAPI(spec, host, h, e)
		if !ok {
			return
		}
		if got, ok := spec.API(api.ID); !ok || got != api {
			t.Fatalf("selected %q, not an API of the spec", api.ID)
		}
	})
}

// FuzzBackendQuery: no presigning parameter survives, everything else does, in order.
func FuzzBackendQuery(f *testing.F) {
	f.Add("a=1&X-Amz-Signature=abc&b=2")
	f.Add("X-Amz-Security-Token=t&x-amz-credential=c")
	f.Add("X%2DAmz%2DSignature=1&keep")
	f.Add("")
	f.Fuzz(func(t *testing.T, q string) {
		out := backendQuery(q)
		for pair := range strings.SplitSeq(out, "&") {
			k, _, _ := strings.Cut(pair, "=")
			if dk, err := url.QueryUnescape(k); err == nil && isPresignParam(dk) {
				t.Fatalf("%q kept %q", q, pair)
			}
		}
		if !strings.Contains(strings.ToLower(q), "amz") && out != q {
			t.Fatalf("%q changed to %q", q, out)
		}
	})
}

// FuzzServeHTTP sends arbitrary raw requests straight to the handler (a direct plain-HTTP
// connection): it never panics, answers every API request with exactly one audit event,
// never reaches the backend for an unsigned call to an IAM route, and answers refusals in
// API Gateway's JSON shape.
func FuzzServeHTTP(f *testing.F) {
	e := newEnv(f)
	for _, s := range []string{
		"GET /prod/orders HTTP/1.1\r\nHost: a1b2c3d4e5.execute-api.us-east-1.amazonaws.com\r\n\r\n",
		"GET /prod/health HTTP/1.1\r\nHost: x\r\nX-Apigw-Api-Id: a1b2c3d4e5\r\nX-Phantom-Source-Ip: 10.0.0.1\r\n\r\n",
		"POST /prod/orders/../admin HTTP/1.1\r\nHost: x\r\nX-Apigw-Api-Id: a1b2c3d4e5\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIAAAAAAAAAAAAAAAAA/20260101/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00\r\nContent-Length: 3\r\n\r\nabc",
		"GET /prod/orders?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x HTTP/1.1\r\nHost: x\r\nX-Apigw-Api-Id: a1b2c3d4e5\r\n\r\n",
		"GET /.well-known/phantom/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://a1b2c3d4e5.x/prod/private/open HTTP/1.1\r\nHost: b2c3d4e5f6.x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		r.RemoteAddr = "192.0.2.1:1234"
		e.audit.take()
		w := httptest.NewRecorder()
		e.gw.ServeHTTP(w, r)
		if r.URL.Path == JWKSPath && (r.Method == "GET" || r.Method == "HEAD") {
			return
		}
		evs := e.audit.take()
		if len(evs) != 1 {
			t.Fatalf("%d audit events for %q", len(evs), raw)
		}
		ev := evs[0]
		if w.Code >= 400 {
			if ev.ErrorCode == "" && w.Code < 500 {
				t.Fatalf("refusal %d without errorCode", w.Code)
			}
			if w.Header().Get("X-Amzn-Errortype") == "" || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("refusal %d not in API Gateway's shape: %v", w.Code, w.Header())
			}
		}
		if ev.SourceIPAddress != "192.0.2.1" || ev.VPCEndpointID != "" {
			t.Fatalf("a direct request took %q %q from its headers", ev.SourceIPAddress, ev.VPCEndpointID)
		}
		if ev.ErrorCode == "" && ev.AdditionalEventData["authorization"] == "AWS_IAM" {
			t.Fatalf("an unsigned (or forged) request was allowed: %q", raw)
		}
	})
}

func fuzzSpec(f *testing.F) *config.Spec {
	f.Helper()
	e := newEnv(f)
	return e.spec.Load()
}

// FuzzHashedBody: whatever the body and however it is read, a body that matches its hash
// passes through whole and ends in EOF, and one that does not never has every byte of
// it delivered: the request it feeds cannot complete.
func FuzzHashedBody(f *testing.F) {
	f.Add([]byte("order"), []byte("order"), uint8(3))
	f.Add([]byte("order"), []byte("ordex"), uint8(1))
	f.Add([]byte(""), []byte(""), uint8(0))
	f.Add([]byte(""), []byte("x"), uint8(7))
	f.Fuzz(func(t *testing.T, body, signed []byte, step uint8) {
		want := sha256.Sum256(signed)
		b := newHashedBody(io.NopCloser(iotest.OneByteReader(bytes.NewReader(body))), want)
		var got []byte
		buf := make([]byte, int(step%8)+1)
		var err error
		for range 4*len(body) + 16 {
			var n int
			n, err = b.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if bytes.Equal(body, signed) {
			if err != io.EOF || !bytes.Equal(got, body) {
				t.Fatalf("matching body: got %q, %v", got, err)
			}
			return
		}
		if !errors.Is(err, errBodyHash) || len(got) >= len(body) && len(body) > 0 {
			t.Fatalf("body %q signed %q: delivered %q, %v", body, signed, got, err)
		}
	})
}

// FuzzUpgradeOf: any Upgrade or Connection: upgrade is noticed, and a protocol is named
// only when exactly one is asked for, lower case and without a version or separator.
func FuzzUpgradeOf(f *testing.F) {
	f.Add("websocket", "Upgrade")
	f.Add("WebSocket/13", "keep-alive, upgrade")
	f.Add("h2c, websocket", "")
	f.Add("", "UPGRADE")
	f.Fuzz(func(t *testing.T, up, conn string) {
		h := http.Header{}
		if up != "" {
			h.Set("Upgrade", up)
		}
		if conn != "" {
			h.Set("Connection", conn)
		}
		proto, asked := upgradeOf(h)
		if up != "" && !asked {
			t.Fatalf("Upgrade %q not noticed", up)
		}
		if strings.ContainsAny(proto, ",/") || strings.ToLower(proto) != proto {
			t.Fatalf("protocol %q from %q", proto, up)
		}
		if proto != "" && !asked {
			t.Fatalf("a protocol without an upgrade")
		}
	})
}
