package endpoint

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// refusal is one refused connection.
type refusal struct {
	code      string
	src       netip.AddrPort
	localPort uint16
	detail    map[string]any
}

type refKey struct {
	code string
	src  netip.Addr // invalid: the shared bucket of sources past the tracking bound
}

// refEntry counts the refusals of one key in the current window that were not recorded
// one by one.
type refEntry struct {
	start       time.Time // window start
	count       int
	first, last time.Time
	localPort   uint16
	reason      any
}

// refusals records connection refusals without letting a flood of them flood the audit
// log or block the accept loop, and without losing any: see the package comment.
type refusals struct {
	e   *Endpoint
	lim limits

	mu      sync.Mutex
	m       map[refKey]*refEntry
	started bool
	stopped bool
	q       chan *audit.Event

	quit       chan struct{}
	workerDone chan struct{}
	flushDone  chan struct{}
}

func newRefusals(e *Endpoint, lim limits) *refusals {
	return &refusals{
		e: e, lim: lim,
		m:          map[refKey]*refEntry{},
		q:          make(chan *audit.Event, 256),
		quit:       make(chan struct{}),
		workerDone: make(chan struct{}),
		flushDone:  make(chan struct{}),
	}
}

// start runs the recording worker and the window flusher, which stop owns.
func (f *refusals) start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.startLocked()
}

func (f *refusals) startLocked() {
	if f.started || f.stopped {
		return
	}
	f.started = true
	go f.worker()
	go f.flusher()
}

// note accounts for one refusal. It never blocks on the auditor.
func (f *refusals) note(r refusal) {
	if m := f.e.cfg.Metrics; m != nil {
		m.Connection(r.code)
	}
	now := f.e.now()
	f.mu.Lock()
	f.startLocked()
	if f.stopped {
		// After Shutdown (a straggling accept) there is no worker: record it here.
		f.mu.Unlock()
		f.record(f.fullEvent(r))
		return
	}
	k := refKey{r.code, r.src.Addr()}
	ent := f.m[k]
	if ent == nil && len(f.m) >= f.lim.maxRefusalSources {
		k.src = netip.Addr{}
		ent = f.m[k]
	}
	if ent == nil {
		f.m[k] = &refEntry{start: time.Now()} // windows run on the monotonic clock
		select {
		case f.q <- f.fullEvent(r):
			f.mu.Unlock()
			return
		default:
			ent = f.m[k] // the auditor is behind: count it into the summary instead
		}
	}
	if ent.count == 0 {
		ent.first = now
	}
	ent.count++
	ent.last, ent.localPort, ent.reason = now, r.localPort, r.detail["reason"]
	f.mu.Unlock()
}

func (f *refusals) fullEvent(r refusal) *audit.Event {
	ev := f.e.newEvent(eventConnect, r.code, r.src.Addr(), requestid.New())
	d := map[string]any{"localPort": r.localPort, "sourcePort": r.src.Port()}
	for k, v := range r.detail {
		d[k] = v
	}
	ev.AdditionalEventData = d
	f.e.log.Info("endpoint refused a connection", "error_code", r.code, "source_ip", ev.SourceIPAddress,
		"local_port", r.localPort, "reason", r.detail["reason"])
	return ev
}

func (f *refusals) summaryEvent(k refKey, ent *refEntry) *audit.Event {
	ev := f.e.newEvent(eventConnect, k.code, k.src, requestid.New())
	ev.AdditionalEventData = map[string]any{
		"summary":       true,
		"count":         ent.count,
		"firstSeen":     ent.first.UTC().Format(time.RFC3339Nano),
		"lastSeen":      ent.last.UTC().Format(time.RFC3339Nano),
		"windowSeconds": f.lim.refusalWindow.Seconds(),
		"localPort":     ent.localPort,
		"reason":        ent.reason,
	}
	if !k.src.IsValid() {
		ev.AdditionalEventData["manySources"] = true
	}
	f.e.log.Info("endpoint refused connections", "error_code", k.code, "source_ip", ev.SourceIPAddress, "count", ent.count)
	return ev
}

func (f *refusals) record(ev *audit.Event) {
	if err := f.e.cfg.Auditor.Record(context.Background(), ev); err != nil {
		f.e.log.Error("endpoint audit record failed", "event_name", ev.EventName, "error_code", ev.ErrorCode,
			"source_ip", ev.SourceIPAddress, "error", err)
	}
}

func (f *refusals) worker() {
	defer close(f.workerDone)
	for ev := range f.q {
		f.record(ev)
	}
}

func (f *refusals) flusher() {
	defer close(f.flushDone)
	t := time.NewTicker(max(f.lim.refusalWindow/4, 10*time.Millisecond))
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
func (f *refusals) flush(final bool) {
	now := time.Now()
	var evs []*audit.Event
	f.mu.Lock()
	for k, ent := range f.m {
		if !final && now.Sub(ent.start) < f.lim.refusalWindow {
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

// stop records what is queued and the pending summaries, waiting at most until ctx ends.
func (f *refusals) stop(ctx context.Context) {
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
