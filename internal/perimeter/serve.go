package perimeter

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/gateway"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// listenAddr is where a component listens: the flag when given, else the spec's address,
// else the default.
func listenAddr(flag string, spec netip.AddrPort, def string) string {
	switch {
	case flag != "":
		return flag
	case spec.IsValid():
		return spec.String()
	}
	return def
}

// certIssuer issues this process's certificates (*pki.Authority).
type certIssuer interface {
	Issue(req pki.Request) (*tls.Certificate, error)
}

// certSource issues a component's short-lived certificate from the perimeter CA and a
// fresh one when the current one is past half its life, so a long-running component
// never presents an expired one.
type certSource struct {
	ca  certIssuer
	req pki.Request

	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
	// triedFor and triedAt: the newest issuing CA an early renewal was last tried for.
	triedFor []byte
	triedAt  time.Time
}

// newerIssuer names the issuing CA that superseded another under the same root
// (*pki.Authority, *enroll.Client): a certificate the older one signed is renewed at
// once, so an issuing CA rotation reaches every holder within a poll.
type newerIssuer interface{ NewerIssuing(issuer []byte) []byte }

// supersededRetry is how often an early renewal for a newer CA is retried while the
// issuer still signs with the old one.
const supersededRetry = 2 * time.Second

// supersededLocked reports whether a newer issuing CA than cert's is trusted (at most
// once per supersededRetry for one CA). Callers hold mu.
func (c *certSource) supersededLocked(now time.Time) bool {
	ni, ok := c.ca.(newerIssuer)
	if !ok || c.cert == nil {
		return false
	}
	newest := ni.NewerIssuing(c.cert.Leaf.AuthorityKeyId)
	if len(newest) == 0 || (bytes.Equal(newest, c.triedFor) && now.Sub(c.triedAt) < supersededRetry) {
		return false
	}
	c.triedFor, c.triedAt = newest, now
	return true
}

// newCertSource issues the first certificate now, so a CA problem stops the start.
func newCertSource(ca certIssuer, req pki.Request) (*certSource, error) {
	c := &certSource{ca: ca, req: req}
	if _, err := c.get(); err != nil {
		return nil, err
	}
	return c, nil
}

// serverRequest names a server certificate for a component listening on addrs: its
// identity, localhost and loopback, the host name, any specific listen IP, and extra DNS
// names (an endpoint's private DNS names).
func serverRequest(id pki.Identity, addrs []net.Addr, dnsNames ...string) pki.Request {
	req := pki.Request{
		Identity: id,
		DNSNames: append([]string{"localhost"}, dnsNames...),
		IPs:      []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()},
		Server:   true,
	}
	for _, addr := range addrs {
		if ta, ok := addr.(*net.TCPAddr); ok {
			if ip, ok := netip.AddrFromSlice(ta.IP); ok && !ip.Unmap().IsUnspecified() && !ip.Unmap().IsLoopback() {
				req.IPs = append(req.IPs, ip.Unmap())
			}
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		req.DNSNames = append(req.DNSNames, h)
	}
	return req
}

func (c *certSource) getServer(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.get() }

func (c *certSource) getClient(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.get()
}

func (c *certSource) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.cert != nil && now.Before(c.renewAt) && !c.supersededLocked(now) {
		return c.cert, nil
	}
	cert, err := c.ca.Issue(c.req)
	if err != nil {
		if c.cert != nil && now.Before(c.cert.Leaf.NotAfter) {
			return c.cert, nil // keep presenting the valid one; retry on the next handshake
		}
		return nil, fmt.Errorf("issue %s certificate: %w", c.req.Identity, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("issue %s certificate: %w", c.req.Identity, err)
		}
	}
	c.cert = cert
	c.renewAt = cert.Leaf.NotBefore.Add(cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore) / 2)
	return cert, nil
}

// httpsServer is one component's HTTPS server on a listener it was given.
type httpsServer struct {
	Name string
	Done chan error
	stop func(ctx context.Context) error
}

// serveHTTPS starts serving h with TLS on ln; tlsCfg must provide the certificate.
func serveHTTPS(name string, ln net.Listener, h http.Handler, tlsCfg *tls.Config, log *slog.Logger) *httpsServer {
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return startServer(name, func() error { return srv.ServeTLS(ln, "", "") }, srv.Shutdown)
}

// serveGateway starts the gateway on ln: it runs its own listener, which applies the
// spec's connection limits and header timeout before any HTTP is read.
func serveGateway(ln net.Listener, gw *gateway.Gateway, tlsCfg *tls.Config) *httpsServer {
	return startServer("gateway", func() error { return gw.Serve(ln, tlsCfg) }, gw.Shutdown)
}

func startServer(name string, serve func() error, stop func(context.Context) error) *httpsServer {
	s := &httpsServer{Name: name, Done: make(chan error, 1), stop: stop}
	go func() {
		err := serve()
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.Done <- err
	}()
	return s
}

// Shutdown stops accepting and waits for in-flight requests until ctx ends.
func (s *httpsServer) shutdown(ctx context.Context) error {
	if err := s.stop(ctx); err != nil {
		return fmt.Errorf("shut down %s: %w", s.Name, err)
	}
	return nil
}
