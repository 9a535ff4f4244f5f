package egress

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
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
	w.endpoint = httptest.NewTLSServer(handler("endpoint"))
	w.denied = httptest.NewTLSServer(handler("denied"))
	w.plain = httptest.NewServer(handler("plain"))
	for _, s := range []*httptest.Server{w.allowed, w.endpoint, w.denied, w.plain} {
		t.Cleanup(s.Close)
	}
	ap := func(s *httptest.Server) netip.AddrPort { return netip.MustParseAddrPort(s.Listener.Addr().String()) }
	spec := loadSpec(t, specAddrs{Endpoint: ap(w.endpoint), Allowed: ap(w.allowed), HTTPPort: ap(w.plain).Port()})
	w.tp = newTestProxy(t, spec, testResolver(), func(c *Config) { c.Dialer = nil })
	w.proxy = startProxy(t, w.tp)
	// httptest's TLS servers share one certificate (127.0.0.1, example.com).
	cert := w.allowed.Certificate()
	w.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(w.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	w.roots = w.allowed.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	return w
}

func (w *world) proxyURL(node, password string) *url.URL {
	return &url.URL{Scheme: "http", User: url.UserPassword(node, password), Host: w.proxy}
}

func (w *world) client(node string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:           http.ProxyURL(w.proxyURL(node, ProxyPassword(w.tp.key, node))),
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
		{w.endpoint.URL + "/prod/orders", "endpoint /prod/orders"},
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
	if allowed != 3 || refused != 4 {
		t.Fatalf("%d allowed and %d refused events, want 3 and 4", allowed, refused)
	}
}

func TestCurlThroughProxy(t *testing.T) {
	curl := needBinary(t, "curl")
	w := newWorld(t)
	pass := ProxyPassword(w.tp.key, "service-a-1")
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
		{[]string{w.endpoint.URL + "/prod/orders"}, "endpoint /prod/orders"},
		// The endpoint's private DNS name, resolved by the proxy to its listen address
		// (the certificate names 127.0.0.1 and example.com, so -k).
		{[]string{"-k", "https://orders.internal.example:" + ePort + "/prod/orders"}, "endpoint /prod/orders"},
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
