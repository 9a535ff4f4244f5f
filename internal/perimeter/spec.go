package perimeter

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/metrics"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// specTracker makes the perimeter spec evidence: every load, reload and rejected file
// of this process is an audit event in each chain it writes (who can say otherwise
// later, the file's owner and mode are on the record); the digest in force is in
// /readyz and phantom_spec_info; and the process reports its digest to the store and
// compares it with the other live replicas', so that replicas enforcing different
// specs for longer than a reload interval are reported: in readiness (the replicas not
// holding the spec most of them hold), a metric, and an audit event the detector turns
// into a Policy:IAMUser/PerimeterSpecMismatch finding.
type specTracker struct {
	process string // what the process runs: "up", "gateway", …
	path    string
	id      string // this replica: host, pid and a random suffix
	host    string
	log     *slog.Logger
	metrics *metrics.Spec // nil without an ops listener

	mu       sync.Mutex
	logs     *Chains        // nil until the chains are open
	pending  []*audit.Event // recorded before the chains were open
	digest   string
	loadedAt time.Time
	rejected string // digest of the last rejected file, recorded once
	account  string
	region   string
	kick     chan struct{} // a reload: report at once
	view     replicaView
}

// replicaView is what the last comparison with the other replicas found.
type replicaView struct {
	disagreeSince time.Time           // zero while they agree
	digests       map[string][]string // digest -> replica ids, when they disagree
	reported      bool                // the mismatch event was recorded
	mineOK        bool                // this replica holds the spec most hold
}

func newSpecTracker(process, path string, log *slog.Logger) *specTracker {
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	b := make([]byte, 4)
	rand.Read(b)
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return &specTracker{process: process, path: abs, host: host, log: log, kick: make(chan struct{}, 1),
		id: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))}
}

// digestOf names a spec's digest as events, metrics and replicas do.
func digestOf(s *config.Spec) string { return "sha256:" + hex.EncodeToString(s.Digest[:]) }

// Watch is the spec watcher's OnReload of a process: the log line, then the record.
func (t *specTracker) watch(s *config.Spec, changed bool, err error) {
	if err != nil {
		t.log.Error(t.process+": perimeter spec rejected; keeping the running one", "path", t.path, "error", err)
	} else if changed {
		t.log.Info(t.process+": perimeter spec reloaded", "path", t.path, "digest", digestOf(s))
	}
	t.onReload(s, changed, err)
}

// Serve exposes the spec on the ops listener: its metrics, the /readyz line naming it,
// and the readiness check of replica agreement.
func (t *specTracker) serve(o *ops) {
	if o == nil {
		return
	}
	t.mu.Lock()
	t.metrics = o.specMetrics()
	if t.digest != "" {
		t.metrics.Loaded(t.digest, t.loadedAt)
	}
	t.mu.Unlock()
	o.addCheck(readyCheck{"spec", t.ready})
	o.addNotes(t.note)
}

// reloadInterval is how long a spec change may take to reach every replica before
// replicas that disagree are reported: the watcher's resync and one poll of the store.
func reloadInterval(poll time.Duration) time.Duration { return config.DefaultResync + poll }

// Loaded records the spec the process starts with.
func (t *specTracker) loaded(s *config.Spec) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.account, t.region = s.Account, s.Region
	t.digest, t.loadedAt = digestOf(s), time.Now()
	t.metrics.Loaded(t.digest, t.loadedAt)
	t.recordLocked(t.event(config.EventSpecLoaded, "", t.digest, nil))
}

// onReload is the watcher's OnReload: a changed spec or a rejected file is recorded.
func (t *specTracker) onReload(s *config.Spec, changed bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err != nil:
		d := fileDigest(t.path)
		if d == "" || d == t.rejected {
			return // unreadable (logged by the watcher), or this file was recorded already
		}
		t.rejected = d
		t.recordLocked(t.event(config.EventSpecRejected, t.digest, d, err))
	case changed:
		old := t.digest
		t.digest, t.loadedAt, t.rejected = digestOf(s), time.Now(), ""
		t.metrics.Loaded(t.digest, t.loadedAt)
		t.recordLocked(t.event(config.EventSpecReloaded, old, t.digest, nil))
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
}

// fileDigest is the digest of the file at path now, or "".
func fileDigest(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return digestOf(&config.Spec{Digest: sha256.Sum256(data)})
}

// event is the audit event of a load (name), from digest old to digest new.
func (t *specTracker) event(name, old, digest string, rejected error) *audit.Event {
	params := map[string]any{"file": t.path}
	if fi, err := os.Stat(t.path); err == nil {
		params["mode"] = fmt.Sprintf("%#o", fi.Mode().Perm())
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner := strconv.FormatUint(uint64(st.Uid), 10)
			if u, err := user.LookupId(owner); err == nil {
				owner += " (" + u.Username + ")"
			}
			params["owner"] = owner
		}
		params["modified"] = fi.ModTime().UTC().Format(time.RFC3339Nano)
	}
	resp := map[string]any{"digest": digest}
	if old != "" {
		resp["previousDigest"] = old
	}
	ev := &audit.Event{
		EventSource:        config.EventSource,
		EventName:          name,
		EventType:          "AwsServiceEvent",
		AWSRegion:          t.region,
		RequestParameters:  params,
		ResponseElements:   resp,
		RecipientAccountID: t.account,
		EventCategory:      "Management",
		ManagementEvent:    true,
		AdditionalEventData: map[string]any{
			"process": t.process, "replica": t.id, "host": t.host, "pid": os.Getpid(),
		},
	}
	if rejected != nil {
		ev.ErrorCode, ev.ErrorMessage = "InvalidSpec", truncateMessage(rejected.Error())
		ev.ResponseElements = map[string]any{"digest": old, "rejectedDigest": digest}
	}
	return ev
}

func truncateMessage(s string) string {
	if len(s) > 1024 {
		return s[:1024] + "…"
	}
	return s
}

// Attach makes the events go to logs' chains, starting with those recorded before.
func (t *specTracker) attach(logs *Chains) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.logs = logs
	pending := t.pending
	t.pending = nil
	for _, ev := range pending {
		t.recordLocked(ev)
	}
}

// recordLocked records ev in every chain of the process (each decision a chain holds
// is then next to the spec it was made under), or keeps it until attach.
func (t *specTracker) recordLocked(ev *audit.Event) {
	if t.logs == nil {
		t.pending = append(t.pending, ev)
		return
	}
	for _, c := range t.logs.names() {
		e := *ev
		if err := t.logs.Get(c).Record(context.Background(), &e); err != nil {
			t.log.Error("spec event not audited", "chain", c, "event", ev.EventName, "error", err)
		}
	}
}

// note is the /readyz line naming the spec in force.
func (t *specTracker) note() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return []string{fmt.Sprintf("spec %s (%s, loaded %s)", t.digest, t.path, t.loadedAt.UTC().Format(time.RFC3339))}
}

// ready fails while live replicas disagree and this one does not hold the spec most of
// them hold (a tie fails every one of them: no replica's spec wins by default).
func (t *specTracker) ready() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.view
	if v.disagreeSince.IsZero() || v.mineOK {
		return nil
	}
	return fmt.Errorf("replicas have enforced different specs since %s: %s", v.disagreeSince.UTC().Format(time.RFC3339), describeDigests(v.digests, t.digest))
}

func describeDigests(digests map[string][]string, mine string) string {
	keys := slices.Sorted(maps.Keys(digests))
	parts := make([]string, 0, len(keys))
	for _, d := range keys {
		who := fmt.Sprintf("%d replica(s)", len(digests[d]))
		if d == mine {
			who += " including this one"
		}
		parts = append(parts, fmt.Sprintf("%s on %s", d, who))
	}
	return strings.Join(parts, "; ")
}

// specReplicas is what the tracker needs of the store.
type specReplicas interface {
	PutSpecReplica(ctx context.Context, r store.SpecReplica) error
	ListSpecReplicas(ctx context.Context, since time.Time) ([]store.SpecReplica, error)
}

// Run reports this replica's spec to st every poll (and at once after a reload) and
// compares it with the live replicas' (those that reported within three polls). A
// disagreement counts once it has lasted longer than interval, a reload interval: the
// file watcher's resync plus a poll, the time a change takes to reach every replica.
func (t *specTracker) run(ctx context.Context, st specReplicas, poll, interval time.Duration) {
	tick := time.NewTicker(poll)
	defer tick.Stop()
	// One slow round under load is a warning; it is an error once it has lasted three
	// polls, when the other replicas stop counting this one as live.
	var failingSince time.Time
	errLogged := false
	for {
		err := t.compare(ctx, st, poll, interval)
		switch {
		case err != nil && ctx.Err() == nil && failingSince.IsZero():
			t.log.Warn("cannot compare the spec with the other replicas; retrying", "error", err)
			failingSince = time.Now()
		case err != nil && ctx.Err() == nil && !errLogged && time.Since(failingSince) >= 3*poll:
			t.log.Error("cannot compare the spec with the other replicas", "since", failingSince, "error", err)
			errLogged = true
		case err == nil && !failingSince.IsZero():
			t.log.Info("comparing the spec with the other replicas again")
			failingSince, errLogged = time.Time{}, false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-t.kick:
		}
	}
}

func (t *specTracker) compare(ctx context.Context, st specReplicas, poll, interval time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, max(poll, time.Second))
	defer cancel()
	now := time.Now()
	t.mu.Lock()
	self := store.SpecReplica{ID: t.id, Process: t.process, Host: t.host, Digest: t.digest, File: t.path, LoadedAt: t.loadedAt, SeenAt: now}
	t.mu.Unlock()
	if err := st.PutSpecReplica(ctx, self); err != nil {
		return err
	}
	reps, err := st.ListSpecReplicas(ctx, now.Add(-3*poll))
	if err != nil {
		return err
	}
	digests := map[string][]string{}
	var since time.Time
	for _, r := range reps {
		digests[r.Digest] = append(digests[r.Digest], r.ID)
		if r.LoadedAt.After(since) {
			since = r.LoadedAt
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(digests) <= 1 || now.Sub(since) <= interval {
		if !t.view.disagreeSince.IsZero() {
			t.log.Info("the replicas agree on the spec again", "digest", t.digest)
		}
		t.view = replicaView{}
		t.metrics.Disagreeing(0)
		return nil
	}
	// The spec most replicas hold, if one does.
	best, n, tie := "", 0, false
	for d, ids := range digests {
		switch {
		case len(ids) > n:
			best, n, tie = d, len(ids), false
		case len(ids) == n:
			tie = true
		}
	}
	others := 0
	for d, ids := range digests {
		if d != t.digest {
			others += len(ids)
		}
	}
	reported := t.view.reported
	t.view = replicaView{disagreeSince: since, digests: digests, reported: true, mineOK: !tie && best == t.digest}
	t.metrics.Disagreeing(others)
	if !reported {
		t.log.Error("replicas enforce different specs", "since", since, "replicas", describeDigests(digests, t.digest))
		info := map[string]any{}
		for d, ids := range digests {
			info[d] = slices.Clone(ids)
		}
		ev := t.event(config.EventSpecMismatch, "", t.digest, nil)
		ev.AdditionalEventData["digests"] = info
		ev.AdditionalEventData["since"] = since.UTC().Format(time.RFC3339Nano)
		t.recordLocked(ev)
	}
	return nil
}
