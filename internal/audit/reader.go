package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Position names a record. (Chain, Seq) is stable and unique: a consumer that saves the
// last Seq it handled per chain and resumes with NewReader(dir, chain, seq) sees every
// record exactly once. Segment and Line say where the record is on disk.
type Position struct {
	Chain   string `json:"chain"`
	Segment uint64 `json:"segment"`
	Line    int    `json:"line"`
	Seq     uint64 `json:"seq"`
}

// Entry is one record read from a chain.
type Entry struct {
	Position
	Record Record
}

// Decode parses the entry's CloudTrail event.
func (e Entry) Decode() (*Event, error) {
	var ev Event
	if err := json.Unmarshal(e.Record.Event, &ev); err != nil {
		return nil, fmt.Errorf("audit record %s seq %d: %w", e.Chain, e.Seq, err)
	}
	return &ev, nil
}

// Chains lists the chains in an audit directory, sorted by name.
func Chains(dir string) ([]string, error) {
	cs, err := findChains(os.DirFS(dir), dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.name
	}
	return names, nil
}

// Reader reads one chain's records in order, following segments, while a writer may be
// appending. Next returns io.EOF when no complete record follows yet; call it again
// later to get records written since (or use Follow). It checks each record's hash and
// its link to the record before it, that no record is missing, and, while it waits at
// the end, that the file it reads is still the chain's and no shorter than what it read;
// when anything is wrong it returns a *Damage naming the chain, segment and records: a
// consumer never silently skips or repeats a record. It does not check digests; Verify
// does.
type Reader struct {
	chain string
	dir   string
	seg   uint64
	f     *os.File
	off   int64 // offset of the next unread line in f
	line  int   // number of the next line
	buf   []byte
	after uint64 // skip records up to this seq
	// afterHash, when set, is the hash the record at seq after had when it was read
	// before; the next record must follow it.
	afterHash string
	next      uint64 // seq expected next (0: not known yet)
	prev      string // hash the next record must name
	// start is where the segment the reader opened at starts, as its opening digest
	// says: a reader waiting at the start of a segment with no record yet knows the
	// chain goes on from there.
	start struct {
		seq  uint64
		prev string
		ok   bool
	}
	// segFirst is the seq of the first record read in segment seg (0: none yet); lastSeg
	// the segment of the last record read.
	segFirst, lastSeg uint64
	// The last record read from seg: its line ends at lastEnd, lastLen bytes long; and
	// the one that was last at the previous check, read back at the next.
	lastEnd, lastLen int64
	lastHash         string
	mark             readMark
	checked          time.Time // when the open file was last checked against the path
}

// readMark is a record read earlier: where its line ends, how long it is, its hash.
type readMark struct {
	end, len int64
	seq      uint64
	hash     string
}

// fileCheckInterval is how often, at most, a reader waiting at the end of a segment
// checks that the file is still the chain's and not shorter than what it read.
const fileCheckInterval = 200 * time.Millisecond

// NewReader returns a reader of chain in dir positioned after record seq after (0: from
// the beginning of what the chain holds).
func NewReader(dir, chain string, after uint64) (*Reader, error) {
	if !ValidChain(chain) {
		return nil, fmt.Errorf("read audit chain: bad chain name %q", chain)
	}
	r := &Reader{chain: chain, dir: filepath.Join(dir, chain), after: after}
	segs, _, _, err := chainFiles(os.DirFS(r.dir), ".")
	if err != nil {
		return nil, fmt.Errorf("read audit chain %q: %w", chain, err)
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("read audit chain %q: no segments in %s", chain, r.dir)
	}
	// Start at the last segment whose first record is at or before the one wanted.
	r.seg = segs[0]
	for i := len(segs) - 1; i >= 0; i-- {
		first, prev, ok := segmentStart(r.dir, r.chain, segs[i])
		if ok && first <= after+1 || i == 0 {
			r.seg = segs[i]
			r.start.seq, r.start.prev, r.start.ok = first, prev, ok
			break
		}
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reader) open() error {
	f, err := os.Open(filepath.Join(r.dir, segmentName(r.seg)))
	if err != nil {
		return fmt.Errorf("read audit chain %q: %w", r.chain, err)
	}
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.off, r.line, r.buf, r.segFirst, r.lastLen, r.mark = f, 0, 1, r.buf[:0], 0, 0, readMark{}
	return nil
}

// ExpectAfter makes the reader check that the chain still continues from the record a
// consumer handled last: hash is that record's (seq after's) Record.Hash. A chain
// rewritten or truncated and restarted since then makes Next fail instead of handing
// out records that do not follow what was consumed.
func (r *Reader) ExpectAfter(hash string) { r.afterHash = hash }

// Accept takes a gap d that Next returned (records missing before one it could read,
// d.Next set) as known: the next call of Next returns the record after the gap.
func (r *Reader) Accept(d *Damage) error {
	if d == nil || d.Next == nil || d.Chain != r.chain {
		return errors.New("audit reader: not a gap this reader can read on from")
	}
	if r.next == 0 {
		r.after, r.afterHash = d.Next.Seq, d.NextHash
	} else {
		r.next, r.prev = d.Next.Seq+1, d.NextHash
	}
	return nil
}

// Close releases the reader's file.
func (r *Reader) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// Next returns the next record, or io.EOF when there is none yet.
func (r *Reader) Next() (Entry, error) {
	for {
		ln, err := r.readLine()
		if errors.Is(err, io.EOF) && r.next == 0 && r.start.ok && r.start.seq == r.after+1 {
			// At the start of a segment no record is in yet (a writer just moved on to
			// it): the chain goes on from the record read before, if it names it.
			if r.afterHash != "" && r.start.prev != r.afterHash {
				return Entry{}, &Damage{Chain: r.chain, Segment: r.seg, Kind: Modified, From: r.after,
					Detail: fmt.Sprintf("segment %s does not start after the record seq %d read before: the chain was rewritten", segmentName(r.seg), r.after)}
			}
			return Entry{}, io.EOF
		}
		if errors.Is(err, io.EOF) && r.after > 0 && (r.next == 0 || r.next-1 < r.after) {
			// The whole chain has been read and it ends before the record the consumer
			// says it already handled: it was truncated or rewritten shorter. Waiting
			// for records that were already consumed would hide that.
			last := uint64(0)
			if r.next > 0 {
				last = r.next - 1
			}
			seg := r.lastSeg
			if seg == 0 {
				seg = r.seg
			}
			return Entry{}, &Damage{Chain: r.chain, Segment: seg, Kind: Truncated, From: last + 1, To: r.after,
				Detail: fmt.Sprintf("the chain ends at seq %d, before seq %d read before: it was cut short or rewritten shorter", last, r.after)}
		}
		if err != nil {
			return Entry{}, err
		}
		pos := Position{Chain: r.chain, Segment: r.seg, Line: r.line, Seq: r.next}
		rec, perr := ParseRecord(r.chain, ln)
		if perr != nil {
			return Entry{}, &Damage{Chain: r.chain, Segment: r.seg, Kind: Modified, From: r.next,
				Detail: fmt.Sprintf("%s line %d: %v", segmentName(r.seg), r.line, perr)}
		}
		pos.Seq = rec.Seq
		if r.afterHash != "" && rec.Seq == r.after && rec.Hash != r.afterHash {
			return Entry{}, &Damage{Chain: r.chain, Segment: r.seg, Kind: Modified, From: rec.Seq,
				Detail: fmt.Sprintf("%s line %d: record seq %d is not the one read before: the chain was rewritten", segmentName(r.seg), r.line, rec.Seq)}
		}
		if r.afterHash != "" && rec.Seq == r.after+1 && rec.Prev != r.afterHash {
			return Entry{}, &Damage{Chain: r.chain, Segment: r.seg, Kind: Modified, From: r.after,
				Detail: fmt.Sprintf("%s line %d: record seq %d does not follow the record seq %d read before: the chain was rewritten", segmentName(r.seg), r.line, rec.Seq, r.after)}
		}
		if r.next == 0 && rec.Seq > r.after+1 {
			// The first record read is past the one wanted: the records between are gone
			// (removed, or pruned: the consumer tells which). Reading can go on from here.
			return Entry{}, &Damage{Chain: r.chain, Segment: r.seg, Kind: Removed, From: r.after + 1, To: rec.Seq - 1,
				Detail: fmt.Sprintf("the chain's records before seq %d are missing", rec.Seq),
				Next:   &Position{Chain: r.chain, Segment: r.seg, Seq: rec.Seq - 1}, NextHash: rec.Prev}
		}
		if r.next != 0 && (rec.Seq != r.next || rec.Prev != r.prev) {
			d := &Damage{Chain: r.chain, Segment: r.seg, Kind: Modified, From: r.next,
				Detail: fmt.Sprintf("%s line %d: record seq %d does not follow seq %d", segmentName(r.seg), r.line, rec.Seq, r.next-1)}
			if rec.Seq > r.next {
				d.Kind, d.To = Removed, rec.Seq-1
				d.Detail = fmt.Sprintf("%s line %d: records are missing before record seq %d", segmentName(r.seg), r.line, rec.Seq)
				d.Next, d.NextHash = &Position{Chain: r.chain, Segment: r.seg, Seq: rec.Seq - 1}, rec.Prev
			}
			return Entry{}, d
		}
		r.off += int64(len(ln)) + 1
		r.lastEnd, r.lastLen, r.lastHash = r.off, int64(len(ln))+1, rec.Hash
		r.line++
		r.buf = r.buf[len(ln)+1:]
		r.next, r.prev = rec.Seq+1, rec.Hash
		if r.segFirst == 0 {
			r.segFirst = rec.Seq
		}
		r.lastSeg = r.seg
		if rec.Seq <= r.after {
			continue
		}
		// The entry must not alias the read buffer.
		rec.Event = bytes.Clone(rec.Event)
		return Entry{Position: pos, Record: rec}, nil
	}
}

// readLine returns the next complete line (without newline), moving to the next segment
// at the end of a sealed one, or io.EOF.
func (r *Reader) readLine() ([]byte, error) {
	if r.f == nil {
		return nil, errors.New("audit reader closed")
	}
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			return r.buf[:i], nil
		}
		if len(r.buf) > 16<<20 {
			return nil, &Damage{Chain: r.chain, Segment: r.seg, Kind: Modified, From: r.next,
				Detail: fmt.Sprintf("%s line %d: line longer than 16 MiB", segmentName(r.seg), r.line)}
		}
		got, err := r.fill()
		if err != nil {
			return nil, err
		}
		if got {
			continue
		}
		// End of the file. Once the next segment exists this one is complete (the writer
		// creates it only after the last write here), but records may have landed between
		// our read and that check: read once more before moving on.
		if _, err := os.Stat(filepath.Join(r.dir, segmentName(r.seg+1))); err != nil {
			// Drop a partial line: a writer resuming after a crash cuts it and writes
			// over the same bytes, so it is read afresh next time.
			r.buf = r.buf[:0]
			if err := r.checkFile(false); err != nil {
				return nil, err
			}
			return nil, io.EOF
		}
		if got, err := r.fill(); err != nil {
			return nil, err
		} else if got {
			continue
		}
		if err := r.checkFile(true); err != nil {
			return nil, err
		}
		if len(r.buf) > 0 {
			return nil, &Damage{Chain: r.chain, Segment: r.seg, Kind: Truncated, From: r.next,
				Detail: fmt.Sprintf("%s line %d: incomplete record at the end of a sealed segment", segmentName(r.seg), r.line)}
		}
		r.seg++
		if err := r.open(); err != nil {
			return nil, err
		}
	}
}

// checkFile checks, at most every fileCheckInterval unless force, that the file being
// read is still the segment's (not removed or replaced) and not shorter than what was
// read from it: a chain damaged under a reader that already read it is damage too.
func (r *Reader) checkFile(force bool) error {
	now := time.Now()
	if !force && now.Sub(r.checked) < fileCheckInterval {
		return nil
	}
	r.checked = now
	name := segmentName(r.seg)
	fst, err := r.f.Stat()
	if err != nil {
		return fmt.Errorf("read audit chain %q: %w", r.chain, err)
	}
	read := r.off + int64(len(r.buf))
	upTo := uint64(0)
	if r.next > 0 {
		upTo = r.next - 1
	}
	if pst, err := os.Stat(filepath.Join(r.dir, name)); err != nil || !os.SameFile(fst, pst) {
		d := &Damage{Chain: r.chain, Segment: r.seg, Kind: Removed, Detail: fmt.Sprintf("segment %s was removed or replaced", name)}
		if _, err := os.Stat(r.dir); err != nil {
			d.Detail = "the chain's directory was removed"
		}
		if r.segFirst > 0 {
			d.From, d.To = r.segFirst, upTo
		}
		return d
	}
	if fst.Size() < read {
		return truncation(r.dir, r.chain, r.seg, upTo, fmt.Sprintf("segment %s was cut from %d to %d bytes", name, read, fst.Size()))
	}
	// The records read must still be where they were: a file cut and written again
	// past the cut is as long as before. The last one read, and the one that was last at
	// the previous check (records read since may all be past the cut).
	last := readMark{end: r.lastEnd, len: r.lastLen, seq: upTo, hash: r.lastHash}
	for _, m := range []readMark{r.mark, last} {
		if m.len == 0 {
			continue
		}
		buf := make([]byte, m.len)
		_, err := r.f.ReadAt(buf, m.end-m.len)
		rec, perr := ParseRecord(r.chain, bytes.TrimSuffix(buf, []byte("\n")))
		if err != nil || perr != nil || buf[len(buf)-1] != '\n' || rec.Hash != m.hash {
			d := truncation(r.dir, r.chain, r.seg, upTo, fmt.Sprintf("segment %s no longer holds record seq %d where it was read: it was cut or rewritten", name, m.seq))
			if d.From == 0 && r.segFirst > 0 {
				// Where the segment starts is gone too: name what was read from it.
				d.From, d.To = r.segFirst, upTo
			}
			return d
		}
	}
	r.mark = last
	return nil
}

// fill reads what follows r.buf in the file; it reports whether it got anything.
func (r *Reader) fill() (bool, error) {
	if cap(r.buf)-len(r.buf) < 32<<10 {
		nb := make([]byte, len(r.buf), 2*cap(r.buf)+64<<10)
		copy(nb, r.buf)
		r.buf = nb
	}
	n, err := r.f.ReadAt(r.buf[len(r.buf):cap(r.buf)], r.off+int64(len(r.buf)))
	r.buf = r.buf[:len(r.buf)+n]
	if err != nil && !errors.Is(err, io.EOF) {
		return n > 0, fmt.Errorf("read audit chain %q: %w", r.chain, err)
	}
	return n > 0, nil
}

// Follow calls fn for every record as it arrives, polling every poll for new ones, until
// ctx is done (it then returns ctx.Err()) or fn or reading fails.
func (r *Reader) Follow(ctx context.Context, poll time.Duration, fn func(Entry) error) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		e, err := r.Next()
		switch {
		case err == nil:
			if err := fn(e); err != nil {
				return err
			}
			continue
		case !errors.Is(err, io.EOF):
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ReadChain calls fn for each record of chain after seq after, in order, up to the
// chain's current end. A chain whose first records are gone (pruned) is read from its
// first remaining record; any other damage stops it with a *Damage.
func ReadChain(dir, chain string, after uint64, fn func(Entry) error) error {
	r, err := NewReader(dir, chain, after)
	if err != nil {
		return err
	}
	defer r.Close()
	started := false
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if d, ok := asDamage(err); ok && !started && after == 0 && d.Next != nil {
			if err := r.Accept(d); err != nil {
				return err
			}
			started = true
			continue
		}
		if err != nil {
			return err
		}
		started = true
		if err := fn(e); err != nil {
			return err
		}
	}
}
