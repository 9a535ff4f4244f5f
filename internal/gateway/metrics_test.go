package gateway

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

// fakeMetrics records the hook's calls.
type fakeMetrics struct {
	mu        sync.Mutex
	decisions []decisionCall
	backends  []backendCall
}

type decisionCall struct {
	api, result, reason string
	d                   time.Duration
}

type backendCall struct {
	api    string
	status int
}

func (f *fakeMetrics) Decision(api, result, reason string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decisions = append(f.decisions, decisionCall{api, result, reason, d})
}

func (f *fakeMetrics) Backend(api string, status int, _ time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.backends = append(f.backends, backendCall{api, status})
}

func (f *fakeMetrics) take() ([]decisionCall, []backendCall) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, b := f.decisions, f.backends
	f.decisions, f.backends = nil, nil
	return d, b
}

// TestMetricsDecisions: every request to an API is one Decision with the API id, the
// result (allow, deny for a 4xx refusal, error for a 5xx) and the audit errorCode as the
// reason; an allowed request is one Backend with the backend's status (0: no answer).
// Labels carry no principal, address or path.
func TestMetricsDecisions(t *testing.T) {
	m := &fakeMetrics{}
	var stale, auditFails atomic.Bool
	e := newEnv(t, func(c *Config) {
		c.Metrics = m
		c.Fresh = func() error {
			if stale.Load() {
				return errors.New("stale")
			}
			return nil
		}
	})
	alice, bob := e.keys["alice"], e.keys["bob"]
	badSig := alice
	badSig.SecretAccessKey = strings.Repeat("x", 40)
	tests := []struct {
		name    string
		call    func() testCall
		setup   func()
		api     string
		result  string
		reason  string
		backend int // expected Backend status; -1: no Backend call
	}{
		{name: "allowed", call: func() testCall { return testCall{method: "GET", path: "/prod/orders", creds: &alice} },
			api: testAPI, result: "allow", backend: 200},
		{name: "no signature", call: func() testCall { return testCall{method: "GET", path: "/prod/orders"} },
			api: testAPI, result: "deny", reason: "MissingAuthenticationToken", backend: -1},
		{name: "bad signature", call: func() testCall { return testCall{method: "GET", path: "/prod/orders", creds: &badSig} },
			api: testAPI, result: "deny", reason: "SignatureDoesNotMatch", backend: -1},
		{name: "explicit deny", call: func() testCall { return testCall{method: "GET", path: "/prod/admin/secrets", creds: &alice} },
			api: testAPI, result: "deny", reason: "AccessDenied", backend: -1},
		{name: "implicit deny", call: func() testCall { return testCall{method: "GET", path: "/prod/orders", creds: &bob} },
			api: testAPI, result: "deny", reason: "AccessDenied", backend: -1},
		{name: "unknown route", call: func() testCall { return testCall{method: "GET", path: "/prod/nope", creds: &alice} },
			api: testAPI, result: "deny", reason: "MissingAuthenticationToken", backend: -1},
		{name: "unknown access key", call: func() testCall {
			return testCall{method: "GET", path: "/prod/orders", creds: &aws.Credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: strings.Repeat("y", 40)}}
		}, api: testAPI, result: "deny", reason: "InvalidClientTokenId", backend: -1},
		{name: "client certificate of another kind", call: func() testCall {
			return testCall{method: "GET", path: "/prod/orders", creds: &alice, cert: endpointCert(t, e.ca, pki.KindNode, "service-a-1"), endpointHdrs: viaEndpoint(testAPI, "10.0.1.15")}
		}, api: "", result: "deny", reason: "InvalidClientCertificate", backend: -1},
		{name: "endpoint that does not list the API", call: func() testCall {
			return testCall{method: "GET", path: "/prod/x", creds: &alice, cert: endpointCert(t, e.ca, pki.KindEndpoint, testEndpoint), endpointHdrs: viaEndpoint(otherAPI, "10.0.1.15")}
		}, api: "", result: "deny", reason: "Forbidden", backend: -1},
		{name: "stale state", setup: func() { stale.Store(true) }, call: func() testCall { return testCall{method: "GET", path: "/prod/orders", creds: &alice} },
			api: "", result: "error", reason: "PerimeterStateStale", backend: -1},
		{name: "audit failure", setup: func() { auditFails.Store(true) }, call: func() testCall { return testCall{method: "GET", path: "/prod/orders", creds: &alice} },
			api: testAPI, result: "error", reason: "AuditFailed", backend: -1},
		{name: "backend timeout", call: func() testCall {
			s := e.session("app", "s1", time.Hour)
			return testCall{method: "GET", path: "/prod/slow", creds: &s}
		},
			api: testAPI, result: "allow", backend: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stale.Store(false)
			auditFails.Store(false)
			if tc.setup != nil {
				tc.setup()
			}
			e.audit.fail.Store(auditFails.Load())
			e.send(t, tc.call())
			e.audit.take()
			for len(e.hits) > 0 {
				<-e.hits
			}
			ds, bs := m.take()
			if len(ds) != 1 {
				t.Fatalf("decisions %+v: want exactly one", ds)
			}
			if d := ds[0]; d.api != tc.api || d.result != tc.result || d.reason != tc.reason || d.d <= 0 {
				t.Errorf("decision %+v: want api %q result %q reason %q and a duration", d, tc.api, tc.result, tc.reason)
			}
			switch {
			case tc.backend < 0 && len(bs) != 0:
				t.Errorf("backend %+v: want none for a refusal", bs)
			case tc.backend >= 0 && (len(bs) != 1 || bs[0] != backendCall{testAPI, tc.backend}):
				t.Errorf("backend %+v: want one with status %d", bs, tc.backend)
			}
		})
	}
	e.audit.fail.Store(false)
	// The JWKS is not a decision.
	if resp, err := e.client(nil).Get(e.server.URL + JWKSPath); err == nil {
		resp.Body.Close()
	}
	if ds, _ := m.take(); len(ds) != 0 {
		t.Errorf("JWKS request observed as %+v", ds)
	}
}
