package consume_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/consume"
	"github.com/phantom-perimeter/phantom/internal/events"
	"github.com/phantom-perimeter/phantom/internal/events/natstest"
	"github.com/phantom-perimeter/phantom/internal/store"
)

const streamAccount = "123456789012"

// streamWriter appends events of several principals to one chain.
type streamWriter struct {
	l     *audit.Log
	chain string
	n     int
}

func (w *streamWriter) write(t testing.TB, n int) {
	t.Helper()
	for range n {
		w.n++
		ev := &audit.Event{EventVersion: audit.EventVersion, EventID: fmt.Sprintf("%s/%d", w.chain, w.n), EventTime: time.Now().UTC(),
			EventSource: "execute-api.amazonaws.com", EventName: "Invoke", AWSRegion: "eu-west-1", SourceIPAddress: "192.0.2.1",
			UserIdentity: audit.UserIdentity{Type: "IAMUser", ARN: fmt.Sprintf("arn:aws:iam::%s:user/u%d", streamAccount, w.n%23)}}
		if err := w.l.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// streamRig is a broker, an audit directory whose chains are published to it, and a
// store.
type streamRig struct {
	url   string
	js    jetstream.JetStream
	nc    *nats.Conn
	dir   string
	st    store.Store
	chain map[string]*streamWriter
}

func newStreamRig(t testing.TB, chains ...string) *streamRig {
	t.Helper()
	srv := natstest.Start(t)
	b := events.Broker{URLs: []string{srv.URL()}}
	nc, err := events.Dial(b, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := events.EnsureStream(t.Context(), js, b, streamAccount); err != nil {
		t.Fatal(err)
	}
	rig := &streamRig{url: srv.URL(), js: js, nc: nc, dir: t.TempDir(), st: openSQLiteB(t), chain: map[string]*streamWriter{}}
	for _, c := range chains {
		w := newWriter(t, rig.dir, c)
		rig.chain[c] = &streamWriter{l: w.l, chain: c}
	}
	if len(chains) > 0 {
		p, err := events.NewPublisher(events.PublisherConfig{JetStream: js, Account: streamAccount, Dir: rig.dir, Chains: chains, StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); p.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return rig
}

// killableLeases is the store's leases until kill: then every call fails, as for a
// process that died (it renews nothing, releases nothing).
type killableLeases struct {
	consume.LeaseStore
	dead atomic.Bool
}

var errDead = errors.New("process killed")

func (k *killableLeases) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if k.dead.Load() {
		return false, errDead
	}
	return k.LeaseStore.AcquireLease(ctx, name, holder, ttl)
}

func (k *killableLeases) ReleaseLease(ctx context.Context, name, holder string) error {
	if k.dead.Load() {
		return errDead
	}
	return k.LeaseStore.ReleaseLease(ctx, name, holder)
}

func (k *killableLeases) ListLeases(ctx context.Context) ([]store.Lease, error) {
	if k.dead.Load() {
		return nil, errDead
	}
	return k.LeaseStore.ListLeases(ctx)
}

// killableSink commits until kill.
type killableSink struct {
	consume.Sink
	dead *atomic.Bool
}

func (k killableSink) Commit(ctx context.Context, consumer string, adv []store.CursorAdvance, fs []detect.Finding) error {
	if k.dead.Load() {
		return errDead
	}
	return k.Sink.Commit(ctx, consumer, adv, fs)
}

// replica is one running detector replica.
type replica struct {
	nc     *nats.Conn
	r      *consume.Replica
	det    *streamCounter
	leases *killableLeases
	stop   func() error
}

func startReplica(t *testing.T, rig *streamRig, name string) *replica {
	t.Helper()
	det := &streamCounter{seen: map[string]int{}}
	leases := &killableLeases{LeaseStore: rig.st}
	// Its own connection: killing it leaves what it fetched unacknowledged.
	nc, err := events.Dial(events.Broker{URLs: []string{rig.url}}, name, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := consume.NewReplica(consume.StreamConfig{JetStream: js, Account: streamAccount, Holder: name, Leases: leases, Anchors: rig.st,
		LeaseTTL: 600 * time.Millisecond, Detector: det, Sink: killableSink{Sink: newResponder(t, rig.st), dead: &leases.dead},
		Skip:         func(c string) bool { return c == "detector" },
		BatchRecords: 50, BatchDelay: 20 * time.Millisecond, RetryFor: 200 * time.Millisecond, AckWait: 300 * time.Millisecond, EarlyWait: 700 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { stop() })
	return &replica{nc: nc, r: r, det: det, leases: leases, stop: stop}
}

// streamCounter counts what one replica observes, and the damage it is told of.
type streamCounter struct {
	mu     sync.Mutex
	seen   map[string]int
	damage []string
}

func (c *streamCounter) Observe(ev *audit.Event) []detect.Finding {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := audit.DamageOf(ev); ok {
		c.damage = append(c.damage, d.Error())
		return []detect.Finding{{SchemaVersion: "2.0", ID: "damage" + strconv.Itoa(len(c.damage)), Type: "Stealth:IAMUser/AuditLogTampered",
			Severity: 8, CreatedAt: ev.EventTime, UpdatedAt: time.Now(), Resource: detect.Resource{ResourceType: "AccessKey"}}}
	}
	c.seen[ev.EventID]++
	return nil
}

func (c *streamCounter) Restore([]detect.Finding) {}

func (c *streamCounter) damages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.damage...)
}

// committed sums, per chain, the events the partitions' cursors counted.
func committed(t testing.TB, st store.Store) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for n := range events.Partitions {
		cs, err := st.ListAuditCursors(t.Context(), consume.PartitionConsumer(n))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			out[c.Chain] += c.Events
		}
	}
	return out
}

func waitCommitted(t testing.TB, st store.Store, want map[string]int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := committed(t, st)
		ok := true
		for c, n := range want {
			if got[c] > n {
				t.Fatalf("chain %s: %d events committed, more than the %d it holds: %v", c, got[c], n, got)
			}
			ok = ok && got[c] == n
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed %v within %s, want %v", got, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitPartitions(t *testing.T, r *replica, n int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for len(r.r.Partitions()) != n {
		if time.Since(start) > within {
			t.Fatalf("replica holds %d partitions after %s, want %d", len(r.r.Partitions()), within, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// Two replicas share the partitions; one is killed (it renews and commits nothing more)
// while records flow; the other takes its partitions over when their leases expire.
// Every record is committed exactly once: the partitions' cursors count each chain's
// records, no more.
func TestStreamReplicasShareAndTakeOverExactlyOnce(t *testing.T) {
	rig := newStreamRig(t, "gateway-a", "gateway-b", "sts-a")
	for _, w := range rig.chain {
		w.write(t, 200)
	}
	a := startReplica(t, rig, "replica-a")
	waitPartitions(t, a, events.Partitions, 10*time.Second)
	b := startReplica(t, rig, "replica-b")
	waitPartitions(t, b, events.Partitions/2, 10*time.Second)
	waitPartitions(t, a, events.Partitions/2, 10*time.Second)
	for _, w := range rig.chain {
		w.write(t, 300)
	}
	a.leases.dead.Store(true) // as kill -9: no renewal, no commit, no acknowledgement
	a.nc.Close()
	killed := time.Now()
	for _, w := range rig.chain {
		w.write(t, 300)
	}
	waitPartitions(t, b, events.Partitions, 10*time.Second)
	t.Logf("takeover: the surviving replica held every partition %s after the kill", time.Since(killed).Round(time.Millisecond))
	want := map[string]int64{}
	for c, w := range rig.chain {
		want[c] = int64(w.n)
	}
	waitCommitted(t, rig.st, want, 30*time.Second)
	a.stop() // what a killed process would not do: its result says nothing
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	// Everything b observed it observed once.
	for id, n := range b.det.seen {
		if n != 1 {
			t.Fatalf("replica b observed %s %d times", id, n)
		}
	}
	if d := append(a.det.damages(), b.det.damages()...); len(d) > 0 {
		t.Fatalf("damage reported where nobody tampered: %q", d)
	}
	committedAfter := committed(t, rig.st)
	for c, n := range want {
		if committedAfter[c] != n {
			t.Fatalf("chain %s: %d events committed, want %d", c, committedAfter[c], n)
		}
	}
}

// publishRaw publishes a record of chain as a publisher would, with link as its
// partition link: what a broken or lying publisher, or a broker that lost messages,
// hands the detector.
func publishRaw(t *testing.T, js jetstream.JetStream, chain string, r audit.Record, link events.Link) {
	t.Helper()
	part := events.PartitionOf(r)
	msg := &nats.Msg{Subject: events.Subject(streamAccount, chain, events.Source(r), part), Data: r.AppendLine(nil), Header: nats.Header{
		events.HeaderChain: {chain}, events.HeaderSeq: {strconv.FormatUint(r.Seq, 10)}, events.HeaderPrev: {r.Prev},
		events.HeaderHash: {r.Hash}, events.HeaderPartPrev: {link.String()}}}
	if _, err := js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
}

// Records of one chain and partition, read from the chain.
func partitionRecords(t *testing.T, dir, chain string) map[int][]audit.Record {
	t.Helper()
	out := map[int][]audit.Record{}
	if err := audit.ReadChain(dir, chain, 0, func(e audit.Entry) error {
		p := events.PartitionOf(e.Record)
		out[p] = append(out[p], e.Record)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

var zeroLink = events.Link{Hash: strings.Repeat("0", 64)}

// A record whose predecessor in its partition never reaches the stream is a gap: a
// finding naming the records missing, and the consumer reads on. A record that does
// not follow what was read (a second record at a seq, a link to another record) is a
// finding and is not evaluated.
func TestStreamGapsAndContradictionsAreFindings(t *testing.T) {
	rig := newStreamRig(t) // no publisher: the test publishes
	dir := t.TempDir()
	w := newWriter(t, dir, "gateway-a")
	sw := &streamWriter{l: w.l, chain: "gateway-a"}
	sw.write(t, 200)
	parts := partitionRecords(t, dir, "gateway-a")
	var recs []audit.Record
	for _, rs := range parts {
		if len(rs) >= 5 {
			recs = rs
			break
		}
	}
	if recs == nil {
		t.Fatal("no partition with 5 records")
	}
	r := startReplica(t, rig, "replica-a")
	// 0 comes after 1, which links to it: 1 waits for it, both are evaluated, no
	// finding. Then 2 lost; 3 links to 2 (a gap); 4 follows 3. Then a forged record at
	// 4's seq, and one linking to 0 (behind the cursor).
	if len(recs) < 5 {
		t.Fatal("no partition with 5 records")
	}
	publishRaw(t, rig.js, "gateway-a", recs[1], events.Link{Seq: recs[0].Seq, Hash: recs[0].Hash})
	time.Sleep(300 * time.Millisecond)
	publishRaw(t, rig.js, "gateway-a", recs[0], zeroLink)
	waitCommitted(t, rig.st, map[string]int64{"gateway-a": 2}, 10*time.Second)
	if d := r.det.damages(); len(d) != 0 {
		t.Fatalf("a record that came before its predecessor was taken for a gap: %q", d)
	}
	recs = recs[1:]
	publishRaw(t, rig.js, "gateway-a", recs[2], events.Link{Seq: recs[1].Seq, Hash: recs[1].Hash})
	publishRaw(t, rig.js, "gateway-a", recs[3], events.Link{Seq: recs[2].Seq, Hash: recs[2].Hash})
	deadline := time.Now().Add(15 * time.Second)
	for len(r.det.damages()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no finding for the gap")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := r.det.damages(); len(d) != 1 || !strings.Contains(d[0], "never reached the audit stream") {
		t.Fatalf("damage = %q, want the gap", d)
	}
	waitCommitted(t, rig.st, map[string]int64{"gateway-a": 4}, 10*time.Second)

	forged := recs[3]
	forged.Event = []byte(strings.Replace(string(forged.Event), "Invoke", "Forged", 1))
	forged.Hash = strings.Repeat("a", 64) // ParseMessage refuses a hash that is not the content's
	publishRaw(t, rig.js, "gateway-a", forged, events.Link{Seq: recs[2].Seq, Hash: recs[2].Hash})
	publishRaw(t, rig.js, "gateway-a", recs[1], events.Link{Seq: recs[0].Seq, Hash: recs[0].Hash}) // behind the cursor: dropped
	deadline = time.Now().Add(10 * time.Second)
	for len(r.det.damages()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no finding for the forged record: %q", r.det.damages())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := r.det.damages(); len(d) != 2 || !strings.Contains(d[1], "not one of its records") {
		t.Fatalf("damage = %q, want the forged record", d)
	}
	// Another writer's chain of the same name (a host that lies, or a name reused):
	// valid records, but its record at the cursor's seq is not the one read, and its
	// next record links to a record that was not read.
	otherDir := t.TempDir()
	other := &streamWriter{l: newWriter(t, otherDir, "gateway-a").l, chain: "gateway-a"}
	other.write(t, 200)
	var twin, next audit.Record
	audit.ReadChain(otherDir, "gateway-a", 0, func(e audit.Entry) error {
		if e.Seq == recs[3].Seq {
			twin = e.Record
		}
		if e.Seq > recs[3].Seq && next.Seq == 0 && events.PartitionOf(e.Record) == events.PartitionOf(recs[3]) {
			next = e.Record
		}
		return nil
	})
	if twin.Seq == 0 || next.Seq == 0 {
		t.Fatal("the other chain has no record at the seqs wanted")
	}
	publishRaw(t, rig.js, "gateway-a", twin, events.Link{Seq: recs[2].Seq, Hash: recs[2].Hash})
	publishRaw(t, rig.js, "gateway-a", next, events.Link{Seq: recs[3].Seq, Hash: twin.Hash})
	deadline = time.Now().Add(10 * time.Second)
	for len(r.det.damages()) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("no finding for the contradicting records: %q", r.det.damages())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if d := r.det.damages(); len(d) != 4 || !strings.Contains(d[2], "two different records") || !strings.Contains(d[3], "does not follow") {
		t.Fatalf("damage = %q, want the second record at a seq and the record linking elsewhere", d)
	}
	for id, n := range r.det.seen {
		if n != 1 {
			t.Fatalf("observed %s %d times", id, n)
		}
	}
	if len(r.det.seen) != 4 {
		t.Fatalf("observed %d events, want 4 (the lost one, the forged one and the other chain's not)", len(r.det.seen))
	}
}

// A record at a position the store's anchors name must be the anchored one: a record
// that links in its partition but is not (a publisher allowed on the subjects forging
// the chain's history, or replaying another chain of the name) is a finding and is not
// evaluated; the anchored record that follows is.
func TestStreamRecordContradictingAnchorIsRefused(t *testing.T) {
	rig := newStreamRig(t) // no publisher: the test publishes
	dir := t.TempDir()
	w := anchoredWriter(t, dir, "gateway-a", rig.st)
	w.write(t, 120)
	var anchor audit.Anchor
	deadline := time.Now().Add(10 * time.Second)
	for anchor.Seq < 3 {
		as, err := rig.st.AuditAnchorsAfter(t.Context(), "gateway-a", 2, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) == 1 && as[0].Seq < 120 {
			anchor = as[0]
		} else if time.Now().After(deadline) {
			t.Fatalf("no anchor inside the chain: %+v", as)
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	var recs []audit.Record // 1 … anchor.Seq+1, all in one partition (one principal)
	audit.ReadChain(dir, "gateway-a", 0, func(e audit.Entry) error {
		if e.Seq <= anchor.Seq+1 {
			recs = append(recs, e.Record)
		}
		return nil
	})
	at := recs[anchor.Seq-1]
	if at.Hash != anchor.Hash || events.PartitionOf(recs[0]) != events.PartitionOf(at) {
		t.Fatalf("anchor %d/%s, record %d/%s", anchor.Seq, anchor.Hash, at.Seq, at.Hash)
	}
	// Another writer's chain of the name: a valid record at the anchored seq, with
	// other contents.
	otherDir := t.TempDir()
	other := newWriter(t, otherDir, "gateway-a")
	other.chain = "forged" // its events' ids
	other.write(t, int(anchor.Seq))
	var forged audit.Record
	audit.ReadChain(otherDir, "gateway-a", 0, func(e audit.Entry) error {
		if e.Seq == anchor.Seq {
			forged = e.Record
		}
		return nil
	})
	if forged.Seq == 0 || events.PartitionOf(forged) != events.PartitionOf(at) {
		t.Fatalf("forged record %+v", forged)
	}
	r := startReplica(t, rig, "replica-a")
	link := zeroLink
	for _, rec := range recs[:anchor.Seq-1] {
		publishRaw(t, rig.js, "gateway-a", rec, link)
		link = events.Link{Seq: rec.Seq, Hash: rec.Hash}
	}
	publishRaw(t, rig.js, "gateway-a", forged, link) // links to its predecessor
	publishRaw(t, rig.js, "gateway-a", at, link)
	publishRaw(t, rig.js, "gateway-a", recs[anchor.Seq], events.Link{Seq: at.Seq, Hash: at.Hash})
	waitCommitted(t, rig.st, map[string]int64{"gateway-a": int64(anchor.Seq + 1)}, 15*time.Second)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if d := r.det.damages(); len(d) != 1 || !strings.Contains(d[0], "anchor in the store") {
		t.Fatalf("damage = %q, want the record contradicting the anchor", d)
	}
	if n := r.det.seen[fmt.Sprintf("forged/%d", anchor.Seq)]; n != 0 {
		t.Fatalf("the forged record was evaluated %d times", n)
	}
	for seq := uint64(1); seq <= anchor.Seq+1; seq++ {
		if n := r.det.seen[fmt.Sprintf("gateway-a/%d", seq)]; n != 1 {
			t.Fatalf("record %d evaluated %d times, want once", seq, n)
		}
	}
}
