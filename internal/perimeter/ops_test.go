package perimeter

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

func get(t *testing.T, h http.Handler, path string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String(), rec.Header()
}

// TestOpsReadiness: /readyz is 503 with a short reason until the component serves, while
// a check fails (the perimeter state is stale) and once it drains; 200 otherwise.
// /healthz is 200 throughout.
func TestOpsReadiness(t *testing.T) {
	o := newOps("gateway")
	h := o.handler(slog.New(slog.DiscardHandler))
	if code, body, _ := get(t, h, "/readyz"); code != 503 || body != "starting: not serving yet\n" {
		t.Errorf("before serving: %d %q", code, body)
	}
	var stale error
	o.serving(readyCheck{"perimeter state", func() error { return stale }})
	if code, body, hdr := get(t, h, "/readyz"); code != 200 || body != "ok\n" || hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("serving: %d %q %v", code, body, hdr)
	}
	stale = errors.New("identity: perimeter state not confirmed by the store recently enough")
	if code, body, _ := get(t, h, "/readyz"); code != 503 || body != "perimeter state: identity: perimeter state not confirmed by the store recently enough\n" {
		t.Errorf("stale: %d %q", code, body)
	}
	stale = nil
	o.drain()
	if code, body, _ := get(t, h, "/readyz"); code != 503 || body != "shutting down\n" {
		t.Errorf("draining: %d %q", code, body)
	}
	if code, body, _ := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/readyz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d", rec.Code)
	}
}

// TestOpsMetrics: /metrics is the registry in Prometheus's text format, with the
// components' collectors only when ops is on.
func TestOpsMetrics(t *testing.T) {
	o := newOps("gateway")
	gm := o.gatewayMetrics()
	gm.Decision("a1b2c3d4e5", "deny", "AccessDenied", time.Millisecond)
	code, body, hdr := get(t, o.handler(slog.New(slog.DiscardHandler)), "/metrics")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("%d %v", code, hdr)
	}
	for _, want := range []string{
		`phantom_gateway_requests_total{api="a1b2c3d4e5",reason="AccessDenied",result="deny"} 1`,
		`phantom_build_info{`,
		`go_goroutines `,
		`process_cpu_seconds_total `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
	var off *ops
	if off.gatewayMetrics() != nil || off.stsMetrics() != nil || off.egressMetrics() != nil || off.detectorMetrics() != nil ||
		off.endpointMetrics()("vpce-0123456789abcdef0") != nil || off.agentMetrics(time.Now) != nil {
		t.Error("ops off: a component got metrics (a typed nil would not be nil either)")
	}
	off.serving()
	off.drain()
	off.close()
}

// TestOpsHTTPS: the ops listener serves over TLS with a certificate from the perimeter
// CA, which a client trusting ca.pem accepts.
func TestOpsHTTPS(t *testing.T) {
	ca, err := pki.New(pki.Config{Dir: t.TempDir(), Account: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	o := newOps("sts")
	var stderr bytes.Buffer
	if err := o.start("127.0.0.1:0", ca, "123456789012", &stderr, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.close)
	if want := "phantom sts: metrics at " + o.url() + "/metrics"; !strings.HasPrefix(stderr.String(), want) || strings.Contains(stderr.String(), ": listening on ") {
		t.Errorf("printed %q, want it to start %q (and not look like the component's listening line)", stderr.String(), want)
	}
	if !strings.HasPrefix(o.url(), "https://127.0.0.1:") {
		t.Fatalf("url %s", o.url())
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.BundlePEM())
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := c.Get(o.url() + "/healthz")
	if err != nil {
		t.Fatalf("healthz over TLS with the perimeter CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("healthz: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
}

// TestAuditReadiness (issue 15, attack 6): /readyz is 503 while a component's audit chain
// cannot be written (its calls fail closed meanwhile), and 200 again once the disk takes
// writes, without a restart: the chain resumes by itself and records the gap.
func TestAuditReadiness(t *testing.T) {
	dir := t.TempDir()
	logs, err := OpenChains(dir, []string{"gateway"}, testPerimeter(t, t.TempDir(), ""), testAccount, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.CloseAll(slog.New(slog.DiscardHandler))
	o := newOps("gateway")
	h := o.handler(slog.New(slog.DiscardHandler))
	o.serving(logs.readyCheck())
	chain := logs.Get("gateway")
	if err := chain.Record(t.Context(), &audit.Event{EventName: "Invoke"}); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := get(t, h, "/readyz"); code != 200 {
		t.Fatalf("before: %d %q", code, body)
	}

	// The disk stops taking writes: no file of this process may grow (RLIMIT_FSIZE).
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	full := old
	full.Cur = 1
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &full); err != nil {
		t.Fatalf("cannot lower RLIMIT_FSIZE: %v", err)
	}
	restore := func() { syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old) }
	defer restore()
	if err := chain.Record(t.Context(), &audit.Event{EventName: "Invoke"}); err == nil {
		restore()
		t.Fatal("a record was written past the file size limit")
	}
	code, body, _ := get(t, h, "/readyz")
	restore()
	if code != 503 || !strings.HasPrefix(body, "audit log: audit chain gateway cannot be written since ") {
		t.Fatalf("while failing: %d %q", code, body)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _, _ := get(t, h, "/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz stayed 503 after the disk took writes again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := chain.Record(t.Context(), &audit.Event{EventName: "Invoke"}); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	var names []string
	if err := audit.ReadChain(dir, "gateway", 0, func(e audit.Entry) error {
		ev, err := e.Decode()
		if err == nil {
			names = append(names, ev.EventName)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, " ") != "Invoke AuditLogGap Invoke" {
		t.Errorf("chain %v", names)
	}
}
