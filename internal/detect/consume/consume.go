// Package consume feeds the audit chains of every replica to the streaming detector
// exactly once. It follows each chain of an audit directory (and the chains that appear
// later) from where the last run left off, hands every record's event, in each chain's
// order, to one detector, and commits in batches: the cursors of every chain read in the
// batch advance in the same store transaction that stores the findings the batch
// produced. Only then are the findings' responses applied.
//
// It does not detect (package detect), store findings or respond (its Sink does:
// respond.Responder), or verify digests (audit.Verify): it relies on audit.Reader, which
// checks every record's hash and link, that no record is missing, that a chain still
// continues from the record a cursor names, and that the files it read are still there.
//
// It never goes blind silently, and never stops for one chain. A chain found damaged —
// cut short, emptied, rewritten, records missing, or, with an anchor store, deleted
// whole — becomes a High Stealth:IAMUser/AuditLogTampered finding (the detector's, fed
// audit.DamageEvent) committed like any other, so the spec's responses apply; the
// consumer goes on with every other chain, and with the damaged one from where its
// writer continued it (audit.Resume: the writer opens a new segment after damage), the
// records in between recorded as the gap. Until then the chain is unread, and Unread
// and the Metrics say so. A gap a prune checkpoint accounts for is not damage.
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
//   - A jump over a gap (or back, when a chain continues with records numbered again)
//     is a cursor advance like any other, committed with the finding that records the
//     damage: a consumer killed in between finds the damage again.
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
	// Damaged is called for each damage found in chain; Unread whenever chain stops or
	// starts being read.
	Damaged(chain string)
	Unread(chain string, unread bool)
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
	// Anchors, when set, is the audit anchor store: a chain it knows that is missing
	// from Dir is damage, and a gap one of its prune checkpoints accounts for is not.
	Anchors AnchorSource
}

// AnchorSource is what the consumer reads of the audit anchor store (store.Store).
type AnchorSource interface {
	ListAuditChains(ctx context.Context) ([]audit.ChainEntry, error)
	LatestAuditAnchor(ctx context.Context, chain string) (audit.Anchor, bool, error)
	AuditAnchorSet(ctx context.Context) (audit.AnchorSet, error)
}

// Consumer follows the chains of an audit directory. Build it with New, run it with Run
// (once).
type Consumer struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	committed map[string]store.AuditCursor // chain -> cursor as of the last commit
	unread    map[string]ChainStatus       // chains not being read, and why
	damage    map[string]ChainStatus       // the last damage found in each chain
}

// ChainStatus says why a chain is not being read, or what damage was found in it.
type ChainStatus struct {
	Chain  string
	Reason string
	Since  time.Time
}

// Unread returns the chains not being read, and why, by name.
func (c *Consumer) Unread() []ChainStatus { return c.statuses(c.unread) }

// Damage returns, per chain, the last damage found since the consumer started.
func (c *Consumer) Damage() []ChainStatus { return c.statuses(c.damage) }

func (c *Consumer) statuses(m map[string]ChainStatus) []ChainStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ChainStatus, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ChainStatus) int { return strings.Compare(a.Chain, b.Chain) })
	return out
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
	return &Consumer{cfg: cfg, log: cfg.Logger.With("component", "detector"), committed: map[string]store.AuditCursor{},
		unread: map[string]ChainStatus{}, damage: map[string]ChainStatus{}}, nil
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

// record is one chain record on its way from a reader to the detector, or (err set) why
// its reader stopped: both go through one channel, so a failure comes after the
// records read before it.
type record struct {
	chain string
	seq   uint64
	hash  string
	ev    *audit.Event
	err   error
	gen   int // the reader's generation: items of a reader replaced since are dropped
}

// pending is what a batch read from one chain: the cursor moves from from to to.
type pending struct {
	from, to uint64
	hash     string
	n        int64
	reset    bool // to was moved back: the chain continues with records numbered again
}

// batch is what was observed since the last commit.
type batch struct {
	records  int
	changes  int // cursor jumps and findings raised outside records
	chains   map[string]*pending
	findings []detect.Finding
	index    map[string]int // finding id -> position in findings (a repeat replaces it)
}

func (b *batch) empty() bool { return b.records == 0 && b.changes == 0 }

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
// until it cannot go on (a cursor another consumer moved, a store that stays
// unreachable), and returns the error, having committed the records consumed before. A
// damaged chain does not stop it (see the package comment).
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
	r := &run{c: c, ctx: rctx, records: make(chan record, 4*c.cfg.BatchRecords), chains: map[string]*chainState{}, b: newBatch()}
	defer r.wg.Wait()
	defer cancel()

	r.discover()
	c.mu.Lock()
	for chain, cur := range c.committed {
		if st := r.chains[chain]; (st == nil || !st.reading) && !slices.Contains(c.cfg.Exclude, chain) {
			c.log.Warn("an audit chain with a cursor is not being read", "chain", chain, "seq", cur.Seq, "events", cur.Events)
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
	flushing := false
	commit := func(ctx context.Context) error {
		flush.Stop()
		flushing = false
		if r.b.empty() {
			return nil
		}
		err := c.commit(ctx, r.b)
		r.b = newBatch()
		return err
	}
	for {
		select {
		case rec := <-r.records:
			r.handle(rec)
		case <-flush.C:
			if err := commit(ctx); err != nil {
				return err
			}
			continue
		case <-disc.C:
			r.discover()
		case <-ctx.Done():
			cancel()
			return commit(ctx) // one attempt: ctx is done
		}
		if r.b.records >= c.cfg.BatchRecords {
			if err := commit(ctx); err != nil {
				return err
			}
		} else if !r.b.empty() && !flushing {
			flush.Reset(c.cfg.BatchDelay)
			flushing = true
		}
	}
}

// run is one Run's state, owned by its loop.
type run struct {
	c       *Consumer
	ctx     context.Context
	wg      sync.WaitGroup
	records chan record
	chains  map[string]*chainState
	b       *batch
}

// chainState is what a run knows of one chain.
type chainState struct {
	reading bool // a reader goroutine runs
	gen     int  // its generation
	stop    context.CancelFunc
	// failSeg is the segment where reading last failed; resumed where it went on from
	// after damage (not again from a point whose own reading failed).
	failSeg  uint64
	resumed  []audit.ResumePoint
	reported map[string]bool // damages already raised: "segment" or "missing"
	retry    int             // discoveries until a failed reader is tried again
	missing  bool
}

func (r *run) state(chain string) *chainState {
	st := r.chains[chain]
	if st == nil {
		st = &chainState{reported: map[string]bool{}}
		r.chains[chain] = st
	}
	return st
}

// retryAfter is how many discoveries pass before a chain whose reader failed other than
// by damage (it could not be opened, a read failed) is tried again.
const retryAfter = 5

// discover follows the chains that appeared, retries the unread ones, and, with an
// anchor store, finds the chains it knows that are missing.
func (r *run) discover() {
	c := r.c
	names, err := audit.Chains(c.cfg.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Error("cannot list the audit chains", "dir", c.cfg.Dir, "error", err)
	}
	onDisk := map[string]bool{}
	for _, name := range names {
		onDisk[name] = true
		if slices.Contains(c.cfg.Exclude, name) {
			continue
		}
		st := r.state(name)
		switch {
		case st.reading:
		case st.failSeg > 0:
			r.tryResume(name, st)
		case st.retry > 0:
			st.retry--
		default:
			st.missing = false
			r.follow(name, c.cursor(name))
		}
	}
	if c.cfg.Anchors == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, commitTimeout)
	defer cancel()
	known, err := c.cfg.Anchors.ListAuditChains(ctx)
	if err != nil {
		if r.ctx.Err() == nil { // a shutdown cancels the listing: not an error to report
			c.log.Error("cannot list the anchored audit chains", "error", err)
		}
		return
	}
	for _, k := range known {
		if onDisk[k.Name] || slices.Contains(c.cfg.Exclude, k.Name) {
			continue
		}
		st := r.state(k.Name)
		if st.missing {
			continue
		}
		if st.stop != nil {
			st.stop()
		}
		st.missing, st.reading = true, false
		d := &audit.Damage{Chain: k.Name, Kind: audit.Removed, Detail: "the chain is missing from the audit directory, though the anchor store registered it"}
		if a, ok, err := c.cfg.Anchors.LatestAuditAnchor(ctx, k.Name); err == nil && ok && a.Seq > 0 {
			d.From, d.To = 1, a.Seq
			if cur := c.cursor(k.Name); cur.Seq > 0 && cur.Seq < a.Seq {
				d.From = cur.Seq + 1 // what was read before is not lost to detection
			}
			d.Detail += fmt.Sprintf(" and anchored its head at seq %d", a.Seq)
		}
		if !st.reported["missing"] {
			st.reported["missing"] = true
			r.raise(d)
		}
		c.setUnread(k.Name, d.Describe())
	}
}

// follow starts reading chain after cursor cur.
func (r *run) follow(chain string, cur store.AuditCursor) {
	c := r.c
	st := r.state(chain)
	rd, err := audit.NewReader(c.cfg.Dir, chain, cur.Seq)
	if err != nil {
		// A chain being created is listed before its first segment exists: try again.
		st.retry = retryAfter
		c.setUnread(chain, err.Error())
		return
	}
	if cur.Seq > 0 {
		rd.ExpectAfter(cur.Hash)
		c.log.Info("following audit chain", "chain", chain, "after_seq", cur.Seq, "events", cur.Events)
	} else {
		c.log.Info("following audit chain from its first record", "chain", chain)
	}
	fctx, stop := context.WithCancel(r.ctx)
	st.gen++
	st.reading, st.stop, st.failSeg = true, stop, 0
	c.setUnread(chain, "")
	gen := st.gen
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer rd.Close()
		var dec detect.EventDecoder
		err := rd.Follow(fctx, c.cfg.Poll, func(e audit.Entry) error {
			ev, err := dec.Decode(e.Record.Event)
			if err != nil {
				return &audit.Damage{Chain: chain, Segment: e.Segment, Kind: audit.Malformed, From: e.Seq,
					Detail: fmt.Sprintf("record seq %d holds an event the detector cannot read: %v", e.Seq, err)}
			}
			select {
			case r.records <- record{chain: chain, seq: e.Seq, hash: e.Record.Hash, ev: ev, gen: gen}:
				return nil
			case <-fctx.Done():
				return fctx.Err()
			}
		})
		if err != nil && fctx.Err() == nil {
			select {
			case r.records <- record{chain: chain, err: err, gen: gen}:
			case <-fctx.Done():
			}
		}
	}()
}

// handle takes one item from the readers: a record to observe, or a reader's failure.
func (r *run) handle(rec record) {
	st := r.state(rec.chain)
	if rec.gen != st.gen {
		return // from a reader stopped since
	}
	if rec.err == nil {
		r.c.observe(r.b, rec)
		return
	}
	st.reading = false
	c := r.c
	d, ok := errors.AsType[*audit.Damage](rec.err)
	if !ok {
		c.log.Error("reading an audit chain failed; trying again", "chain", rec.chain, "error", rec.err)
		st.retry = retryAfter
		c.setUnread(rec.chain, rec.err.Error())
		return
	}
	if cp := r.prunedBy(d); cp != nil {
		if cur := c.cursor(d.Chain); cur.Seq < cp.Seq && cur.Seq+1 < d.From {
			c.log.Warn("records were pruned from an audit chain before they were read", "chain", d.Chain, "from", cur.Seq+1, "to", cp.Seq)
		} else {
			c.log.Info("records pruned from an audit chain; reading on after them", "chain", d.Chain, "to", cp.Seq)
		}
		r.jump(d.Chain, cp.Seq, cp.Hash)
		r.follow(d.Chain, c.cursorAt(d.Chain, cp.Seq, cp.Hash))
		return
	}
	key := fmt.Sprint(d.Segment)
	if !st.reported[key] {
		st.reported[key] = true
		if d.Next == nil {
			// Where reading will go on, if the chain already continues: the records
			// up to there are the gap, and the finding names them all.
			if p, ok := audit.Resume(c.cfg.Dir, d.Chain, max(d.Segment, 1)); ok && p.Seq > d.To && d.From > 0 && p.Seq >= d.From {
				d.To = p.Seq
				d.Detail += fmt.Sprintf("; the chain is read on from seq %d", p.Seq+1)
			}
		}
		r.raise(d)
	}
	if d.Next != nil {
		// Records are missing before one the reader could read: go on from it.
		r.jump(d.Chain, d.Next.Seq, d.NextHash)
		r.follow(d.Chain, c.cursorAt(d.Chain, d.Next.Seq, d.NextHash))
		return
	}
	st.failSeg = max(d.Segment, 1)
	c.setUnread(d.Chain, d.Describe()+"; waiting for the chain to continue")
	r.tryResume(d.Chain, st)
}

// tryResume reads a damaged chain on from where its writer continued it, if it has.
func (r *run) tryResume(chain string, st *chainState) {
	p, ok := audit.Resume(r.c.cfg.Dir, chain, st.failSeg)
	if !ok || slices.Contains(st.resumed, p) && st.failSeg >= p.Segment {
		return // nowhere yet, or reading from there failed too
	}
	st.resumed = append(st.resumed, p)
	if cur := r.c.cursor(chain).Seq; p.Seq > cur+1 {
		r.c.log.Warn("records of a damaged audit chain are skipped: the chain continues after them", "chain", chain, "from", cur+1, "to", p.Seq)
	}
	r.c.log.Info("reading a damaged audit chain on from where it continues", "chain", chain, "segment", p.Segment, "after_seq", p.Seq)
	r.jump(chain, p.Seq, p.Hash)
	r.follow(chain, r.c.cursorAt(chain, p.Seq, p.Hash))
}

// jump moves chain's cursor in the batch to after seq (whose hash is hash), forward over
// a gap or back when the chain continues with records numbered again.
func (r *run) jump(chain string, seq uint64, hash string) {
	p := r.b.chains[chain]
	if p == nil {
		from := r.c.cursor(chain).Seq
		p = &pending{from: from, to: from}
		r.b.chains[chain] = p
	}
	if seq < p.to || seq <= p.from && p.n == 0 {
		p.reset = true
	}
	p.to, p.hash = seq, hash
	if seq == 0 && hash == "" {
		p.hash = zeroHash
	}
	r.b.changes++
}

// zeroHash is the prev of a chain's first record.
const zeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// prunedBy returns the prune checkpoint that accounts for d, or nil: the records
// missing before the first one a reader found end where a checkpoint says, or the
// segment removed under a reader is one a checkpoint covers.
func (r *run) prunedBy(d *audit.Damage) *audit.Checkpoint {
	if r.c.cfg.Anchors == nil || d.Kind != audit.Removed {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, commitTimeout)
	defer cancel()
	set, err := r.c.cfg.Anchors.AuditAnchorSet(ctx)
	if err != nil {
		r.c.log.Error("cannot read the prune checkpoints", "error", err)
		return nil
	}
	for i := range set.Checkpoints {
		cp := &set.Checkpoints[i]
		if cp.Chain != d.Chain {
			continue
		}
		if d.Next != nil && cp.Seq == d.Next.Seq && cp.Hash == d.NextHash || d.Next == nil && d.Segment > 0 && d.Segment <= cp.Segment {
			return cp
		}
	}
	return nil
}

// raise feeds the detector the damage and adds the finding to the batch.
func (r *run) raise(d *audit.Damage) {
	c := r.c
	c.log.Error("audit chain damaged", "chain", d.Chain, "damage", d.Describe())
	ev := audit.DamageEvent(d, 0)
	ev.EventTime = time.Now().UTC()
	for _, f := range c.cfg.Detector.Observe(ev) {
		r.b.addFinding(f)
		r.b.changes++
	}
	c.mu.Lock()
	c.damage[d.Chain] = ChainStatus{Chain: d.Chain, Reason: d.Describe(), Since: time.Now()}
	c.mu.Unlock()
	if m := c.cfg.Metrics; m != nil {
		m.Damaged(d.Chain)
	}
}

// setUnread records why chain is not being read ("": it is).
func (c *Consumer) setUnread(chain, reason string) {
	c.mu.Lock()
	old, was := c.unread[chain]
	if reason == "" {
		delete(c.unread, chain)
	} else if !was || old.Reason != reason {
		since := time.Now()
		if was {
			since = old.Since
		}
		c.unread[chain] = ChainStatus{Chain: chain, Reason: reason, Since: since}
	}
	c.mu.Unlock()
	if m := c.cfg.Metrics; m != nil && was != (reason != "") {
		m.Unread(chain, reason != "")
	}
}

// cursor is chain's cursor as of the last commit.
func (c *Consumer) cursor(chain string) store.AuditCursor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed[chain]
}

// cursorAt is chain's cursor moved to after seq, whose hash is hash.
func (c *Consumer) cursorAt(chain string, seq uint64, hash string) store.AuditCursor {
	cur := c.cursor(chain)
	cur.Seq, cur.Hash = seq, hash
	if seq == 0 {
		cur.Hash = ""
	}
	return cur
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
			c.log.Error("applying a finding's responses failed", "finding_id", f.ID, "type", f.Type, "error", err)
		}
	}
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
	if d, ok := audit.DamageOf(r.ev); ok {
		// The chain's writer found damage and continued: the detector's rule makes
		// the finding; the damage is noted like one found here.
		c.mu.Lock()
		c.damage[d.Chain] = ChainStatus{Chain: d.Chain, Reason: d.Describe(), Since: time.Now()}
		c.mu.Unlock()
		if m := c.cfg.Metrics; m != nil {
			m.Damaged(d.Chain)
		}
	}
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
		if p.to == p.from && !p.reset {
			continue // a jump to where the cursor is
		}
		adv = append(adv, store.CursorAdvance{Chain: chain, From: p.from, To: p.to, Hash: p.hash, Events: p.n, Reset: p.reset})
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
		c.log.Error("committing consumed audit records failed; retrying", "records", b.records, "retry_in", wait, "error", err)
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
			c.log.Error("applying a finding's responses failed", "finding_id", f.ID, "type", f.Type, "error", err)
		}
	}
	return nil
}
