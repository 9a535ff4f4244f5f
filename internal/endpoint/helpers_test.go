package endpoint

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/handoff"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

const (
	testAccount = "123456789012"
	testVPCE    = "vpce-0123456789abcdef0"
	otherVPCE   = "vpce-0fedcba987654321f"
	apiOrders   = "a1b2c3d4e5"
	apiBilling  = "b2c3d4e5f6"
	apiHidden   = "z9y8x7w6v5" // in the spec, not listed by the endpoint
	ordersHost  = apiOrders + ".execute-api.us-east-1.amazonaws.com"
)

// specOpts shape the test spec.
type specOpts struct {
	ingress string   // YAML flow list of ingress rules
	apis    []string // the endpoint's APIs
	limits  string   // YAML flow mapping of the endpoint's limits; "" none
}

func limitsLine(l string) string {
	if l == "" {
		return ""
	}
	return "\n    limits: " + l
}

func defaultSpecOpts() specOpts {
	return specOpts{
		ingress: `[{protocol: tcp, ports: "1-65535", cidrs: [127.0.0.0/8, "::1/128"], description: loopback}]`,
		apis:    []string{apiOrders},
	}
}

func testSpec(t testing.TB, o specOpts) *config.Spec {
	t.Helper()
	api := func(id string) string {
		return fmt.Sprintf(`  - id: %s
    stages: [prod]
    backends:
      b: {url: "http://127.0.0.1:9000"}
    routes:
      - {path: "/{proxy+}", methods: [ANY], backend: b}
`, id)
	}
	y := `version: 1
account: "123456789012"
region: us-east-1
gateway:
  name: gateway
  listen: "127.0.0.1:8445"
apis:
` + api(apiOrders) + api(apiBilling) + api(apiHidden) + `endpoints:
  - id: ` + testVPCE + `
    vpc: vpc-0a1b2c3d4e5f60718
    listen: ["127.0.0.1:8443"]
    ingress: ` + o.ingress + `
    apis: [` + strings.Join(o.apis, ", ") + `]
    privateDnsNames: [orders.internal.example]` + limitsLine(o.limits) + `
  - id: ` + otherVPCE + `
    vpc: vpc-0a1b2c3d4e5f60718
    listen: ["127.0.0.1:8446"]
    ingress: [{ports: "8446", cidrs: [127.0.0.0/8]}]
    apis: [` + apiHidden + `]
    privateDnsNames: [hidden.internal.example]
`
	s, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatalf("test spec: %v", err)
	}
	return s
}

// memAuditor keeps events in memory.
type memAuditor struct {
	mu      sync.Mutex
	evs     []*audit.Event
	fail    atomic.Bool
	discard bool // benchmarks: keep nothing
}

func (a *memAuditor) Record(_ context.Context, ev *audit.Event) error {
	if a.fail.Load() {
		return fmt.Errorf("audit log unavailable")
	}
	if a.discard {
		return nil
	}
	a.mu.Lock()
	a.evs = append(a.evs, ev)
	a.mu.Unlock()
	return nil
}

func (a *memAuditor) events() []*audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*audit.Event(nil), a.evs...)
}

// waitFor waits for an event with this name and code and returns it.
func (a *memAuditor) waitFor(t testing.TB, name, code string) *audit.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range a.events() {
			if ev.EventName == name && ev.ErrorCode == code {
				return ev
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s/%s audit event; have %s", name, code, a.describe())
	return nil
}

func (a *memAuditor) describe() string {
	var b strings.Builder
	for _, ev := range a.events() {
		fmt.Fprintf(&b, "[%s %s %s %v] ", ev.EventName, ev.ErrorCode, ev.SourceIPAddress, ev.AdditionalEventData)
	}
	return b.String()
}

// testPKI is a perimeter CA and the certificates of one endpoint and one gateway.
type testPKI struct {
	ca         *pki.CA
	pool       *x509.CertPool
	serverCert *tls.Certificate // the endpoint's, caller-facing
	clientCert *tls.Certificate // the endpoint's, to the gateway
	gwCert     *tls.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := pki.New(pki.Config{Dir: t.TempDir(), Account: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{ca: ca, pool: x509.NewCertPool()}
	p.pool.AddCert(ca.Certificate())
	loop := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	p.serverCert = issue(t, ca, pki.Request{
		Identity: pki.Identity{Account: testAccount, Kind: pki.KindEndpoint, Name: testVPCE},
		DNSNames: []string{"orders.internal.example", "*.execute-api.us-east-1.amazonaws.com"},
		IPs:      loop, Server: true,
	})
	p.clientCert = issue(t, ca, pki.Request{
		Identity: pki.Identity{Account: testAccount, Kind: pki.KindEndpoint, Name: testVPCE}, Client: true,
	})
	p.gwCert = issue(t, ca, pki.Request{
		Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "gateway"},
		IPs:      loop, Server: true,
	})
	return p
}

func issue(t testing.TB, ca *pki.CA, req pki.Request) *tls.Certificate {
	t.Helper()
	c, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// seen is a request as the fake gateway received it.
type seen struct {
	Method, RequestURI, Host, Proto string
	Header                          http.Header
	Body                            []byte
	Peer                            pki.Identity
	PeerErr                         error
}

// handoverMode, set by PHANTOM_ENDPOINT_HANDOVER=1 (TestHandoverSuite re-runs the
// package's tests so), gives every harness its gateway in process (Config.Local) instead
// of over mTLS: each test's gateway registers in localGateways under its address. A
// harness whose gateway is not registered (an address nothing serves, for tests that
// never reach a gateway) fails the test if a request is handed over.
var handoverMode = os.Getenv("PHANTOM_ENDPOINT_HANDOVER") == "1" || handoffMode != ""

// handoffMode, set by PHANTOM_ENDPOINT_HANDOFF=fd or =tunnel (TestHandoffSuite re-runs the
// package's tests so), runs every harness's endpoint as two processes would: the boundary
// (h.ep: security group, TLS only, handing each connection off) and, behind the handoff
// transport (a Unix socket passing descriptors, or mTLS tunnels), an instance with the
// gateway in process, as in handoverMode, which terminates TLS. Both record to the
// harness's auditor.
var handoffMode = os.Getenv("PHANTOM_ENDPOINT_HANDOFF")

// skipHandover skips a test of the mTLS hop itself (replicas, their certificates) in
// handover mode, where there is no hop.
func skipHandover(t testing.TB) {
	t.Helper()
	if handoverMode {
		t.Skip("handover mode: this test is of the mTLS hop to gateway replicas")
	}
}

// localGateways maps a test gateway's address to its in-process entry point.
var localGateways sync.Map // string -> func(http.ResponseWriter, *http.Request, Handover)

func registerLocal(t testing.TB, addr string, f func(http.ResponseWriter, *http.Request, Handover)) {
	localGateways.Store(addr, f)
	t.Cleanup(func() { localGateways.Delete(addr) })
}

// fakeGateway is an httptest TLS server that, like the gateway, requires a client
// certificate from the perimeter CA and records what it receives. In handover mode it
// records a handed-over request the same way, with the Handover written as the
// X-Phantom-* headers the mTLS hop would carry and the endpoint as the peer identity.
type fakeGateway struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []seen
	handler http.HandlerFunc // optional: answers after recording
}

func newFakeGateway(t testing.TB, p *testPKI, cert *tls.Certificate) *fakeGateway {
	t.Helper()
	g := &fakeGateway{}
	v := p.ca.Verifier()
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s := seen{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Proto: r.Proto, Header: r.Header.Clone(), Body: body}
		s.Peer, s.PeerErr = v.PeerIdentity(*r.TLS)
		g.answer(w, r, s)
	}))
	g.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{*cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
		MinVersion:   tls.VersionTLS12,
	}
	g.srv.Config.ErrorLog = quietLog()
	g.srv.StartTLS()
	t.Cleanup(g.srv.Close)
	registerLocal(t, g.addr(), g.serveLocal)
	return g
}

func (g *fakeGateway) serveLocal(w http.ResponseWriter, r *http.Request, h Handover) {
	body, _ := io.ReadAll(r.Body)
	hdr := r.Header.Clone()
	hdr.Set(handoff.HeaderSourceIP, h.SourceIP.String())
	hdr.Set(handoff.HeaderAPIID, h.APIID)
	hdr.Set(handoff.HeaderTLSVersion, audit.TLSVersionName(h.TLSVersion))
	hdr.Set(handoff.HeaderTLSCipher, tls.CipherSuiteName(h.CipherSuite))
	s := seen{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Proto: r.Proto, Header: hdr, Body: body,
		Peer: pki.Identity{Account: testAccount, Kind: pki.KindEndpoint, Name: h.Endpoint}}
	g.answer(w, r, s)
}

// answer records s and answers r.
func (g *fakeGateway) answer(w http.ResponseWriter, r *http.Request, s seen) {
	g.mu.Lock()
	g.reqs = append(g.reqs, s)
	h := g.handler
	g.mu.Unlock()
	if h != nil {
		r.Body = io.NopCloser(bytes.NewReader(s.Body))
		h(w, r)
		return
	}
	w.Header().Add("Set-Cookie", "a=1")
	w.Header().Add("Set-Cookie", "b=2")
	w.Header().Set("X-Gateway", "fake")
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, "hello from the gateway")
}

func (g *fakeGateway) addr() string { return g.srv.Listener.Addr().String() }

func (g *fakeGateway) requests() []seen {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]seen(nil), g.reqs...)
}

func (g *fakeGateway) last(t testing.TB) seen {
	t.Helper()
	r := g.requests()
	if len(r) == 0 {
		t.Fatal("the gateway received no request")
	}
	return r[len(r)-1]
}

func quietSlog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

// harness runs an endpoint on 127.0.0.1 in front of gateways.
type harness struct {
	t    testing.TB
	pki  *testPKI
	spec atomic.Pointer[config.Spec]
	aud  *memAuditor
	ep   *Endpoint
	// inner is, in handoffMode, the instance behind the boundary h.ep that terminates TLS.
	inner *Endpoint
	addr  string
	port  uint16
	done  chan error
}

type harnessOpts struct {
	spec     specOpts
	gateways []string
	lim      *limits
	listen   string
	auditor  Auditor // default: the harness's memAuditor
	// specValue, when set, is the spec instead of one built from spec.
	specValue *config.Spec
	metrics   Metrics
	local     bool // the gateway in process (registered under gateways[0]), whatever the mode
}

func newHarness(t testing.TB, p *testPKI, o harnessOpts) *harness {
	t.Helper()
	if o.spec.ingress == "" {
		o.spec = defaultSpecOpts()
	}
	h := &harness{t: t, pki: p, aud: &memAuditor{}, done: make(chan error, 1)}
	if o.specValue != nil {
		h.spec.Store(o.specValue)
	} else {
		h.spec.Store(testSpec(t, o.spec))
	}
	var aud Auditor = h.aud
	if o.auditor != nil {
		aud = o.auditor
	}
	lim := defaultLimits
	if o.lim != nil {
		lim = *o.lim
	}
	cfg := Config{
		ID:         testVPCE,
		Spec:       h.spec.Load,
		ServerCert: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.serverCert, nil },
		ClientCert: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return p.clientCert, nil },
		Verifier:   p.ca.Verifier(),
		Gateways:   o.gateways,
		Auditor:    aud,
		Logger:     slog.New(slog.DiscardHandler),
		Metrics:    o.metrics,
	}
	if handoverMode || o.local {
		cfg.Local = func(w http.ResponseWriter, _ *http.Request, _ Handover) {
			t.Errorf("handed a request to gateway %v, which the test does not serve", o.gateways)
			w.WriteHeader(http.StatusBadGateway)
		}
		if local, ok := localGateways.Load(o.gateways[0]); ok && len(o.gateways) == 1 {
			cfg.Local = local.(func(http.ResponseWriter, *http.Request, Handover))
		}
		cfg.Gateways, cfg.ClientCert, cfg.Verifier = nil, nil, nil
	}
	if handoffMode != "" {
		cfg = h.handoffBoundary(t, cfg, lim)
	}
	ep, err := newEndpoint(cfg, lim)
	if err != nil {
		t.Fatal(err)
	}
	h.ep = ep
	listen := o.listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	if o.listen == "" && ln.Addr().(*net.TCPAddr).Port == 8443 {
		// The spec's listener is :8443 and tests tell its port from the real one: take
		// another random port (the first stays open meanwhile, so it cannot come back).
		other, err := net.Listen("tcp", listen)
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		ln = other
	}
	h.addr = ln.Addr().String()
	h.port = uint16(ln.Addr().(*net.TCPAddr).Port)
	go func() { h.done <- ep.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ep.Shutdown(ctx)
	})
	return h
}

// handoffBoundary starts cfg's endpoint (its gateway in process) behind a handoff transport
// of handoffMode and returns the configuration of the boundary that hands connections to it.
func (h *harness) handoffBoundary(t testing.TB, cfg Config, lim limits) Config {
	t.Helper()
	inner, err := newEndpoint(cfg, lim)
	if err != nil {
		t.Fatal(err)
	}
	boundary := Config{ID: cfg.ID, Spec: cfg.Spec, Auditor: cfg.Auditor, Logger: cfg.Logger, Metrics: cfg.Metrics}
	ln, pass, _ := handoffTransport(t, h.pki, handoffMode, cfg.ID, cfg.Spec)
	boundary.Handoff = pass
	h.inner = inner
	go inner.Serve(context.Background(), ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		inner.Shutdown(ctx)
	})
	return boundary
}

// shutdown shuts the endpoint down as its processes would be: the boundary, then in
// handoffMode the instance behind it, which holds the requests in flight.
func (h *harness) shutdown(ctx context.Context) error {
	err := h.ep.Shutdown(ctx)
	if h.inner != nil {
		err = errors.Join(err, h.inner.Shutdown(ctx))
	}
	return err
}

// client returns an HTTP client trusting the perimeter CA; h2 selects HTTP/2.
func (h *harness) client(h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: h.pki.pool, ServerName: "127.0.0.1"},
		ForceAttemptHTTP2:  h2,
		DisableCompression: true,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (h *harness) url(path string) string { return "https://" + h.addr + path }

// rawTLS sends raw request bytes over TLS and returns the parsed response.
func (h *harness) rawTLS(t testing.TB, raw string) *http.Response {
	t.Helper()
	c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.pki.pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// handoffTransport starts the gateway's end of a handoff transport, mode "fd" or "tunnel",
// for endpoint id, and returns the listener of the connections it delivers, the boundary's
// Config.Handoff that hands connections to it, and a func that closes the gateway's end.
func handoffTransport(t testing.TB, p *testPKI, mode, id string, spec func() *config.Spec) (net.Listener, func(net.Conn, handoff.Preamble) error, func()) {
	t.Helper()
	switch mode {
	case "fd":
		dir, err := os.MkdirTemp("", "phantom-handoff-") // short: a socket path has 108 bytes
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		fc := handoff.FDConfig{Path: filepath.Join(dir, "s"), Logger: quietSlog()}
		fl, err := handoff.ListenFD(fc)
		if err != nil {
			t.Fatal(err)
		}
		s := handoff.NewFDSender(fc)
		t.Cleanup(func() { s.Close() })
		return fl, PassFD(s), func() { fl.Close() }
	case "tunnel":
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ts, err := handoff.ServeTunnels(tl, handoff.TunnelServerConfig{
			Certificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.gwCert, nil },
			Peer:        handoff.VerifyEndpoint(p.ca.Verifier()), Endpoints: []string{id}, Logger: quietSlog(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ts.Close() })
		d, err := handoff.NewTunnelDialer(handoff.TunnelDialerConfig{
			Gateways:      []string{tl.Addr().String()},
			ClientCert:    func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return p.clientCert, nil },
			VerifyGateway: VerifyGateway(p.ca.Verifier(), spec), Warm: 2, Logger: quietSlog(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d.Close(ctx)
		})
		return ts.Listener(id), d.Handoff, func() { ts.Close() }
	default:
		t.Fatalf("handoff transport %q: fd or tunnel", mode)
		return nil, nil, nil
	}
}
