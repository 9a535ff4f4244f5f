package storetest

import (
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// Change notifications (store.Notifier, optional): every write that moves Version wakes
// the subscribers.
func notifyCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"Subscribe", testSubscribe},
	}
}

func wakeWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func testSubscribe(t *testing.T, s Store) {
	n, ok := s.(store.Notifier)
	if !ok {
		t.Skipf("%T does not implement store.Notifier (optional)", s)
	}
	a, cancelA := n.Subscribe()
	defer cancelA()
	b, cancelB := n.Subscribe()
	defer cancelB()
	writes := []struct {
		name string
		fn   func() error
	}{
		{"PutRevocation", func() error { return s.PutRevocation(ctx(t), store.Revocation{Role: "r", Before: t0}) }},
		{"PutNode", func() error {
			return s.PutNode(ctx(t), store.Node{Name: "n", Role: "r", CertSerial: "01", EnrolledAt: t0})
		}},
		{"CommitAudit with a finding", func() error {
			return s.CommitAudit(ctx(t), "detector", []store.CursorAdvance{{Chain: "c", From: 0, To: 1, Hash: "h", Events: 1}},
				[]store.Finding{newFinding("sub", typeExfil, 8, roleARN, t0)})
		}},
	}
	for _, w := range writes {
		// A wakeup must mean the write is visible: drain, write, then wait.
		drain(a)
		drain(b)
		before := version(t, s)
		must(t, w.fn())
		for name, ch := range map[string]<-chan struct{}{"first": a, "second": b} {
			if !wakeWithin(ch, 2*time.Second) {
				t.Errorf("%s: %s subscriber not woken within 2 s", w.name, name)
			}
		}
		if v := version(t, s); v <= before {
			t.Errorf("%s: Version %d after the wakeup, want more than %d", w.name, v, before)
		}
	}
	// After cancel, nothing more is sent; the other subscriber still hears.
	cancelA()
	cancelA() // idempotent
	drain(a)
	drain(b)
	must(t, s.PutRevocation(ctx(t), store.Revocation{Role: "r", Before: t0.Add(time.Hour)}))
	if !wakeWithin(b, 2*time.Second) {
		t.Error("remaining subscriber not woken after another unsubscribed")
	}
	if wakeWithin(a, 200*time.Millisecond) {
		t.Error("cancelled subscriber still woken")
	}
}
