package endpoint

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/admission"
	"github.com/phantom-perimeter/phantom/internal/audit"
)

// refusalCount is how many refused connections an event stands for.
func refusalCount(ev *audit.Event) int {
	if ev.AdditionalEventData["summary"] == true {
		return ev.AdditionalEventData["count"].(int)
	}
	return 1
}

func countRefusals(evs []*audit.Event, code string) (total, full, summaries int) {
	for _, ev := range evs {
		if ev.EventName != eventConnect || ev.ErrorCode != code {
			continue
		}
		total += refusalCount(ev)
		if ev.AdditionalEventData["summary"] == true {
			summaries++
		} else {
			full++
		}
	}
	return
}

// TestRefusalsAggregated: a burst of refused connections from one source is one full
// event and one summary whose count makes up the rest; none is lost.
func TestRefusalsAggregated(t *testing.T) {
	p := newTestPKI(t)
	lim := defaultLimits
	lim.refusalWindow = time.Second
	h := newHarness(t, p, harnessOpts{
		spec:     specOpts{ingress: `[{ports: "1-65535", cidrs: [10.0.0.0/8]}]`, apis: []string{apiOrders}},
		gateways: []string{"127.0.0.1:1"}, lim: &lim,
	})
	const n = 25
	for range n {
		expectNoBytes(t, h.addr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		total, full, summaries := countRefusals(h.aud.events(), codeSecurityGroupDenied)
		if total == n {
			// One window normally holds the burst: one full event and one summary. A slow
			// machine may spread it over two windows.
			if full > 2 || summaries < 1 {
				t.Errorf("full = %d, summaries = %d; want 1 and 1 (%s)", full, summaries, h.aud.describe())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events account for %d of %d refusals: %s", total, n, h.aud.describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var sum *audit.Event
	for _, ev := range h.aud.events() {
		if ev.AdditionalEventData["summary"] == true && (sum == nil || refusalCount(ev) > refusalCount(sum)) {
			sum = ev
		}
	}
	d := sum.AdditionalEventData
	if sum.SourceIPAddress != "127.0.0.1" || d["count"].(int) < n/2 || d["localPort"] != h.port || d["firstSeen"] == "" ||
		d["reason"] != "the source address is in no CIDR of the rules covering the port" {
		t.Errorf("summary = %+v %v", sum, d)
	}
	// After the window, the next refusal is recorded in full again.
	_, fullBefore, _ := countRefusals(h.aud.events(), codeSecurityGroupDenied)
	expectNoBytes(t, h.addr)
	deadline = time.Now().Add(5 * time.Second)
	for {
		if _, full, _ := countRefusals(h.aud.events(), codeSecurityGroupDenied); full == fullBefore+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no second full event: %s", h.aud.describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRefusalsBounded drives the aggregator directly: more sources than it tracks and an
// auditor that falls behind (its queue fills); after Shutdown every refusal is accounted for.
func TestRefusalsBounded(t *testing.T) {
	p := newTestPKI(t)
	aud := &blockingAuditor{memAuditor: &memAuditor{}, gate: make(chan struct{})}
	lim := defaultLimits
	lim.maxRefusalSources = 300
	h := newHarness(t, p, harnessOpts{gateways: []string{"127.0.0.1:1"}, lim: &lim, auditor: aud})
	const sources, each = 400, 2
	for i := range sources {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 40000)
		for range each {
			h.ep.ref.Note(admission.Refusal{Code: codeSecurityGroupDenied, Src: src, LocalPort: h.port, Detail: map[string]any{"reason": "test"}})
		}
	}
	close(aud.gate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.ep.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	evs := aud.events()
	total, full, summaries := countRefusals(evs, codeSecurityGroupDenied)
	if total != sources*each {
		t.Errorf("events account for %d refusals, want %d (%d full, %d summaries)", total, sources*each, full, summaries)
	}
	if full >= sources {
		t.Errorf("%d full events for %d sources: the queue bound did not hold", full, sources)
	}
	many := 0
	for _, ev := range evs {
		if ev.AdditionalEventData["manySources"] == true {
			many++
			if ev.SourceIPAddress != "" {
				t.Errorf("overflow summary names source %q", ev.SourceIPAddress)
			}
		}
	}
	if many != 1 {
		t.Errorf("%d overflow summaries, want 1", many)
	}
}

type blockingAuditor struct {
	*memAuditor
	gate chan struct{}
}

func (a *blockingAuditor) Record(ctx context.Context, ev *audit.Event) error {
	<-a.gate
	return a.memAuditor.Record(ctx, ev)
}
