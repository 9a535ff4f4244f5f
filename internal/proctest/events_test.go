package proctest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// natsServer is Debian's nats-server, which .ci/run installs.
func natsServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/nats-server") // Debian's, off a user's PATH
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("nats-server is not installed: .ci/run installs it (apt-get install nats-server)")
		}
		t.Skip("nats-server is not installed (apt-get install nats-server): no NATS JetStream cluster for the event transport test")
	}
	return bin
}

// answered are the request ids of the calls answered, per endpoint.
type answered struct {
	mu  sync.Mutex
	ids map[string]int // request id -> status
}

func (a *answered) add(r Reply) {
	if r.Err != nil || r.Status == 0 || r.RequestID == "" {
		return
	}
	a.mu.Lock()
	a.ids[r.RequestID] = r.Status
	a.mu.Unlock()
}

// TestEventsCluster: two hosts' worth of processes (STS, gateway and endpoint each, each
// with its own data directory and audit chains), two detector replicas and a
// three-node NATS JetStream cluster (Debian's nats-server). Under load, one NATS node,
// one gateway and one detector are killed with SIGKILL; the gateway's host comes back.
// Every record of every chain is then evaluated exactly once (the partitions' cursors
// count each chain's records, no more), every answered call is in its gateway's chain
// once, findings come from both hosts, one per principal, and the surviving detector
// takes the dead one's partitions over. The findings' response (raise the principal's
// risk level) is applied once per finding across the two detectors: one audited action,
// one recorded response, one risk level naming the finding.
func TestEventsCluster(t *testing.T) {
	bin := natsServer(t)
	postgresDSN(t)
	ctx := t.Context()
	nodes, err := StartNATSCluster(ctx, bin, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("---- %s log ----\n%s", n.Name, n.Log())
			}
		}
		StopNATS(nodes)
	})
	c := startCluster(t, Config{Gateways: 2, Endpoints: 2, Pin: true, STSReplicas: 1, Detectors: 2,
		Events: NATSURLs(nodes), EventReplicas: 3, Detection: sweepResponse})

	user, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Per host: a session that may call, and one whose session policy refuses every
	// call (its refusals are a finding of that host's principal).
	var allowed, refused [2]aws.Credentials
	for h := range 2 {
		if allowed[h], err = c.AssumeRoleAt(ctx, h, user, fmt.Sprintf("host-%d", h+1)); err != nil {
			t.Fatal(err)
		}
		if refused[h], err = c.AssumeRoleWithPolicyAt(ctx, h, user, fmt.Sprintf("host-%d-refused", h+1), denyAll); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "a call through each endpoint", func() bool { return c.Call(ctx, h, allowed[h]).Status == 200 })
	}

	got := &answered{ids: map[string]int{}}
	loadCtx, stopLoad := context.WithTimeout(ctx, 8*time.Second)
	defer stopLoad()
	client, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		h := w % 2
		wg.Go(func() {
			for k := 0; loadCtx.Err() == nil; k++ {
				if k%5 == 0 { // refused, over several orders: a sweep
					got.add(Get(loadCtx, client, fmt.Sprintf("%s/%d", c.EndpointURL(h), k%35), refused[h]))
					continue
				}
				got.add(c.Call(loadCtx, h, allowed[h]))
			}
		})
	}
	faults := []struct {
		at   time.Duration
		what string
		do   func() error
	}{
		{1500 * time.Millisecond, "kill -9 nats-1", func() error { nodes[0].Kill(); return nil }},
		{2500 * time.Millisecond, "kill -9 gateway-2", func() error { return c.Gateway(1).Kill() }},
		{3500 * time.Millisecond, "kill -9 detector-1", func() error { return c.Detectors()[0].Kill() }},
		{5000 * time.Millisecond, "restart gateway-2", func() error { return c.Gateway(1).Start(ctx) }},
		{5500 * time.Millisecond, "restart nats-1", func() error { return nodes[0].Start() }},
	}
	start := time.Now()
	var detectorKilled time.Time
	for _, f := range faults {
		time.Sleep(time.Until(start.Add(f.at)))
		if err := f.do(); err != nil {
			t.Fatalf("%s: %v", f.what, err)
		}
		if f.what == "kill -9 detector-1" {
			detectorKilled = time.Now()
		}
		t.Logf("%s at %s", f.what, time.Since(start).Round(time.Millisecond))
	}
	// The surviving detector takes every partition.
	takeover := waitLeases(t, c, "detector-2", 30*time.Second)
	t.Logf("takeover: detector-2 held all partitions %s after detector-1 was killed", takeover.Sub(detectorKilled).Round(time.Millisecond))
	wg.Wait()

	chains := []string{"sts", "sts-2", "gateway-1", "gateway-2", "endpoint-1", "endpoint-2"}
	var consumed map[string]int64
	records := map[string]int64{}
	waitFor(t, 90*time.Second, "every record of every chain evaluated", func() bool {
		consumed, err = c.StreamCursors(ctx)
		if err != nil {
			return false
		}
		for _, ch := range chains {
			n, err := c.ChainRecords(ch)
			if err != nil {
				return false
			}
			records[ch] = n
			if consumed[ch] > n {
				t.Fatalf("chain %s: %d records evaluated, more than the %d it holds", ch, consumed[ch], n)
			}
		}
		for _, ch := range chains {
			if consumed[ch] != records[ch] {
				return false
			}
		}
		return true
	})
	t.Logf("records per chain, each evaluated once: %v", records)

	// Every answered call is in one gateway chain, once.
	inChains := map[string]int{}
	for _, g := range []string{"gateway-1", "gateway-2"} {
		err := audit.ReadChain(c.ProcAuditDir(g), g, 0, func(e audit.Entry) error {
			var ev audit.Event
			if err := json.Unmarshal(e.Record.Event, &ev); err != nil {
				return err
			}
			if ev.RequestID != "" {
				inChains[ev.RequestID]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// What a gateway answered (200, or 403 for the refused sessions) is in its chain;
	// what the endpoint answered itself (502 while its gateway was down) is in the
	// endpoint's, which the cursors count too.
	ok, refusedN, unreachable := 0, 0, 0
	for id, status := range got.ids {
		switch status {
		case 200, 403:
			if inChains[id] != 1 {
				t.Errorf("answered call %s (%d) is in the gateways' chains %d times", id, status, inChains[id])
			}
			if status == 200 {
				ok++
			} else {
				refusedN++
			}
		default:
			unreachable++
		}
	}
	t.Logf("load: %d calls answered 200, %d refused (403), %d answered by an endpoint whose gateway was down; every gateway answer in its chain once", ok, refusedN, unreachable)

	// Findings from both hosts: one per refused principal.
	st := openStore(t, c)
	findingIDs := map[string]string{} // finding id -> principal
	for h := range 2 {
		principal := fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/host-%d-refused", Account, Role, h+1)
		fs, err := st.ListFindings(ctx, store.FindingFilter{Type: detect.TypeAccessDenied, Principal: principal})
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 {
			t.Errorf("host %d: %d %s findings for %s, want 1", h+1, len(fs), detect.TypeAccessDenied, principal)
		}
		for _, f := range fs {
			findingIDs[f.ID] = principal
		}
	}
	responsesOnce(t, c, st, findingIDs)
	all, err := st.ListFindings(ctx, store.FindingFilter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range all {
		key := f.Type + " " + f.Principal
		if seen[key] {
			t.Errorf("finding %s twice", key)
		}
		seen[key] = true
		if strings.Contains(f.Type, "AuditLogTampered") {
			t.Errorf("damage reported where nobody tampered: %s", f.Document)
		}
	}
}

// sweepResponse raises the risk level of a principal with an access-denied sweep.
const sweepResponse = `responses:
  - findingType: "` + detect.TypeAccessDenied + `"
    actions: [raiseRiskLevel]
    riskLevel: high
`

// responsesOnce checks that the response acted once on each finding of findings
// (id -> principal), whichever detector evaluated it and although one was killed: one
// RaiseRiskLevel event in the detectors' chains, one recorded response, the principal's
// risk level set by the finding; and that no finding was acted on twice.
func responsesOnce(t *testing.T, c *Cluster, st store.Store, findings map[string]string) {
	t.Helper()
	ctx := t.Context()
	var events map[string]int
	var by map[string][]string // finding id -> the detectors that acted
	waitFor(t, 30*time.Second, "a response to every finding", func() bool {
		events, by = map[string]int{}, map[string][]string{}
		for _, d := range []string{"detector-1", "detector-2"} {
			err := audit.ReadChain(c.ProcAuditDir(d), d, 0, func(e audit.Entry) error {
				var ev audit.Event
				if err := json.Unmarshal(e.Record.Event, &ev); err != nil {
					return err
				}
				if ev.EventName != respond.EventRaiseRiskLevel {
					return nil
				}
				if ev.ErrorCode != "" {
					t.Errorf("%s: response to finding %v failed: %s", d, ev.RequestParameters["findingId"], ev.ErrorCode)
				}
				id, _ := ev.RequestParameters["findingId"].(string)
				events[id]++
				by[id] = append(by[id], d)
				return nil
			})
			if err != nil {
				t.Fatalf("read %s's chain: %v", d, err)
			}
		}
		for id := range findings {
			if events[id] == 0 {
				return false
			}
		}
		return true
	})
	for id, n := range events {
		if n != 1 {
			t.Errorf("finding %s (%s): %d RaiseRiskLevel actions in the detectors' chains, want 1", id, findings[id], n)
		}
	}
	levels, err := st.ListRiskLevels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id, principal := range findings {
		applied, err := st.ListFindingResponses(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != 1 {
			t.Errorf("finding %s: responses recorded %q, want one", id, applied)
		}
		if !slices.ContainsFunc(levels, func(l store.RiskLevel) bool {
			return l.Principal == principal && l.Level == "high" && l.FindingID == id
		}) {
			t.Errorf("no high risk level for %s set by finding %s: %+v", principal, id, levels)
		}
	}
	t.Logf("responses to %d findings, by detector: %v", len(findings), by)
}

// denyAll is a session policy refusing every call.
const denyAll = `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`

// waitLeases waits until holder holds every partition's lease and returns when it did.
func waitLeases(t *testing.T, c *Cluster, holder string, within time.Duration) time.Time {
	t.Helper()
	st := openStore(t, c)
	var at time.Time
	waitFor(t, within, holder+" holding every partition", func() bool {
		ls, err := st.ListLeases(t.Context())
		if err != nil {
			return false
		}
		n := 0
		for _, l := range ls {
			if strings.HasPrefix(l.Name, "detector-partition-") && l.Holder == holder {
				n++
			}
		}
		at = time.Now()
		return n == 16 && !slices.ContainsFunc(ls, func(l store.Lease) bool {
			return strings.HasPrefix(l.Name, "detector-partition-") && l.Holder != holder
		})
	})
	return at
}

func openStore(t *testing.T, c *Cluster) store.Store {
	t.Helper()
	st, err := c.OpenStore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
