package admission

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

type memAuditor struct {
	mu  sync.Mutex
	evs []*audit.Event
}

func (m *memAuditor) Record(_ context.Context, ev *audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evs = append(m.evs, ev)
	return nil
}

// TestRecorderBurstAndCount: per source, code and name, the first Burst refusals of a
// window are the caller's to record in full (Count true) and the rest are counted into
// one summary per key, named after the requests it counts; the counts add up.
func TestRecorderBurstAndCount(t *testing.T) {
	a := &memAuditor{}
	f := NewRecorder(RecorderConfig{
		Auditor: a,
		Event: func(code string, src netip.Addr, id string) *audit.Event {
			return &audit.Event{EventName: "Accept", ErrorCode: code, SourceIPAddress: src.String(), RequestID: id}
		},
		Window: time.Hour,
		Burst:  3,
	})
	src := netip.MustParseAddrPort("10.0.0.1:5000")
	full := map[string]int{}
	for i := 0; i < 50; i++ {
		for _, name := range []string{"Connect", "Forward"} {
			if f.Count(Refusal{Code: "Denied", Name: name, Src: src, Detail: map[string]any{"reason": "no"}}) {
				full[name]++
			}
		}
	}
	if full["Connect"] != 3 || full["Forward"] != 3 {
		t.Fatalf("recorded in full: %v, want 3 of each name", full)
	}
	f.Stop(context.Background())
	counted := map[string]int{}
	for _, ev := range a.evs {
		if ev.AdditionalEventData["summary"] != true {
			t.Fatalf("a full event was recorded by the recorder: %+v", ev)
		}
		counted[ev.EventName] += ev.AdditionalEventData["count"].(int)
	}
	if len(a.evs) != 2 || counted["Connect"] != 47 || counted["Forward"] != 47 {
		t.Fatalf("%d summaries counting %v, want 2 counting 47 each", len(a.evs), counted)
	}
	// After Stop every refusal is the caller's to record.
	if !f.Count(Refusal{Code: "Denied", Src: src}) {
		t.Fatal("a refusal after Stop was counted into a summary no one will write")
	}
}
