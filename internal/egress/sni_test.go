package egress

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// endpointWorld is a proxy in front of an endpoint serving two APIs, a1b2c3d4e5 (the only
// one role app's rules allow) and b2c3d4e5f6.
func endpointWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t)
	ap := netip.MustParseAddrPort(w.endpoint.Listener.Addr().String())
	allowed := netip.MustParseAddrPort(w.allowed.Listener.Addr().String())
	spec := loadSpec(t, specAddrs{Endpoint: ap, Allowed: allowed, EndpointAPIs: "a1b2c3d4e5, b2c3d4e5f6"})
	w.tp = newTestProxy(t, spec, testResolver(), func(c *Config) { c.Dialer = nil })
	w.proxy = startProxy(t, w.tp)
	return w
}

// openTunnel opens a CONNECT to target through w's proxy as node and starts TLS in it with
// server name sni ("" sends none); it returns the TLS error (nil: the endpoint answered
// the handshake) and the proxy's CONNECT status line.
func openTunnel(t *testing.T, w *world, target, sni string) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", w.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\nProxy-Authorization: "+w.tp.auth("service-a-1")+"\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Status, nil
	}
	cfg := w.roots.Clone()
	cfg.ServerName = sni
	if sni == "" {
		cfg.InsecureSkipVerify = true // no name to verify; the point is that none is sent
	}
	tc := tls.Client(&bufConn{Conn: c, r: br}, cfg)
	return resp.Status, tc.Handshake()
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// TestTunnelBoundToAllowedAPI: with a second API on the endpoint, the node whose only
// rule is the orders API reaches the orders API through the proxy by its names and
// cannot open a tunnel the endpoint would let it use for the other API: not by the
// endpoint's address (no server name), not by the endpoint's shared private DNS name
// (names no one API), not by the other API's names. Every refusal is audited with the
// server name. On the old proxy each of these tunnels opened.
func TestTunnelBoundToAllowedAPI(t *testing.T) {
	w := endpointWorld(t)
	_, port, _ := net.SplitHostPort(w.endpoint.Listener.Addr().String())
	other := "b2c3d4e5f6.execute-api.us-east-1.amazonaws.com"
	for _, tc := range []struct {
		name, target, sni string
		ok                bool
		reason            string
	}{
		{"the allowed API's name", "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com:" + port, "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", true, ""},
		{"the allowed API's endpoint-specific name", "a1b2c3d4e5-vpce-0123456789abcdef0.execute-api.us-east-1.amazonaws.com:" + port, "a1b2c3d4e5-vpce-0123456789abcdef0.execute-api.us-east-1.amazonaws.com", true, ""},
		{"the endpoint's address, the allowed API's name", "127.0.0.1:" + port, "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", true, ""},
		{"the endpoint's address, no server name", "127.0.0.1:" + port, "", false, "names no server"},
		{"the endpoint's address, the other API's name", "127.0.0.1:" + port, other, false, "which no api: rule"},
		{"the allowed API's name, the other API's server name", "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com:" + port, other, false, "which no api: rule"},
		{"the endpoint's shared name", "orders.internal.example:" + port, "orders.internal.example", false, "names no one API"},
		{"the allowed name, another endpoint's server name", "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com:" + port, "a1b2c3d4e5-vpce-0fedcba987654321f.execute-api.us-east-1.amazonaws.com", false, "addresses endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, err := openTunnel(t, w, tc.target, tc.sni)
			if !strings.HasPrefix(status, "200") {
				t.Fatalf("CONNECT %s: %s", tc.target, status)
			}
			if tc.ok != (err == nil) {
				t.Fatalf("TLS through the tunnel with server name %q: %v, want ok=%v", tc.sni, err, tc.ok)
			}
			ev := w.tp.audit.last(t)
			if tc.ok {
				if ev.ErrorCode != "" || ev.RequestParameters["apiId"] != "a1b2c3d4e5" || ev.RequestParameters["serverName"] != tc.sni {
					t.Fatalf("allowed event %s %v", ev.ErrorCode, ev.RequestParameters)
				}
				return
			}
			if !strings.Contains(err.Error(), "access denied") {
				t.Errorf("TLS error %v, want the proxy's access-denied alert", err)
			}
			if ev.ErrorCode != CodeServerNameNotAllow || !strings.Contains(ev.ErrorMessage, tc.reason) || ev.ResponseElements["status"] != 403 {
				t.Errorf("refusal event %s %q %v, want %s with %q", ev.ErrorCode, ev.ErrorMessage, ev.ResponseElements, CodeServerNameNotAllow, tc.reason)
			}
		})
	}
	// The other API's name is not even resolved for this node.
	if status, _ := openTunnel(t, w, other+":"+port, other); !strings.HasPrefix(status, "403") {
		t.Errorf("CONNECT to the other API's name: %s, want 403", status)
	}
	// Endpoints speak TLS only: no absolute-form request reaches one.
	r := newReq("GET", "http://orders.internal.example:"+port+"/prod/orders")
	r.Header.Set("Proxy-Authorization", w.tp.auth("service-a-1"))
	rec := newRecorder()
	w.tp.ServeHTTP(rec, r)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "TLS only") {
		t.Errorf("absolute-form to the endpoint: %d %s", rec.Code, rec.Body)
	}
}

// TestPasswordBoundToAddress: a node's proxy password works from its address only; a
// copy used from elsewhere on the network is refused and audited. On the old proxy the
// password worked from anywhere.
func TestPasswordBoundToAddress(t *testing.T) {
	w := newWorld(t)
	target := w.allowed.Listener.Addr().String()
	if line := rawConnectFrom(t, "127.0.0.1", w.proxy, target, w.tp.auth("service-a-1")); !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("from the node's address: %q", line)
	}
	if line := rawConnectFrom(t, "127.0.0.2", w.proxy, target, w.tp.auth("service-a-1")); !strings.HasPrefix(line, "HTTP/1.1 407") {
		t.Fatalf("service-a-1's password from 127.0.0.2: %q, want 407", line)
	}
	ev := w.tp.audit.last(t)
	if ev.ErrorCode != CodeAuthRequired || !strings.Contains(ev.ErrorMessage, "bound to the node's address") || ev.SourceIPAddress != "127.0.0.2" {
		t.Fatalf("event %s %q from %s", ev.ErrorCode, ev.ErrorMessage, ev.SourceIPAddress)
	}
}

// revokedNodes is a Standing naming removed nodes.
type revokedNodes map[string]bool

func (r revokedNodes) NodeRevoked(n string) bool { return r[n] }

func (r revokedNodes) SessionRevoked(_, n string, _ time.Time) bool { return r[n] }

// TestRevokedNodeRefused: a removed node is refused, by password as by certificate.
func TestRevokedNodeRefused(t *testing.T) {
	tp := newTestProxy(t, loadSpec(t, specAddrs{}), testResolver(), func(c *Config) { c.Standing = revokedNodes{"service-a-1": true} })
	if w := tp.serve("CONNECT", "api.example.com:443", "service-a-1"); w.Code != http.StatusProxyAuthRequired || !strings.Contains(w.Body.String(), "revoked") {
		t.Fatalf("removed node: %d %s", w.Code, w.Body)
	}
	if ev := tp.audit.last(t); ev.ErrorCode != CodeNodeRevoked || ev.UserIdentity.ARN == "" {
		t.Fatalf("audit %q by %q", ev.ErrorCode, ev.UserIdentity.ARN)
	}
	if w := tp.serve("CONNECT", "169.254.169.254:80", "open-1"); w.Code == http.StatusProxyAuthRequired {
		t.Fatalf("another node refused as removed: %s", w.Body)
	}
}

// TestReadClientHello: the server name comes out of real clients' ClientHellos (TLS 1.2
// and 1.3, split into tiny records), every byte read is returned to pass on, and
// what is not a ClientHello is an error.
func TestReadClientHello(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		sni  string
	}{
		{"TLS 1.3", &tls.Config{ServerName: "orders.internal.example"}, "orders.internal.example"},
		{"TLS 1.2 only", &tls.Config{ServerName: "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", MaxVersion: tls.VersionTLS12}, "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"},
		{"no server name", &tls.Config{InsecureSkipVerify: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hello := clientHelloBytes(t, tc.cfg)
			got, raw, err := readClientHello(bytes.NewReader(append(hello, "after"...)))
			if err != nil || got.ServerName != tc.sni || !bytes.HasPrefix(append(hello, "after"...), raw) || len(raw) < len(hello) {
				t.Fatalf("readClientHello = %v, %d bytes, %v", got, len(raw), err)
			}
			// The same hello in 7-byte records.
			got, _, err = readClientHello(bytes.NewReader(splitRecords(hello, 7)))
			if err != nil || got.ServerName != tc.sni {
				t.Fatalf("split: %v, %v", got, err)
			}
		})
	}
	for _, bad := range []string{"", "GET / HTTP/1.1\r\n\r\n", "\x16\x03\x01\x00\x05hello"} {
		if _, _, err := readClientHello(strings.NewReader(bad)); err == nil {
			t.Errorf("readClientHello(%q) accepted it", bad)
		}
	}
}

// clientHelloBytes captures the first flight of a crypto/tls client.
func clientHelloBytes(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		tls.Client(a, cfg).Handshake()
		a.Close()
	}()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	b.Close()
	return append(hdr, body...)
}

// splitRecords re-frames the handshake record's payload into records of n bytes.
func splitRecords(rec []byte, n int) []byte {
	var out []byte
	payload := rec[5:]
	for len(payload) > 0 {
		k := min(n, len(payload))
		out = append(out, rec[0], rec[1], rec[2], byte(k>>8), byte(k))
		out = append(out, payload[:k]...)
		payload = payload[k:]
	}
	return out
}

// FuzzReadClientHello: whatever the bytes, readClientHello never reads past its bound,
// returns exactly a prefix of its input, and a server name only with a parsed hello.
func FuzzReadClientHello(f *testing.F) {
	f.Add(clientHelloBytes(f, &tls.Config{ServerName: "orders.internal.example"}))
	f.Add(splitRecords(clientHelloBytes(f, &tls.Config{ServerName: "x.example"}), 3))
	f.Add([]byte("\x16\x03\x01\x00\x00"))
	f.Add([]byte("CONNECT x"))
	f.Fuzz(func(t *testing.T, in []byte) {
		hello, raw, err := readClientHello(bytes.NewReader(in))
		if !bytes.HasPrefix(in, raw) || len(raw) > maxClientHello {
			t.Fatalf("returned %d bytes that are not a prefix of the input", len(raw))
		}
		if err == nil && hello == nil || err != nil && hello != nil {
			t.Fatalf("hello %v with error %v", hello, err)
		}
	})
}
