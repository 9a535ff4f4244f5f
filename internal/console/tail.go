package console

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// tail keeps the latest events of every audit chain, read incrementally: each refresh
// reads only what the chains gained since the last one (audit.Reader checks each
// record's hash and link as it goes). It runs no goroutine of its own; requests drive it,
// at most once per tailInterval.
type tail struct {
	dir  string
	keep int

	mu      sync.Mutex
	last    time.Time
	chains  map[string]*chainTail
	scanned time.Time
}

// tailInterval is the least time between two reads of the chains.
const tailInterval = 500 * time.Millisecond

// chainTail is one chain's reader and its ring of latest events.
type chainTail struct {
	r      *audit.Reader
	ring   []tailEvent // oldest first, at most keep
	err    string      // the last read error, shown on /decisions
	failAt time.Time
}

// tailEvent is one decoded event and where it is in the log.
type tailEvent struct {
	chain string
	seq   uint64
	ev    *audit.Event
	raw   []byte // the event JSON until it is decoded
}

func newTail(dir string, keep int) *tail {
	return &tail{dir: dir, keep: keep, chains: map[string]*chainTail{}}
}

// snapshot refreshes the chains if due and returns every kept event, newest first, with
// the chains that could not be read.
func (t *tail) snapshot(now time.Time) ([]tailEvent, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.last) >= tailInterval || now.Before(t.last) {
		t.last = now
		t.refresh(now)
	}
	var out []tailEvent
	var errs []string
	for name, c := range t.chains {
		out = append(out, c.ring...)
		if c.err != "" {
			errs = append(errs, name+": "+c.err)
		}
	}
	slices.SortFunc(out, func(a, b tailEvent) int {
		if c := b.ev.EventTime.Compare(a.ev.EventTime); c != 0 {
			return c
		}
		if c := strings.Compare(a.chain, b.chain); c != 0 {
			return c
		}
		return int(int64(b.seq) - int64(a.seq))
	})
	slices.Sort(errs)
	return out, errs
}

func (t *tail) refresh(now time.Time) {
	if now.Sub(t.scanned) >= 2*time.Second || len(t.chains) == 0 {
		t.scanned = now
		names, err := audit.Chains(t.dir)
		if err == nil {
			for _, n := range names {
				if _, ok := t.chains[n]; !ok {
					t.chains[n] = &chainTail{}
				}
			}
		}
	}
	for name, c := range t.chains {
		t.read(name, c, now)
	}
}

// read appends what chain gained to its ring. A chain that fails (tampered, rewritten)
// keeps its events and its error, and is opened afresh after a pause.
func (t *tail) read(name string, c *chainTail, now time.Time) {
	if c.r == nil {
		if !c.failAt.IsZero() && now.Sub(c.failAt) < 10*time.Second {
			return
		}
		r, err := t.open(name)
		if err != nil {
			c.err, c.failAt = err.Error(), now
			return
		}
		c.r, c.ring = r, nil
	}
	for {
		e, err := c.r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			c.err, c.failAt = err.Error(), now
			c.r.Close()
			c.r = nil
			break
		}
		c.err = ""
		c.ring = append(c.ring, tailEvent{chain: name, seq: e.Seq, raw: e.Record.Event})
		if len(c.ring) > 2*t.keep {
			c.ring = append(c.ring[:0], c.ring[len(c.ring)-t.keep:]...)
		}
	}
	if len(c.ring) > t.keep {
		c.ring = append(c.ring[:0], c.ring[len(c.ring)-t.keep:]...)
	}
	// Decode only the events that stay; an event that does not decode is dropped (the
	// chain's hash covered it, so only a writer could have put it there; Verify reports it).
	kept := c.ring[:0]
	for _, e := range c.ring {
		if e.ev == nil {
			ev, err := (audit.Entry{Position: audit.Position{Chain: name, Seq: e.seq}, Record: audit.Record{Event: e.raw}}).Decode()
			if err != nil {
				c.err = err.Error()
				continue
			}
			e.ev, e.raw = ev, nil
		}
		kept = append(kept, e)
	}
	c.ring = kept
}

// open starts reading a chain near its end: from its newest segment, or the one before
// when the newest is still small, so a long history is not read just to show its tail.
func (t *tail) open(chain string) (*audit.Reader, error) {
	dir := filepath.Join(t.dir, chain)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".jsonl") && !e.IsDir() {
			segs = append(segs, e.Name())
		}
	}
	slices.Sort(segs)
	if len(segs) == 0 {
		return nil, fmt.Errorf("no segments yet")
	}
	start := len(segs) - 1
	if fi, err := os.Stat(filepath.Join(dir, segs[start])); err == nil && fi.Size() < 4<<20 && start > 0 {
		start--
	}
	after := uint64(0)
	if seq, ok := firstSeq(chain, filepath.Join(dir, segs[start])); ok && seq > 0 {
		after = seq - 1
	}
	return audit.NewReader(t.dir, chain, after)
}

// firstSeq is the seq of a segment's first record.
func firstSeq(chain, path string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false
	}
	rec, err := audit.ParseRecord(chain, line[:len(line)-1])
	if err != nil {
		return 0, false
	}
	return rec.Seq, true
}
