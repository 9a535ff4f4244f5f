package endpoint

import (
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMetrics records the hook's calls as strings.
type fakeMetrics struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeMetrics) add(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeMetrics) Connection(reason string)            { f.add("conn " + reason) }
func (f *fakeMetrics) Request(api, reason string)          { f.add("req " + api + " " + reason) }
func (f *fakeMetrics) Forward(api string, _ time.Duration) { f.add("fwd " + api) }
func (f *fakeMetrics) Replica(gw string, err error) {
	if err != nil {
		f.add("replica " + gw + " down")
		return
	}
	f.add("replica " + gw + " up")
}

// waitFor waits until every want was called (in any order) and returns all calls.
func (f *fakeMetrics) waitFor(t *testing.T, want ...string) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		calls := slices.Clone(f.calls)
		f.mu.Unlock()
		missing := false
		for _, w := range want {
			if !slices.Contains(calls, w) {
				missing = true
			}
		}
		if !missing {
			return calls
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics calls %q: want %q among them", calls, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetricsHooks: a connection is accepted or refused with its audit errorCode; a
// request is forwarded (the gateway answered) or refused with its errorCode and the API
// it named only when the endpoint lists it; every dial of a gateway replica reports it
// up or down.
func TestMetricsHooks(t *testing.T) {
	p := newTestPKI(t)
	gw := newFakeGateway(t, p, p.gwCert)

	t.Run("forwarded", func(t *testing.T) {
		m := &fakeMetrics{}
		h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}, metrics: m})
		req, _ := http.NewRequest("GET", h.url("/prod/orders"), nil)
		req.Host = ordersHost
		resp, err := h.client(false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := []string{"conn ", "req " + apiOrders + " ", "fwd " + apiOrders, "replica " + gw.addr() + " up"}
		if handoverMode {
			want = want[:3] // no replica to dial
		}
		calls := m.waitFor(t, want...)
		for _, c := range calls {
			if strings.Contains(c, "127.0.0.1") && !strings.HasPrefix(c, "replica ") {
				t.Errorf("a caller's address in a label: %q", c)
			}
		}
	})

	t.Run("unlisted API", func(t *testing.T) {
		m := &fakeMetrics{}
		h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}, metrics: m})
		req, _ := http.NewRequest("GET", h.url("/prod/secrets"), nil)
		req.Host = apiHidden + ".execute-api.us-east-1.amazonaws.com"
		resp, err := h.client(false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// The API it named is not one the endpoint lists: no api label.
		calls := m.waitFor(t, "conn ", "req  "+codeAccessDenied)
		if slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "fwd ") }) {
			t.Errorf("a refused request was forwarded: %q", calls)
		}
	})

	t.Run("plaintext", func(t *testing.T) {
		m := &fakeMetrics{}
		h := newHarness(t, p, harnessOpts{gateways: []string{gw.addr()}, metrics: m})
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		io.ReadAll(c)
		m.waitFor(t, "conn "+codePlaintextRefused)
	})

	t.Run("security group", func(t *testing.T) {
		m := &fakeMetrics{}
		h := newHarness(t, p, harnessOpts{
			spec:     specOpts{ingress: `[{protocol: tcp, ports: "1-65535", cidrs: [10.0.0.0/8]}]`, apis: []string{apiOrders}},
			gateways: []string{gw.addr()}, metrics: m,
		})
		expectNoBytes(t, h.addr)
		m.waitFor(t, "conn "+codeSecurityGroupDenied)
	})

	t.Run("gateway down", func(t *testing.T) {
		skipHandover(t)
		dead, _ := net.Listen("tcp", "127.0.0.1:0")
		deadAddr := dead.Addr().String()
		dead.Close()
		m := &fakeMetrics{}
		h := newHarness(t, p, harnessOpts{gateways: []string{deadAddr}, metrics: m})
		req, _ := http.NewRequest("GET", h.url("/prod/orders"), nil)
		req.Host = ordersHost
		resp, err := h.client(false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		calls := m.waitFor(t, "replica "+deadAddr+" down", "req "+apiOrders+" "+codeGatewayUnreachable, "fwd "+apiOrders)
		if slices.Contains(calls, "req "+apiOrders+" ") {
			t.Errorf("an unanswered request counted as forwarded: %q", calls)
		}
	})
}
