package perimeter

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/phantom-perimeter/phantom/internal/store"
)

// specEvents returns the spec events chain holds, in order.
func specEvents(t *testing.T, dir, chain string) []audit.Event {
	t.Helper()
	var out []audit.Event
	err := audit.ReadChain(dir, chain, 0, func(e audit.Entry) error {
		ev, err := e.Decode()
		if err == nil && ev.EventSource == config.EventSource {
			out = append(out, *ev)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSpecEvents: the spec a process starts with, each reload and each rejected file
// are audit events in every chain it writes: digests, the file, its owner and mode,
// the process. /readyz names the digest in force.
func TestSpecEvents(t *testing.T) {
	d := newAnchoredData(t, "")
	specPath := filepath.Join(t.TempDir(), "perimeter.yaml")
	if err := os.WriteFile(specPath, []byte(testSpec), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	tr := newSpecTracker("gateway", specPath, log)
	w, err := config.NewWatcher(t.Context(), config.WatchConfig{Path: specPath, OnReload: tr.watch, Signals: make(chan os.Signal)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tr.loaded(w.Current())
	first := digestOf(w.Current())
	logs, err := OpenChains(d.auditDir, []string{"gateway-1", "gateway-2"}, d.p, testAccount, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	tr.attach(logs)
	o := newOps("gateway")
	tr.serve(o)

	// A valid edit, then a broken one.
	edited := strings.Replace(testSpec, "region: us-east-1", "region: us-east-1 # edited", 1)
	if edited == testSpec {
		t.Fatal("the edit changed nothing")
	}
	os.WriteFile(specPath, []byte(edited), 0o600)
	os.Chmod(specPath, 0o400)
	if _, err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	second := digestOf(w.Current())
	os.Chmod(specPath, 0o600)
	os.WriteFile(specPath, []byte("account: nope\n"), 0o600)
	if _, err := w.Reload(); err == nil {
		t.Fatal("a broken spec loaded")
	}
	w.Reload() // the same broken file again: recorded once
	logs.CloseAll(log)

	for _, chain := range []string{"gateway-1", "gateway-2"} {
		evs := specEvents(t, d.auditDir, chain)
		if len(evs) != 3 {
			t.Fatalf("chain %s: %d spec events, want loaded, reloaded, rejected: %+v", chain, len(evs), evs)
		}
		if evs[0].EventName != config.EventSpecLoaded || evs[0].ResponseElements["digest"] != first {
			t.Errorf("first event %+v", evs[0])
		}
		r := evs[1]
		if r.EventName != config.EventSpecReloaded || r.ResponseElements["digest"] != second || r.ResponseElements["previousDigest"] != first ||
			r.RequestParameters["file"] != specPath || r.RequestParameters["mode"] != "0400" || r.RequestParameters["owner"] == nil ||
			r.AdditionalEventData["process"] != "gateway" || r.RecipientAccountID != testAccount {
			t.Errorf("reload event %+v", r)
		}
		if evs[2].EventName != config.EventSpecRejected || evs[2].ErrorCode != "InvalidSpec" || evs[2].ResponseElements["digest"] != second {
			t.Errorf("rejected event %+v", evs[2])
		}
	}
	o.serving()
	if notes := tr.note(); len(notes) != 1 || !strings.Contains(notes[0], second) {
		t.Fatalf("readiness note %q, want the digest in force", notes)
	}
}

// TestSpecReplicasDisagree: replicas reporting different specs to one store are
// reported once the disagreement outlasts the reload interval: the replicas not holding
// the spec most hold are not ready (a tie: none is), the metric counts the others, and
// an audit event the detector turns into a finding is recorded once.
func TestSpecReplicasDisagree(t *testing.T) {
	d := newAnchoredData(t, "")
	st := d.p.Store
	log := slog.New(slog.DiscardHandler)
	replica := func(name, digest string) *specTracker {
		tr := newSpecTracker("gateway", "/etc/phantom/perimeter.yaml", log)
		tr.digest, tr.loadedAt, tr.account = digest, time.Now().Add(-time.Minute), testAccount
		logs, err := OpenChains(d.auditDir, []string{name}, d.p, testAccount, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logs.CloseAll(log) })
		tr.attach(logs)
		return tr
	}
	a, b := replica("gw-a", "sha256:aaaa"), replica("gw-b", "sha256:bbbb")
	ctx := context.Background()
	compare := func(trs ...*specTracker) {
		for range 2 { // each sees the others' latest report
			for _, tr := range trs {
				if err := tr.compare(ctx, st, time.Second, 2*time.Second); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	compare(a, b)
	if a.ready() == nil || b.ready() == nil {
		t.Fatal("two replicas with different specs: a tie, and both are ready")
	}
	c := replica("gw-c", "sha256:aaaa")
	compare(a, b, c)
	if a.ready() != nil || c.ready() != nil {
		t.Fatalf("the majority is not ready: %v %v", a.ready(), c.ready())
	}
	err := b.ready()
	if err == nil || !strings.Contains(err.Error(), "sha256:bbbb on 1 replica(s) including this one") {
		t.Fatalf("the odd replica: %v", err)
	}
	// A fresh disagreement (just loaded) is not reported yet.
	b.mu.Lock()
	b.loadedAt = time.Now()
	b.mu.Unlock()
	compare(a, b, c)
	if b.ready() != nil {
		t.Fatal("a disagreement younger than the reload interval was reported")
	}

	// The mismatch event, once per replica, and the detector's finding.
	var evs []audit.Event
	for _, chain := range []string{"gw-a", "gw-b", "gw-c"} {
		for _, ev := range specEvents(t, d.auditDir, chain) {
			if ev.EventName == config.EventSpecMismatch {
				evs = append(evs, ev)
			}
		}
	}
	if len(evs) != 3 {
		t.Fatalf("%d mismatch events, want one per replica", len(evs))
	}
	det, err := detect.New(detect.Config{Account: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(evs[0])
	var ev audit.Event
	json.Unmarshal(raw, &ev) // as the detector reads it from the chain
	fs := det.Observe(&ev)
	if len(fs) != 1 || fs[0].Type != detect.TypeSpecMismatch {
		t.Fatalf("findings %+v", fs)
	}
	rs, _ := st.ListSpecReplicas(ctx, time.Time{})
	if len(rs) != 3 {
		t.Fatalf("replicas in the store: %+v", rs)
	}
}

// TestDetectorReadiness: while the detector cannot read a chain (an edited record, no
// writer to continue it), /readyz is 503 naming the chain and the record; the damage is
// listed once it reads every chain again.
func TestDetectorReadiness(t *testing.T) {
	d := newAnchoredData(t, "")
	seg := filepath.Join(d.auditDir, "sts", "00000001.jsonl")
	data, _ := os.ReadFile(seg)
	os.WriteFile(seg, []byte(strings.Replace(string(data), "sts-ab", "sts-zz", 1)), 0o600)
	det, err := detect.New(detect.Config{Account: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	spec := &config.Spec{Account: testAccount, Region: "us-east-1"}
	responder, err := newResponder(func() *config.Spec { return spec }, d.p, nopRecorder{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	o := newOps("detector")
	c, err := newStreamDetector(d.auditDir, []string{DetectorChain}, det, responder, d.p.Store, o.detectorMetrics(), slog.New(slog.DiscardHandler), func() { o.serving() })
	if err != nil {
		t.Fatal(err)
	}
	serveDetector(o, c)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := o.ready()
		if err != nil && strings.Contains(err.Error(), "audit chains: not reading sts") && strings.Contains(err.Error(), "(record 2)") {
			t.Logf("/readyz: %v", err)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness %v, want the chain sts named", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nopRecorder audits nothing.
type nopRecorder struct{}

func (nopRecorder) Record(context.Context, *audit.Event) error { return nil }

// failingReplicas is a store whose spec replica table cannot be reached.
type failingReplicas struct{}

func (failingReplicas) PutSpecReplica(context.Context, store.SpecReplica) error {
	return errors.New("timeout: context deadline exceeded")
}
func (failingReplicas) ListSpecReplicas(context.Context, time.Time) ([]store.SpecReplica, error) {
	return nil, errors.New("unreachable")
}

// levelLog records the level and message of each log line.
type levelLog struct {
	mu    sync.Mutex
	lines []string
}

func (h *levelLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *levelLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.lines = append(h.lines, r.Level.String()+" "+r.Message)
	h.mu.Unlock()
	return nil
}
func (h *levelLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *levelLog) WithGroup(string) slog.Handler      { return h }
func (h *levelLog) count(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, l := range h.lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// TestSpecCompareFailureEscalates: a round that cannot reach the store is a warning; it is
// an ERROR, once, when it has lasted three polls (the other replicas no longer count this
// one as live by then).
func TestSpecCompareFailureEscalates(t *testing.T) {
	logs := &levelLog{}
	tr := newSpecTracker("gateway", filepath.Join(t.TempDir(), "perimeter.yaml"), slog.New(logs))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	const poll = 20 * time.Millisecond
	go func() { tr.run(ctx, failingReplicas{}, poll, poll); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(5 * time.Second); logs.count("WARN cannot compare") == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no warning for a failed comparison")
		}
	}
	if n := logs.count("ERROR"); n != 0 {
		t.Fatalf("the first failed round logged %d ERRORs", n)
	}
	for deadline := time.Now().Add(5 * time.Second); logs.count("ERROR cannot compare") == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a failure lasting three polls was not an ERROR")
		}
	}
	time.Sleep(10 * poll)
	if w, e := logs.count("WARN"), logs.count("ERROR"); w != 1 || e != 1 {
		t.Fatalf("a lasting failure logged %d warnings and %d errors, want 1 and 1", w, e)
	}
}
