package admission

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// Auditor records one audit event.
type Auditor interface {
	Record(ctx context.Context, ev *audit.Event) error
}

// Refusal is one refused connection (or request).
type Refusal struct {
	Code      string // the audit errorCode
	Src       netip.AddrPort
	LocalPort uint16
	Detail    map[string]any // additionalEventData; "reason" is what the summaries keep
	// Name, when set, is the eventName of the refusal's summary, and refusals of
	// different names are counted apart; "" keeps the name RecorderConfig.Event gives.
	Name string
}

// RecorderConfig configures a Recorder. Auditor and Event are required.
type RecorderConfig struct {
	Auditor Auditor
	// Event returns a new event of the component's shape for a refusal of code from src
	// (invalid: many sources) with request id id; the recorder fills additionalEventData.
	Event func(code string, src netip.Addr, id string) *audit.Event
	// Observe, when set, is told every refusal (metrics).
	Observe func(code string)
	// Window is the aggregation window (a minute when zero); MaxSources bounds the
	// sources tracked in one (4096 when zero); Burst is how many refusals of one source
	// and code are recorded in full in a window before the rest are counted (1 when
	// zero).
	Window     time.Duration
	MaxSources int
	Burst      int
	Logger     *slog.Logger     // nil: slog.Default()
	Now        func() time.Time // nil: time.Now
}

type refKey struct {
	code, name string
	src        netip.Addr // invalid: the shared bucket of sources past the tracking bound
}

// refEntry counts the refusals of one key in the current window that were not recorded
// one by one.
type refEntry struct {
	start       time.Time // window start
	full        int       // recorded in full this window
	count       int
	first, last time.Time
	localPort   uint16
	reason      any
}

// Recorder records connection refusals without letting a flood of them flood the audit
// log or block the accept loop, and without losing any: the first refusal (the first
// Burst) of a source for an error code in a window is recorded at once, in full; the rest
// of that window are counted and recorded as one summary event (additionalEventData.summary = true, count,
// firstSeen, lastSeen). Past MaxSources distinct sources in a window, new sources share
// one summary with an empty sourceIPAddress. The count of refusals in the events
// therefore always equals the number of refused connections.
type Recorder struct {
	cfg RecorderConfig

	mu      sync.Mutex
	m       map[refKey]*refEntry
	started bool
	stopped bool
	q       chan *audit.Event

	quit       chan struct{}
	workerDone chan struct{}
	flushDone  chan struct{}
}

// NewRecorder returns a recorder; it starts its goroutines with the first refusal (or
// Start) and Stop ends them.
func NewRecorder(cfg RecorderConfig) *Recorder {
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.MaxSources <= 0 {
		cfg.MaxSources = 4096
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Recorder{
		cfg:        cfg,
		m:          map[refKey]*refEntry{},
		q:          make(chan *audit.Event, 256),
		quit:       make(chan struct{}),
		workerDone: make(chan struct{}),
		flushDone:  make(chan struct{}),
	}
}

// Start runs the recording worker and the window flusher, which Stop owns.
func (f *Recorder) Start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.startLocked()
}

func (f *Recorder) startLocked() {
	if f.started || f.stopped {
		return
	}
	f.started = true
	go f.worker()
	go f.flusher()
}

// Note accounts for one refusal. It never blocks on the auditor.
func (f *Recorder) Note(r Refusal) {
	if f.cfg.Observe != nil {
		f.cfg.Observe(r.Code)
	}
	switch f.take(r, true) {
	case takeQueued:
	case takeStopped:
		// After Stop (a straggling accept) there is no worker: record it here.
		f.record(f.fullEvent(r))
	}
}

// Count accounts for one refusal whose full event the caller records itself, at once:
// it reports true when the caller is to record it (among the first Burst of its source,
// code and name in the window, or any after Stop), false when it was counted into the window's
// summary instead. For a component that answers after the record is written, so an
// audit failure can fail the answer closed.
func (f *Recorder) Count(r Refusal) bool {
	if f.cfg.Observe != nil {
		f.cfg.Observe(r.Code)
	}
	return f.take(r, false) != takeCounted
}

type takeResult int

const (
	takeCounted takeResult = iota // counted into the summary
	takeQueued                    // the full event is queued for the worker
	takeFirst                     // the first of its window: the caller records it
	takeStopped                   // after Stop: the caller records it
)

func (f *Recorder) take(r Refusal, queue bool) takeResult {
	now := f.cfg.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.startLocked()
	if f.stopped {
		return takeStopped
	}
	k := refKey{code: r.Code, name: r.Name, src: r.Src.Addr()}
	ent := f.m[k]
	if ent == nil && len(f.m) >= f.cfg.MaxSources {
		k.src = netip.Addr{}
		ent = f.m[k]
	}
	if ent == nil {
		ent = &refEntry{start: time.Now()} // windows run on the monotonic clock
		f.m[k] = ent
	}
	if ent.full < f.cfg.Burst {
		if !queue {
			ent.full++
			return takeFirst
		}
		select {
		case f.q <- f.fullEvent(r):
			ent.full++
			return takeQueued
		default:
			// The auditor is behind: count it into the summary instead.
		}
	}
	if ent.count == 0 {
		ent.first = now
	}
	ent.count++
	ent.last, ent.localPort, ent.reason = now, r.LocalPort, r.Detail["reason"]
	return takeCounted
}

func (f *Recorder) fullEvent(r Refusal) *audit.Event {
	ev := f.cfg.Event(r.Code, r.Src.Addr(), requestid.New())
	d := map[string]any{"localPort": r.LocalPort, "sourcePort": r.Src.Port()}
	for k, v := range r.Detail {
		d[k] = v
	}
	ev.AdditionalEventData = d
	f.cfg.Logger.Info("refused a connection", "error_code", r.Code, "source_ip", ev.SourceIPAddress,
		"local_port", r.LocalPort, "reason", r.Detail["reason"])
	return ev
}

func (f *Recorder) summaryEvent(k refKey, ent *refEntry) *audit.Event {
	ev := f.cfg.Event(k.code, k.src, requestid.New())
	if k.name != "" {
		ev.EventName = k.name
	}
	ev.AdditionalEventData = map[string]any{
		"summary":       true,
		"count":         ent.count,
		"firstSeen":     ent.first.UTC().Format(time.RFC3339Nano),
		"lastSeen":      ent.last.UTC().Format(time.RFC3339Nano),
		"windowSeconds": f.cfg.Window.Seconds(),
		"localPort":     ent.localPort,
		"reason":        ent.reason,
	}
	if !k.src.IsValid() {
		ev.AdditionalEventData["manySources"] = true
	}
	f.cfg.Logger.Info("refused connections", "error_code", k.code, "source_ip", ev.SourceIPAddress, "count", ent.count)
	return ev
}

func (f *Recorder) record(ev *audit.Event) {
	if err := f.cfg.Auditor.Record(context.Background(), ev); err != nil {
		f.cfg.Logger.Error("audit record of a refused connection failed", "event_name", ev.EventName, "error_code", ev.ErrorCode,
			"source_ip", ev.SourceIPAddress, "error", err)
	}
}

func (f *Recorder) worker() {
	defer close(f.workerDone)
	for ev := range f.q {
		f.record(ev)
	}
}

func (f *Recorder) flusher() {
	defer close(f.flushDone)
	t := time.NewTicker(max(f.cfg.Window/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			f.flush(false)
		case <-f.quit:
			f.flush(true)
			return
		}
	}
}

// flush records a summary for each window that has ended (all of them when final) and
// forgets it, so the next refusal of that source is recorded in full again.
func (f *Recorder) flush(final bool) {
	now := time.Now()
	var evs []*audit.Event
	f.mu.Lock()
	for k, ent := range f.m {
		if !final && now.Sub(ent.start) < f.cfg.Window {
			continue
		}
		if ent.count > 0 {
			evs = append(evs, f.summaryEvent(k, ent))
		}
		delete(f.m, k)
	}
	f.mu.Unlock()
	for _, ev := range evs {
		f.record(ev)
	}
}

// Stop records what is queued and the pending summaries, waiting at most until ctx ends.
func (f *Recorder) Stop(ctx context.Context) {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	f.stopped = true
	started := f.started
	if started {
		close(f.q)
		close(f.quit)
	}
	f.mu.Unlock()
	if !started {
		return
	}
	for _, done := range []chan struct{}{f.workerDone, f.flushDone} {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}
