package metrics

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/phantom-perimeter/phantom/internal/agent"
	"github.com/phantom-perimeter/phantom/internal/detect/consume"
	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/endpoint"
	"github.com/phantom-perimeter/phantom/internal/gateway"
	"github.com/phantom-perimeter/phantom/internal/sts"
)

// Each struct satisfies its component's hook.
var (
	_ gateway.Metrics  = (*Gateway)(nil)
	_ endpoint.Metrics = (*Endpoint)(nil)
	_ sts.Metrics      = (*STS)(nil)
	_ egress.Metrics   = (*Egress)(nil)
	_ agent.Metrics    = (*Agent)(nil)
	_ consume.Metrics  = (*Detector)(nil)
)

func TestRegistry(t *testing.T) {
	reg := NewRegistry()
	n, err := testutil.GatherAndCount(reg, "phantom_build_info", "go_goroutines", "process_cpu_seconds_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("%d of build info, Go and process metrics, want 3", n)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "phantom_build_info" {
			if m := mf.GetMetric()[0]; m.GetGauge().GetValue() != 1 || len(m.GetLabel()) != 3 {
				t.Errorf("build info %v", m)
			}
		}
	}
}

func TestGateway(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := NewGateway(reg)
	g.Decision("a1b2c3d4e5", "allow", "", 300*time.Microsecond)
	g.Decision("a1b2c3d4e5", "allow", "", 2*time.Millisecond)
	g.Decision("a1b2c3d4e5", "deny", "AccessDenied", time.Millisecond)
	g.Decision("", "deny", "MissingAuthenticationToken", time.Millisecond)
	g.Decision("a1b2c3d4e5", "error", "PerimeterStateStale", time.Millisecond)
	g.Backend("a1b2c3d4e5", 204, 20*time.Millisecond)
	g.Backend("a1b2c3d4e5", 0, 5*time.Second)
	want := `
# HELP phantom_gateway_requests_total Requests the gateway decided, by API, result (allow, deny, error) and reason (the audit errorCode).
# TYPE phantom_gateway_requests_total counter
phantom_gateway_requests_total{api="",reason="MissingAuthenticationToken",result="deny"} 1
phantom_gateway_requests_total{api="a1b2c3d4e5",reason="",result="allow"} 2
phantom_gateway_requests_total{api="a1b2c3d4e5",reason="AccessDenied",result="deny"} 1
phantom_gateway_requests_total{api="a1b2c3d4e5",reason="PerimeterStateStale",result="error"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "phantom_gateway_requests_total"); err != nil {
		t.Error(err)
	}
	// Histograms: counts and sums per (api, result); the 300 µs allow is in the 0.0005 bucket.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		switch mf.GetName() {
		case "phantom_gateway_decision_duration_seconds":
			if len(mf.GetMetric()) != 4 {
				t.Errorf("%d decision histograms, want 4 (api, result)", len(mf.GetMetric()))
			}
			for _, m := range mf.GetMetric() {
				if labels(m.GetLabel()) != "api=a1b2c3d4e5,result=allow" {
					continue
				}
				found = true
				h := m.GetHistogram()
				if h.GetSampleCount() != 2 || h.GetSampleSum() < 0.0023 || h.GetSampleSum() > 0.0024 {
					t.Errorf("allow histogram count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
				}
				for _, b := range h.GetBucket() {
					if b.GetUpperBound() == 0.0005 && b.GetCumulativeCount() != 1 {
						t.Errorf("0.0005 bucket holds %d, want 1", b.GetCumulativeCount())
					}
				}
			}
		case "phantom_gateway_backend_duration_seconds":
			got := map[string]uint64{}
			for _, m := range mf.GetMetric() {
				got[labels(m.GetLabel())] = m.GetHistogram().GetSampleCount()
			}
			if got["api=a1b2c3d4e5,status_class=2xx"] != 1 || got["api=a1b2c3d4e5,status_class=none"] != 1 || len(got) != 2 {
				t.Errorf("backend histograms %v", got)
			}
		}
	}
	if !found {
		t.Error("no allow histogram for the API")
	}
}

func labels(ls []*dto.LabelPair) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(parts, ",")
}

// TestLabelsBounded: values outside the vocabulary's alphabet become "other", and past
// maxSeries label sets every new set is folded into one "other" set: no caller can grow
// the series without bound.
func TestLabelsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := NewGateway(reg)
	g.Decision("a1b2c3d4e5", "deny", "Access Denied <script>", time.Millisecond)
	g.Decision("a1b2c3d4e5", "maybe", "AccessDenied", time.Millisecond)
	g.Decision(strings.Repeat("x", 200), "deny", "AccessDenied", time.Millisecond)
	if got := value(t, reg, `phantom_gateway_requests_total{api="a1b2c3d4e5",result="deny",reason="other"}`); got != 1 {
		t.Errorf("unsafe reason: %v", got)
	}
	for i := range 3 * maxSeries {
		g.Decision("a1b2c3d4e5", "deny", fmt.Sprintf("Code%d", i), time.Millisecond)
	}
	n := testutil.CollectAndCount(reg, "phantom_gateway_requests_total")
	if n > maxSeries+4 {
		t.Errorf("%d series after %d distinct reasons, want at most %d", n, 3*maxSeries, maxSeries+4)
	}
	// The overflow set holds everything past the bound.
	var total float64
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "phantom_gateway_requests_total" {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	if total != 3*maxSeries+3 {
		t.Errorf("counted %v decisions, want %d: none may be lost to the bound", total, 3*maxSeries+3)
	}
	if got := value(t, reg, `phantom_gateway_requests_total{api="other",result="deny",reason="other"}`); got < 2*maxSeries {
		t.Errorf("overflow set holds %v", got)
	}
}

func TestEndpoint(t *testing.T) {
	reg := prometheus.NewRegistry()
	eps := NewEndpoints(reg)
	e := eps.For("vpce-0123456789abcdef0")
	other := eps.For("vpce-0fedcba9876543210")
	e.Connection("")
	e.Connection("")
	e.Connection("SecurityGroupDenied")
	other.Connection("PlaintextRefused")
	e.Request("a1b2c3d4e5", "")
	e.Request("", "VpceAccessDenied")
	e.Forward("a1b2c3d4e5", 3*time.Millisecond)
	e.Replica("10.0.1.10:8445", nil)
	e.Replica("10.0.1.11:8445", errors.New("refused"))
	e.Replica("10.0.1.11:8445", errors.New("refused"))
	want := `
# HELP phantom_endpoint_connections_total Connections to the endpoint's listeners, by result (accepted after the TLS handshake, refused) and reason (the audit errorCode of a refusal).
# TYPE phantom_endpoint_connections_total counter
phantom_endpoint_connections_total{endpoint="vpce-0123456789abcdef0",reason="",result="accepted"} 2
phantom_endpoint_connections_total{endpoint="vpce-0123456789abcdef0",reason="SecurityGroupDenied",result="refused"} 1
phantom_endpoint_connections_total{endpoint="vpce-0fedcba9876543210",reason="PlaintextRefused",result="refused"} 1
# HELP phantom_endpoint_requests_total Requests by result (forwarded: the gateway answered; refused: the endpoint answered) and reason (the audit errorCode of a refusal).
# TYPE phantom_endpoint_requests_total counter
phantom_endpoint_requests_total{api="",endpoint="vpce-0123456789abcdef0",reason="VpceAccessDenied",result="refused"} 1
phantom_endpoint_requests_total{api="a1b2c3d4e5",endpoint="vpce-0123456789abcdef0",reason="",result="forwarded"} 1
# HELP phantom_endpoint_gateway_up 1 when the last connection to the gateway replica succeeded (TCP and mTLS), 0 when it failed.
# TYPE phantom_endpoint_gateway_up gauge
phantom_endpoint_gateway_up{endpoint="vpce-0123456789abcdef0",gateway="10.0.1.10:8445"} 1
phantom_endpoint_gateway_up{endpoint="vpce-0123456789abcdef0",gateway="10.0.1.11:8445"} 0
# HELP phantom_endpoint_gateway_dial_errors_total Failed connections (TCP or mTLS) to a gateway replica.
# TYPE phantom_endpoint_gateway_dial_errors_total counter
phantom_endpoint_gateway_dial_errors_total{endpoint="vpce-0123456789abcdef0",gateway="10.0.1.10:8445"} 0
phantom_endpoint_gateway_dial_errors_total{endpoint="vpce-0123456789abcdef0",gateway="10.0.1.11:8445"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "phantom_endpoint_connections_total", "phantom_endpoint_requests_total",
		"phantom_endpoint_gateway_up", "phantom_endpoint_gateway_dial_errors_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "phantom_endpoint_forward_duration_seconds"); n != 1 {
		t.Errorf("%d forward histograms", n)
	}
}

func TestHandoff(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHandoff(reg)
	h.Delivered("vpce-0123456789abcdef0", true)
	h.Delivered("vpce-0123456789abcdef0", true)
	h.Delivered("vpce-0123456789abcdef0", false)
	h.Delivered("vpce-0fedcba9876543210\n", true)
	want := `
# HELP phantom_handoff_tunnel_connections_total Callers delivered through handoff tunnels from endpoint processes, by how their bytes after the ClientHello crossed: raw (outside the tunnel's TLS, TLS 1.3 callers) or tunnel (inside it).
# TYPE phantom_handoff_tunnel_connections_total counter
phantom_handoff_tunnel_connections_total{crossing="raw",endpoint="other"} 1
phantom_handoff_tunnel_connections_total{crossing="raw",endpoint="vpce-0123456789abcdef0"} 2
phantom_handoff_tunnel_connections_total{crossing="tunnel",endpoint="vpce-0123456789abcdef0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "phantom_handoff_tunnel_connections_total"); err != nil {
		t.Error(err)
	}
}

func TestSTS(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := NewSTS(reg)
	s.Request("AssumeRole", "allow", "", time.Millisecond)
	s.Request("AssumeRole", "deny", "AccessDenied", time.Millisecond)
	s.Request("NodeCredentials", "allow", "", time.Millisecond)
	want := `
# HELP phantom_sts_requests_total STS calls by action, result (allow: answered, credentials issued for the issuing actions; deny; error) and code (the audit errorCode).
# TYPE phantom_sts_requests_total counter
phantom_sts_requests_total{action="AssumeRole",code="",result="allow"} 1
phantom_sts_requests_total{action="AssumeRole",code="AccessDenied",result="deny"} 1
phantom_sts_requests_total{action="NodeCredentials",code="",result="allow"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "phantom_sts_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "phantom_sts_request_duration_seconds"); n != 2 {
		t.Errorf("%d duration histograms, want 2 (by action)", n)
	}
}

// TestEgress: decisions are counted per role, with bounded labels: a method or result
// outside the vocabulary, or a role that is no plain token, is "other".
func TestEgress(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := NewEgress(reg)
	e.Decision("connect", "allow", "", "app", time.Millisecond)
	e.Decision("connect", "allow", "", "batch", time.Millisecond)
	e.Decision("forward", "deny", "DestinationNotAllowed", "app", time.Millisecond)
	e.Decision("connect", "report", "DestinationNotAllowed", "app", time.Millisecond)
	e.Decision("connect", "deny", "ProxyAuthenticationRequired", "", time.Millisecond)
	e.Decision("GET", "deny", "AddressNotAllowed", "app", time.Millisecond)
	e.Decision("connect", "maybe", "", "role with spaces", time.Millisecond)
	want := `
# HELP phantom_egress_requests_total Egress proxy decisions by method (connect, forward), result (allow, report, deny, error), reason (the audit errorCode) and the node's role.
# TYPE phantom_egress_requests_total counter
phantom_egress_requests_total{method="connect",reason="",result="allow",role="app"} 1
phantom_egress_requests_total{method="connect",reason="",result="allow",role="batch"} 1
phantom_egress_requests_total{method="connect",reason="",result="other",role="other"} 1
phantom_egress_requests_total{method="connect",reason="DestinationNotAllowed",result="report",role="app"} 1
phantom_egress_requests_total{method="connect",reason="ProxyAuthenticationRequired",result="deny",role=""} 1
phantom_egress_requests_total{method="forward",reason="DestinationNotAllowed",result="deny",role="app"} 1
phantom_egress_requests_total{method="other",reason="AddressNotAllowed",result="deny",role="app"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "phantom_egress_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestDetector(t *testing.T) {
	reg := prometheus.NewRegistry()
	d := NewDetector(reg)
	d.Committed("gateway-1", 500, 500)
	d.Committed("gateway-1", 20, 520)
	d.Finding("UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS", 8)
	d.Finding("Recon:IAMUser/AccessDenied", 2)
	d.Finding("Recon:IAMUser/AccessDenied", 5)
	d.Commit(10*time.Millisecond, nil)
	d.Commit(time.Second, errors.New("store down"))
	want := `
# HELP phantom_detector_events_total Audit events consumed and committed, by chain.
# TYPE phantom_detector_events_total counter
phantom_detector_events_total{chain="gateway-1"} 520
# HELP phantom_detector_chain_position Sequence number of the last committed record of each chain (compare with the chain's head for the lag).
# TYPE phantom_detector_chain_position gauge
phantom_detector_chain_position{chain="gateway-1"} 520
# HELP phantom_detector_findings_total Findings committed (new or repeated), by GuardDuty finding type and severity band (low, medium, high).
# TYPE phantom_detector_findings_total counter
phantom_detector_findings_total{severity="high",type="UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS"} 1
phantom_detector_findings_total{severity="low",type="Recon:IAMUser/AccessDenied"} 1
phantom_detector_findings_total{severity="medium",type="Recon:IAMUser/AccessDenied"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "phantom_detector_events_total", "phantom_detector_chain_position", "phantom_detector_findings_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "phantom_detector_commit_duration_seconds"); n != 2 {
		t.Errorf("%d commit histograms, want ok and error", n)
	}
	if v := value(t, reg, "phantom_detector_last_commit_timestamp_seconds"); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last commit %v", v)
	}
}

func TestAgent(t *testing.T) {
	reg := prometheus.NewRegistry()
	exp := time.Now().Add(time.Hour)
	a := NewAgent(reg, func() time.Time { return exp })
	a.Refresh(nil, 10*time.Millisecond)
	a.Refresh(errors.New("sts down"), time.Second)
	if v := value(t, reg, `phantom_agent_credential_refreshes_total{result="error"}`); v != 1 {
		t.Errorf("errors %v", v)
	}
	if v := value(t, reg, `phantom_agent_credentials_expiry_seconds`); v < 3590 || v > 3600 {
		t.Errorf("expiry in %v s, want about an hour", v)
	}
	exp = time.Time{}
	if v := value(t, reg, `phantom_agent_credentials_expiry_seconds`); v != 0 {
		t.Errorf("expiry without credentials %v, want 0", v)
	}
}

func TestFreshness(t *testing.T) {
	reg := prometheus.NewRegistry()
	synced := time.Now().Add(-10 * time.Second)
	var stale error
	RegisterFreshness(reg, Freshness{SyncedAt: func() time.Time { return synced }, Fresh: func() error { return stale }, Reachable: 5 * time.Second})
	if v := value(t, reg, "phantom_identity_sync_age_seconds"); v < 10 || v > 11 {
		t.Errorf("age %v", v)
	}
	if v := value(t, reg, "phantom_identity_store_reachable"); v != 0 {
		t.Errorf("reachable %v after 10 s with a 5 s bound", v)
	}
	if v := value(t, reg, "phantom_identity_state_fresh"); v != 1 {
		t.Errorf("fresh %v", v)
	}
	synced, stale = time.Now(), errors.New("stale")
	if v := value(t, reg, "phantom_identity_store_reachable"); v != 1 {
		t.Errorf("reachable %v just after a sync", v)
	}
	if v := value(t, reg, "phantom_identity_state_fresh"); v != 0 {
		t.Errorf("fresh %v while stale", v)
	}
}

// value returns the value of the one counter or gauge series sel names
// (name{l="v",...}, labels in any order) in reg.
func value(t *testing.T, reg *prometheus.Registry, sel string) float64 {
	t.Helper()
	name, want, _ := strings.Cut(strings.TrimSuffix(sel, "}"), "{")
	wantSet := map[string]bool{}
	for p := range strings.SplitSeq(want, ",") {
		if p != "" {
			wantSet[p] = true
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(wantSet) {
				continue
			}
			for _, l := range m.GetLabel() {
				if !wantSet[l.GetName()+`="`+l.GetValue()+`"`] {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s", sel)
	return 0
}
