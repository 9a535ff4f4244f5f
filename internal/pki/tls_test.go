package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type handshakeResult struct {
	id  Identity
	err error
}

// serveOnce starts a TLS server on 127.0.0.1 that accepts one connection, completes the
// handshake, reports the peer's identity as the server's handler would learn it, and
// writes "ok".
func serveOnce(t *testing.T, v *Verifier, cfg *tls.Config) (addr string, result <-chan handshakeResult) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan handshakeResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- handshakeResult{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			ch <- handshakeResult{err: err}
			return
		}
		id, err := v.PeerIdentity(tc.ConnectionState())
		ch <- handshakeResult{id: id, err: err}
		if err == nil {
			io.WriteString(tc, "ok")
		}
	}()
	return ln.Addr().String(), ch
}

// dial connects and reads the server's "ok": with TLS 1.3 a client learns that the
// server rejected its certificate only when it reads.
func dial(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ok" {
		return errors.New("unexpected reply " + string(buf))
	}
	return nil
}

func TestMutualTLS(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, nil)
	// A CA whose clock is two days behind issues certificates that have expired by now.
	pastCA := &CA{cfg: ca.cfg, cert: ca.cert, certPEM: ca.certPEM, key: ca.key}
	pastCA.cfg.Now = func() time.Time { return now.Add(-48 * time.Hour) }
	otherCA := newTestCA(t, nil)
	v := ca.Verifier()

	gateway, err := ca.Issue(Request{Identity: Identity{testAccount, KindGateway, "gateway"},
		IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	endpointID := Identity{testAccount, KindEndpoint, "vpce-0123456789abcdef0"}
	issue := func(c *CA, id Identity, validity time.Duration) *tls.Certificate {
		t.Helper()
		cert, err := c.Issue(Request{Identity: id, Client: true, Validity: validity})
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	endpoint := issue(ca, endpointID, 0)
	expired := issue(pastCA, endpointID, time.Hour)
	foreign := issue(otherCA, endpointID, 0)
	node := issue(ca, Identity{testAccount, KindNode, "service-a-1"}, 0)
	noURI := rawCert(t, ca, nil, now.Add(-time.Minute), now.Add(time.Hour))
	twoURIs := rawCert(t, ca, []string{endpointID.String(), "spiffe://phantom/123456789012/endpoint/vpce-11111111"},
		now.Add(-time.Minute), now.Add(time.Hour))
	otherAccount := rawCert(t, ca, []string{"spiffe://phantom/210987654321/endpoint/vpce-0123456789abcdef0"},
		now.Add(-time.Minute), now.Add(time.Hour))
	notPhantom := rawCert(t, ca, []string{"spiffe://example.org/endpoint/vpce-0123456789abcdef0"},
		now.Add(-time.Minute), now.Add(time.Hour))

	tests := []struct {
		name       string
		client     *tls.Certificate // nil: no client certificate
		maxVersion uint16
		wantID     Identity
		wantErr    string // substring of the server-side error; "" means accepted
	}{
		{name: "endpoint certificate from the CA is accepted", client: endpoint, wantID: endpointID},
		{name: "certificate from another CA", client: foreign, wantErr: "certificate signed by unknown authority"},
		{name: "expired certificate", client: expired, wantErr: "certificate has expired"},
		{name: "no URI SAN", client: noURI, wantErr: ErrNoIdentity.Error()},
		{name: "two URI SANs", client: twoURIs, wantErr: ErrNoIdentity.Error()},
		{name: "identity of another account", client: otherAccount, wantErr: "is not in account 123456789012"},
		{name: "URI SAN outside the phantom trust domain", client: notPhantom, wantErr: ErrNoIdentity.Error()},
		{name: "a node where only endpoints may connect", client: node, wantErr: "only [endpoint] may connect"},
		{name: "no client certificate", client: nil, wantErr: "client didn't provide a certificate"},
		{name: "TLS 1.1 is refused", client: endpoint, maxVersion: tls.VersionTLS11, wantErr: "client offered only unsupported versions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, result := serveOnce(t, v, v.ServerConfig(gateway, KindEndpoint))
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(ca.BundlePEM())
			cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MaxVersion: tc.maxVersion, MinVersion: tls.VersionTLS10}
			if tc.client != nil {
				cfg = v.ClientConfig(tc.client, "127.0.0.1", KindGateway)
				cfg.MaxVersion = tc.maxVersion
				if tc.maxVersion != 0 {
					cfg.MinVersion = tls.VersionTLS10
				}
			}
			clientErr := dial(addr, cfg)
			res := <-result
			if tc.wantErr == "" {
				if res.err != nil || clientErr != nil {
					t.Fatalf("rejected: server %v, client %v", res.err, clientErr)
				}
				if res.id != tc.wantID {
					t.Errorf("identity = %v, want %v", res.id, tc.wantID)
				}
				return
			}
			if res.err == nil || !strings.Contains(res.err.Error(), tc.wantErr) {
				t.Errorf("server error = %v, want it to contain %q", res.err, tc.wantErr)
			}
			if clientErr == nil {
				t.Error("client completed an exchange the server refused")
			}
		})
	}
}

// TestClientVerifiesServer checks the other direction: an endpoint dialing the gateway
// refuses a server that is not a gateway of this perimeter.
func TestClientVerifiesServer(t *testing.T) {
	ca := newTestCA(t, nil)
	otherCA := newTestCA(t, nil)
	v := ca.Verifier()
	client, err := ca.Issue(Request{Identity: Identity{testAccount, KindEndpoint, "vpce-0123456789abcdef0"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	ip := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	tests := []struct {
		name    string
		server  func() (*tls.Certificate, error)
		wantErr string
	}{
		{"gateway of this CA", func() (*tls.Certificate, error) {
			return ca.Issue(Request{Identity: Identity{testAccount, KindGateway, "gateway"}, IPs: ip, Server: true})
		}, ""},
		{"server from another CA", func() (*tls.Certificate, error) {
			return otherCA.Issue(Request{Identity: Identity{testAccount, KindGateway, "gateway"}, IPs: ip, Server: true})
		}, "certificate signed by unknown authority"},
		{"a node posing as the gateway", func() (*tls.Certificate, error) {
			return ca.Issue(Request{Identity: Identity{testAccount, KindNode, "service-a-1"}, IPs: ip, Server: true})
		}, "only [gateway] may connect"},
		{"certificate for another address", func() (*tls.Certificate, error) {
			return ca.Issue(Request{Identity: Identity{testAccount, KindGateway, "gateway"}, IPs: []netip.Addr{netip.MustParseAddr("10.9.9.9")}, Server: true})
		}, "certificate is valid for 10.9.9.9, not 127.0.0.1"},
		{"client-only certificate as server", func() (*tls.Certificate, error) {
			return ca.Issue(Request{Identity: Identity{testAccount, KindGateway, "gateway"}, IPs: ip, Client: true})
		}, "incompatible key usage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := tc.server()
			if err != nil {
				t.Fatal(err)
			}
			// The server side trusts the client; what is tested is the client's check.
			sv := ca.Verifier()
			if tc.name == "server from another CA" {
				sv = otherCA.Verifier()
				if err := sv.SetTrust(append(otherCA.BundlePEM(), ca.BundlePEM()...), Revocations{}); err != nil {
					t.Fatal(err)
				}
			}
			addr, result := serveOnce(t, sv, sv.ServerConfig(srv))
			err = dial(addr, v.ClientConfig(client, "127.0.0.1", KindGateway))
			<-result
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("client refused a good server: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("client error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewVerifierFromBundle(t *testing.T) {
	ca := newTestCA(t, nil)
	v, err := NewVerifier(ca.BundlePEM(), testAccount, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(Request{Identity: Identity{testAccount, KindNode, "service-a-1"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify([]*x509.Certificate{cert.Leaf}, x509.ExtKeyUsageClientAuth)
	if err != nil || id.Name != "service-a-1" {
		t.Fatalf("Verify = %v, %v", id, err)
	}
	if _, err := v.Verify([]*x509.Certificate{cert.Leaf}, x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("a client certificate verified for server use")
	}
	if _, err := NewVerifier([]byte("junk"), testAccount, nil); err == nil {
		t.Error("NewVerifier accepted junk")
	}
	if _, err := NewVerifier(ca.BundlePEM(), "1", nil); err == nil {
		t.Error("NewVerifier accepted a bad account")
	}
}
