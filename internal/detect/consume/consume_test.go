package consume_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/consume"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// counter is a detector that counts what it observes: events observed since the last
// commit are pending, and move to committed when the sink commits them. An event
// committed twice, or never, is what exactly-once consumption must rule out. Every
// 100th event of a chain raises (or repeats) the chain's finding, so commits carry
// findings too.
type counter struct {
	mu        sync.Mutex
	pending   []string
	committed map[string]int
	findings  map[string]*detect.Finding
	// damage is what the consumer reported as damage (AuditChainDamaged events): none
	// is expected where nobody tampered (noDamage).
	damage []string
}

// noDamage fails t if the consumer took anything for damage.
func (c *counter) noDamage(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.damage) > 0 {
		t.Fatalf("damage reported where nobody tampered: %q", c.damage)
	}
}

func newCounter() *counter {
	return &counter{committed: map[string]int{}, findings: map[string]*detect.Finding{}}
}

func (c *counter) Observe(ev *audit.Event) []detect.Finding {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := audit.DamageOf(ev); ok {
		c.damage = append(c.damage, d.Error())
		return nil
	}
	c.pending = append(c.pending, ev.EventID)
	var n int
	chain, _, _ := strings.Cut(ev.EventID, "/")
	fmt.Sscanf(ev.EventID[len(chain)+1:], "%d", &n)
	if n%100 != 0 {
		return nil
	}
	id := findingID(chain)
	f := c.findings[id]
	if f == nil {
		f = &detect.Finding{SchemaVersion: "2.0", ID: id, Type: "Test:IAMUser/Counted",
			Severity: 2, CreatedAt: ev.EventTime, Resource: detect.Resource{ResourceType: "AccessKey"}}
		c.findings[id] = f
	}
	f.Service.Count++
	f.UpdatedAt = time.Now()
	return []detect.Finding{*f}
}

func (c *counter) Restore(fs []detect.Finding) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range fs {
		if c.findings[f.ID] == nil {
			cp := f
			c.findings[f.ID] = &cp
		}
	}
}

func findingID(chain string) string { return "f" + strings.ReplaceAll(chain, "-", "") }

// commit moves the pending observations to committed (called by the sink on success).
func (c *counter) commit() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range c.pending {
		c.committed[id]++
	}
	c.pending = c.pending[:0]
}

// discard forgets the pending observations and the findings: the process "died" (or
// stopped), and the next one starts with what the store restores.
func (c *counter) discard() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = c.pending[:0]
	c.findings = map[string]*detect.Finding{}
}

// sink wraps the responder: it tells the counter which observations were committed,
// and can be made to fail commits (a store gone away, a process about to die).
type sink struct {
	consume.Sink
	c        *counter
	mu       sync.Mutex
	failFrom int // commits from this one on fail (0: none)
	commits  int
}

var errInjected = errors.New("injected store failure")

func (s *sink) Commit(ctx context.Context, consumer string, adv []store.CursorAdvance, fs []detect.Finding) error {
	s.mu.Lock()
	s.commits++
	fail := s.failFrom > 0 && s.commits >= s.failFrom
	s.mu.Unlock()
	if fail {
		return errInjected
	}
	if err := s.Sink.Commit(ctx, consumer, adv, fs); err != nil {
		return err
	}
	s.c.commit()
	return nil
}

type nopAuditor struct{}

func (nopAuditor) Record(context.Context, *audit.Event) error { return nil }

func openSQLite(t *testing.T) store.Store { return openSQLiteB(t) }

func openSQLiteB(t testing.TB) store.Store {
	t.Helper()
	dir := t.TempDir()
	mk, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), store.OpenConfig{DataDir: dir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newResponder(t testing.TB, st store.Store) *respond.Responder {
	t.Helper()
	spec := &config.Spec{Account: "123456789012", Region: "eu-west-1"}
	r, err := respond.New(respond.Config{Spec: func() *config.Spec { return spec }, Store: st, Auditor: nopAuditor{}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// writer appends numbered events to one chain.
type writer struct {
	l     *audit.Log
	chain string
	n     int
}

func newWriter(t testing.TB, dir, chain string) *writer {
	t.Helper()
	signer, err := keys.DeriveEd25519(bytes.Repeat([]byte{7}, 32), keys.AuditLegacy)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: dir, Chain: chain, Signer: signer, SegmentBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &writer{l: l, chain: chain}
}

func (w *writer) write(t testing.TB, n int) {
	t.Helper()
	for range n {
		w.n++
		ev := &audit.Event{EventVersion: audit.EventVersion, EventID: fmt.Sprintf("%s/%d", w.chain, w.n), EventTime: time.Now().UTC(),
			EventSource: "execute-api.amazonaws.com", EventName: "Invoke", AWSRegion: "eu-west-1", SourceIPAddress: "192.0.2.1"}
		if err := w.l.Record(context.Background(), ev); err != nil {
			t.Error(err)
			return
		}
	}
}

func testConfig(dir string, det consume.Detector, s consume.Sink) consume.Config {
	return consume.Config{Dir: dir, Detector: det, Sink: s, Exclude: []string{"detector"},
		Poll: 5 * time.Millisecond, Discover: 20 * time.Millisecond, BatchRecords: 50, BatchDelay: 20 * time.Millisecond,
		RetryFor: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
}

// start runs a consumer until the returned stop is called; stop returns Run's error.
func start(t *testing.T, cfg consume.Config) (*consume.Consumer, func() error) {
	t.Helper()
	c, err := consume.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if det, ok := cfg.Detector.(*counter); ok {
		t.Cleanup(func() { det.noDamage(t) }) // after the consumer stopped
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { stop() })
	return c, stop
}

// waitEvents waits until the consumer has committed at least n events of chain.
func waitEvents(t *testing.T, c *consume.Consumer, chain string, n int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, cur := range c.Cursors() {
			if cur.Chain == chain && cur.Events >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chain %s: fewer than %d events committed within %s: %+v", chain, n, within, c.Cursors())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestExactlyOnce: two chains written concurrently while three consumers run one after
// the other on the same store: the first stopped mid-stream (SIGTERM: it commits what
// it read), the second dying mid-stream (its commits fail from some point on, as if the
// process were killed: what it read since its last commit is lost with it), the third
// reading to the end. Every event is committed exactly once, and each chain's cursor
// counts exactly its records.
func TestExactlyOnce(t *testing.T) {
	exactlyOnce(t, openSQLite(t))
}

func exactlyOnce(t *testing.T, st store.Store) {
	dir := t.TempDir()
	const perChain = 3000
	chains := []string{"gateway-a", "gateway-b"}
	writers := make([]*writer, len(chains))
	for i, c := range chains {
		writers[i] = newWriter(t, dir, c)
	}
	newWriter(t, dir, "detector").write(t, 10) // the consumer's own chain: never read
	det := newCounter()
	resp := newResponder(t, st)
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perChain / 100 {
				w.write(t, 100)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	// 1: stopped mid-stream.
	c1, stop1 := start(t, testConfig(dir, det, &sink{Sink: resp, c: det}))
	waitEvents(t, c1, "gateway-a", 500, 10*time.Second)
	if err := stop1(); err != nil {
		t.Fatalf("first consumer: %v", err)
	}
	det.discard()

	// 2: dies mid-stream.
	s2 := &sink{Sink: resp, c: det, failFrom: 5}
	_, stop2 := start(t, testConfig(dir, det, s2))
	deadline := time.Now().Add(10 * time.Second)
	for {
		s2.mu.Lock()
		n := s2.commits
		s2.mu.Unlock()
		if n >= 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second consumer made no commit attempts")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := stop2(); !errors.Is(err, errInjected) {
		t.Fatalf("second consumer: %v, want the injected failure", err)
	}
	det.discard()

	// 3: to the end.
	wg.Wait()
	c3, stop3 := start(t, testConfig(dir, det, &sink{Sink: resp, c: det}))
	for _, c := range chains {
		waitEvents(t, c3, c, perChain, 20*time.Second)
	}
	if err := stop3(); err != nil {
		t.Fatalf("third consumer: %v", err)
	}

	cursors, err := st.ListAuditCursors(t.Context(), consume.DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if len(cursors) != len(chains) {
		t.Fatalf("cursors %+v, want one per chain and none for the consumer's own", cursors)
	}
	for _, cur := range cursors {
		if cur.Events != perChain || cur.Seq != perChain {
			t.Errorf("chain %s: cursor at seq %d with %d events, want %d and %d", cur.Chain, cur.Seq, cur.Events, perChain, perChain)
		}
	}
	det.mu.Lock()
	defer det.mu.Unlock()
	for _, c := range chains {
		for i := 1; i <= perChain; i++ {
			if n := det.committed[fmt.Sprintf("%s/%d", c, i)]; n != 1 {
				t.Fatalf("event %s/%d committed %d times, want exactly once", c, i, n)
			}
		}
	}
	if len(det.committed) != len(chains)*perChain {
		t.Fatalf("%d events committed, want %d (the consumer's own chain read?)", len(det.committed), len(chains)*perChain)
	}

	// The findings carry the count of every 100th event, restored across restarts.
	for _, c := range chains {
		rec, err := st.GetFinding(t.Context(), findingID(c))
		if err != nil {
			t.Fatal(err)
		}
		var f struct{ Service struct{ Count int } }
		if err := json.Unmarshal(rec.Document, &f); err != nil {
			t.Fatal(err)
		}
		if f.Service.Count != perChain/100 {
			t.Errorf("chain %s finding count %d, want %d", c, f.Service.Count, perChain/100)
		}
	}
}

// TestConflictStops: a second consumer on the same store makes one of the two fail
// with store.ErrConflict instead of counting events twice.
func TestConflictStops(t *testing.T) {
	conflictStops(t, openSQLite(t))
}

func conflictStops(t *testing.T, st store.Store) {
	dir := t.TempDir()
	w := newWriter(t, dir, "gateway")
	w.write(t, 100)
	resp := newResponder(t, st)
	c1, stop1 := start(t, testConfig(dir, newCounter(), resp))
	waitEvents(t, c1, "gateway", 100, 10*time.Second)
	cfg2 := testConfig(dir, newCounter(), resp)
	ready := make(chan struct{})
	cfg2.Ready = func() { close(ready) }
	_, stop2 := start(t, cfg2)
	<-ready
	// Both now follow from seq 100: the next records are committed by one of them only.
	for range 20 {
		w.write(t, 50)
		time.Sleep(10 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs, _ := st.ListAuditCursors(t.Context(), consume.DefaultConsumer)
		if len(cs) == 1 && cs[0].Seq == 1100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursors %+v: the surviving consumer did not reach 1100", cs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	errs := []error{stop1(), stop2()}
	conflicts := 0
	for _, err := range errs {
		if errors.Is(err, store.ErrConflict) {
			conflicts++
			if !strings.Contains(err.Error(), "two detectors") {
				t.Errorf("conflict error %q does not say what is wrong", err)
			}
		} else if err != nil {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if conflicts != 1 {
		t.Fatalf("errors %v: want exactly one consumer stopped by a conflict", errs)
	}
	cs, err := st.ListAuditCursors(t.Context(), consume.DefaultConsumer)
	if err != nil || len(cs) != 1 || cs[0].Events != 1100 || cs[0].Seq != 1100 {
		t.Fatalf("cursors %+v, %v: want gateway at 1100 with 1100 events", cs, err)
	}
}

// TestNewChainPickedUp: a replica started after the consumer is followed from its first
// record.
func TestNewChainPickedUp(t *testing.T) {
	st := openSQLite(t)
	dir := t.TempDir()
	newWriter(t, dir, "gateway").write(t, 10)
	c, _ := start(t, testConfig(dir, newCounter(), newResponder(t, st)))
	waitEvents(t, c, "gateway", 10, 10*time.Second)
	late := newWriter(t, dir, "gateway-2")
	late.write(t, 250)
	waitEvents(t, c, "gateway-2", 250, 10*time.Second)
	for _, cur := range c.Cursors() {
		if cur.Chain == "gateway-2" && (cur.Events != 250 || cur.Seq != 250) {
			t.Fatalf("late chain cursor %+v", cur)
		}
	}
}

// TestEditedRecordDoesNotStop: a record edited in place no longer stops the consumer:
// the damage is a finding naming the chain, the records before it are committed, nothing
// after it is skipped to while the chain is not continued (it is unread, and says why),
// the other chains are read on, and a restart does the same without blocking.
func TestEditedRecordDoesNotStop(t *testing.T) {
	st := openSQLite(t)
	dir := t.TempDir()
	w := newWriter(t, dir, "gateway-x")
	w.write(t, 12) // one segment: the chain does not continue after the damage
	if _, err := os.Stat(filepath.Join(dir, "gateway-x", "00000002.jsonl")); err == nil {
		t.Fatal("the chain has a second segment")
	}
	other := newWriter(t, dir, "sts")
	other.write(t, 5)
	seg := filepath.Join(dir, "gateway-x", "00000001.jsonl")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(b, []byte("\n"))
	lines[9] = bytes.Replace(lines[9], []byte("192.0.2.1"), []byte("192.0.2.9"), 1) // record 10
	if err := os.WriteFile(seg, bytes.Join(lines, []byte("\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	for run := range 2 {
		det := newTamperDetector(t)
		c, stop := start(t, testConfig(dir, det, &sink{Sink: newResponder(t, st), c: det.counter}))
		f := awaitTamperFinding(t, st, "gateway-x", findingLimit)
		if f.Severity < 7 {
			t.Fatalf("run %d: finding severity %.1f, want High", run, f.Severity)
		}
		other.write(t, 100)
		waitEvents(t, c, "sts", int64(5+100*(run+1)), 10*time.Second)
		if u := c.Unread(); len(u) != 1 || u[0].Chain != "gateway-x" || !strings.Contains(u[0].Reason, "(record 10)") {
			t.Fatalf("run %d: unread %+v, want gateway-x naming record 10", run, u)
		}
		if err := stop(); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		cs, _ := st.ListAuditCursors(t.Context(), consume.DefaultConsumer)
		for _, cur := range cs {
			if cur.Chain == "gateway-x" && (cur.Seq != 9 || cur.Events != 9) {
				t.Fatalf("run %d: cursor %+v, want at the record before the edited one", run, cur)
			}
		}
	}
}
