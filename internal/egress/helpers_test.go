package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
)

// testPasswordKey is the key the tests' STS signs proxy passwords with.
func testPasswordKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, ed25519.SeedSize))
}

// testNow is the test proxies' clock; passwords are issued a minute before it.
var testNow = time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)

// testPassword is node's proxy password for addr, issued a minute before testNow, valid
// for an hour.
func testPassword(key ed25519.PrivateKey, node string, addr netip.Addr) string {
	return ProxyPassword(key, Credential{Node: node, Addr: addr, Issued: testNow.Add(-time.Minute), Expires: testNow.Add(time.Hour)})
}

// specAddrs are the addresses the test spec names.
type specAddrs struct {
	Endpoint     netip.AddrPort // the API's endpoint listener
	Allowed      netip.AddrPort // a loopback server a CIDR rule allows
	EndpointPort uint16
	AllowedPort  uint16
	HTTPPort     uint16 // a plain HTTP server on Allowed's address, for absolute-form
	// EndpointAPIs are the APIs the endpoint serves; default a1b2c3d4e5 alone (b2c3d4e5f6,
	// which no rule allows, is the second API of the endpoint tests).
	EndpointAPIs string
}

func loadSpec(t testing.TB, a specAddrs) *config.Spec {
	t.Helper()
	if !a.Endpoint.IsValid() {
		a.Endpoint = netip.MustParseAddrPort("127.0.0.1:8443")
	}
	if !a.Allowed.IsValid() {
		a.Allowed = netip.MustParseAddrPort("127.0.0.1:9443")
	}
	if a.HTTPPort == 0 {
		a.HTTPPort = 9080
	}
	if a.EndpointAPIs == "" {
		a.EndpointAPIs = "a1b2c3d4e5"
	}
	a.EndpointPort, a.AllowedPort = a.Endpoint.Port(), a.Allowed.Port()
	raw, err := os.ReadFile("testdata/spec.yaml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := template.Must(template.New("spec").Parse(string(raw))).Execute(&out, struct {
		specAddrs
		Endpoint, Allowed string
	}{a, a.Endpoint.String(), a.Allowed.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	s, err := config.Parse("spec.yaml", out.Bytes())
	if err != nil {
		t.Fatalf("test spec: %v", err)
	}
	return s
}

// memAudit keeps events; fail makes Record fail.
type memAudit struct {
	mu     sync.Mutex
	events []*audit.Event
	fail   bool
}

func (m *memAudit) Record(_ context.Context, ev *audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.events = append(m.events, ev)
	return nil
}

func (m *memAudit) all() []*audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*audit.Event(nil), m.events...)
}

func (m *memAudit) last(t testing.TB) *audit.Event {
	t.Helper()
	evs := m.all()
	if len(evs) == 0 {
		t.Fatal("no audit event")
	}
	return evs[len(evs)-1]
}

// fakeResolver answers from a table; a name with several answers gives them in turn on
// consecutive lookups (DNS rebinding).
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func newResolver(m map[string][]string) *fakeResolver {
	r := &fakeResolver{answers: map[string][][]netip.Addr{}, calls: map[string]int{}}
	for name, as := range m {
		var set []netip.Addr
		for _, a := range as {
			if a == "|" {
				r.answers[name] = append(r.answers[name], set)
				set = nil
				continue
			}
			set = append(set, netip.MustParseAddr(a))
		}
		r.answers[name] = append(r.answers[name], set)
	}
	return r
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !strings.HasSuffix(host, ".") {
		return nil, &net.DNSError{Err: "the proxy must look up rooted names", Name: host}
	}
	host = strings.TrimSuffix(host, ".")
	n := r.calls[host]
	r.calls[host]++
	as, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return as[n%len(as)], nil
}

func (r *fakeResolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[host]
}

// recordingDialer records what the proxy dials and connects with net.Dialer, or refuses
// when fake is set.
type recordingDialer struct {
	mu     sync.Mutex
	dialed []string
	fake   bool
	peers  []net.Conn
}

func (d *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, addr)
	d.mu.Unlock()
	if d.fake {
		// The far end stays open (and silent) for the rest of the test.
		c1, c2 := net.Pipe()
		d.mu.Lock()
		d.peers = append(d.peers, c2)
		d.mu.Unlock()
		return c1, nil
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *recordingDialer) all() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dialed...)
}

type testProxy struct {
	*Proxy
	spec  *config.Spec
	key   ed25519.PrivateKey
	audit *memAudit
	res   *fakeResolver
	dial  *recordingDialer
}

func newTestProxy(t testing.TB, spec *config.Spec, res *fakeResolver, mod func(*Config)) *testProxy {
	t.Helper()
	key := testPasswordKey()
	tp := &testProxy{spec: spec, key: key, audit: &memAudit{}, res: res, dial: &recordingDialer{}}
	if res == nil {
		tp.res = newResolver(nil)
	}
	cfg := Config{
		Spec:        func() *config.Spec { return spec },
		PasswordKey: key.Public().(ed25519.PublicKey),
		Resolver:    tp.res,
		Dialer:      tp.dial,
		Auditor:     tp.audit,
		Now:         func() time.Time { return testNow },
		// Every refusal in full: the tests read each one's event (TestRefusalFlood
		// checks the bound).
		RefusalBurst: 1 << 20,
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tp.Proxy = p
	return tp
}

func (tp *testProxy) auth(node string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(node+":"+tp.password(node)))
}

// password is node's proxy password (bound to its address in the spec; none for a node
// the spec does not have).
func (tp *testProxy) password(node string) string {
	var addr netip.Addr
	if n, ok := tp.spec.Node(node); ok {
		addr = n.PrivateIP
	}
	return testPassword(tp.key, node, addr)
}

// nodeAddr is where node's requests come from: its address in the spec, else 127.0.0.1.
func (tp *testProxy) nodeAddr(node string) string {
	if n, ok := tp.spec.Node(node); ok {
		return n.PrivateIP.String() + ":50000"
	}
	return "127.0.0.1:50000"
}

// decideFor runs the decision for one request without carrying it out.
func (tp *testProxy) decideFor(method, target, node string) *request {
	r := httptest.NewRequest(method, "http://unused/", nil)
	r.RequestURI = target
	r.RemoteAddr = tp.nodeAddr(node)
	if node != "" {
		r.Header.Set("Proxy-Authorization", tp.auth(node))
	}
	q := &request{r: r, spec: tp.spec}
	q.ev = tp.newEvent(tp.spec, "Connect", r)
	tp.decide(r.Context(), q)
	return q
}

// serve sends one raw request through ServeHTTP and returns the response.
func (tp *testProxy) serve(method, target, node string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://unused/", nil)
	r.RequestURI = target
	r.RemoteAddr = tp.nodeAddr(node)
	if node != "" {
		r.Header.Set("Proxy-Authorization", tp.auth(node))
	}
	w := httptest.NewRecorder()
	tp.ServeHTTP(w, r)
	return w
}

func port(ap netip.AddrPort) string { return strconv.Itoa(int(ap.Port())) }

// startProxy serves tp on a loopback listener and returns its address.
func startProxy(t testing.TB, tp *testProxy) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tp.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tp.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

var _ http.Handler = (*Proxy)(nil)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func newReq(method, target string) *http.Request {
	r := httptest.NewRequest(method, "http://unused/", nil)
	r.RequestURI = target
	r.RemoteAddr = "127.0.0.1:50000"
	return r
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

// rawConnect sends a CONNECT and returns the response's status line.
func rawConnect(t testing.TB, proxy, target, auth string) string {
	t.Helper()
	return rawConnectFrom(t, "", proxy, target, auth)
}

// rawConnectFrom is rawConnect from a local address (a node's: its password is accepted
// only from there); "" is the system's choice.
func rawConnectFrom(t testing.TB, local, proxy, target, auth string) string {
	t.Helper()
	d := net.Dialer{}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read CONNECT response: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func netipParse(s string) (netip.Addr, error) { return netip.ParseAddr(s) }

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s).Unmap() }
