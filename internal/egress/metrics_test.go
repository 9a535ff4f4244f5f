package egress

import (
	"strings"
	"sync"
	"testing"
	"time"
)

type decisionCall struct{ method, result, reason, role string }

// fakeMetrics records the hook's calls.
type fakeMetrics struct {
	mu    sync.Mutex
	calls []decisionCall
}

func (f *fakeMetrics) Decision(method, result, reason, role string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d <= 0 {
		method += " (no duration)"
	}
	f.calls = append(f.calls, decisionCall{method, result, reason, role})
}

func (f *fakeMetrics) take() []decisionCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// TestMetrics: every decision is one Decision with the method, the result (allow; deny
// for a 4xx refusal; error for a 5xx), the audit errorCode and the node's role; never the
// node or host.
func TestMetrics(t *testing.T) {
	res := newResolver(map[string][]string{"api.example.com": {"93.184.216.34"}})
	m := &fakeMetrics{}
	tp := newTestProxy(t, loadSpec(t, specAddrs{}), res, func(c *Config) { c.Metrics = m })
	tp.dial.fake = true
	for _, c := range []struct {
		name, method, target, node string
		auditFails                 bool
		want                       decisionCall
	}{
		{"allowed tunnel", "CONNECT", "api.example.com:443", "service-a-1", false, decisionCall{"connect", "allow", "", "app"}},
		{"no credentials", "CONNECT", "api.example.com:443", "", false, decisionCall{"connect", "deny", CodeAuthRequired, ""}},
		{"host not in the rules", "GET", "http://evil.example.net/", "service-a-1", false, decisionCall{"forward", "deny", CodeDestinationNotAllow, "app"}},
		{"port not allowed", "CONNECT", "api.example.com:22", "service-a-1", false, decisionCall{"connect", "deny", CodePortNotAllowed, "app"}},
		{"metadata address", "CONNECT", "169.254.169.254:80", "service-a-1", false, decisionCall{"connect", "deny", CodeAddressNotAllowed, "app"}},
		{"audit failure", "CONNECT", "evil.example.net:443", "service-a-1", true, decisionCall{"connect", "error", CodeAuditFailed, "app"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp.audit.mu.Lock()
			tp.audit.fail = c.auditFails
			tp.audit.mu.Unlock()
			tp.serve(c.method, c.target, c.node)
			got := m.take()
			if len(got) != 1 || got[0] != c.want {
				t.Fatalf("calls %+v, want one %+v", got, c.want)
			}
			if strings.Contains(got[0].reason, "example") {
				t.Errorf("a host in a label: %+v", got[0])
			}
		})
	}
}
