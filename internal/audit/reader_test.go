package audit

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A follower sees every record of a chain being written — across segment rotations —
// exactly once and in order, and resumes from a saved position.
func TestReaderFollows(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", func(c *Config) { c.SegmentBytes = 16 << 10; c.DigestInterval = 5 * time.Millisecond })
	writeN(t, l, 0, 1) // the chain exists before the reader starts
	r, err := NewReader(dir, "gateway", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	const n = 500
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i < n; i++ {
			if err := l.Record(context.Background(), gatewayEvent(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var next uint64 = 1
	var segs = map[uint64]bool{}
	err = r.Follow(ctx, time.Millisecond, func(e Entry) error {
		if e.Seq != next || e.Chain != "gateway" {
			t.Fatalf("got seq %d, want %d", e.Seq, next)
		}
		segs[e.Segment] = true
		next++
		if next > n {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || next != n+1 {
		t.Fatalf("Follow: %v after seq %d", err, next-1)
	}
	wg.Wait()
	l.Close()
	if len(segs) < 3 {
		t.Fatalf("followed %d segments, want rotation under the reader", len(segs))
	}

	// Resume after seq 321: the next is 322, whatever segment it is in.
	var got []uint64
	if err := ReadChain(dir, "gateway", 321, func(e Entry) error { got = append(got, e.Seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n-321 || got[0] != 322 || got[len(got)-1] != n {
		t.Fatalf("resumed at %v…, %d records", got[:min(3, len(got))], len(got))
	}
	chains, err := Chains(dir)
	if err != nil || len(chains) != 1 || chains[0] != "gateway" {
		t.Fatalf("Chains = %v, %v", chains, err)
	}
}

// A reader that met a torn tail does not consume it: after Open cuts it and the chain
// goes on over the same bytes, the reader continues at the right place.
func TestReaderAcrossTornTailRepair(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	writeN(t, l, 0, 3)
	l.Close()
	seg := filepath.Join(dir, "gateway", segmentName(1))
	f, _ := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"event":{"eventVersion":"1.08","userIdent`)
	f.Close()

	r, err := NewReader(dir, "gateway", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := 1; i <= 3; i++ {
		if e, err := r.Next(); err != nil || e.Seq != uint64(i) {
			t.Fatalf("Next = %v, %v; want seq %d", e.Position, err, i)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("at the torn tail: %v, want io.EOF", err)
	}
	l = openTest(t, dir, "gateway", nil)
	writeN(t, l, 3, 2)
	l.Close()
	var names []string
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ev, _ := e.Decode()
		names = append(names, ev.EventName)
	}
	if len(names) != 3 || names[0] != "AuditLogRecovered" || names[1] != "Invoke" {
		t.Fatalf("after repair read %v", names)
	}
}

// A reader refuses a chain whose records were tampered with, naming where.
func TestReaderRefusesBrokenChain(t *testing.T) {
	fx := newFixture(t, nil)
	seg, i := fx.segOf(5)
	ls := fx.lines(t, seg)
	fx.write(t, seg, append(ls[:i:i], ls[i+1:]...))
	err := ReadChain(fx.dir, "gateway", 0, func(Entry) error { return nil })
	if err == nil {
		t.Fatal("read a chain with a record removed")
	}
	t.Log(err)
}

// A consumer resuming with the hash of the last record it handled notices a chain that
// was rewritten from that point on.
func TestReaderExpectAfter(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	writeN(t, l, 0, 5)
	l.Close()
	var h3 string
	ReadChain(dir, "gateway", 0, func(e Entry) error {
		if e.Seq == 3 {
			h3 = e.Record.Hash
		}
		return nil
	})
	r, err := NewReader(dir, "gateway", 3)
	if err != nil {
		t.Fatal(err)
	}
	r.ExpectAfter(h3)
	if e, err := r.Next(); err != nil || e.Seq != 4 {
		t.Fatalf("Next = %v, %v", e.Position, err)
	}
	r.Close()

	// Rewrite the chain from scratch: same seqs, other records.
	os.RemoveAll(filepath.Join(dir, "gateway"))
	l = openTest(t, dir, "gateway", nil)
	writeN(t, l, 100, 5)
	l.Close()
	r, err = NewReader(dir, "gateway", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.ExpectAfter(h3)
	if _, err := r.Next(); err == nil {
		t.Fatal("a rewritten chain was read on")
	} else {
		t.Log(err)
	}
}

// A consumer resuming after a record the chain no longer reaches (the chain was cut
// short, or rewritten with fewer records) gets an error instead of waiting forever for
// records it already consumed; a consumer that is simply up to date gets io.EOF.
func TestReaderChainShorterThanCursor(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	writeN(t, l, 0, 5)
	l.Close()
	var h5 string
	ReadChain(dir, "gateway", 0, func(e Entry) error {
		if e.Seq == 5 {
			h5 = e.Record.Hash
		}
		return nil
	})
	r, err := NewReader(dir, "gateway", 5)
	if err != nil {
		t.Fatal(err)
	}
	r.ExpectAfter(h5)
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("up to date: Next = %v, want io.EOF", err)
	}
	r.Close()

	// The same chain rewritten with three records.
	os.RemoveAll(filepath.Join(dir, "gateway"))
	l = openTest(t, dir, "gateway", nil)
	writeN(t, l, 100, 3)
	l.Close()
	r, err = NewReader(dir, "gateway", 5)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.ExpectAfter(h5)
	if _, err := r.Next(); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("a chain shorter than the cursor: Next = %v, want an error", err)
	} else {
		t.Log(err)
	}

	// Rewritten with as many records: the record at the cursor is not the one read.
	os.RemoveAll(filepath.Join(dir, "gateway"))
	l = openTest(t, dir, "gateway", nil)
	writeN(t, l, 200, 5)
	l.Close()
	r2, err := NewReader(dir, "gateway", 5)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	r2.ExpectAfter(h5)
	if _, err := r2.Next(); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("a chain rewritten up to the cursor: Next = %v, want an error", err)
	}
}
