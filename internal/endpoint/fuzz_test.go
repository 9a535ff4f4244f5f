package endpoint

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

func TestSelectAPI(t *testing.T) {
	s := testSpec(t, specOpts{ingress: defaultSpecOpts().ingress, apis: []string{apiOrders, apiBilling}})
	ep, _ := s.Endpoint(testVPCE)
	single := testSpec(t, defaultSpecOpts())
	one, _ := single.Endpoint(testVPCE)
	tests := []struct {
		name    string
		spec    bool // false: the single-API endpoint
		host    string
		hdr     []string
		want    string
		wantWhy string
	}{
		// API Gateway's private API host names: {api-id}.execute-api.{region}.amazonaws.com
		// and {api-id}-{vpce-id}.execute-api.{region}.amazonaws.com.
		{name: "api host", spec: true, host: ordersHost, want: apiOrders},
		{name: "api host, trailing dot and port", spec: true, host: ordersHost + ".:8443", want: apiOrders},
		{name: "api-vpce host", spec: true, host: apiBilling + "-" + testVPCE + ".execute-api.us-east-1.amazonaws.com", want: apiBilling},
		{name: "api-vpce host naming another endpoint", spec: true, host: apiBilling + "-" + otherVPCE + ".x", wantWhy: "names endpoint " + otherVPCE},
		{name: "api-vpce host naming an unknown API", spec: true, host: "qqqqqqqqqq-" + testVPCE + ".x", wantWhy: "not served"},
		{name: "10-char label that is no API falls through", spec: true, host: "localhost1", hdr: []string{apiBilling}, want: apiBilling},
		{name: "header", spec: true, host: "127.0.0.1:8443", hdr: []string{apiBilling}, want: apiBilling},
		{name: "IPv6 host and header", spec: true, host: "[::1]:8443", hdr: []string{apiOrders}, want: apiOrders},
		{name: "empty header", spec: true, host: "127.0.0.1", hdr: []string{""}, wantWhy: "empty"},
		{name: "two headers", spec: true, host: "127.0.0.1", hdr: []string{apiOrders, apiOrders}, wantWhy: "more than one"},
		{name: "unlisted API in header", spec: true, host: "127.0.0.1", hdr: []string{apiHidden}, wantWhy: "not served"},
		{name: "unknown API in header", spec: true, host: "127.0.0.1", hdr: []string{"nope"}, wantWhy: "not served"},
		{name: "nothing named, two APIs", spec: true, host: "127.0.0.1", wantWhy: "serves 2"},
		{name: "own private DNS name, nothing named, two APIs", spec: true, host: "ORDERS.internal.example", wantWhy: "serves 2"},
		{name: "another endpoint's private DNS name", spec: true, host: "hidden.internal.example.", hdr: []string{apiOrders}, wantWhy: "private DNS name of endpoint " + otherVPCE},
		{name: "single API endpoint, bare IP", host: "127.0.0.1:8443", want: apiOrders},
		{name: "single API endpoint, own private DNS name", host: "orders.internal.example", want: apiOrders},
		{name: "single API endpoint, host names another API", host: apiBilling + ".execute-api.us-east-1.amazonaws.com", wantWhy: "not served"},
		{name: "single API endpoint, empty host", host: "", want: apiOrders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, e := single, one
			if tt.spec {
				sp, e = s, ep
			}
			got, _, why := selectAPI(sp, e, "", tt.host, tt.hdr)
			if got != tt.want || (tt.wantWhy != "" && !strings.Contains(why, tt.wantWhy)) || (tt.want != "" && why != "") {
				t.Errorf("selectAPI(%q, %q) = %q, %q; want %q, %q", tt.host, tt.hdr, got, why, tt.want, tt.wantWhy)
			}
		})
	}
	if got, _, _ := selectAPI(nil, nil, "", ordersHost, nil); got != "" {
		t.Errorf("no spec selected %q", got)
	}
}

// FuzzSelectAPI: whatever the host and header, the answer is an API the endpoint lists or
// a refusal with a reason.
func FuzzSelectAPI(f *testing.F) {
	for _, seed := range []struct{ host, hdr string }{
		{ordersHost, ""}, {apiBilling + "-" + testVPCE + ".execute-api.us-east-1.amazonaws.com", ""},
		{"127.0.0.1:8443", apiOrders}, {"[::1]:8443", apiHidden}, {"hidden.internal.example.", ""},
		{"A1B2C3D4E5.EXECUTE-API", ""}, {"a1b2c3d4e5-vpce-0fedcba987654321f", ""}, {"[", ""}, {":", "x"},
		{"orders.internal.example:99999", ""}, {"\xff\xfe.example", "\x00"}, {"b2c3d4e5f6.execute-api.us-east-1.amazonaws.com", "a1b2c3d4e5"},
	} {
		f.Add(seed.host, seed.hdr, true)
		f.Add(seed.host, seed.hdr, false)
	}
	s := testSpec(f, specOpts{ingress: defaultSpecOpts().ingress, apis: []string{apiOrders, apiBilling}})
	ep, _ := s.Endpoint(testVPCE)
	f.Fuzz(func(t *testing.T, host, hdr string, withHdr bool) {
		var h []string
		if withHdr {
			h = []string{hdr}
		}
		api, _, why := selectAPI(s, ep, "", host, h)
		if api == "" && why == "" {
			t.Fatalf("refusal without a reason for %q %q", host, h)
		}
		if api != "" && !slices.Contains(ep.APIs, api) {
			t.Fatalf("selected %q, which the endpoint does not list", api)
		}
		// Whatever the request names, a server name bound to an API selects that API or
		// nothing: the binding holds (the host as SNI too, to reach every name shape).
		for _, sni := range []string{ordersHost, host} {
			b := s.BindName(ep, hostName(sni))
			got, _, why := selectAPI(s, ep, hostName(sni), host, h)
			if b.API != "" && got != "" && got != b.API {
				t.Fatalf("server name %q bound to %s, request %q %q selected %s", sni, b.API, host, h, got)
			}
			if got == "" && why == "" {
				t.Fatalf("refusal without a reason for sni %q host %q %q", sni, host, h)
			}
		}
		if hn := hostName(host); strings.ToLower(hn) != hn && !strings.ContainsRune(hn, '\uFFFD') {
			t.Fatalf("hostName(%q) = %q is not lower case", host, hn)
		}
	})
}

// FuzzStrippedHeader: exactly the X-Phantom-*, X-Forwarded-* and Forwarded headers are
// stripped, in any ASCII case.
func FuzzStrippedHeader(f *testing.F) {
	for _, s := range []string{"X-Phantom-Source-Ip", "x-phantom-", "X-Phantom", "X-Forwarded-For", "x-forwarded-",
		"Forwarded", "FORWARDED", "Forwarded-For", "X-Phantom\u212a", "Authorization", "X-Amz-Date", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		lk := asciiLower(k)
		want := strings.HasPrefix(lk, "x-phantom-") || strings.HasPrefix(lk, "x-forwarded-") || lk == "forwarded"
		if got := strippedHeader(k); got != want && isToken(k) {
			t.Fatalf("strippedHeader(%q) = %v, want %v", k, got, want)
		}
		if want && !strippedHeader(k) {
			t.Fatalf("strippedHeader(%q) lets a forwarding header through", k)
		}
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// isToken reports whether s is a valid header name (RFC 9110 §5.6.2); Go's server refuses
// any other, so only those reach strippedHeader.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// FuzzRewrite: the request-target the gateway receives is the caller's, byte for byte,
// for every target Go's server accepts that does not start with "//" (those take the
// RawPath route, exact for every valid escaping; TestByteExactRequestTarget covers one).
func FuzzRewrite(f *testing.F) {
	for _, s := range []string{"/prod/a%2Fb", "/prod/a/../b", "/prod/a%252Fb", "/prod/%7e?x=a+b&y=%20", "/prod/q?",
		"/prod/q?semi;colon=1&&bad=%", "/", "/prod/{x}|^", "/prod/caf\xc3\xa9", "//x/y", "https://h/p?q", "/p#frag"} {
		f.Add(s)
	}
	e := &Endpoint{}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || strings.ContainsAny(target, " \r\n\x00\t") {
			return // Go's server answers 400 first
		}
		in := &http.Request{Method: "GET", URL: u, RequestURI: target, Host: ordersHost, Header: http.Header{}}
		pr := &httputil.ProxyRequest{In: in, Out: in.Clone(in.Context())}
		e.rewrite(pr)
		if pr.Out.URL.Host != gatewayHost || pr.Out.URL.Scheme != "https" || pr.Out.Host != ordersHost {
			t.Fatalf("out URL %v host %q", pr.Out.URL, pr.Out.Host)
		}
		path, query, hasQuery := sigv4.RequestTarget(in)
		want := path
		if hasQuery {
			want += "?" + query
		}
		if path == "" {
			want = "/" + want
		}
		got := pr.Out.URL.RequestURI()
		if !strings.HasPrefix(path, "//") && got != want {
			t.Fatalf("target %q sent as %q, want %q", target, got, want)
		}
	})
}
