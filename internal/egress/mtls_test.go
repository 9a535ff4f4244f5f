package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

// TestNodeCertificate: on a TLS proxy listener a node authenticates with its
// perimeter-CA client certificate, no password needed; a certificate of another kind, of
// another CA, or disagreeing with Proxy-Authorization is refused (407, audited).
func TestNodeCertificate(t *testing.T) {
	w := newWorld(t) // for the target servers and the spec
	ca, err := pki.New(pki.Config{Dir: t.TempDir(), Account: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.New(pki.Config{Dir: t.TempDir(), Account: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, kind pki.Kind, name string, server bool) *tls.Certificate {
		req := pki.Request{Identity: pki.Identity{Account: "123456789012", Kind: kind, Name: name}, Client: !server, Server: server}
		if server {
			req.IPs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		}
		c, err := ca.Issue(req)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	proxyCert := issue(ca, pki.KindGateway, "egress", true)
	tp := newTestProxy(t, w.tp.spec, testResolver(), func(c *Config) { c.Dialer = nil; c.Verifier = ca.Verifier() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go tp.ServeTLS(context.Background(), ln, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return proxyCert, nil })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		tp.Shutdown(ctx)
	})

	roots := x509.NewCertPool()
	roots.AddCert(w.allowed.Certificate())
	if !roots.AppendCertsFromPEM(ca.BundlePEM()) {
		t.Fatal("CA bundle")
	}
	client := func(cert *tls.Certificate, user *url.Userinfo) *http.Client {
		cfg := &tls.Config{RootCAs: roots}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "https", Host: ln.Addr().String(), User: user}), TLSClientConfig: cfg}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	get := func(c *http.Client, u string) (string, error) {
		resp, err := c.Get(u)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + string(b), nil
	}

	node := issue(ca, pki.KindNode, "service-a-1", false)
	if got, err := get(client(node, nil), w.allowed.URL+"/x"); err != nil || got != "200 OK allowed /x" {
		t.Fatalf("node certificate, CONNECT: %q %v", got, err)
	}
	if got, err := get(client(node, nil), w.plain.URL+"/y"); err != nil || got != "200 OK plain /y" {
		t.Fatalf("node certificate, absolute-form: %q %v", got, err)
	}
	ev := tp.audit.last(t)
	if ev.UserIdentity.ARN != "arn:aws:sts::123456789012:assumed-role/app/service-a-1" || ev.AdditionalEventData["authentication"] != "certificate" || ev.TLSDetails == nil {
		t.Fatalf("event %+v %v %+v", ev.UserIdentity, ev.AdditionalEventData, ev.TLSDetails)
	}
	// The batch node's certificate: authenticated, but its role may not go there.
	if _, err := get(client(issue(ca, pki.KindNode, "batch-1", false), nil), w.allowed.URL); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("batch-1: %v", err)
	}
	for _, c := range []struct {
		name string
		cert *tls.Certificate
		user *url.Userinfo
	}{
		{"endpoint certificate", issue(ca, pki.KindEndpoint, "vpce-0123456789abcdef0", false), nil},
		{"another CA", issue(other, pki.KindNode, "service-a-1", false), nil},
		{"node not in the spec", issue(ca, pki.KindNode, "ghost", false), nil},
		{"certificate and password disagree", node, url.UserPassword("batch-1", tp.password("batch-1"))},
		{"certificate and a wrong password", node, url.UserPassword("service-a-1", "nope")},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := get(client(c.cert, c.user), w.allowed.URL)
			if err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
				t.Fatalf("%v, want 407", err)
			}
			if ev := tp.audit.last(t); ev.ErrorCode != CodeAuthRequired {
				t.Fatalf("audit %q", ev.ErrorCode)
			}
		})
	}
	// No certificate, the password: still works on the TLS listener.
	if got, err := get(client(nil, url.UserPassword("service-a-1", tp.password("service-a-1"))), w.allowed.URL+"/z"); err != nil || got != "200 OK allowed /z" {
		t.Fatalf("password over TLS: %q %v", got, err)
	}
	// Certificate and the matching password.
	if _, err := get(client(node, url.UserPassword("service-a-1", tp.password("service-a-1"))), w.allowed.URL); err != nil {
		t.Fatalf("certificate and password: %v", err)
	}
	if ev := tp.audit.last(t); ev.AdditionalEventData["authentication"] != "certificate+password" {
		t.Fatalf("authentication %v", ev.AdditionalEventData["authentication"])
	}
}
