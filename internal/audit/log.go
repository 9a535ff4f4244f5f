package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// Config configures one writer of one chain.
type Config struct {
	// Dir is the audit directory; the chain lives in Dir/<Chain>/.
	Dir string
	// Chain names the writer: [a-z0-9-]+, e.g. "gateway", "endpoint-vpce-0123", "sts".
	// Each replica writes its own chain; one process at a time may write a chain.
	Chain string
	// Signer signs digests; see DeriveSigner.
	Signer ed25519.PrivateKey
	// SegmentBytes is the size at which the log moves to a new segment (default 64 MiB).
	SegmentBytes int64
	// DigestInterval is how often, at most, records wait for a signed digest while they
	// arrive (default 1s). Records after the last digest are the ones an attacker with
	// write access could remove without a trace: keep it short.
	DigestInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives recoveries and digest failures (default: discarded).
	Logger *slog.Logger
}

const (
	defaultSegmentBytes   = 64 << 20
	minSegmentBytes       = 4 << 10
	defaultDigestInterval = time.Second
)

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("audit log closed")

// Log appends records to one chain. Its methods are safe for concurrent use.
type Log struct {
	cfg   Config
	dir   string
	pub   ed25519.PublicKey
	keyID string
	lock  *os.File
	log   *slog.Logger

	// mu guards the record state; it is held for one write(2) per record.
	mu       sync.Mutex
	seg      uint64   // current segment number
	f        *os.File // current segment file
	off      int64    // bytes written to f
	segFirst uint64   // seq of the segment's first record
	segPrev  string   // hash before segFirst
	seq      uint64   // last seq written
	last     string   // its hash
	closed   bool
	failure  *writeFailure // writes are failing: records are refused until a retry works

	// startDigest is the digest the current segment's opening digest follows, so an
	// interrupted segment start can be redone exactly.
	startDigest string

	// dmu guards the digest state and is taken after mu when both are held.
	dmu        sync.Mutex
	df         *os.File // digest file of dseg
	dseg       uint64
	doff       int64
	prevDigest string
	digested   uint64 // last seq covered by a digest
	recovered  int64  // torn bytes cut at Open, told by the next digest

	bufs sync.Pool // of *recBuf

	stop chan struct{}
	done chan struct{}
}

// Open opens chain cfg.Chain under cfg.Dir for appending, creating it if needed. An
// existing chain is resumed: the next record continues its sequence and hash chain.
//
// A crash can leave a partial record at the end of the newest segment (a torn tail).
// Open cuts those bytes off — they were never acknowledged, since Record returns only
// after the whole line is written — and says so: in the log (slog), in an
// AuditLogRecovered event appended to the chain, and in the next signed digest
// ("recovered": bytes). The chain then verifies without warnings, and the repair itself
// is on the record. Open refuses a chain whose newest segment is damaged in any other way
// (run `phantom audit verify`, move the chain aside).
func Open(cfg Config) (*Log, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Log{
		cfg:  cfg,
		dir:  filepath.Join(cfg.Dir, cfg.Chain),
		pub:  cfg.Signer.Public().(ed25519.PublicKey),
		log:  cfg.Logger.With("chain", cfg.Chain),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		bufs: sync.Pool{New: newRecBuf},
	}
	l.keyID = KeyID(l.pub)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := os.Mkdir(l.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(l.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("open audit chain %q in %s: another process is writing it", cfg.Chain, cfg.Dir)
		}
		return nil, fmt.Errorf("lock audit chain %q: %w", cfg.Chain, err)
	}
	l.lock = lf
	torn, err := l.resume()
	if err != nil {
		l.closeFiles()
		return nil, err
	}
	if torn > 0 {
		if err := l.recordRecovery(torn); err != nil {
			l.closeFiles()
			return nil, err
		}
	}
	go l.digestLoop()
	return l, nil
}

func (c *Config) validate() error {
	if c.Dir == "" {
		return errors.New("audit: no directory")
	}
	if !ValidChain(c.Chain) {
		return fmt.Errorf("audit: chain name %q: want [a-z0-9-]+, at most 63 characters", c.Chain)
	}
	if len(c.Signer) != ed25519.PrivateKeySize {
		return errors.New("audit: no Ed25519 signing key")
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = defaultSegmentBytes
	}
	if c.SegmentBytes < minSegmentBytes {
		return fmt.Errorf("audit: segment size %d below the minimum %d", c.SegmentBytes, minSegmentBytes)
	}
	if c.DigestInterval == 0 {
		c.DigestInterval = defaultDigestInterval
	}
	if c.DigestInterval < 0 {
		return errors.New("audit: negative digest interval")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// resume loads the newest segment's state, repairing a torn tail, or starts the chain.
// It returns the number of torn bytes it cut off.
func (l *Log) resume() (int64, error) {
	segs, digs, _, err := chainFiles(os.DirFS(l.dir), ".")
	if err != nil {
		return 0, fmt.Errorf("open audit chain: %w", err)
	}
	if err := ensurePublicKey(filepath.Join(l.dir, keyFile), l.pub); err != nil {
		return 0, err
	}
	var n uint64
	if len(segs) > 0 {
		n = segs[len(segs)-1]
	}
	if len(digs) > 0 && digs[len(digs)-1] > n {
		n = digs[len(digs)-1]
	}
	if n == 0 {
		return 0, l.startSegment(1, 1, zeroHash, "")
	}

	// The digests of segment n, cutting a digest line torn by a crash.
	dpath := filepath.Join(l.dir, digestName(n))
	ds, _, tornD, err := readDigests(dpath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("open audit chain %q: %w", l.cfg.Chain, err)
	}
	if tornD != nil {
		l.log.Warn("audit digest file had a torn last line; cut", "segment", digestName(n), "bytes", tornD.End-tornD.Start)
		if err := os.Truncate(dpath, tornD.Start); err != nil {
			return 0, fmt.Errorf("repair audit digest %s: %w", digestName(n), err)
		}
	}

	// Where segment n starts: its opening digest, else (a crash between creating the
	// segment and signing its opening digest) the previous segment's final digest.
	var first uint64
	var prev, prevDigest string
	if len(ds) > 0 {
		first, prev = ds[0].FirstSeq, ds[0].PrevHash
		prevDigest = ds[len(ds)-1].hash()
	} else if n == 1 {
		first, prev = 1, zeroHash
	} else {
		pds, _, _, err := readDigests(filepath.Join(l.dir, digestName(n-1)))
		if err != nil || len(pds) == 0 {
			return 0, fmt.Errorf("open audit chain %q: segment %d has no digest and segment %d none to continue from", l.cfg.Chain, n, n-1)
		}
		pd := pds[len(pds)-1]
		first, prev, prevDigest = pd.LastSeq+1, pd.LastHash, pd.hash()
	}

	spath := filepath.Join(l.dir, segmentName(n))
	data, err := os.ReadFile(spath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("open audit chain %q: %w", l.cfg.Chain, err)
	}
	seq, last, good, torn, err := scanTail(l.cfg.Chain, data, first, prev)
	if err != nil {
		return 0, fmt.Errorf("open audit chain %q: %s: %w (run phantom audit verify)", l.cfg.Chain, segmentName(n), err)
	}
	if len(ds) > 0 {
		d := ds[len(ds)-1]
		if d.Bytes > good || d.LastSeq > seq {
			return 0, fmt.Errorf("open audit chain %q: %s holds %d bytes up to seq %d but its digest covers %d bytes up to seq %d: truncated (run phantom audit verify)",
				l.cfg.Chain, segmentName(n), good, seq, d.Bytes, d.LastSeq)
		}
		l.digested = d.LastSeq
		if d.Final {
			// Sealed before a crash: continue in the next segment.
			if torn > 0 || good > d.Bytes {
				return 0, fmt.Errorf("open audit chain %q: %s has data after its final digest (run phantom audit verify)", l.cfg.Chain, segmentName(n))
			}
			return 0, l.startSegment(n+1, seq+1, last, prevDigest)
		}
	}
	if torn > 0 {
		l.log.Warn("audit segment had a torn last record; cut", "segment", segmentName(n), "offset", good, "bytes", torn)
	}
	f, err := os.OpenFile(spath, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open audit segment %s: %w", segmentName(n), err)
	}
	if torn > 0 {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return 0, fmt.Errorf("repair audit segment %s: %w", segmentName(n), err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return 0, fmt.Errorf("repair audit segment %s: %w", segmentName(n), err)
		}
	}
	l.seg, l.f, l.off, l.segFirst, l.segPrev, l.seq, l.last = n, f, good, first, prev, seq, last
	l.dseg, l.prevDigest, l.recovered, l.startDigest = n, prevDigest, torn, prevDigest
	if len(ds) == 0 {
		// The opening digest was never written: write it now.
		if err := l.openDigestFile(0); err != nil {
			return 0, err
		}
		if err := l.writeDigest(l.state(), false, true); err != nil {
			return 0, err
		}
		return torn, nil
	}
	l.startDigest = ds[0].PrevDigest
	return torn, l.openDigestFile(0)
}

// scanTail checks the records of the newest segment's data, which must start at seq first
// after hash prev, and returns the last seq and hash, the length of the good prefix and
// the number of torn bytes after it (a partial or unparsable last line).
func scanTail(chain string, data []byte, first uint64, prev string) (seq uint64, last string, good, torn int64, err error) {
	seq, last = first-1, prev
	lines := splitLines(data)
	for i, ln := range lines {
		r, perr := ParseRecord(chain, ln.Text)
		if ln.Partial || (perr != nil && !errors.Is(perr, ErrModified)) {
			if i == len(lines)-1 {
				return seq, last, good, int64(len(data)) - good, nil
			}
			return 0, "", 0, 0, fmt.Errorf("line %d is not a record", ln.No)
		}
		if perr != nil {
			return 0, "", 0, 0, fmt.Errorf("line %d (seq %d): %w", ln.No, r.Seq, perr)
		}
		if r.Seq != seq+1 || r.Prev != last {
			return 0, "", 0, 0, fmt.Errorf("line %d: record seq %d does not follow seq %d", ln.No, r.Seq, seq)
		}
		seq, last, good = r.Seq, r.Hash, ln.End
	}
	return seq, last, good, 0, nil
}

// startSegment creates segment n, whose first record will be seq first after hash prev.
// Its digest file and signed opening digest come first, the segment file second: a
// reader that lists a segment file always finds its digests (Verify reads digests
// before the records they cover). Callers hold mu and dmu (or are Open).
func (l *Log) startSegment(n, first uint64, prev, prevDigest string) error {
	l.seg, l.f, l.off, l.segFirst, l.segPrev, l.seq, l.last = n, nil, 0, first, prev, first-1, prev
	l.dseg, l.prevDigest, l.startDigest = n, prevDigest, prevDigest
	// A segment's files are new, or left by a start that failed (resumeLocked redoes it):
	// either way they start empty.
	if err := l.openDigestFile(os.O_TRUNC); err != nil {
		return err
	}
	if err := l.writeDigest(l.state(), false, true); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(l.dir, segmentName(n)), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create audit segment: %w", err)
	}
	l.f = f
	return syncDir(l.dir)
}

func (l *Log) openDigestFile(flags int) error {
	if l.df != nil {
		l.df.Close()
		l.df = nil
	}
	df, err := os.OpenFile(filepath.Join(l.dir, digestName(l.dseg)), os.O_WRONLY|os.O_CREATE|flags, 0o600)
	if err != nil {
		return fmt.Errorf("open audit digest: %w", err)
	}
	st, err := df.Stat()
	if err != nil {
		df.Close()
		return fmt.Errorf("open audit digest: %w", err)
	}
	l.df, l.doff = df, st.Size()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync audit directory: %w", err)
	}
	return nil
}

// segState is the record state a digest describes.
type segState struct {
	seg        uint64
	f          *os.File
	first, seq uint64
	prev, last string
	off        int64
}

// state snapshots the record state; callers hold mu (or own l exclusively).
func (l *Log) state() segState {
	return segState{seg: l.seg, f: l.f, first: l.segFirst, seq: l.seq, prev: l.segPrev, last: l.last, off: l.off}
}

// writeDigest makes s durable and signs a digest of it. Callers hold dmu (or own l).
func (l *Log) writeDigest(s segState, final, force bool) error {
	if s.seg != l.dseg {
		return nil // the segment moved on; its final digest was written
	}
	if !force && !final && s.seq == l.digested {
		return nil
	}
	// The records must be on disk before a signature claims them.
	if s.f == nil {
		// The opening digest of a segment not created yet: it claims no records.
	} else if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync audit segment %s: %w", segmentName(s.seg), err)
	}
	body := digestBody{
		Version:    1,
		Chain:      l.cfg.Chain,
		Segment:    s.seg,
		FirstSeq:   s.first,
		PrevHash:   s.prev,
		LastSeq:    s.seq,
		LastHash:   s.last,
		Records:    s.seq + 1 - s.first,
		Bytes:      s.off,
		PrevDigest: l.prevDigest,
		Time:       l.cfg.Now().UTC(),
		KeyID:      l.keyID,
		Final:      final,
		Recovered:  l.recovered,
	}
	line, h, err := appendDigest(nil, l.cfg.Signer, &body)
	if err != nil {
		return err
	}
	if _, err := l.df.WriteAt(line, l.doff); err != nil {
		l.df.Truncate(l.doff)
		return fmt.Errorf("write audit digest %s: %w", digestName(s.seg), err)
	}
	if err := l.df.Sync(); err != nil {
		// Not durable, so not claimed: take the line back (resumeLocked checks the file's
		// length against doff if even that fails).
		l.df.Truncate(l.doff)
		return fmt.Errorf("sync audit digest %s: %w", digestName(s.seg), err)
	}
	l.doff += int64(len(line))
	l.prevDigest, l.digested, l.recovered = h, s.seq, 0
	return nil
}

// checkpoint signs a digest of what has been written, if anything is new.
func (l *Log) checkpoint() error {
	l.mu.Lock()
	s := l.state()
	l.mu.Unlock()
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if l.df == nil {
		return nil
	}
	return l.writeDigest(s, false, false)
}

func (l *Log) digestLoop() {
	defer close(l.done)
	t := time.NewTicker(l.cfg.DigestInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			if l.failure != nil && !l.closed {
				l.resumeLocked() // says so itself when it works
			}
			failing := l.failure != nil
			l.mu.Unlock()
			if failing {
				continue
			}
			if err := l.checkpoint(); err != nil {
				l.mu.Lock()
				l.failLocked(fmt.Errorf("sign a digest: %w", err))
				l.mu.Unlock()
			}
		}
	}
}

// Record appends ev to the chain. It fills EventID (a UUID v4), EventVersion and
// EventTime in ev when they are empty. It returns once the record's line has been written to the
// segment file with write(2): the record survives the process being killed; it is made
// durable against power loss (fsync) and signed by the next digest, within
// DigestInterval. An error means the record was not written: fail the request closed.
// ctx is not consulted: a request whose client went away is still recorded.
func (l *Log) Record(ctx context.Context, ev *Event) error {
	if ev == nil {
		return errors.New("audit record: no event")
	}
	if ev.EventID == "" {
		ev.EventID = requestid.New()
	}
	if ev.EventVersion == "" {
		ev.EventVersion = EventVersion
	}
	if ev.EventTime.IsZero() {
		ev.EventTime = l.cfg.Now().UTC()
	}
	rb := l.bufs.Get().(*recBuf)
	defer l.putBuf(rb)
	rb.line = append(rb.line[:0], recEvent...)
	if err := rb.enc.Encode(ev); err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	line := bytes.TrimSuffix(rb.line, []byte("\n")) // Encode's newline
	// The event's share of the record hash is computed here, in parallel; under the lock
	// only the position (seq, prev) is hashed and the line written.
	rh := beginRecord(rb.h, l.cfg.Chain, line)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.failure != nil {
		if err := l.resumeLocked(); err != nil {
			l.failure.refused++
			return err
		}
	}
	if err := l.appendLocked(rb, rh, line); err != nil {
		l.failLocked(err)
		l.failure.refused++
		return err
	}
	return nil
}

// appendLocked writes one record whose event line rh began, moving to a new segment
// first when this one is full. Callers hold mu.
func (l *Log) appendLocked(rb *recBuf, rh recordHasher, line []byte) error {
	// A record line is ~1-2 KiB; move on before the segment would exceed SegmentBytes.
	if l.off > 0 && l.off+int64(len(line))+256 > l.cfg.SegmentBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	buf, h := rh.finish(line, l.seq+1, l.last)
	rb.line = buf
	if _, err := l.f.WriteAt(buf, l.off); err != nil {
		// Leave no partial line behind: the next record must start at l.off (if even
		// the truncate fails, resumeLocked cuts the file back before the next write).
		l.f.Truncate(l.off)
		return fmt.Errorf("write audit segment %s: %w", segmentName(l.seg), err)
	}
	l.off += int64(len(buf))
	l.seq++
	l.last = h
	return nil
}

// writeFailure is a stretch of time in which the log could not write: its records were
// refused (the requests they belonged to failed closed).
type writeFailure struct {
	first, last time.Time
	refused     int
	err         error
}

// failLocked notes a failed write. Callers hold mu.
func (l *Log) failLocked(err error) {
	now := l.cfg.Now().UTC()
	if l.failure == nil {
		l.failure = &writeFailure{first: now}
		l.log.Error("audit log cannot be written; refusing records until a retry succeeds", "error", err)
	}
	l.failure.last, l.failure.err = now, err
}

// Err reports why the log cannot be written now (nil when it can): what readiness checks.
// The log retries on its own, every DigestInterval and on every Record.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failure == nil {
		return nil
	}
	return fmt.Errorf("audit chain %s cannot be written since %s: %w", l.cfg.Chain, l.failure.first.Format(time.RFC3339), l.failure.err)
}

// resumeLocked retries after a failure: it reopens the files (the descriptors may be what
// failed), cuts anything written past the last whole record or digest, finishes a segment
// start that failed, and then records the gap: when writes failed and how many records
// were refused meanwhile. Callers hold mu and l.failure is set.
func (l *Log) resumeLocked() error {
	if err := l.reopenLocked(); err != nil {
		l.failLocked(err)
		return fmt.Errorf("audit log unusable: %w", err)
	}
	// Digests must be writable too (records nobody signs are records an intruder may
	// remove): sign what is there before taking records again.
	l.dmu.Lock()
	err := l.writeDigest(l.state(), false, true)
	l.dmu.Unlock()
	if err != nil {
		l.failLocked(err)
		return fmt.Errorf("audit log unusable: %w", err)
	}
	gap := l.failure
	l.failure = nil
	ev := &Event{
		EventVersion: EventVersion,
		EventTime:    l.cfg.Now().UTC(),
		EventID:      requestid.New(),
		EventSource:  "audit.phantom.internal",
		EventName:    "AuditLogGap",
		EventType:    "AwsServiceEvent",
		AdditionalEventData: map[string]any{
			"firstFailure":   gap.first.Format(time.RFC3339Nano),
			"lastFailure":    gap.last.Format(time.RFC3339Nano),
			"refusedRecords": gap.refused,
			"error":          gap.err.Error(),
		},
		EventCategory: "Management",
		ReadOnly:      false,
	}
	rb := l.bufs.Get().(*recBuf)
	defer l.putBuf(rb)
	rb.line = append(rb.line[:0], recEvent...)
	if err := rb.enc.Encode(ev); err != nil {
		l.failure = gap
		return fmt.Errorf("audit record of a gap: %w", err)
	}
	line := bytes.TrimSuffix(rb.line, []byte("\n"))
	if err := l.appendLocked(rb, beginRecord(rb.h, l.cfg.Chain, line), line); err != nil {
		l.failure = gap
		l.failLocked(err)
		return fmt.Errorf("audit log unusable: %w", err)
	}
	l.log.Warn("audit log writable again; the gap is recorded", "first_failure", gap.first, "last_failure", gap.last, "refused_records", gap.refused)
	return nil
}

// reopenLocked brings the files back to the state the log holds. Callers hold mu.
func (l *Log) reopenLocked() error {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if l.f == nil {
		// A rotation sealed the old segment and failed starting the new one: redo it.
		return l.startSegment(l.seg, l.segFirst, l.segPrev, l.startDigest)
	}
	f, err := reopenAt(filepath.Join(l.dir, segmentName(l.seg)), l.off)
	if err != nil {
		return err
	}
	l.f.Close()
	l.f = f
	if l.df == nil || l.dseg != l.seg {
		return nil
	}
	df, err := reopenAt(filepath.Join(l.dir, digestName(l.dseg)), l.doff)
	if err != nil {
		return err
	}
	l.df.Close()
	l.df = df
	return nil
}

// reopenAt opens path for writing and makes it size bytes long, refusing a file shorter
// than that: bytes the log wrote and counted are gone, which only outside hands do.
func reopenAt(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("reopen %s: %w", filepath.Base(path), err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() < size {
		err = fmt.Errorf("it holds %d bytes, fewer than the %d written: changed from outside (run phantom audit verify)", st.Size(), size)
	}
	if err == nil && st.Size() > size {
		err = f.Truncate(size)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reopen %s: %w", filepath.Base(path), err)
	}
	return f, nil
}

// recBuf is the per-call scratch of Record, pooled: the line being built, its hasher
// and a JSON encoder writing into the line (json.Marshal would copy the event once more).
type recBuf struct {
	line []byte
	h    hash.Hash
	enc  *json.Encoder
}

func (rb *recBuf) Write(p []byte) (int, error) {
	rb.line = append(rb.line, p...)
	return len(p), nil
}

func newRecBuf() any {
	rb := &recBuf{h: sha256.New()}
	rb.enc = json.NewEncoder(rb)
	return rb
}

func (l *Log) putBuf(rb *recBuf) {
	if cap(rb.line) > 64<<10 {
		rb.line = nil // an outsized event: do not keep its buffer
	}
	l.bufs.Put(rb)
}

// rotate seals the current segment with a final digest and starts the next. Callers hold mu.
func (l *Log) rotate() error {
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if err := l.writeDigest(l.state(), true, true); err != nil {
		return fmt.Errorf("seal audit segment: %w", err)
	}
	l.f.Close()
	// On a failure here l.f is nil: resumeLocked redoes the segment start.
	return l.startSegment(l.seg+1, l.seq+1, l.last, l.prevDigest)
}

// recordRecovery appends the event that tells the chain a torn tail was cut at Open,
// and signs a digest right away.
func (l *Log) recordRecovery(torn int64) error {
	l.mu.Lock()
	seg, off := l.seg, l.off
	l.mu.Unlock()
	ev := &Event{
		EventSource: "audit.phantom.internal",
		EventName:   "AuditLogRecovered",
		EventType:   "AwsServiceEvent",
		AdditionalEventData: map[string]any{
			"segment":   segmentName(seg),
			"offset":    off,
			"tornBytes": torn,
		},
		EventCategory: "Management",
		ReadOnly:      false,
	}
	if err := l.Record(context.Background(), ev); err != nil {
		return err
	}
	return l.checkpoint()
}

// Close signs a final digest of everything written and releases the chain.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	err := l.checkpoint()
	if cerr := l.closeFiles(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) closeFiles() error {
	var err error
	l.dmu.Lock()
	if l.df != nil {
		err = l.df.Close()
		l.df = nil
	}
	l.dmu.Unlock()
	if l.f != nil {
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
	}
	if l.lock != nil {
		syscall.Flock(int(l.lock.Fd()), syscall.LOCK_UN)
		l.lock.Close()
	}
	return err
}
