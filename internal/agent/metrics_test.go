package agent

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeMetrics records the hook's calls.
type fakeMetrics struct {
	mu   sync.Mutex
	errs []error
}

func (f *fakeMetrics) Refresh(err error, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

func (f *fakeMetrics) take() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.errs
	f.errs = nil
	return e
}

// TestMetrics: every credentials call to STS is one Refresh, with its error when STS
// refused; Expiration is when the served credentials expire.
func TestMetrics(t *testing.T) {
	p := newPerimeter(t)
	m := &fakeMetrics{}
	a := startAgent(t, p, "service-a-1", func(c *Config) { c.Metrics = m })
	if got := m.take(); len(got) != 1 || got[0] != nil {
		t.Fatalf("refreshes %v: want one success", got)
	}
	c, ok := a.Credentials()
	if exp := a.Expiration(); !ok || !exp.Equal(c.Expiration) || !exp.After(time.Now()) {
		t.Errorf("expiration %v, credentials %v %v", exp, c.Expiration, ok)
	}
	if err := a.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := m.take(); len(got) != 1 || got[0] != nil {
		t.Fatalf("refreshes %v: want one success", got)
	}

	m2 := &fakeMetrics{}
	b, err := New(Config{STS: p.srv.URL, CABundle: p.bundle, JoinToken: p.token(t, "untrusted"), Logger: quietLog(), Metrics: m2})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err == nil {
		t.Fatal("started an untrusted node")
	}
	if got := m2.take(); len(got) != 1 || got[0] == nil {
		t.Errorf("refreshes %v: want one, failed (the node enrolls; its role does not trust it)", got)
	}
	if !b.Expiration().IsZero() {
		t.Errorf("expiration %v without credentials", b.Expiration())
	}
}
