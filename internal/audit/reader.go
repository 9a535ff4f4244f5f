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
// its link to the record before it, and returns an error naming the position when
// either is wrong: a consumer never silently skips or repeats a record. It does not
// check digests; Verify does.
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
}

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
	for i := len(segs) - 1; i > 0; i-- {
		first, ok := firstSeq(r.chain, filepath.Join(r.dir, segmentName(segs[i])))
		if ok && first <= after+1 {
			r.seg = segs[i]
			break
		}
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// firstSeq reads the seq of a segment's first record.
func firstSeq(chain, path string) (uint64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n, _ := io.ReadFull(f, b)
	i := bytes.IndexByte(b[:n], '\n')
	if i < 0 {
		return 0, false
	}
	rec, err := ParseRecord(chain, b[:i])
	if err != nil {
		return 0, false
	}
	return rec.Seq, true
}

func (r *Reader) open() error {
	f, err := os.Open(filepath.Join(r.dir, segmentName(r.seg)))
	if err != nil {
		return fmt.Errorf("read audit chain %q: %w", r.chain, err)
	}
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.off, r.line, r.buf = f, 0, 1, r.buf[:0]
	return nil
}

// ExpectAfter makes the reader check that the chain still continues from the record a
// consumer handled last: hash is that record's (seq after's) Record.Hash. A chain
// rewritten or truncated and restarted since then makes Next fail instead of handing
// out records that do not follow what was consumed.
func (r *Reader) ExpectAfter(hash string) { r.afterHash = hash }

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
		if errors.Is(err, io.EOF) && r.after > 0 && (r.next == 0 || r.next-1 < r.after) {
			// The whole chain has been read and it ends before the record the consumer
			// says it already handled: it was truncated or rewritten shorter. Waiting
			// for records that were already consumed would hide that.
			last := uint64(0)
			if r.next > 0 {
				last = r.next - 1
			}
			return Entry{}, fmt.Errorf("audit chain %q ends at record seq %d, before the record seq %d read before: the chain was truncated or rewritten since", r.chain, last, r.after)
		}
		if err != nil {
			return Entry{}, err
		}
		pos := Position{Chain: r.chain, Segment: r.seg, Line: r.line, Seq: r.next}
		rec, perr := ParseRecord(r.chain, ln)
		if perr != nil {
			return Entry{}, fmt.Errorf("audit chain %q %s line %d: %w", r.chain, segmentName(r.seg), r.line, perr)
		}
		pos.Seq = rec.Seq
		if r.afterHash != "" && rec.Seq == r.after && rec.Hash != r.afterHash {
			return Entry{}, fmt.Errorf("audit chain %q %s line %d: record seq %d is not the one read before: the chain was rewritten since", r.chain, segmentName(r.seg), r.line, rec.Seq)
		}
		if r.afterHash != "" && rec.Seq == r.after+1 && rec.Prev != r.afterHash {
			return Entry{}, fmt.Errorf("audit chain %q %s line %d: record seq %d does not follow the record seq %d read before: the chain was rewritten since", r.chain, segmentName(r.seg), r.line, rec.Seq, r.after)
		}
		if r.next != 0 && (rec.Seq != r.next || rec.Prev != r.prev) {
			return Entry{}, fmt.Errorf("audit chain %q %s line %d: record seq %d does not follow seq %d (run phantom audit verify)", r.chain, segmentName(r.seg), r.line, rec.Seq, r.next-1)
		}
		r.off += int64(len(ln)) + 1
		r.line++
		r.buf = r.buf[len(ln)+1:]
		r.next, r.prev = rec.Seq+1, rec.Hash
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
			return nil, fmt.Errorf("audit chain %q %s line %d: line longer than 16 MiB", r.chain, segmentName(r.seg), r.line)
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
			return nil, io.EOF
		}
		if got, err := r.fill(); err != nil {
			return nil, err
		} else if got {
			continue
		}
		if len(r.buf) > 0 {
			return nil, fmt.Errorf("audit chain %q %s line %d: incomplete record at the end of a sealed segment", r.chain, segmentName(r.seg), r.line)
		}
		r.seg++
		if err := r.open(); err != nil {
			return nil, err
		}
	}
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
// chain's current end.
func ReadChain(dir, chain string, after uint64, fn func(Entry) error) error {
	r, err := NewReader(dir, chain, after)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}
