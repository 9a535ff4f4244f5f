package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// TestEgressRelay: a workload on a node whose egress proxy runs elsewhere sends its
// proxy requests to the agent's loopback relay, with no credentials; the agent carries
// them to the proxy's TLS listener, where the node's certificate authenticates them.
// IMDS hands out the relay's URL.
func TestEgressRelay(t *testing.T) {
	p := newPerimeter(t)
	spec, err := config.Load(filepath.Join("testdata", "spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	aud := &memAudit{}
	px, err := egress.New(egress.Config{Spec: func() *config.Spec { return spec }, PasswordKey: p.egress.Public().(ed25519.PublicKey), Verifier: p.ca.Verifier(), Auditor: aud})
	if err != nil {
		t.Fatal(err)
	}
	pxCert, err := p.ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "egress"}, IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	pln := listen(t)
	go px.ServeTLS(context.Background(), pln, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pxCert, nil })
	t.Cleanup(func() { px.Close() })

	a := startAgent(t, p, "service-a-1", func(c *Config) { c.EgressTLS = pln.Addr().String() })
	rln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.ServeEgress(ctx, rln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeEgress: %v", err)
		}
	})

	tok := imdsToken(t, a, "60")
	_, _, proxyURL := req(t, "GET", a.imds+"/latest/meta-data/phantom/egress-proxy", "X-aws-ec2-metadata-token", tok)
	if proxyURL != "http://"+rln.Addr().String() {
		t.Fatalf("IMDS egress proxy URL %q, want the relay without credentials", proxyURL)
	}
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "reached") }))
	defer backend.Close()
	roots := x509.NewCertPool()
	roots.AddCert(backend.Certificate())
	u, _ := url.Parse(proxyURL)
	tr := &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(backend.URL)
	if err != nil {
		t.Fatalf("GET through the relay: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "reached" {
		t.Fatalf("body %q", body)
	}
	aud.mu.Lock()
	ev := aud.events[len(aud.events)-1]
	aud.mu.Unlock()
	if ev.ErrorCode != "" || ev.AdditionalEventData["authentication"] != "certificate" || ev.AdditionalEventData["node"] != "service-a-1" {
		t.Fatalf("proxy event %s %v", ev.ErrorCode, ev.AdditionalEventData)
	}
	// A proxy that cannot be reached is a 502 to the workload.
	b := startAgent(t, p, "service-a-1", func(c *Config) { c.EgressTLS = "127.0.0.1:1" })
	bln := listen(t)
	go b.ServeEgress(ctx, bln)
	c, err := net.Dial("tcp", bln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line := make([]byte, 12)
	if _, err := io.ReadFull(c, line); err != nil || string(line) != "HTTP/1.1 502" {
		t.Fatalf("unreachable proxy: %q %v", line, err)
	}
}
