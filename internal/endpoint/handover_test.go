package endpoint

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/gateway"
)

// TestHandoverSuite runs every test of the package again with the gateway in the
// endpoint's process (Config.Local), so each refusal the endpoint makes (security group at
// accept and per request, TLS only, API selection, SNI binding, header stripping) and each
// the real gateway makes behind it (SigV4, the resource policy on aws:SourceVpce and
// aws:SourceIp) is proven on the in-memory path as on the mTLS hop. Tests of the hop
// itself (unreachable replicas, failover) skip there.
func TestHandoverSuite(t *testing.T) {
	if handoverMode {
		t.Skip("already in handover mode")
	}
	if testing.Short() {
		t.Skip("re-runs the package")
	}
	args := []string{"-test.count=1", "-test.run=^Test", "-test.skip=^TestHandoverSuite$"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PHANTOM_ENDPOINT_HANDOVER=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the package's tests fail with the gateway in process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatalf("no PASS from the handover run:\n%s", out)
	}
}

// TestHandoverIgnoresCallerHeaders: on the in-memory path the gateway learns the endpoint,
// the caller's address and the API only from the typed Handover. A caller's X-Phantom-*
// and forwarding headers claiming another address, another API and another endpoint
// change nothing the gateway decides or records, and never reach the backend.
func TestHandoverIgnoresCallerHeaders(t *testing.T) {
	seen := make(chan http.Header, 4)
	pm := newPerimeter(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		io.WriteString(w, `{"orders":[]}`)
	})
	h := newHandoverHarness(t, pm)
	req := signedOrders(t, h.url(""))
	req.Header.Set("X-Phantom-Source-Ip", "10.9.9.9")
	req.Header.Set("X-Phantom-Api-Id", apiHidden)
	req.Header.Set("X-Phantom-Endpoint", otherVPCE)
	req.Header.Set("X-Forwarded-For", "10.9.9.9")
	resp, err := h.client(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("through the endpoint in process: %d %s; gateway events %s", resp.StatusCode, b, pm.gwAudit.describe())
	}
	ev := lastEvent(pm.gwAudit)
	if ev == nil || ev.VPCEndpointID != testVPCE || ev.SourceIPAddress != "127.0.0.1" || ev.RequestParameters["apiId"] != apiOrders ||
		ev.TLSDetails == nil || ev.TLSDetails.TLSVersion != "TLSv1.3" {
		t.Errorf("gateway event = %+v", ev)
	}
	got := <-seen
	for k, v := range got {
		if strings.HasPrefix(k, "X-Phantom-") && k != "X-Phantom-Identity" && k != "X-Phantom-Request-Id" || strings.Contains(strings.Join(v, ","), "10.9.9.9") {
			t.Errorf("the backend received %s: %v", k, v)
		}
	}
}

// TestHandoverRefusals: the decisions behind the endpoint hold on the in-memory path, and
// each refused request also carries X-Phantom-* headers claiming the allowed endpoint,
// address and API, which must change nothing. The same signed call with a caller address
// outside the resource policy's aws:SourceIp is denied; a handover naming an endpoint the
// spec does not define is refused, as an unknown endpoint's certificate is; one naming an
// API the endpoint does not list is refused; and the same gateway reached directly (no
// handover) is denied by the aws:SourceVpce condition.
func TestHandoverRefusals(t *testing.T) {
	hits := 0
	pm := newPerimeter(t, func(w http.ResponseWriter, r *http.Request) { hits++; io.WriteString(w, "{}") })
	call := func(h *gateway.Handover, forge bool) int {
		t.Helper()
		req := signedOrders(t, "https://"+ordersHost)
		req.RequestURI = "/prod/orders?x=1"
		req.RemoteAddr = "127.0.0.1:50000"
		if forge {
			req.Header.Set("X-Phantom-Source-Ip", "127.0.0.1")
			req.Header.Set("X-Phantom-Api-Id", apiOrders)
		}
		rec := httptest.NewRecorder()
		if h == nil {
			pm.gw.ServeHTTP(rec, req)
		} else {
			pm.gw.ServeHandover(rec, req, h)
		}
		return rec.Code
	}
	loop := netip.MustParseAddr("127.0.0.1")
	if c := call(&gateway.Handover{Endpoint: testVPCE, SourceIP: loop, APIID: apiOrders, TLSVersion: 0x0304, CipherSuite: 0x1301}, false); c != http.StatusOK {
		t.Fatalf("allowed handover: %d; events %s", c, pm.gwAudit.describe())
	}
	cases := []struct {
		name string
		h    *gateway.Handover
		code string
	}{
		{"caller outside aws:SourceIp", &gateway.Handover{Endpoint: testVPCE, SourceIP: netip.MustParseAddr("10.0.0.7"), APIID: apiOrders}, "AccessDenied"},
		{"endpoint not in the spec", &gateway.Handover{Endpoint: otherVPCE, SourceIP: loop, APIID: apiOrders}, "InvalidClientCertificate"},
		{"API the endpoint does not list", &gateway.Handover{Endpoint: testVPCE, SourceIP: loop, APIID: apiHidden}, "Forbidden"},
		{"no handover, forged endpoint headers", nil, "AccessDenied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := hits
			if c := call(tc.h, true); c < 400 {
				t.Fatalf("status %d, want a refusal", c)
			}
			if hits != before {
				t.Error("the refused call reached the backend")
			}
			if ev := lastEvent(pm.gwAudit); ev == nil || ev.ErrorCode != tc.code {
				t.Errorf("event %+v, want errorCode %s", ev, tc.code)
			}
		})
	}
}

// newHandoverHarness puts an endpoint in front of pm's gateway in process, whatever the mode.
func newHandoverHarness(t *testing.T, pm *perimeter) *harness {
	t.Helper()
	addr := "handover-" + t.Name()
	registerLocal(t, addr, pm.handOver)
	return newHarness(t, pm.pki, harnessOpts{spec: defaultSpecOpts(), specValue: pm.ep.spec.Load(), gateways: []string{addr}, local: true})
}

// TestHandoffSuite runs every test of the package again with the endpoint split as two
// processes split it (phantom endpoint --handoff fd|tunnel beside phantom gateway): the
// boundary applies the security group and refuses plaintext, and hands each connection,
// its TLS bytes untouched, over a Unix socket (descriptor passing) or a pre-dialed mTLS
// tunnel to an instance with the gateway in process, which terminates TLS and makes every
// per-request check. Each refusal the package's tests prove is proven through both.
func TestHandoffSuite(t *testing.T) {
	if handoverMode {
		t.Skip("already in a handover or handoff mode")
	}
	if testing.Short() {
		t.Skip("re-runs the package")
	}
	for _, mode := range []string{"fd", "tunnel"} {
		t.Run(mode, func(t *testing.T) {
			args := []string{"-test.count=1", "-test.run=^Test", "-test.skip=^(TestHandoverSuite|TestHandoffSuite)$"}
			if testing.Verbose() {
				args = append(args, "-test.v")
			}
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), "PHANTOM_ENDPOINT_HANDOFF="+mode)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("the package's tests fail with connections handed off (%s): %v\n%s", mode, err, out)
			}
			if !strings.Contains(string(out), "PASS") {
				t.Fatalf("no PASS from the handoff run:\n%s", out)
			}
		})
	}
}
