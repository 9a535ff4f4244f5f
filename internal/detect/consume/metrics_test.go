package consume_test

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeMetrics sums the hook's calls.
type fakeMetrics struct {
	mu       sync.Mutex
	events   map[string]int64
	seq      map[string]uint64
	findings map[string]int
	commits  int
	failed   int
	damaged  map[string]int
	unread   map[string]bool
}

func newFakeMetrics() *fakeMetrics {
	return &fakeMetrics{events: map[string]int64{}, seq: map[string]uint64{}, findings: map[string]int{}, damaged: map[string]int{}, unread: map[string]bool{}}
}

func (f *fakeMetrics) Damaged(chain string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.damaged[chain]++
}

func (f *fakeMetrics) Unread(chain string, unread bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unread[chain] = unread
}

func (f *fakeMetrics) Committed(chain string, events int64, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events[chain] += events
	f.seq[chain] = seq
}

func (f *fakeMetrics) Finding(typ string, severity float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.findings[typ]++
}

func (f *fakeMetrics) Commit(_ time.Duration, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commits++
	if err != nil {
		f.failed++
	}
}

// TestMetrics: the events counted per chain are exactly the committed ones, the
// position is the last committed record, findings are counted as their batches commit,
// and a commit that fails is observed as failed.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	st := openSQLite(t)
	det := newCounter()
	m := newFakeMetrics()
	cfg := testConfig(dir, det, &sink{Sink: newResponder(t, st), c: det})
	cfg.Metrics = m
	a, b := newWriter(t, dir, "gateway-1"), newWriter(t, dir, "sts")
	a.write(t, 250)
	b.write(t, 40)
	c, stop := start(t, cfg)
	waitEvents(t, c, "gateway-1", 250, 10*time.Second)
	waitEvents(t, c, "sts", 40, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	if m.events["gateway-1"] != 250 || m.events["sts"] != 40 || m.seq["gateway-1"] != 250 || m.seq["sts"] != 40 {
		t.Errorf("events %v, positions %v: want 250 and 40", m.events, m.seq)
	}
	// Every 100th event of a chain raises or repeats its finding: 2 in gateway-1. Two
	// raised in one batch are one finding of that batch.
	if n := m.findings["Test:IAMUser/Counted"]; n < 1 || n > 2 {
		t.Errorf("findings %v: want 1 or 2 of Test:IAMUser/Counted", m.findings)
	}
	if m.commits == 0 || m.failed != 0 {
		t.Errorf("%d commits, %d failed", m.commits, m.failed)
	}
	m.mu.Unlock()

	// A store that fails every commit: observed as failed, nothing counted.
	m2 := newFakeMetrics()
	det2 := newCounter()
	cfg2 := testConfig(dir, det2, &sink{Sink: newResponder(t, openSQLite(t)), c: det2, failFrom: 1})
	cfg2.Metrics = m2
	_, stop2 := start(t, cfg2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		m2.mu.Lock()
		failed := m2.failed
		m2.mu.Unlock()
		if failed > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no failed commit observed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := stop2(); !errors.Is(err, errInjected) {
		t.Errorf("run: %v, want the injected failure", err)
	}
	m2.mu.Lock()
	defer m2.mu.Unlock()
	if len(m2.events) != 0 || len(m2.findings) != 0 {
		t.Errorf("a failed commit counted events %v, findings %v", m2.events, m2.findings)
	}
}
