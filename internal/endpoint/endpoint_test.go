package endpoint

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// expectNoBytes dials addr and checks the endpoint closes the connection without sending
// anything, even when the client speaks first.
func expectNoBytes(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return // the reset can beat connect's own completion
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello; may fail after the reset
	n, err := c.Read(make([]byte, 64))
	if n != 0 {
		t.Fatalf("refused connection got %d bytes", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the endpoint kept the refused connection open")
	}
}

func TestSecurityGroup(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	tests := []struct {
		name    string
		ingress string
		reason  string
	}{
		{
			// The source, 127.0.0.1, is outside every CIDR of the only rule.
			name:    "source outside the CIDRs",
			ingress: `[{protocol: tcp, ports: "1-65535", cidrs: [10.0.0.0/8, 127.0.0.2/32], description: vpc}]`,
			reason:  "the source address is in no CIDR of the rules covering the port",
		},
		{
			// The rule admits loopback, but on 8443 only (the spec's listener); the real
			// listener has another port (the harness never takes 8443).
			name:    "port outside the range",
			ingress: `[{protocol: tcp, ports: "8443", cidrs: [127.0.0.0/8]}]`,
			reason:  "no ingress rule covers the port",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, p, harnessOpts{spec: specOpts{ingress: tt.ingress, apis: []string{apiOrders}}, gateways: []string{gw.addr()}})
			expectNoBytes(t, h.addr)
			ev := h.aud.waitFor(t, eventConnect, codeSecurityGroupDenied)
			if ev.SourceIPAddress != "127.0.0.1" || ev.VPCEndpointID != testVPCE || ev.EventSource != eventSource ||
				ev.RecipientAccountID != testAccount || ev.AWSRegion != "us-east-1" || ev.EventType != eventType {
				t.Errorf("event = %+v", ev)
			}
			if got := ev.AdditionalEventData["localPort"]; got != h.port {
				t.Errorf("localPort = %v, want %d", got, h.port)
			}
			if got := ev.AdditionalEventData["reason"]; got != tt.reason {
				t.Errorf("reason = %v, want %q", got, tt.reason)
			}
			// A refused connection never reaches TLS or the gateway.
			if n := len(gw.requests()); n != 0 {
				t.Errorf("gateway got %d requests", n)
			}
		})
	}
}

func TestSecurityGroupIPv6Source(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	testenv.IPv6Loopback(t)
	h := newHarness(t, p, harnessOpts{
		spec:     specOpts{ingress: `[{ports: "1-65535", cidrs: [127.0.0.0/8]}]`, apis: []string{apiOrders}},
		gateways: []string{gw.addr()}, listen: "[::1]:0",
	})
	expectNoBytes(t, h.addr)
	if ev := h.aud.waitFor(t, eventConnect, codeSecurityGroupDenied); ev.SourceIPAddress != "::1" {
		t.Errorf("source = %q", ev.SourceIPAddress)
	}
}

func TestPlaintextRefused(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /prod/orders HTTP/1.1\r\nHost: "+ordersHost+"\r\nAuthorization: AWS4-HMAC-SHA256 secret\r\n\r\n")
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, got)
	}
	if string(got) != plaintextReply {
		t.Errorf("reply = %q, want %q", got, plaintextReply)
	}
	ev := h.aud.waitFor(t, eventConnect, codePlaintextRefused)
	if ev.AdditionalEventData["firstByte"] != byte('G') || ev.SourceIPAddress != "127.0.0.1" {
		t.Errorf("event data = %v", ev.AdditionalEventData)
	}
	if b, _ := json.Marshal(ev); strings.Contains(string(b), "secret") {
		t.Errorf("the event holds request bytes: %s", b)
	}
	if n := len(gw.requests()); n != 0 {
		t.Errorf("gateway got %d requests", n)
	}
}

func TestOldTLSRefused(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", MinVersion: v, MaxVersion: v})
		if err == nil {
			c.Close()
			t.Fatalf("a %s client completed the handshake", tls.VersionName(v))
		}
	}
	ev := h.aud.waitFor(t, eventConnect, codeTLSHandshakeFailed)
	if r, _ := ev.AdditionalEventData["reason"].(string); !strings.Contains(r, "version") {
		t.Errorf("reason = %q", r)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	lim := defaultLimits
	lim.handshakeTimeout = 100 * time.Millisecond
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}, lim: &lim})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// Silent client: closed after the handshake timeout, recorded.
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read succeeded")
	}
	ev := h.aud.waitFor(t, eventConnect, codeTLSHandshakeFailed)
	if r, _ := ev.AdditionalEventData["reason"].(string); !strings.Contains(r, "no ClientHello") {
		t.Errorf("reason = %q", r)
	}
}

// TestForward checks what the gateway receives for a listed API over HTTP/1.1 and HTTP/2:
// the endpoint's own headers, none of the caller's X-Phantom-* or forwarding headers,
// everything else unchanged, the endpoint's mTLS identity; and that the gateway's answer
// comes back unchanged.
func TestForward(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			req, _ := http.NewRequest("POST", h.url("/prod/orders?b=2&a=1"), strings.NewReader(`{"item":"book"}`))
			req.Host = ordersHost
			req.Header.Set("X-Phantom-Source-Ip", "6.6.6.6")
			req.Header.Set("X-Phantom-Api-Id", apiHidden)
			req.Header.Set("X-Phantom-Identity", "forged")
			req.Header.Set("X-Forwarded-For", "6.6.6.6")
			req.Header.Set("X-Forwarded-Host", "evil")
			req.Header.Set("Forwarded", "for=6.6.6.6")
			req.Header["x-phantom-vpce"] = []string{"vpce-forged"} // not canonical: still stripped
			req.Header.Add("X-Custom", "one")
			req.Header.Add("X-Custom", "two")
			req.Header.Set("X-Amz-Date", "20261129T000000Z")
			req.Header.Set("User-Agent", "test-agent/1.0")
			req.Header.Set("Content-Type", "application/json")
			resp, err := h.client(h2).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if h2 && resp.ProtoMajor != 2 {
				t.Errorf("caller protocol = %s", resp.Proto)
			}
			if resp.StatusCode != http.StatusCreated || string(body) != "hello from the gateway" ||
				resp.Header.Get("X-Gateway") != "fake" || !slices.Equal(resp.Header.Values("Set-Cookie"), []string{"a=1", "b=2"}) {
				t.Errorf("response = %d %v %q", resp.StatusCode, resp.Header, body)
			}
			s := gw.last(t)
			if s.PeerErr != nil || s.Peer != (pki.Identity{Account: testAccount, Kind: pki.KindEndpoint, Name: testVPCE}) {
				t.Errorf("gateway peer = %v, %v", s.Peer, s.PeerErr)
			}
			if s.Method != "POST" || s.RequestURI != "/prod/orders?b=2&a=1" || s.Host != ordersHost || string(s.Body) != `{"item":"book"}` {
				t.Errorf("gateway got %s %s host %s body %q", s.Method, s.RequestURI, s.Host, s.Body)
			}
			want := map[string][]string{
				"X-Phantom-Source-Ip":   {"127.0.0.1"},
				"X-Phantom-Api-Id":      {apiOrders},
				"X-Phantom-Tls-Version": {"TLSv1.3"},
				"X-Phantom-Tls-Cipher":  {"TLS_AES_128_GCM_SHA256"},
				"X-Custom":              {"one", "two"},
				"X-Amz-Date":            {"20261129T000000Z"},
				"User-Agent":            {"test-agent/1.0"},
				"Content-Type":          {"application/json"},
			}
			for k, v := range want {
				if got := s.Header.Values(k); !slices.Equal(got, v) {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for k := range s.Header {
				if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-forwarded-") || lk == "forwarded" || lk == "accept-encoding" ||
					strings.HasPrefix(lk, "x-phantom-") && want[k] == nil {
					t.Errorf("gateway got %s: %q", k, s.Header[k])
				}
			}
		})
	}
	if evs := h.aud.events(); len(evs) != 0 {
		t.Errorf("forwarded requests were recorded by the endpoint: %s", h.aud.describe())
	}
}

// TestConnectionHeaderCannotRemoveEndpointHeaders: a caller naming the endpoint's headers
// in Connection (hop-by-hop, RFC 9110 §7.6.1) must not get them removed on the way out.
func TestConnectionHeaderCannotRemoveEndpointHeaders(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	resp := h.rawTLS(t, "GET /prod/orders HTTP/1.1\r\nHost: "+ordersHost+
		"\r\nConnection: X-Phantom-Source-Ip, X-Phantom-Api-Id, x-phantom-tls-version, X-Phantom-Tls-Cipher\r\n"+
		"X-Phantom-Source-Ip: 6.6.6.6\r\n\r\n")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := gw.last(t)
	for k, v := range map[string]string{"X-Phantom-Source-Ip": "127.0.0.1", "X-Phantom-Api-Id": apiOrders, "X-Phantom-Tls-Version": "TLSv1.3"} {
		if got := s.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if s.Header.Get("X-Phantom-Tls-Cipher") == "" {
		t.Error("no X-Phantom-Tls-Cipher")
	}
}

// TestAPISelectionForwarded drives each way of naming an API through a real endpoint.
func TestAPISelectionForwarded(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{spec: specOpts{ingress: defaultSpecOpts().ingress, apis: []string{apiOrders, apiBilling}}, gateways: []string{gw.addr()}})
	c := h.client(false)
	tests := []struct {
		name   string
		host   string
		header string
		want   string // API id forwarded; "" for 403
	}{
		{"api host", ordersHost, "", apiOrders},
		{"api host with port and upper case", strings.ToUpper(apiBilling) + ".execute-api.us-east-1.amazonaws.com:443", "", apiBilling},
		{"api-vpce host", apiBilling + "-" + testVPCE + ".execute-api.us-east-1.amazonaws.com", "", apiBilling},
		{"api-vpce host of another endpoint", apiBilling + "-" + otherVPCE + ".execute-api.us-east-1.amazonaws.com", "", ""},
		{"private DNS name and header", "orders.internal.example", apiBilling, apiBilling},
		{"IP host and header", "127.0.0.1", apiOrders, apiOrders},
		{"header naming an unlisted API", "127.0.0.1", apiHidden, ""},
		{"host naming an unlisted API", apiHidden + ".execute-api.us-east-1.amazonaws.com", "", ""},
		{"host wins over header", ordersHost, apiHidden, apiOrders},
		{"nothing named, two APIs listed", "127.0.0.1", "", ""},
		{"another endpoint's private DNS name", "hidden.internal.example", apiOrders, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(gw.requests())
			req, _ := http.NewRequest("GET", h.url("/prod/x"), nil)
			req.Host = tt.host
			if tt.header != "" {
				req.Header.Set("x-apigw-api-id", tt.header)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tt.want == "" {
				checkForbidden(t, resp, body)
				if len(gw.requests()) != before {
					t.Error("a refused request reached the gateway")
				}
				return
			}
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			if got := gw.last(t).Header.Get("X-Phantom-Api-Id"); got != tt.want {
				t.Errorf("api = %q, want %q", got, tt.want)
			}
		})
	}
}

// checkForbidden checks API Gateway's 403 shape.
func checkForbidden(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusForbidden || string(body) != `{"message":"Forbidden"}` ||
		resp.Header.Get("x-amzn-ErrorType") != "ForbiddenException" || len(resp.Header.Get("x-amzn-RequestId")) != 36 ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("response = %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

func TestUnlistedAPIForbidden(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	req, _ := http.NewRequest("GET", h.url("/prod/secrets"), nil)
	req.Host = apiHidden + ".execute-api.us-east-1.amazonaws.com"
	req.Header.Set("User-Agent", "probe/1")
	resp, err := h.client(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkForbidden(t, resp, body)
	ev := h.aud.waitFor(t, eventInvoke, codeAccessDenied)
	if ev.RequestID != resp.Header.Get("x-amzn-RequestId") || ev.UserAgent != "probe/1" || ev.SourceIPAddress != "127.0.0.1" ||
		ev.TLSDetails == nil || ev.TLSDetails.TLSVersion != "TLSv1.3" || ev.TLSDetails.ClientProvidedHostHeader != req.Host ||
		ev.RequestParameters["httpMethod"] != "GET" {
		t.Errorf("event = %+v", ev)
	}
	if r, _ := ev.AdditionalEventData["reason"].(string); !strings.Contains(r, apiHidden) {
		t.Errorf("reason = %q", r)
	}
	if len(gw.requests()) != 0 {
		t.Error("the gateway got the request")
	}
}

// TestGatewayIdentity: the endpoint sends nothing to a server that is not a gateway of
// this perimeter.
func TestGatewayIdentity(t *testing.T) {
	p := newTestPKI(t)
	skipHandover(t)
	other := newTestPKI(t) // another perimeter's CA, same account
	tests := []struct {
		name string
		cert *tls.Certificate
	}{
		{"certificate from another CA", other.gwCert},
		{"endpoint certificate from the perimeter CA", issue(t, p.ca, pki.Request{
			Identity: pki.Identity{Account: testAccount, Kind: pki.KindEndpoint, Name: otherVPCE},
			IPs:      nil, Server: true, Client: true,
		})},
		{"gateway with another name", issue(t, p.ca, pki.Request{
			Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "rogue"}, Server: true,
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := newFakeGateway(t, p, tt.cert)
			h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
			req, _ := http.NewRequest("GET", h.url("/prod/orders"), nil)
			req.Host = ordersHost
			resp, err := h.client(false).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway || string(body) != `{"message":"Internal server error"}` {
				t.Errorf("response = %d %s", resp.StatusCode, body)
			}
			if n := len(gw.requests()); n != 0 {
				t.Errorf("the impostor got %d requests", n)
			}
			ev := h.aud.waitFor(t, eventInvoke, codeGatewayUnreachable)
			if r, _ := ev.AdditionalEventData["reason"].(string); !strings.Contains(r, "gateway certificate") {
				t.Errorf("reason = %q", r)
			}
		})
	}
}

func TestByteExactRequestTarget(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	targets := []string{
		"/prod/a%2Fb",                 // encoded slash: decoding would change the route
		"/prod/a/../b",                // dot segments: SigV4 normalizes them, the proxy must not
		"/prod/a/./b/",                // trailing slash and a dot segment
		"/prod/a%252Fb",               // double encoding
		"/prod/%7e%7E%41",             // needless escapes, both cases
		"/prod//double//slash",        // empty segments
		"//prod/leading",              // a path Go could read as an authority
		"/prod/{curly}|pipe^caret",    // characters RFC 3986 wants escaped
		"/prod/caf\xc3\xa9",           // raw UTF-8
		"/prod/q?b=2&a=1&a=0",         // query order
		"/prod/q?x=a+b&y=%20&z=%2B",   // plus and escapes
		"/prod/q?semi;colon=1&&bad=%", // unparsable query parameters are kept, not dropped
		"/prod/q?",                    // empty query
		"/prod/q?k",                   // key without value
		"/prod/%",                     // a lone percent sign
	}
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			raw := "GET " + target + " HTTP/1.1\r\nHost: " + ordersHost + "\r\nConnection: close\r\n\r\n"
			before := len(gw.requests())
			resp := h.rawTLS(t, raw)
			if _, perr := http.ReadRequest(bufio.NewReader(strings.NewReader(raw))); perr != nil {
				// Go's own request parser refuses this target, so net/http answers its
				// fixed plain-text 400 before any handler runs: exactly that answer, and
				// nothing forwarded, is right. Any other answer is the endpoint's and a bug.
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(string(body), "400 Bad Request") || resp.Header.Get("X-Amzn-Requestid") != "" {
					t.Fatalf("Go's parser refuses %q (%v), but the answer is not net/http's own 400: %d %v %q", target, perr, resp.StatusCode, resp.Header, body)
				}
				if n := len(gw.requests()) - before; n != 0 {
					t.Fatalf("the gateway got %d requests", n)
				}
				return
			}
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := gw.last(t).RequestURI; got != target {
				t.Errorf("gateway got %q, want %q", got, target)
			}
		})
	}
}

func TestFailover(t *testing.T) {
	skipHandover(t)
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	h := newHarness(t, p, harnessOpts{gateways: []string{deadAddr, gw.addr()}})
	for i := range 6 {
		// A fresh client each time: every request needs a new gateway connection.
		c := h.client(false)
		req, _ := http.NewRequest("PUT", h.url("/prod/orders"), strings.NewReader("body"))
		req.Host = ordersHost
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		h.ep.gw.transport.CloseIdleConnections()
	}
	if n := len(gw.requests()); n != 6 {
		t.Errorf("gateway got %d requests, want 6", n)
	}
	if evs := h.aud.events(); len(evs) != 0 {
		t.Errorf("failover was recorded as a failure: %s", h.aud.describe())
	}
}

func TestAllGatewaysDown(t *testing.T) {
	skipHandover(t)
	p := newTestPKI(t)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	h := newHarness(t, p, harnessOpts{gateways: []string{deadAddr}})
	req, _ := http.NewRequest("GET", h.url("/prod/orders"), nil)
	resp, err := h.client(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("x-amzn-ErrorType") != "InternalServerErrorException" ||
		string(body) != `{"message":"Internal server error"}` {
		t.Errorf("response = %d %v %s", resp.StatusCode, resp.Header, body)
	}
	ev := h.aud.waitFor(t, eventInvoke, codeGatewayUnreachable)
	if ev.RequestParameters["apiId"] != apiOrders {
		t.Errorf("event = %+v", ev)
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	entered, release := make(chan struct{}), make(chan struct{})
	gw.handler = func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	}
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", h.url("/prod/slow"), nil)
		req.Host = ordersHost
		resp, err := h.client(false).Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{string(b), err}
	}()
	<-entered
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- h.shutdown(ctx)
	}()
	// New connections are refused once Shutdown has begun.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts after Shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request: %q, %v", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
	if err := <-h.done; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// TestReloadAppliesToOpenConnections: rules and APIs come from the current spec on every
// request, so a reload takes effect on kept-alive connections.
func TestReloadAppliesToOpenConnections(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	c := h.client(false)
	do := func() (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", h.url("/prod/orders"), nil)
		req.Host = ordersHost
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}
	if resp, _ := do(); resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h.spec.Store(testSpec(t, specOpts{ingress: defaultSpecOpts().ingress, apis: []string{apiBilling}}))
	resp, body := do()
	checkForbidden(t, resp, body)
	h.spec.Store(testSpec(t, specOpts{ingress: `[{ports: "1-65535", cidrs: [10.0.0.0/8]}]`, apis: []string{apiOrders}}))
	resp, body = do()
	checkForbidden(t, resp, body)
	if !resp.Close {
		t.Error("the connection the security group no longer admits stays open")
	}
	h.aud.waitFor(t, eventInvoke, codeSecurityGroupDenied)
}

func TestNewValidates(t *testing.T) {
	p := newTestPKI(t)
	spec := testSpec(t, defaultSpecOpts())
	good := Config{
		ID:         testVPCE,
		Spec:       func() *config.Spec { return spec },
		ServerCert: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.serverCert, nil },
		ClientCert: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return p.clientCert, nil },
		Verifier:   p.ca.Verifier(),
		Gateways:   []string{"127.0.0.1:8445"},
		Auditor:    &memAuditor{},
	}
	if _, err := New(good); err != nil {
		t.Fatalf("New(good) = %v", err)
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"bad id", func(c *Config) { c.ID = "vpc-123" }, "is not an endpoint id"},
		{"unknown endpoint", func(c *Config) { c.ID = "vpce-0000000000000000a" }, "the spec has no endpoint"},
		{"no spec", func(c *Config) { c.Spec = nil }, "no Spec"},
		{"no server cert", func(c *Config) { c.ServerCert = nil }, "no ServerCert"},
		{"no client cert", func(c *Config) { c.ClientCert = nil }, "no ClientCert"},
		{"no verifier", func(c *Config) { c.Verifier = nil }, "no Verifier"},
		{"no gateways", func(c *Config) { c.Gateways = nil }, "no Gateways"},
		{"gateway without port", func(c *Config) { c.Gateways = []string{"gateway"} }, "is not host:port"},
		{"no auditor", func(c *Config) { c.Auditor = nil }, "no Auditor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			_, err := New(c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestServeListeners: one endpoint serves several listeners; a done context stops one
// listener without touching the others.
func TestServeListeners(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.ep.Serve(ctx, ln) }()
	get := func(addr string) error {
		req, _ := http.NewRequest("GET", "https://"+addr+"/prod/orders", nil)
		req.Host = ordersHost
		resp, err := h.client(false).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("%s: status %d", addr, resp.StatusCode)
		}
		return nil
	}
	for _, a := range []string{h.addr, ln.Addr().String()} {
		if err := get(a); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v after its context ended", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the stopped listener still accepts")
	}
	if err := get(h.addr); err != nil {
		t.Errorf("the other listener stopped too: %v", err)
	}
}

func TestAuditFailureStillRefuses(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	h.aud.fail.Store(true)
	req, _ := http.NewRequest("GET", h.url("/prod/x"), nil)
	req.Host = apiHidden + ".execute-api.us-east-1.amazonaws.com"
	resp, err := h.client(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkForbidden(t, resp, body)
	if len(gw.requests()) != 0 {
		t.Error("the gateway got the request")
	}
}

func TestHandshakeLimit(t *testing.T) {
	p := newTestPKI(t)
	lim := defaultLimits
	lim.maxHandshakes = 1
	h := newHarness(t, p, harnessOpts{gateways: []string{"127.0.0.1:1"}, lim: &lim})
	idle, err := net.Dial("tcp", h.addr) // holds the only handshake slot
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(h.ep.slots) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	expectNoBytes(t, h.addr)
	ev := h.aud.waitFor(t, eventConnect, codeConnectionLimit)
	if ev.AdditionalEventData["limit"] != 1 {
		t.Errorf("event data = %v", ev.AdditionalEventData)
	}
}

// TestConnectionLimits: the endpoint's listener holds at most endpoints[].limits open
// connections, and one source address at most its share; past either the connection is
// reset at accept and audited, and a closed connection frees its place.
func TestConnectionLimits(t *testing.T) {
	p := newTestPKI(t)
	o := defaultSpecOpts()
	o.limits = "{maxConnections: 2, maxConnectionsPerSource: 2}"
	h := newHarness(t, p, harnessOpts{gateways: []string{"127.0.0.1:1"}, spec: o})
	var open []*tls.Conn
	for range 2 {
		c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
	}
	expectNoBytes(t, h.addr)
	ev := h.aud.waitFor(t, eventConnect, codeConnectionLimit)
	if r, _ := ev.AdditionalEventData["reason"].(string); !strings.Contains(r, "maximum of 2 open connections") {
		t.Errorf("event data = %v", ev.AdditionalEventData)
	}
	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"})
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection did not free its place: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStreaming: a large request body arrives intact and a response is passed on as the
// gateway writes it, not after it ends.
func TestStreaming(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	release := make(chan struct{})
	gw.handler = func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.Sum256(mustRead(r.Body))
		w.Header().Set("X-Body-Sha256", hex.EncodeToString(sum[:]))
		io.WriteString(w, "first;")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second")
	}
	h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}})
	body := make([]byte, 8<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	for _, h2 := range []bool{false, true} {
		release = make(chan struct{})
		req, _ := http.NewRequest("PUT", h.url("/prod/blob"), io.MultiReader(bytes.NewReader(body[:1<<20]), bytes.NewReader(body[1<<20:])))
		req.ContentLength = -1 // chunked: no length known in advance
		req.Host = ordersHost
		resp, err := h.client(h2).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		if got := resp.Header.Get("X-Body-Sha256"); got != hex.EncodeToString(sum[:]) {
			t.Errorf("h2=%v: body hash at the gateway %s", h2, got)
		}
		first := make([]byte, len("first;"))
		if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first;" {
			t.Fatalf("h2=%v: first part %q, %v", h2, first, err)
		}
		close(release)
		rest, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(rest) != "second" {
			t.Errorf("h2=%v: rest %q", h2, rest)
		}
	}
}

func mustRead(r io.Reader) []byte { b, _ := io.ReadAll(r); return b }

// TestSNIBindsAPI: a connection whose TLS server name names an API reaches that API and
// no other, whatever the Host or x-apigw-api-id of its requests say (the egress proxy
// admits a tunnel to an endpoint on its server name alone). A server name that binds
// nothing leaves selection to Host and header, as before.
func TestSNIBindsAPI(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)
	h := newHarness(t, p, harnessOpts{spec: specOpts{ingress: defaultSpecOpts().ingress, apis: []string{apiOrders, apiBilling}}, gateways: []string{gw.addr()}})
	billingHost := apiBilling + ".execute-api.us-east-1.amazonaws.com"
	tests := []struct {
		name   string
		sni    string
		host   string
		header string
		h2     bool
		want   string // API id forwarded; "" for a refusal
		status int
	}{
		{name: "sni and host agree", sni: ordersHost, host: ordersHost, want: apiOrders},
		{name: "sni alone", sni: ordersHost, host: "127.0.0.1", want: apiOrders},
		{name: "sni, header names another API", sni: ordersHost, host: ordersHost, header: apiBilling, status: http.StatusMisdirectedRequest},
		{name: "sni, header alone names another API", sni: ordersHost, host: "127.0.0.1", header: apiBilling, status: http.StatusMisdirectedRequest},
		{name: "sni, host names another API", sni: ordersHost, host: billingHost, status: http.StatusMisdirectedRequest},
		{name: "sni, host names another API (HTTP/2)", sni: ordersHost, host: billingHost, h2: true, status: http.StatusMisdirectedRequest},
		{name: "sni, api-vpce host of another API", sni: ordersHost, host: apiBilling + "-" + testVPCE + ".execute-api.us-east-1.amazonaws.com", status: http.StatusMisdirectedRequest},
		{name: "api-vpce sni", sni: apiBilling + "-" + testVPCE + ".execute-api.us-east-1.amazonaws.com", host: "127.0.0.1", want: apiBilling},
		{name: "api-vpce sni of another endpoint", sni: apiBilling + "-" + otherVPCE + ".execute-api.us-east-1.amazonaws.com", host: billingHost, status: http.StatusMisdirectedRequest},
		{name: "sni of the endpoint serving two APIs binds nothing", sni: "orders.internal.example", host: "127.0.0.1", header: apiBilling, want: apiBilling},
		{name: "no sni: host and header decide", host: "127.0.0.1", header: apiBilling, want: apiBilling},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := h.client(tt.h2)
			tr := c.Transport.(*http.Transport)
			if tt.sni != "" {
				tr.TLSClientConfig.ServerName = tt.sni
			}
			before := len(gw.requests())
			req, _ := http.NewRequest("GET", h.url("/prod/x"), nil)
			req.Host = tt.host
			if tt.header != "" {
				req.Header.Set("x-apigw-api-id", tt.header)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tt.want == "" {
				if resp.StatusCode != tt.status || resp.Header.Get("x-amzn-ErrorType") == "" {
					t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tt.status)
				}
				if len(gw.requests()) != before {
					t.Error("a refused request reached the gateway")
				}
				return
			}
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			if got := gw.last(t).Header.Get("X-Phantom-Api-Id"); got != tt.want {
				t.Errorf("api = %q, want %q", got, tt.want)
			}
		})
	}
	ev := h.aud.waitFor(t, eventInvoke, codeMisdirected)
	if r, _ := ev.AdditionalEventData["reason"].(string); !strings.Contains(r, apiOrders) || ev.TLSDetails == nil {
		t.Errorf("misdirected event = %+v", ev)
	}
}
