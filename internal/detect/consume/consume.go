// Package consume feeds the audit chains of every replica to the streaming detector
// exactly once. It follows each chain of an audit directory (and the chains that appear
// later) from where the last run left off, hands every record's event, in each chain's
// order, to one detector, and commits in batches: the cursors of every chain read in the
// batch advance in the same store transaction that stores the findings the batch
// produced. Only then are the findings' responses applied.
//
// It does not detect (package detect), store findings or respond (its Sink does:
// respond.Responder), or verify digests (audit.Verify): it relies on audit.Reader, which
// checks every record's hash and link and that a chain still continues from the record
// a cursor names, and stops on any failure instead of skipping a record.
//
// Choices:
//   - Exactly once: the store is the one place that says what was consumed. A batch's
//     events leave no trace in the store until its commit, so a consumer killed at any
//     point (kill -9 included) restarts from the last commit and sees every later record
//     once; the detector's in-memory state from an uncommitted batch dies with it.
//   - One consumer per store: every advance names the position it moves from, so a
//     second consumer on the same store makes one of them fail with store.ErrConflict,
//     and that one stops: two detectors on one store are a misconfiguration, and
//     counting an event twice is worse than stopping.
//   - A commit that fails for another reason (the store is unreachable) is retried with
//     the same batch, the chains not read meanwhile, for RetryFor; then Run fails and a
//     supervisor's restart resumes from the last commit.
//   - Responses run after the commit. A consumer killed between the two would lose them,
//     so Run first applies (idempotently, each action once per finding) the responses of
//     the stored findings updated shortly before the last commit.
//   - The detector's findings are restored from the store at start (detect.Detector.
//     Restore), so a repeat after a restart continues the stored count. Its baselines
//     are not: they learn again from the events that follow.
package consume

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// Defaults for Config.
const (
	DefaultConsumer     = "detector"
	DefaultPoll         = 50 * time.Millisecond
	DefaultDiscover     = time.Second
	DefaultBatchRecords = 500
	DefaultBatchDelay   = 100 * time.Millisecond
	DefaultRetryFor     = 30 * time.Second
	// maxUnreadable is how many discoveries in a row may find a chain that cannot be
	// opened (it is being created) before that is an error.
	maxUnreadable = 5
	// responseWindow is how long before the last commit a stored finding's responses
	// are applied again at start: well past one batch, with room for clock skew
	// between the consumer and the store.
	responseWindow = 5 * time.Minute
)

// Detector is what the consumer feeds (*detect.Detector).
type Detector interface {
	Observe(ev *audit.Event) []detect.Finding
	Restore(fs []detect.Finding)
}

// Sink stores what the consumer produces and acts on it (*respond.Responder).
type Sink interface {
	// Cursors returns the consumer's stored cursors.
	Cursors(ctx context.Context, consumer string) ([]store.AuditCursor, error)
	// Findings returns up to limit stored findings, most recently updated first.
	Findings(ctx context.Context, limit int) ([]detect.Finding, error)
	// Commit stores the findings and advances the cursors in one transaction; a
	// cursor that moved is store.ErrConflict and nothing is written.
	Commit(ctx context.Context, consumer string, adv []store.CursorAdvance, findings []detect.Finding) error
	// Apply applies a committed finding's responses, each action once per finding.
	Apply(ctx context.Context, f detect.Finding) error
}

// Metrics observes the consumer (internal/metrics). Labels stay bounded: chain names
// are the replicas' chains, typ a finding type of the detector's rules.
type Metrics interface {
	// Committed is called per chain after each successful commit: events taken from
	// chain in the batch, and the seq of the last one.
	Committed(chain string, events int64, seq uint64)
	// Finding is called for each finding of a committed batch (new, or repeated with
	// its count raised).
	Finding(typ string, severity float64)
	// Commit is called after each commit, retries included; err is nil when it held.
	Commit(d time.Duration, err error)
}

// Config configures New.
type Config struct {
	// Dir is the audit directory: one subdirectory per chain.
	Dir string
	// Consumer names the cursors in the store (DefaultConsumer).
	Consumer string
	// Exclude names chains never consumed: the consumer's own (its responses are
	// audited there) and any the caller leaves out.
	Exclude  []string
	Detector Detector
	Sink     Sink
	Logger   *slog.Logger
	// Poll is how often a chain at its end is read again (DefaultPoll); Discover how
	// often Dir is listed for new chains (DefaultDiscover).
	Poll     time.Duration
	Discover time.Duration
	// A batch is committed after BatchRecords records, or BatchDelay after its first
	// record, whichever comes first.
	BatchRecords int
	BatchDelay   time.Duration
	// RetryFor bounds retrying a commit that fails other than by conflict.
	RetryFor time.Duration
	// RestoreFindings is how many stored findings the detector gets back at start
	// (detect.DefaultMaxFindings; negative: none).
	RestoreFindings int
	// Ready, when set, is called once the cursors are loaded and the chains present at
	// start are being followed.
	Ready func()
	// Metrics, when set, observes commits, consumed events and findings.
	Metrics Metrics
}

// Consumer follows the chains of an audit directory. Build it with New, run it with Run
// (once).
type Consumer struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	committed map[string]store.AuditCursor // chain -> cursor as of the last commit
}

// New checks cfg and fills in the defaults.
func New(cfg Config) (*Consumer, error) {
	if cfg.Dir == "" {
		return nil, errors.New("consume: no audit directory")
	}
	if cfg.Detector == nil || cfg.Sink == nil {
		return nil, errors.New("consume: a detector and a sink are required")
	}
	if cfg.Consumer == "" {
		cfg.Consumer = DefaultConsumer
	}
	for _, c := range cfg.Exclude {
		if !audit.ValidChain(c) {
			return nil, fmt.Errorf("consume: excluded chain %q is not a chain name", c)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Discover <= 0 {
		cfg.Discover = DefaultDiscover
	}
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = DefaultBatchRecords
	}
	if cfg.BatchDelay <= 0 {
		cfg.BatchDelay = DefaultBatchDelay
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	if cfg.RestoreFindings == 0 {
		cfg.RestoreFindings = detect.DefaultMaxFindings
	}
	return &Consumer{cfg: cfg, log: cfg.Logger, committed: map[string]store.AuditCursor{}}, nil
}

// Cursors returns the cursors as of the last commit (or as loaded at start), by chain.
func (c *Consumer) Cursors() []store.AuditCursor {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]store.AuditCursor, 0, len(c.committed))
	for _, cur := range c.committed {
		out = append(out, cur)
	}
	slices.SortFunc(out, func(a, b store.AuditCursor) int { return strings.Compare(a.Chain, b.Chain) })
	return out
}

// record is one chain record on its way from a reader to the detector.
type record struct {
	chain string
	seq   uint64
	hash  string
	ev    *audit.Event
}

// pending is what a batch read from one chain: the cursor moves from from to to.
type pending struct {
	from, to uint64
	hash     string
	n        int64
}

// batch is what was observed since the last commit.
type batch struct {
	records  int
	chains   map[string]*pending
	findings []detect.Finding
	index    map[string]int // finding id -> position in findings (a repeat replaces it)
}

func newBatch() *batch {
	return &batch{chains: map[string]*pending{}, index: map[string]int{}}
}

func (b *batch) addFinding(f detect.Finding) {
	if i, ok := b.index[f.ID]; ok {
		b.findings[i] = f
		return
	}
	b.index[f.ID] = len(b.findings)
	b.findings = append(b.findings, f)
}

// Run consumes until ctx ends, then commits what it has consumed and returns nil; or
// until it cannot go on (a chain that fails verification, a cursor another consumer
// moved, a store that stays unreachable), and returns the error, having committed the
// records consumed before.
func (c *Consumer) Run(ctx context.Context) error {
	cursors, err := c.cfg.Sink.Cursors(ctx, c.cfg.Consumer)
	if err != nil {
		return fmt.Errorf("consume audit: load cursors: %w", err)
	}
	var last time.Time
	c.mu.Lock()
	for _, cur := range cursors {
		c.committed[cur.Chain] = cur
		if cur.UpdatedAt.After(last) {
			last = cur.UpdatedAt
		}
	}
	c.mu.Unlock()
	if err := c.restore(ctx, last); err != nil {
		return err
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	records := make(chan record, 4*c.cfg.BatchRecords)
	failed := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	following := map[string]bool{}
	unreadable := map[string]int{} // chain -> discoveries that could not open it
	discover := func() error {
		names, err := audit.Chains(c.cfg.Dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // no replica has written yet
		}
		if err != nil {
			return fmt.Errorf("consume audit: list chains: %w", err)
		}
		for _, name := range names {
			if following[name] || slices.Contains(c.cfg.Exclude, name) {
				continue
			}
			if err := c.follow(rctx, &wg, name, records, failed); err != nil {
				// A chain being created is listed before its first segment exists:
				// give it a few rounds.
				if unreadable[name]++; unreadable[name] < maxUnreadable {
					continue
				}
				return err
			}
			following[name] = true
		}
		return nil
	}
	if err := discover(); err != nil {
		return err
	}
	c.mu.Lock()
	for chain, cur := range c.committed {
		if !following[chain] && !slices.Contains(c.cfg.Exclude, chain) {
			c.log.Warn("detector: an audit chain with a cursor is not in the audit directory (yet)", "chain", chain, "seq", cur.Seq, "events", cur.Events)
		}
	}
	c.mu.Unlock()
	if c.cfg.Ready != nil {
		c.cfg.Ready()
	}

	disc := time.NewTicker(c.cfg.Discover)
	defer disc.Stop()
	flush := time.NewTimer(c.cfg.BatchDelay)
	flush.Stop()
	b := newBatch()
	commit := func(ctx context.Context) error {
		flush.Stop()
		if b.records == 0 {
			return nil
		}
		err := c.commit(ctx, b)
		b = newBatch()
		return err
	}
	for {
		select {
		case r := <-records:
			c.observe(b, r)
			if b.records == 1 {
				flush.Reset(c.cfg.BatchDelay)
			}
			if b.records >= c.cfg.BatchRecords {
				if err := commit(ctx); err != nil {
					return err
				}
			}
		case <-flush.C:
			if err := commit(ctx); err != nil {
				return err
			}
		case <-disc.C:
			if err := discover(); err != nil {
				return errors.Join(err, commit(ctx))
			}
		case err := <-failed:
			// Records before the failure were good: keep them.
			return errors.Join(err, commit(ctx))
		case <-ctx.Done():
			cancel()
			return commit(ctx) // one attempt: ctx is done
		}
	}
}

// restore gives the detector its stored findings back and applies the responses of
// those updated near the last commit (a run killed between a commit and its responses
// left them undone; applying is idempotent).
func (c *Consumer) restore(ctx context.Context, last time.Time) error {
	if c.cfg.RestoreFindings < 0 {
		return nil
	}
	fs, err := c.cfg.Sink.Findings(ctx, c.cfg.RestoreFindings)
	if err != nil {
		return fmt.Errorf("consume audit: restore findings: %w", err)
	}
	c.cfg.Detector.Restore(fs)
	if last.IsZero() {
		return nil
	}
	since := last.Add(-responseWindow)
	for _, f := range fs {
		if f.UpdatedAt.Before(since) {
			break // newest first
		}
		if err := c.cfg.Sink.Apply(ctx, f); err != nil {
			c.log.Error("detector: applying a finding's responses failed", "finding_id", f.ID, "type", f.Type, "error", err)
		}
	}
	return nil
}

// follow starts reading chain from its cursor.
func (c *Consumer) follow(ctx context.Context, wg *sync.WaitGroup, chain string, out chan<- record, failed chan<- error) error {
	c.mu.Lock()
	cur := c.committed[chain]
	c.mu.Unlock()
	r, err := audit.NewReader(c.cfg.Dir, chain, cur.Seq)
	if err != nil {
		return fmt.Errorf("consume audit chain %s: %w", chain, err)
	}
	if cur.Seq > 0 {
		r.ExpectAfter(cur.Hash)
		c.log.Info("detector: following audit chain", "chain", chain, "after_seq", cur.Seq, "events", cur.Events)
	} else {
		c.log.Info("detector: following audit chain from its first record", "chain", chain)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer r.Close()
		var dec detect.EventDecoder
		err := r.Follow(ctx, c.cfg.Poll, func(e audit.Entry) error {
			ev, err := dec.Decode(e.Record.Event)
			if err != nil {
				return fmt.Errorf("record seq %d: %w", e.Seq, err)
			}
			select {
			case out <- record{chain: chain, seq: e.Seq, hash: e.Record.Hash, ev: ev}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err != nil && ctx.Err() == nil {
			select {
			case failed <- fmt.Errorf("consume audit chain %s: %w", chain, err):
			default: // another failure is being reported; the consumer stops either way
			}
		}
	}()
	return nil
}

// observe feeds one record to the detector and adds it to the batch.
func (c *Consumer) observe(b *batch, r record) {
	p := b.chains[r.chain]
	if p == nil {
		c.mu.Lock()
		from := c.committed[r.chain].Seq
		c.mu.Unlock()
		p = &pending{from: from}
		b.chains[r.chain] = p
	}
	p.to, p.hash = r.seq, r.hash
	p.n++
	b.records++
	for _, f := range c.cfg.Detector.Observe(r.ev) {
		b.addFinding(f)
	}
}

// commitTimeout bounds one commit attempt, and applying one finding's responses.
const commitTimeout = 10 * time.Second

// commit stores the batch (cursors and findings at once), retrying a store failure
// for RetryFor while ctx lasts, then applies the findings' responses. A commit in
// flight when ctx ends is finished, not abandoned: a stopping consumer keeps what it
// consumed.
func (c *Consumer) commit(ctx context.Context, b *batch) error {
	m := c.cfg.Metrics
	if m == nil {
		return c.commitBatch(ctx, b)
	}
	start := time.Now()
	err := c.commitBatch(ctx, b)
	m.Commit(time.Since(start), err)
	return err
}

// commitBatch commits the batch, then applies its findings' responses.
func (c *Consumer) commitBatch(ctx context.Context, b *batch) error {
	adv := make([]store.CursorAdvance, 0, len(b.chains))
	for chain, p := range b.chains {
		adv = append(adv, store.CursorAdvance{Chain: chain, From: p.from, To: p.to, Hash: p.hash, Events: p.n})
	}
	slices.SortFunc(adv, func(a, b store.CursorAdvance) int { return strings.Compare(a.Chain, b.Chain) })
	deadline := time.Now().Add(c.cfg.RetryFor)
	wait := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		err := c.cfg.Sink.Commit(cctx, c.cfg.Consumer, adv, b.findings)
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("consume audit: another consumer %q advanced the cursors (two detectors on one store?); stopping rather than counting events twice: %w", c.cfg.Consumer, err)
		}
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("consume audit: commit %d records: %w", b.records, err)
		}
		c.log.Error("detector: committing consumed audit records failed; retrying", "records", b.records, "retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("consume audit: commit %d records: %w", b.records, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	now := time.Now()
	c.mu.Lock()
	for _, a := range adv {
		cur := c.committed[a.Chain]
		cur.Consumer, cur.Chain, cur.Seq, cur.Hash = c.cfg.Consumer, a.Chain, a.To, a.Hash
		cur.Events += a.Events
		cur.UpdatedAt = now
		c.committed[a.Chain] = cur
	}
	c.mu.Unlock()
	if m := c.cfg.Metrics; m != nil {
		for _, a := range adv {
			m.Committed(a.Chain, a.Events, a.To)
		}
		for _, f := range b.findings {
			m.Finding(f.Type, f.Severity)
		}
	}
	for _, f := range b.findings {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		err := c.cfg.Sink.Apply(actx, f)
		cancel()
		if err != nil {
			c.log.Error("detector: applying a finding's responses failed", "finding_id", f.ID, "type", f.Type, "error", err)
		}
	}
	return nil
}
