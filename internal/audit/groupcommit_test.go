package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// queued is how many Records wait for the next batch.
func queued(l *Log) int {
	l.qmu.Lock()
	defer l.qmu.Unlock()
	return len(l.queue)
}

// writeFunc is a stand-in for Log.writeAt.
type writeFunc = func(f *os.File, p []byte, off int64) (int, error)

// heldBatch records event 0 and holds its write until n more Records (events 1..n) wait
// behind it; then every write, the held one first, goes through write (given the
// write's number, from 1). It returns each Record's error, by event, and the number of
// writes.
func heldBatch(t *testing.T, l *Log, n int, write func(call int64, f *os.File, p []byte, off int64) (int, error)) ([]error, int64) {
	t.Helper()
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	l.mu.Lock()
	l.writeAt = func(f *os.File, p []byte, off int64) (int, error) {
		call := calls.Add(1)
		if call == 1 {
			close(entered)
			<-release
		}
		return write(call, f, p, off)
	}
	l.mu.Unlock()
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = l.Record(context.Background(), gatewayEvent(0)) })
	<-entered
	for i := 1; i <= n; i++ {
		wg.Go(func() { errs[i] = l.Record(context.Background(), gatewayEvent(i)) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for queued(l) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records queued", queued(l), n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	l.mu.Lock()
	l.writeAt = (*os.File).WriteAt
	l.mu.Unlock()
	return errs, calls.Load()
}

func passWrite(_ int64, f *os.File, p []byte, off int64) (int, error) { return f.WriteAt(p, off) }

// chainIDs reads back a chain's request IDs in order, failing on a duplicate.
func chainIDs(t *testing.T, dir string) []string {
	t.Helper()
	var ids []string
	seen := map[string]bool{}
	for _, ev := range eventsOf(t, dir, "gateway") {
		if ev.RequestID != "" && seen[ev.RequestID] {
			t.Fatalf("%s recorded twice", ev.RequestID)
		}
		seen[ev.RequestID] = true
		ids = append(ids, ev.RequestID)
	}
	return ids
}

// acknowledged is the request IDs of the events whose Record returned nil.
func acknowledged(errs []error) map[string]bool {
	acked := map[string]bool{}
	for i, err := range errs {
		if err == nil {
			acked[gatewayEvent(i).RequestID] = true
		}
	}
	return acked
}

// closeVerified signs a digest of l (which first reads back the last records its
// bookkeeping says it wrote: a wrong offset or length shows as damage), closes it and
// verifies its chain: no problem, no warning, no damage.
func closeVerified(t *testing.T, l *Log, dir string) {
	t.Helper()
	if err := l.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, pinned(t))
	if !rep.OK() || len(rep.Warnings) != 0 {
		t.Fatalf("problems:\n%swarnings: %v", problems(rep), rep.Warnings)
	}
	for _, ev := range eventsOf(t, dir, "gateway") {
		if ev.EventName == EventChainDamaged {
			t.Fatalf("the writer found its own chain damaged: %v", ev.AdditionalEventData)
		}
	}
}

// TestGroupCommit: the Records that arrive while a write is in progress are written by
// the next write, all of them with one write(2), and each returns once it is written.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	errs, writes := heldBatch(t, l, 63, passWrite)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if writes != 2 {
		t.Errorf("%d writes for a lone record and a batch of 63, want 2", writes)
	}
	closeVerified(t, l, dir)
	ids := chainIDs(t, dir)
	if len(ids) != 64 || ids[0] != gatewayEvent(0).RequestID {
		t.Fatalf("chain holds %d records (first %v), want 64 starting with event 0", len(ids), ids[:1])
	}
}

// TestLoneRecordWritesAtOnce: a Record with no other in flight is written by its own
// write(2), before it returns: nothing waits for company.
func TestLoneRecordWritesAtOnce(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	var writes atomic.Int64
	l.mu.Lock()
	l.writeAt = func(f *os.File, p []byte, off int64) (int, error) {
		writes.Add(1)
		return f.WriteAt(p, off)
	}
	l.mu.Unlock()
	seg := filepath.Join(dir, "gateway", segmentName(1))
	var size int64
	for i := range 5 {
		if err := l.Record(context.Background(), gatewayEvent(i)); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(seg)
		if err != nil {
			t.Fatal(err)
		}
		if writes.Load() != int64(i+1) || st.Size() <= size {
			t.Fatalf("after record %d returned: %d writes, segment %d bytes (was %d)", i, writes.Load(), st.Size(), size)
		}
		size = st.Size()
	}
	closeVerified(t, l, dir)
}

// TestGroupCommitRotates: a batch that reaches the end of a segment continues in the
// next one, breaking where records written one by one would (a record starts a new
// segment when its event part and 256 bytes would go past SegmentBytes), with one
// write per segment.
func TestGroupCommitRotates(t *testing.T) {
	dir := t.TempDir()
	const segBytes = 16 << 10
	l := openTest(t, dir, "gateway", func(c *Config) { c.SegmentBytes = segBytes })
	errs, writes := heldBatch(t, l, 63, passWrite)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	closeVerified(t, l, dir)

	segs, _, _, err := chainFiles(os.DirFS(filepath.Join(dir, "gateway")), ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 4 {
		t.Fatalf("%d segments: the batch did not rotate", len(segs))
	}
	records, batchSegs := 0, 0
	for i, n := range segs {
		data, err := os.ReadFile(filepath.Join(dir, "gateway", segmentName(n)))
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > segBytes {
			t.Errorf("segment %d holds %d bytes, more than %d", n, len(data), segBytes)
		}
		holdsBatch := false
		var off int64
		for _, ln := range splitLines(data) {
			r, err := ParseRecord("gateway", ln.Text)
			if err != nil {
				t.Fatal(err)
			}
			if off > 0 && off+int64(len(recEvent)+len(r.Event))+256 > segBytes {
				t.Errorf("segment %d: record seq %d at offset %d should have started a new segment", n, r.Seq, off)
			}
			off = ln.End
			records++
			holdsBatch = holdsBatch || r.Seq > 1
		}
		if i+1 < len(segs) {
			next, err := os.ReadFile(filepath.Join(dir, "gateway", segmentName(segs[i+1])))
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseRecord("gateway", splitLines(next)[0].Text)
			if err != nil {
				t.Fatal(err)
			}
			if off+int64(len(recEvent)+len(r.Event))+256 <= segBytes {
				t.Errorf("segment %d ends at %d bytes, but record seq %d fits after it", n, off, r.Seq)
			}
		}
		if holdsBatch {
			batchSegs++
		}
	}
	if records != 64 {
		t.Fatalf("%d records, want 64", records)
	}
	if want := int64(1 + batchSegs); writes != want {
		t.Errorf("%d writes, want %d: the lone record and one per segment the batch spans", writes, want)
	}
}

// TestGroupCommitWriteFailure: a failed write of a batch refuses every record of the
// batch — each Record returns an error, so each request fails closed; the chain
// continues from the last record written, records the gap with the number refused, and
// verifies.
func TestGroupCommitWriteFailure(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	errs, _ := heldBatch(t, l, 63, func(call int64, f *os.File, p []byte, off int64) (int, error) {
		if call == 2 {
			return 0, syscall.EIO
		}
		return f.WriteAt(p, off)
	})
	if errs[0] != nil {
		t.Fatalf("the lone record: %v", errs[0])
	}
	for i, err := range errs[1:] {
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("record %d of the failed batch: %v, want the write's error", i+1, err)
		}
	}
	if l.Err() == nil {
		t.Fatal("Err is nil after a failed write")
	}
	writeN(t, l, 100, 2)
	closeVerified(t, l, dir)
	evs := eventsOf(t, dir, "gateway")
	if len(evs) != 4 || evs[0].RequestID != "req-00000000" || evs[1].EventName != "AuditLogGap" ||
		evs[2].RequestID != "req-00000100" || evs[3].RequestID != "req-00000101" {
		t.Fatalf("chain holds %d events: %v", len(evs), names(evs))
	}
	if got := evs[1].AdditionalEventData["refusedRecords"]; got != float64(63) {
		t.Errorf("gap refusedRecords %v, want 63", got)
	}
}

// TestGroupCommitShortWrite: a write of a batch that fails part way (a full disk) leaves
// no partial line: the records it wrote whole are written (acknowledged, and kept: a
// reader may have read them), the others refused, and the chain holds exactly the
// acknowledged records, then the gap, and verifies.
func TestGroupCommitShortWrite(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	var wrote int
	errs, _ := heldBatch(t, l, 63, func(call int64, f *os.File, p []byte, off int64) (int, error) {
		if call == 2 {
			wrote = len(p) / 2
			n, _ := f.WriteAt(p[:wrote], off)
			return n, syscall.ENOSPC
		}
		return f.WriteAt(p, off)
	})
	acked := acknowledged(errs)
	refused := len(errs) - len(acked)
	if len(acked) < 2 || refused < 2 {
		t.Fatalf("%d acknowledged, %d refused, after a write of %d bytes failed", len(acked), refused, wrote)
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("refused with %v, want the write's error", err)
		}
	}
	// No partial line: the segment ends with the last whole record.
	data, err := os.ReadFile(filepath.Join(dir, "gateway", segmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	if lines := splitLines(data); len(lines) != len(acked) || lines[len(lines)-1].Partial {
		t.Fatalf("segment holds %d lines (last partial: %v), want the %d acknowledged records", len(lines), lines[len(lines)-1].Partial, len(acked))
	}
	writeN(t, l, 100, 1)
	closeVerified(t, l, dir)
	checkAcknowledged(t, dir, acked, refused)
}

// checkAcknowledged checks that the chain holds the acknowledged records (and req-00000100,
// written after), each once, and one gap record counting the refused ones.
func checkAcknowledged(t *testing.T, dir string, acked map[string]bool, refused int) {
	t.Helper()
	acked["req-00000100"] = true
	gaps := 0
	for _, ev := range eventsOf(t, dir, "gateway") {
		if ev.EventName == "AuditLogGap" {
			gaps++
			if got := ev.AdditionalEventData["refusedRecords"]; got != float64(refused) {
				t.Errorf("gap refusedRecords %v, want %d", got, refused)
			}
			continue
		}
		if !acked[ev.RequestID] {
			t.Errorf("%s is in the chain but was refused (or is there twice)", ev.RequestID)
		}
		delete(acked, ev.RequestID)
	}
	if len(acked) != 0 || gaps != 1 {
		t.Fatalf("acknowledged but not in the chain: %v; %d gap records", acked, gaps)
	}
}

// TestGroupCommitFailureAfterRotation: a batch spanning segments whose write to the
// second segment fails keeps what the first write wrote (those records are in the chain
// and acknowledged) and refuses the rest; the chain holds exactly the acknowledged
// records, then the gap.
func TestGroupCommitFailureAfterRotation(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", func(c *Config) { c.SegmentBytes = 16 << 10 })
	errs, _ := heldBatch(t, l, 63, func(call int64, f *os.File, p []byte, off int64) (int, error) {
		if call == 3 {
			return 0, syscall.EIO
		}
		return f.WriteAt(p, off)
	})
	acked := acknowledged(errs)
	refused := len(errs) - len(acked)
	if len(acked) < 3 || refused < 3 {
		t.Fatalf("%d acknowledged, %d refused: the failure did not fall inside the batch", len(acked), refused)
	}
	data, err := os.ReadFile(filepath.Join(dir, "gateway", segmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(splitLines(data)); n != len(acked) {
		t.Fatalf("%d acknowledged, want the %d records of the first segment", len(acked), n)
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, syscall.EIO) {
			t.Fatalf("refused with %v, want the write's error", err)
		}
	}
	writeN(t, l, 100, 1)
	closeVerified(t, l, dir)
	checkAcknowledged(t, dir, acked, refused)
}

// TestCloseDuringBatch: Records waiting while Close runs are either written and
// acknowledged or refused with ErrClosed; the chain holds exactly the acknowledged.
func TestCloseDuringBatch(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	closed := make(chan error, 1)
	errs, _ := heldBatch(t, l, 31, func(call int64, f *os.File, p []byte, off int64) (int, error) {
		if call == 1 {
			go func() { closed <- l.Close() }()
			time.Sleep(5 * time.Millisecond) // let Close wait for the lock
		}
		return f.WriteAt(p, off)
	})
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil {
		t.Fatalf("the record written before Close: %v", errs[0])
	}
	for _, err := range errs {
		if err != nil && err != ErrClosed {
			t.Fatalf("refused with %v, want ErrClosed", err)
		}
	}
	acked := acknowledged(errs)
	ids := chainIDs(t, dir)
	for _, id := range ids {
		if !acked[id] {
			t.Errorf("%s is in the chain but was refused", id)
		}
	}
	if len(ids) != len(acked) {
		t.Fatalf("%d acknowledged, %d in the chain", len(acked), len(ids))
	}
	rep := mustVerify(t, dir, pinned(t))
	if !rep.OK() || len(rep.Warnings) != 0 {
		t.Fatalf("problems:\n%swarnings: %v", problems(rep), rep.Warnings)
	}
}

func names(evs []*Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.EventName+" "+ev.RequestID)
	}
	return out
}
