package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/events"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// The stream consumer: a detector replica reading the audit records that every
// component publishes to NATS JetStream (package events) instead of the files of one
// audit directory. Several replicas share the work by partition: the records of one
// principal (detect.PartitionKey) are in one partition, a partition is held by one
// replica at a time (a lease in the store, renewed while it runs, taken over when it
// expires), so each principal's state is in one replica.
//
// Choices:
//   - Exactly once, per partition: the partition's cursors (consumer "detector-p<N>",
//     one per chain: the last record of the chain in the partition) advance in the
//     store transaction that stores the findings, as the file consumer's do, and the
//     stream's messages are acknowledged only after it. A message delivered again (a
//     replica killed before its acknowledgement, a publisher that published again after
//     the stream's duplicate window) is at or before the cursor and is dropped. A
//     replica that lost its lease and commits anyway fails on the moved cursor
//     (store.ErrConflict) and stops that partition.
//   - Nothing is believed because it came over the stream. events.ParseMessage checks
//     each record's hash and that its subject, headers and partition are its own; the
//     consumer checks that each record links to the chain's previous record in the
//     partition, the one the cursor names. A record that comes early (its predecessor
//     not yet delivered: published again after a broker outage) is left for later; one
//     whose predecessor never comes is a gap: a High AuditLogTampered finding naming the
//     records missing, then the consumer goes on. A record that contradicts the cursor
//     (another record at a seq already read, a link to another record) is a finding
//     too, and is not evaluated.
//   - A record at a position the store's audit anchors name (a signed digest's last
//     record, package audit) must have the anchored hash: one that does not is a
//     finding and is not evaluated. Anchors are read per worker and chain when the
//     chain is first seen (those above its cursor), again when a record passes the
//     newest one read, at most every anchorRefresh, and forgotten once the cursor
//     passes them: a map lookup per record, no store round trip. Anchors come with
//     digests, a digest after its records: the check covers what is read behind the
//     writer (a backlog, a takeover, a publisher catching up), not a record at the
//     chain's head.
//   - Publishers and the stream are not witnesses of each other: the chain files and
//     their signed digests stay the evidence (phantom audit verify). A NATS account
//     allowed to publish to the subjects can inject records that link (the hash is not
//     keyed) at positions not yet anchored; NATS permissions must give each host its
//     chains' subjects only (docs/threat-model.md).

// Stream defaults.
const (
	DefaultLeaseTTL = 5 * time.Second
	// DefaultAckWait is how long the broker waits for a message's acknowledgement
	// before delivering it again (to the replica that took the partition over from one
	// that died holding it): a batch is committed well within it.
	DefaultAckWait = 5 * time.Second
	// DefaultEarlyWait is how long a record that came before its predecessor waits for
	// it before the gap is raised: longer than AckWait, so that a predecessor a dead
	// replica held comes first. earlyDelay is how long it waits between deliveries.
	DefaultEarlyWait = 3 * DefaultAckWait
	earlyDelay       = 200 * time.Millisecond
)

// LeaseStore holds the partitions' leases (store.Store).
type LeaseStore interface {
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	ListLeases(ctx context.Context) ([]store.Lease, error)
}

// AnchorReader reads a chain's audit anchors by seq (store.Store).
type AnchorReader interface {
	AuditAnchorsAfter(ctx context.Context, chain string, after uint64, limit int) ([]audit.Anchor, error)
}

// anchorRefresh is how often a worker reads a chain's anchors again when records pass
// the newest it has (a digest is signed about once a second on a busy chain);
// anchorPage is how many it reads at once.
const (
	anchorRefresh = 2 * time.Second
	anchorPage    = 1000
)

// StreamConfig configures NewReplica.
type StreamConfig struct {
	// JetStream reads Stream, the account's audit stream.
	JetStream jetstream.JetStream
	Stream    string
	Account   string
	// Holder names this replica in the leases: unique among the replicas.
	Holder   string
	Leases   LeaseStore
	LeaseTTL time.Duration
	// Skip says which chains are never consumed: the detectors' own (their responses).
	Skip     func(chain string) bool
	Detector Detector
	Sink     Sink
	Metrics  Metrics
	Logger   *slog.Logger
	// BatchRecords and BatchDelay bound a partition's batch, RetryFor its commit's
	// retries, as in Config.
	BatchRecords int
	BatchDelay   time.Duration
	RetryFor     time.Duration
	// AckWait is the stream consumer's acknowledgement wait (DefaultAckWait); EarlyWait
	// how long a record whose predecessor in the partition has not come waits for it
	// before the gap is raised (DefaultEarlyWait; longer than AckWait).
	AckWait, EarlyWait time.Duration
	// Anchors reads the audit anchors the records are checked against (store.Store).
	Anchors AnchorReader
	// Ready, when set, is called once the replica has restored the findings and is
	// taking partitions.
	Ready func()
}

// Replica is one detector replica on the audit stream. Build it with NewReplica, run it
// with Run (once).
type Replica struct {
	cfg StreamConfig
	log *slog.Logger

	mu       sync.Mutex
	workers  map[int]*partWorker
	starting map[int]bool // partitions whose lease is taken and worker starting
	damage   map[string]ChainStatus
	failed   chan error // a partition's worker stopped for a reason that stops the replica
	wg       sync.WaitGroup
}

// NewReplica checks cfg and fills in the defaults.
func NewReplica(cfg StreamConfig) (*Replica, error) {
	if cfg.JetStream == nil || cfg.Leases == nil || cfg.Detector == nil || cfg.Sink == nil || cfg.Anchors == nil {
		return nil, errors.New("consume: a stream replica needs JetStream, leases, audit anchors, a detector and a sink")
	}
	if cfg.Stream == "" {
		cfg.Stream = events.DefaultStream
	}
	if cfg.Holder == "" || strings.ContainsAny(cfg.Holder, " \t\n") {
		return nil, fmt.Errorf("consume: replica name %q", cfg.Holder)
	}
	if cfg.Skip == nil {
		cfg.Skip = func(string) bool { return false }
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.EarlyWait <= 0 {
		cfg.EarlyWait = 3 * cfg.AckWait
	}
	if cfg.EarlyWait <= cfg.AckWait {
		return nil, fmt.Errorf("consume: early wait %s not longer than the ack wait %s: a dead replica's messages would be taken for lost", cfg.EarlyWait, cfg.AckWait)
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
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
	return &Replica{cfg: cfg, log: cfg.Logger.With("component", "detector", "replica", cfg.Holder),
		workers: map[int]*partWorker{}, starting: map[int]bool{}, damage: map[string]ChainStatus{}, failed: make(chan error, 1)}, nil
}

// PartitionConsumer is the store consumer name of partition n's cursors.
func PartitionConsumer(n int) string { return DefaultConsumer + "-p" + strconv.Itoa(n) }

// Partitions returns the partitions this replica holds now.
func (r *Replica) Partitions() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int, 0, len(r.workers))
	for n := range r.workers {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Unread returns nothing: a replica reads every chain its partitions hold.
func (r *Replica) Unread() []ChainStatus { return nil }

// Damage returns, per chain, the last damage found since the replica started.
func (r *Replica) Damage() []ChainStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ChainStatus, 0, len(r.damage))
	for _, s := range r.damage {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ChainStatus) int { return strings.Compare(a.Chain, b.Chain) })
	return out
}

// Run restores the stored findings, then takes and works partitions until ctx ends (it
// then commits what each consumed, releases its leases and returns nil), or until a
// partition's commit keeps failing (the store unreachable: the error).
func (r *Replica) Run(ctx context.Context) error {
	if err := r.restore(ctx); err != nil {
		return err
	}
	if r.cfg.Ready != nil {
		r.cfg.Ready()
	}
	defer r.stopAll()
	t := time.NewTicker(r.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		r.balance(ctx)
		select {
		case <-ctx.Done():
			return nil
		case err := <-r.failed:
			return err
		case <-t.C:
		}
	}
}

// restore gives the detector the stored findings and applies the responses of those
// updated near the last commit of any partition (see Consumer.restore).
func (r *Replica) restore(ctx context.Context) error {
	var last time.Time
	for n := range events.Partitions {
		cs, err := r.cfg.Sink.Cursors(ctx, PartitionConsumer(n))
		if err != nil {
			return fmt.Errorf("consume audit stream: load cursors: %w", err)
		}
		for _, c := range cs {
			if c.UpdatedAt.After(last) {
				last = c.UpdatedAt
			}
		}
	}
	return r.consumer(DefaultConsumer).restore(ctx, last)
}

// consumer is a Consumer committing under name: the batch, commit and response code the
// file consumer runs.
func (r *Replica) consumer(name string) *Consumer {
	cfg := Config{Consumer: name, Detector: r.cfg.Detector, Sink: r.cfg.Sink, Metrics: r.cfg.Metrics, Logger: r.cfg.Logger,
		BatchRecords: r.cfg.BatchRecords, BatchDelay: r.cfg.BatchDelay, RetryFor: r.cfg.RetryFor,
		RestoreFindings: detect.DefaultMaxFindings}
	return &Consumer{cfg: cfg, log: r.log, committed: map[string]store.AuditCursor{},
		unread: map[string]ChainStatus{}, damage: map[string]ChainStatus{}}
}

// Leases: partitionLease+N is partition N's, replicaLease+holder says a replica is
// alive.
const (
	partitionLease = "detector-partition-"
	replicaLease   = "detector-replica-"
)

// leaseName is partition n's lease.
func leaseName(n int) string { return partitionLease + strconv.Itoa(n) }

// balance renews the partitions held, takes free ones up to a fair share of the live
// replicas', and gives back those above it so that a replica that joins gets work.
func (r *Replica) balance(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL/2)
	defer cancel()
	// The replica's own lease says it is alive: the others make room for it.
	if _, err := r.cfg.Leases.AcquireLease(lctx, replicaLease+r.cfg.Holder, r.cfg.Holder, r.cfg.LeaseTTL); err != nil && ctx.Err() == nil {
		r.log.Error("cannot renew the replica's lease", "error", err)
	}
	leases, err := r.cfg.Leases.ListLeases(lctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("cannot list the partitions' leases; keeping the partitions held until theirs expire", "error", err)
			r.expireUnrenewed()
		}
		return
	}
	held := map[int]string{}
	live := map[string]bool{r.cfg.Holder: true}
	for _, l := range leases {
		if strings.HasPrefix(l.Name, replicaLease) {
			live[l.Holder] = true
			continue
		}
		n, ok := strings.CutPrefix(l.Name, partitionLease)
		if !ok {
			continue
		}
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 || i >= events.Partitions {
			continue
		}
		held[i] = l.Holder
		live[l.Holder] = true
	}
	share := (events.Partitions + len(live) - 1) / len(live)
	// Partitions still starting are renewed like the others, never given back meanwhile.
	r.mu.Lock()
	starting := make([]int, 0, len(r.starting))
	for n := range r.starting {
		starting = append(starting, n)
	}
	r.mu.Unlock()
	for _, n := range starting {
		if _, err := r.cfg.Leases.AcquireLease(lctx, leaseName(n), r.cfg.Holder, r.cfg.LeaseTTL); err != nil {
			r.log.Error("cannot renew a partition's lease", "partition", n, "error", err)
		}
	}
	mine := r.Partitions()
	// Renew what is held; a lease lost (taken after it expired) stops its worker.
	for _, n := range mine {
		ok, err := r.cfg.Leases.AcquireLease(lctx, leaseName(n), r.cfg.Holder, r.cfg.LeaseTTL)
		if err != nil {
			r.log.Error("cannot renew a partition's lease", "partition", n, "error", err)
			continue
		}
		if !ok {
			r.log.Warn("partition taken over by another replica; stopping it", "partition", n)
			r.stop(n, false)
		} else {
			r.renewed(n)
		}
	}
	r.expireUnrenewed() // renewals that keep failing: another replica may hold them soon
	mine = r.Partitions()
	busy := len(starting)
	// Above the share: give back the last ones (their batches are committed first).
	for len(mine) > 0 && len(mine)+busy > share {
		n := mine[len(mine)-1]
		mine = mine[:len(mine)-1]
		r.log.Info("giving a partition back to balance the replicas", "partition", n, "replicas", len(live))
		r.stop(n, true)
	}
	var taken []int
	for n := 0; n < events.Partitions && len(mine)+busy+len(taken) < share; n++ {
		if _, held := held[n]; held || slices.Contains(mine, n) || slices.Contains(starting, n) {
			continue
		}
		if ok, err := r.cfg.Leases.AcquireLease(lctx, leaseName(n), r.cfg.Holder, r.cfg.LeaseTTL); err == nil && ok {
			taken = append(taken, n)
		}
	}
	// The partitions taken start together, and in the background: a takeover waits for
	// the slowest, not the sum, and the leases held are renewed meanwhile.
	for _, n := range taken {
		r.mu.Lock()
		r.starting[n] = true
		r.mu.Unlock()
		r.wg.Go(func() {
			err := r.start(ctx, n)
			r.mu.Lock()
			delete(r.starting, n)
			r.mu.Unlock()
			if err != nil {
				r.log.Error("cannot work a partition; giving it back", "partition", n, "error", err)
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.LeaseTTL)
				defer cancel()
				r.cfg.Leases.ReleaseLease(rctx, leaseName(n), r.cfg.Holder)
			}
		})
	}
}

// expireUnrenewed stops the workers whose lease may have expired unrenewed: another
// replica may hold them now.
func (r *Replica) expireUnrenewed() {
	for _, n := range r.Partitions() {
		r.mu.Lock()
		w := r.workers[n]
		r.mu.Unlock()
		if w != nil && time.Since(w.renewedAt()) > r.cfg.LeaseTTL*3/4 {
			r.log.Warn("partition's lease not renewed in time; stopping it", "partition", n)
			r.stop(n, false)
		}
	}
}

func (r *Replica) renewed(n int) {
	r.mu.Lock()
	w := r.workers[n]
	r.mu.Unlock()
	if w != nil {
		w.mu.Lock()
		w.renewed = time.Now()
		w.mu.Unlock()
	}
}

// start works partition n, whose lease this replica has just taken.
func (r *Replica) start(ctx context.Context, n int) error {
	cons, err := r.cfg.JetStream.CreateOrUpdateConsumer(ctx, r.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       "phantom-detector-p" + strconv.Itoa(n),
		FilterSubject: events.PartitionSubjects(r.cfg.Account, n),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 4 * r.cfg.BatchRecords,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("partition %d: stream consumer: %w", n, err)
	}
	c := r.consumer(PartitionConsumer(n))
	cursors, err := r.cfg.Sink.Cursors(ctx, c.cfg.Consumer)
	if err != nil {
		return fmt.Errorf("partition %d: load cursors: %w", n, err)
	}
	for _, cur := range cursors {
		c.committed[cur.Chain] = cur
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &partWorker{r: r, n: n, c: c, cons: cons, cancel: cancel, done: make(chan struct{}), renewed: time.Now(), early: map[string]earlyMark{}, anchors: map[string]*anchorCache{}}
	r.mu.Lock()
	r.workers[n] = w
	r.mu.Unlock()
	r.log.Info("working a partition of the audit stream", "partition", n, "chains_with_cursors", len(cursors))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(w.done)
		err := w.run(wctx)
		switch {
		case err == nil:
		case errors.Is(err, store.ErrConflict):
			r.log.Warn("partition's cursors moved under it: another replica works it now", "partition", n, "error", err)
			r.mu.Lock()
			if r.workers[n] == w {
				delete(r.workers, n)
			}
			r.mu.Unlock()
		default:
			select {
			case r.failed <- fmt.Errorf("partition %d: %w", n, err):
			default:
			}
		}
	}()
	return nil
}

// stop stops partition n's worker (which commits what it consumed) and, when release,
// gives back its lease.
func (r *Replica) stop(n int, release bool) {
	r.mu.Lock()
	w := r.workers[n]
	delete(r.workers, n)
	r.mu.Unlock()
	if w != nil {
		w.cancel()
		<-w.done
	}
	if release {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LeaseTTL)
		defer cancel()
		if err := r.cfg.Leases.ReleaseLease(ctx, leaseName(n), r.cfg.Holder); err != nil {
			r.log.Error("cannot release a partition's lease; it expires", "partition", n, "error", err)
		}
	}
}

func (r *Replica) stopAll() {
	for _, n := range r.Partitions() {
		r.stop(n, true)
	}
	r.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LeaseTTL)
	defer cancel()
	_ = r.cfg.Leases.ReleaseLease(ctx, replicaLease+r.cfg.Holder, r.cfg.Holder)
}

// partWorker consumes one partition.
type partWorker struct {
	r      *Replica
	n      int
	c      *Consumer
	cons   jetstream.Consumer
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	renewed time.Time

	dec  detect.EventDecoder
	b    *batch
	held []jetstream.Msg // messages of the batch, acknowledged after its commit
	// lost, when it wraps store.ErrConflict, stops the worker: its cursors moved under it.
	lost error
	// early is, per chain, since when records have come before their predecessor with
	// the cursor where it is.
	early map[string]earlyMark
	// anchors is, per chain, the anchored hashes above the partition's cursor.
	anchors map[string]*anchorCache
}

// anchorCache is the anchors of one chain a worker has read.
type anchorCache struct {
	hashes map[uint64]string // anchored seq → the hash of the record there
	newest uint64            // the highest seq read (or the cursor when none)
	more   bool              // the last read was a full page: read on at once
	read   time.Time         // when the anchors were last read (or failed to be)
	err    error             // the last read's failure
}

type earlyMark struct {
	at    events.Link
	since time.Time
}

func (w *partWorker) renewedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.renewed
}

// run fetches and consumes the partition's messages until ctx ends (then it commits the
// batch and returns nil) or a commit fails.
func (w *partWorker) run(ctx context.Context) error {
	w.b = newBatch()
	for {
		mb, err := w.cons.Fetch(w.r.cfg.BatchRecords, jetstream.FetchMaxWait(w.r.cfg.BatchDelay))
		if err == nil {
			for m := range mb.Messages() {
				w.handle(m)
			}
			err = mb.Error()
		}
		if err != nil && ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			w.r.log.Warn("fetching from the audit stream failed; retrying", "partition", w.n, "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
		if w.lost != nil && errors.Is(w.lost, store.ErrConflict) {
			w.nakHeld()
			return w.lost
		}
		w.lost = nil // the store did not answer: the early record is asked about again
		if err := w.commit(ctx); err != nil {
			w.nakHeld()
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// commit commits the batch, then acknowledges its messages.
func (w *partWorker) commit(ctx context.Context) error {
	if w.b.empty() {
		return nil
	}
	err := w.c.commit(ctx, w.b)
	w.b = newBatch()
	if err != nil {
		return err
	}
	for _, m := range w.held {
		if err := m.Ack(); err != nil {
			// Delivered again later: at the cursor by then, and dropped.
			w.r.log.Debug("acknowledgement not sent", "partition", w.n, "error", err)
		}
	}
	w.held = w.held[:0]
	return nil
}

// nakHeld hands the batch's messages back to the stream at once (their commit failed).
func (w *partWorker) nakHeld() {
	for _, m := range w.held {
		_ = m.Nak()
	}
	w.held = nil
}

// position is chain's cursor in the partition: the batch's, else the committed one.
func (w *partWorker) position(chain string) events.Link {
	if p := w.b.chains[chain]; p != nil {
		return events.Link{Seq: p.to, Hash: p.hash}
	}
	cur := w.c.cursor(chain)
	return events.Link{Seq: cur.Seq, Hash: cur.Hash}
}

// handle checks one message against the partition's cursors and consumes it, leaves it
// for later, or raises what is wrong with it.
func (w *partWorker) handle(msg jetstream.Msg) {
	m, err := events.ParseMessage(msg.Subject(), msg.Headers(), msg.Data())
	if err != nil || m.Account != w.r.cfg.Account || m.Partition != w.n {
		if err == nil {
			err = fmt.Errorf("a record of account %s partition %d in partition %d's subjects", m.Account, m.Partition, w.n)
		}
		w.r.log.Error("a message on the audit stream is not a record of its chain; dropped", "partition", w.n, "subject", truncate(msg.Subject()), "error", err)
		if audit.ValidChain(m.Chain) {
			w.raise(&audit.Damage{Chain: m.Chain, Kind: audit.Malformed, Detail: "a message on the audit stream names the chain but is not one of its records: " + err.Error()})
		}
		_ = msg.Term()
		return
	}
	if w.r.cfg.Skip(m.Chain) {
		_ = msg.Ack()
		return
	}
	r := m.Record
	// Against the anchors first: a record they refuse raises nothing else, and one that
	// waits for the store has raised nothing yet.
	switch want, err := w.anchored(m.Chain, r.Seq); {
	case err != nil:
		// Not checked, not evaluated: it waits for the store.
		_ = msg.NakWithDelay(earlyDelay)
		return
	case want != "" && want != r.Hash:
		w.raise(&audit.Damage{Chain: m.Chain, Kind: audit.Modified, From: r.Seq, To: r.Seq,
			Detail: fmt.Sprintf("record seq %d on the audit stream has hash %s but the chain's anchor in the store (a signed digest) names %s; not evaluated", r.Seq, r.Hash, want)})
		_ = msg.Term()
		return
	}
	cur := w.position(m.Chain)
	switch {
	case r.Seq <= cur.Seq:
		// Delivered again, or published again after the duplicate window.
		if r.Seq == cur.Seq && r.Hash != cur.Hash {
			w.raise(&audit.Damage{Chain: m.Chain, Kind: audit.Modified, From: r.Seq, To: r.Seq,
				Detail: fmt.Sprintf("the audit stream carries two different records at seq %d (partition %d); the second was not evaluated", r.Seq, w.n)})
		}
		_ = msg.Ack()
		return
	case m.PartPrev.Seq > cur.Seq && !m.Gap:
		// Its predecessor in the partition has not come yet: wait for it a while, timed
		// by this worker from the cursor it is at (a message's delivery count includes
		// deliveries to a replica that held the partition before).
		e, ok := w.early[m.Chain]
		if !ok || e.at != cur {
			e = earlyMark{at: cur, since: time.Now()}
			w.early[m.Chain] = e
		}
		if time.Since(e.since) < w.r.cfg.EarlyWait {
			_ = msg.NakWithDelay(earlyDelay)
			return
		}
		if w.moved(m.Chain) {
			// Another replica consumed the predecessor: this one no longer holds the
			// partition. Not a gap; stop.
			_ = msg.Nak()
			return
		}
		w.raise(&audit.Damage{Chain: m.Chain, Kind: audit.Removed, From: cur.Seq + 1, To: m.PartPrev.Seq,
			Detail: fmt.Sprintf("records of the chain in partition %d after seq %d up to seq %d never reached the audit stream; read on from seq %d", w.n, cur.Seq, m.PartPrev.Seq, r.Seq)})
	case m.PartPrev.Seq < cur.Seq && !m.Gap, m.PartPrev.Seq == cur.Seq && cur.Seq > 0 && m.PartPrev.Hash != cur.Hash:
		w.raise(&audit.Damage{Chain: m.Chain, Kind: audit.Modified, From: r.Seq, To: r.Seq,
			Detail: fmt.Sprintf("record seq %d on the audit stream does not follow the chain's record seq %d in partition %d; not evaluated", r.Seq, cur.Seq, w.n)})
		_ = msg.Term()
		return
	case m.Gap:
		w.raise(&audit.Damage{Chain: m.Chain, Kind: audit.Removed, To: r.Seq - 1,
			Detail: fmt.Sprintf("the chain's publisher found records missing from the chain before seq %d", r.Seq)})
	}
	ev, err := w.dec.Decode(r.Event)
	if err != nil {
		w.raise(&audit.Damage{Chain: m.Chain, Kind: audit.Malformed, From: r.Seq, To: r.Seq,
			Detail: fmt.Sprintf("record seq %d holds an event the detector cannot read: %v", r.Seq, err)})
		w.c.observe(w.b, record{chain: m.Chain, seq: r.Seq, hash: r.Hash}) // its cursor moves on
		w.held = append(w.held, msg)
		return
	}
	w.c.observe(w.b, record{chain: m.Chain, seq: r.Seq, hash: r.Hash, ev: ev})
	w.held = append(w.held, msg)
}

// anchored returns the hash the store's anchors name at chain's seq, "" when none does
// (as far as read), or the error of reading them.
func (w *partWorker) anchored(chain string, seq uint64) (string, error) {
	c := w.anchors[chain]
	if c == nil {
		c = &anchorCache{hashes: map[uint64]string{}}
		w.anchors[chain] = c
	}
	if c.read.IsZero() || (c.err != nil && time.Since(c.read) >= earlyDelay) || (seq > c.newest && (c.more || time.Since(c.read) >= anchorRefresh)) {
		w.readAnchors(chain, c)
	}
	if c.err != nil {
		return "", c.err
	}
	return c.hashes[seq], nil
}

// readAnchors reads chain's anchors above what c holds (above the cursor, the first
// time), forgetting those at or below the cursor: their records are dropped unread.
func (w *partWorker) readAnchors(chain string, c *anchorCache) {
	cur := w.position(chain).Seq
	for seq := range c.hashes {
		if seq <= cur {
			delete(c.hashes, seq)
		}
	}
	c.newest = max(c.newest, cur)
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	as, err := w.r.cfg.Anchors.AuditAnchorsAfter(ctx, chain, c.newest, anchorPage)
	c.read, c.err = time.Now(), err
	if err != nil {
		w.r.log.Error("cannot read the chain's audit anchors; its records wait", "chain", chain, "partition", w.n, "error", err)
		return
	}
	for _, a := range as {
		if _, ok := c.hashes[a.Seq]; !ok && a.Seq > 0 {
			c.hashes[a.Seq] = a.Hash // two anchors at one seq (a segment's end and the next's start) name one record
		}
		c.newest = max(c.newest, a.Seq)
	}
	c.more = len(as) == anchorPage
}

// moved reports whether chain's cursor in the store is not the one this worker
// committed last: another replica works the partition. The worker then stops (run sees
// lost) rather than take what the other consumed for a gap.
func (w *partWorker) moved(chain string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	cs, err := w.r.cfg.Sink.Cursors(ctx, w.c.cfg.Consumer)
	if err != nil {
		w.r.log.Error("cannot read the partition's cursors before raising a gap; waiting", "partition", w.n, "error", err)
		w.lost = fmt.Errorf("partition %d: read cursors: %w", w.n, err)
		return true
	}
	mine := w.c.cursor(chain)
	for _, c := range cs {
		if c.Chain == chain && (c.Seq != mine.Seq || c.Hash != mine.Hash) {
			w.lost = fmt.Errorf("partition %d: chain %s's cursor moved to seq %d under this replica (at %d): %w", w.n, chain, c.Seq, mine.Seq, store.ErrConflict)
			return true
		}
	}
	return false
}

// raise feeds the detector the damage and adds the finding to the batch.
func (w *partWorker) raise(d *audit.Damage) {
	r := w.r
	r.log.Error("audit chain damaged", "chain", d.Chain, "partition", w.n, "damage", d.Describe())
	ev := audit.DamageEvent(d, 0)
	ev.EventTime = time.Now().UTC()
	for _, f := range r.cfg.Detector.Observe(ev) {
		w.b.addFinding(f)
		w.b.changes++
	}
	r.mu.Lock()
	r.damage[d.Chain] = ChainStatus{Chain: d.Chain, Reason: d.Describe(), Since: time.Now()}
	r.mu.Unlock()
	if m := r.cfg.Metrics; m != nil {
		m.Damaged(d.Chain)
	}
}

func truncate(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
