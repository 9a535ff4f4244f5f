package egress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// needBinary returns the path of a client the test drives: skipped when absent, a failure
// when CI=true.
func needBinary(t testing.TB, name string) string {
	t.Helper()
	return testenv.LookPath(t, name)
}

// world is a running proxy with real servers behind it: allowed (HTTPS, allowed by a
// CIDR rule), endpoint (HTTPS, the API's endpoint listener), plain (HTTP on the allowed
// address) and denied (HTTPS on a loopback port no rule names).
type world struct {
	tp                               *testProxy
	proxy                            string
	allowed, endpoint, plain, denied *httptest.Server
	caFile                           string
	roots                            *tls.Config
	gotHeaders                       chan http.Header
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{gotHeaders: make(chan http.Header, 16)}
	handler := func(name string) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			h := r.Header.Clone()
			h.Set("X-Test-Host", r.Host)
			select {
			case w.gotHeaders <- h:
			default:
			}
			io.WriteString(rw, name+" "+r.URL.Path)
		})
	}
	w.allowed = httptest.NewTLSServer(handler("allowed"))
	// The endpoint's certificate names what an endpoint's does: its private DNS name and
	// every API's execute-api names.
	epCert := selfSigned(t, "orders.internal.example", "*.execute-api.us-east-1.amazonaws.com")
	w.endpoint = httptest.NewUnstartedServer(handler("endpoint"))
	w.endpoint.TLS = &tls.Config{Certificates: []tls.Certificate{epCert}}
	w.endpoint.StartTLS()
	w.denied = httptest.NewTLSServer(handler("denied"))
	w.plain = httptest.NewServer(handler("plain"))
	for _, s := range []*httptest.Server{w.allowed, w.endpoint, w.denied, w.plain} {
		t.Cleanup(s.Close)
	}
	ap := func(s *httptest.Server) netip.AddrPort { return netip.MustParseAddrPort(s.Listener.Addr().String()) }
	spec := loadSpec(t, specAddrs{Endpoint: ap(w.endpoint), Allowed: ap(w.allowed), HTTPPort: ap(w.plain).Port()})
	w.tp = newTestProxy(t, spec, testResolver(), func(c *Config) { c.Dialer = nil })
	w.proxy = startProxy(t, w.tp)
	// httptest's TLS servers share one certificate (127.0.0.1, example.com); the endpoint
	// has its own.
	cert := w.allowed.Certificate()
	w.caFile = filepath.Join(t.TempDir(), "ca.pem")
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: epCert.Leaf.Raw})...)
	if err := os.WriteFile(w.caFile, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	w.roots = w.allowed.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	w.roots.RootCAs.AddCert(epCert.Leaf)
	return w
}

// endpointURL is the endpoint by one of its names, port included, with path.
func (w *world) endpointURL(host, path string) string {
	_, port, _ := net.SplitHostPort(w.endpoint.Listener.Addr().String())
	return "https://" + host + ":" + port + path
}

// selfSigned makes a self-signed ECDSA certificate for names (and 127.0.0.1).
func selfSigned(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func (w *world) proxyURL(node, password string) *url.URL {
	return &url.URL{Scheme: "http", User: url.UserPassword(node, password), Host: w.proxy}
}

func (w *world) client(node string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:           http.ProxyURL(w.proxyURL(node, w.tp.password(node))),
			TLSClientConfig: w.roots.Clone(),
		},
	}
}

func TestGoClientThroughProxy(t *testing.T) {
	w := newWorld(t)
	c := w.client("service-a-1")
	t.Cleanup(c.CloseIdleConnections) // idle keep-alive tunnels would hold Shutdown to its deadline
	get := func(u string) (int, string, error) {
		resp, err := c.Get(u)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	for _, ok := range []struct{ url, body string }{
		{w.allowed.URL + "/hello", "allowed /hello"},
		// The endpoint by a name that binds the allowed API: its private DNS name and
		// the API's execute-api name, both resolved by the proxy.
		{w.endpointURL("orders.internal.example", "/prod/orders"), "endpoint /prod/orders"},
		{w.endpointURL("a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", "/prod/orders"), "endpoint /prod/orders"},
		{w.plain.URL + "/plain", "plain /plain"},
	} {
		code, body, err := get(ok.url)
		if err != nil || code != 200 || body != ok.body {
			t.Fatalf("GET %s: %d %q %v", ok.url, code, body, err)
		}
	}
	// The absolute-form request reached the backend without the proxy credentials.
	var h http.Header
	for len(w.gotHeaders) > 0 {
		h = <-w.gotHeaders
	}
	if h.Get("Proxy-Authorization") != "" || h.Get("X-Test-Host") != strings.TrimPrefix(w.plain.URL, "http://") {
		t.Fatalf("backend saw %v", h)
	}
	for _, u := range []string{w.denied.URL + "/", "https://127.0.0.1:1/"} {
		if _, _, err := get(u); err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Fatalf("GET %s through the proxy: %v, want a 403 CONNECT refusal", u, err)
		}
	}
	// The endpoint by its address: no server name says which API, so the tunnel is
	// refused before a byte reaches the endpoint (a TLS alert).
	if _, _, err := get(w.endpoint.URL + "/prod/orders"); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("GET %s (no SNI) through the proxy: %v, want a TLS access-denied alert", w.endpoint.URL, err)
	}
	// Wrong password: 407.
	bad := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(w.proxyURL("service-a-1", "nope")), TLSClientConfig: w.roots.Clone()}}
	t.Cleanup(bad.CloseIdleConnections)
	if _, err := bad.Get(w.allowed.URL); err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
		t.Fatalf("wrong password: %v", err)
	}
	if resp, err := bad.Get(w.plain.URL); err != nil || resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("wrong password, absolute-form: %v %v", resp, err)
	}
	// Every decision was audited: allowed ones name the node's role session and the rule.
	var allowed, refused int
	for _, ev := range w.tp.audit.all() {
		if ev.EventSource != "egress.phantom.amazonaws.com" {
			t.Fatalf("eventSource %q", ev.EventSource)
		}
		if ev.ErrorCode == "" {
			allowed++
			if ev.UserIdentity.ARN != "arn:aws:sts::123456789012:assumed-role/app/service-a-1" || ev.RequestParameters["rule"] == nil {
				t.Fatalf("allowed event %+v %v", ev.UserIdentity, ev.RequestParameters)
			}
		} else {
			refused++
		}
	}
	if allowed != 4 || refused != 5 {
		t.Fatalf("%d allowed and %d refused events, want 4 and 5", allowed, refused)
	}
}

func TestCurlThroughProxy(t *testing.T) {
	curl := needBinary(t, "curl")
	w := newWorld(t)
	pass := w.tp.password("service-a-1")
	run := func(proxyURL string, args ...string) (string, error) {
		cmd := exec.Command(curl, append([]string{"-sS", "--fail", "--noproxy", "", "-x", proxyURL, "--cacert", w.caFile, "--max-time", "10"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	proxy := "http://service-a-1:" + pass + "@" + w.proxy
	_, ePort, _ := net.SplitHostPort(w.endpoint.Listener.Addr().String())
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{w.allowed.URL + "/hello"}, "allowed /hello"},
		// The endpoint's private DNS name and the API's, resolved by the proxy to its
		// listen address; the server name binds the allowed API.
		{[]string{"https://orders.internal.example:" + ePort + "/prod/orders"}, "endpoint /prod/orders"},
		{[]string{"https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com:" + ePort + "/prod/orders"}, "endpoint /prod/orders"},
		{[]string{w.plain.URL + "/plain"}, "plain /plain"},
	} {
		out, err := run(proxy, c.args...)
		if err != nil || out != c.want {
			t.Fatalf("curl %v: %q %v", c.args, out, err)
		}
	}
	for _, c := range []struct {
		name, proxy, url, status string
	}{
		{"port no rule names", proxy, w.denied.URL + "/", "403"},
		{"endpoint by address (no SNI)", proxy, w.endpoint.URL + "/prod/orders", "200"},
		{"another API's name", proxy, "https://b2c3d4e5f6.execute-api.us-east-1.amazonaws.com:" + ePort + "/", "403"},
		{"metadata", proxy, "http://169.254.169.254/latest/meta-data/", "403"},
		{"metadata via CONNECT", proxy, "https://169.254.169.254/", "403"},
		{"host not in rules", proxy, "https://example.org/", "403"},
		{"decimal loopback", proxy, "http://2130706433:8080/", "403"},
		{"wrong password", "http://service-a-1:nope@" + w.proxy, w.allowed.URL + "/", "407"},
		{"no credentials", "http://" + w.proxy, w.allowed.URL + "/", "407"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(w.tp.audit.all())
			out, err := run(c.proxy, "-w", "status %{http_code} %{http_connect}", c.url)
			if err == nil || !strings.Contains(out, c.status) {
				t.Fatalf("curl %s: %q %v, want a %s refusal", c.url, out, err, c.status)
			}
			if len(w.tp.audit.all()) <= before {
				t.Fatal("refusal not audited")
			}
			if ev := w.tp.audit.last(t); ev.ErrorCode == "" || ev.ErrorMessage == "" {
				t.Fatalf("audit %+v", ev)
			}
		})
	}
}

// TestShutdownClosesTunnels: Shutdown waits for an open tunnel until its context ends,
// then closes it.
func TestShutdownClosesTunnels(t *testing.T) {
	w := newWorld(t)
	c, err := net.Dial("tcp", w.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	target := w.allowed.Listener.Addr().String()
	io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\nProxy-Authorization: "+w.tp.auth("service-a-1")+"\r\n\r\n")
	buf := make([]byte, 64)
	if n, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("CONNECT: %q %v", buf[:n], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := w.tp.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown with an open tunnel returned nil before its deadline")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Shutdown hung")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("the tunnel is still open after Shutdown")
	}
}
