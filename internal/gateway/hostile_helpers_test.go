package gateway

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/endpoint"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// hostile is the perimeter of testdata/hostile.yaml with the gateway and an endpoint on
// their real listeners, as `phantom gateway` and `phantom endpoint` serve them, in front
// of a backend that believes whatever reaches it (a naive one: it switches to any protocol
// asked for and then reads more requests from the tunnel).
type hostile struct {
	*env
	gwAddr, epAddr string
	epAudit        *memAudit
}

// transport is one way to reach the gateway: directly or through the endpoint, over
// HTTP/1.1 or HTTP/2.
type transport struct {
	name     string
	endpoint bool
	h2       bool
}

var transports = []transport{
	{"gateway-h1", false, false},
	{"gateway-h2", false, true},
	{"endpoint-h1", true, false},
	{"endpoint-h2", true, true},
}

func newHostile(t testing.TB, opts ...func(*Config)) *hostile {
	t.Helper()
	return newHostileWith(t, "{}", "{}", opts...)
}

// newHostileWith is newHostile with gateway.limits and gateway.replayProtection as given
// (YAML flow mappings).
func newHostileWith(t testing.TB, limits, replay string, opts ...func(*Config)) *hostile {
	t.Helper()
	epLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(epLn.Addr().(*net.TCPAddr).Port)
	h := &hostile{epAudit: &memAudit{}}
	h.env = newEnvFrom(t, "hostile.yaml", map[string]string{"EP_PORT": port, "LIMITS": limits, "REPLAY": replay},
		func(w http.ResponseWriter, r *http.Request) { h.serveNaive(w, r) }, opts...)
	h.gwAddr = serveGateway(t, h.env)

	loop := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	epServer := endpointCertFor(t, h.ca, pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindEndpoint, Name: testEndpoint}, IPs: loop, Server: true})
	epClient := endpointCert(t, h.ca, pki.KindEndpoint, testEndpoint)
	ep, err := endpoint.New(endpoint.Config{
		ID:         testEndpoint,
		Spec:       h.spec.Load,
		ServerCert: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return epServer, nil },
		ClientCert: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return epClient, nil },
		Verifier:   h.ca.Verifier(),
		Gateways:   []string{h.gwAddr},
		Auditor:    h.epAudit,
		Logger:     quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.epAddr = epLn.Addr().String()
	go ep.Serve(context.Background(), epLn)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ep.Shutdown(ctx)
	})
	return h
}

func endpointCertFor(t testing.TB, ca *pki.CA, req pki.Request) *tls.Certificate {
	t.Helper()
	c, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serveGateway serves e's gateway on its own listener (Serve) on loopback, as the gateway
// command does, and returns its address.
func serveGateway(t testing.TB, e *env) string {
	t.Helper()
	cert, err := e.ca.Issue(pki.Request{
		Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "gateway"},
		IPs:      []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Server:   true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.gw.Serve(ln, e.gw.TLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.gw.Shutdown(ctx)
	})
	return ln.Addr().String()
}

// base is the URL of the gateway as tr reaches it.
func (h *hostile) base(tr transport) string {
	if tr.endpoint {
		return "https://" + h.epAddr
	}
	return "https://" + h.gwAddr
}

// client is an HTTP client of tr, trusting the perimeter CA.
func (h *hostile) client(tr transport) *http.Client {
	t := &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: h.bundle, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:  tr.h2,
		DisableCompression: true,
	}
	if !tr.h2 {
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	h.t.Cleanup(t.CloseIdleConnections)
	return &http.Client{Transport: t, Timeout: 10 * time.Second}
}

// dial opens a raw HTTP/1.1 TLS connection to tr's listener.
func (h *hostile) dial(t testing.TB, tr transport) *tls.Conn {
	t.Helper()
	addr := h.gwAddr
	if tr.endpoint {
		addr = h.epAddr
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: h.bundle, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// serveNaive is the backend: it records every request (with the request-target exactly
// as received), switches protocols whenever asked, and then serves whatever HTTP requests
// arrive through the tunnel, as a servlet container behind a WebSocket upgrade would.
func (h *hostile) serveNaive(w http.ResponseWriter, r *http.Request) {
	record := func(r *http.Request, body []byte) {
		select {
		case h.hits <- backendHit{Method: r.Method, Path: r.URL.Path, RawPath: r.RequestURI, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body)}:
		default:
		}
	}
	if up := r.Header.Get("Upgrade"); up != "" {
		record(r, nil)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		accept := ""
		if strings.HasSuffix(r.URL.Path, "/ws") {
			// A real WebSocket server completes the handshake; the others only say 101.
			sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + websocketGUID))
			accept = "Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n"
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + up + "\r\nConnection: Upgrade\r\n" + accept + "\r\n")
		brw.Flush()
		for {
			req, err := http.ReadRequest(brw.Reader)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			record(req, body)
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ndone\r\n")
			brw.Flush()
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // an aborted request never completes: nothing to act on
	}
	record(r, body)
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "backend:"+r.Method+" "+r.RequestURI)
}

// readResponse reads one response from a raw connection.
func readResponse(t testing.TB, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}
