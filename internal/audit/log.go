package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	// Signer signs digests: the writer's own key, which Certificate vouches for. Its
	// public key is Ed25519 and it signs pure Ed25519 (crypto.Hash(0)): an
	// ed25519.PrivateKey, or a key in a PKCS#11 token (hsm.Ed25519Key), whose digests
	// are the same bytes and verify the same way.
	Signer crypto.Signer
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
	// Certificate is the perimeter CA's certificate (DER) of Signer's public key, naming
	// this chain: the chain keeps it in signers.pem and Anchors receive it, so
	// verification trusts the key for this chain only. Without one the public key is
	// written to signer.pub, which verification trusts only when the key is pinned.
	Certificate []byte
	// Anchors receive the chain's head at every digest (see AnchorStore). The first
	// must answer at Open, which continues a chain found cut short or deleted after the
	// head it anchors; the others (a store on another host) are best effort.
	Anchors []AnchorStore
}

const (
	defaultSegmentBytes   = 64 << 20
	minSegmentBytes       = 4 << 10
	defaultDigestInterval = time.Second
	// anchorTimeout bounds one anchor store call.
	anchorTimeout = 5 * time.Second
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
	// prefix begins every record hash of the chain (recordPrefix).
	prefix []byte

	// qmu guards the records waiting to be written (group commit): a Record that arrives
	// while a batch is being written queues here, and the first of the queue, once the
	// batch is done, writes the whole queue with one write(2). It is never held with mu.
	qmu     sync.Mutex
	queue   []*recBuf // waiting records, in arrival order
	spare   []*recBuf // the other queue's buffer, kept while a batch is written
	leading bool      // a Record is writing a batch: the next one waits in queue

	// mu guards the record state; it is held while one batch of records is written.
	mu       sync.Mutex
	seg      uint64   // current segment number
	f        *os.File // current segment file
	off      int64    // bytes written to f
	segFirst uint64   // seq of the segment's first record
	segPrev  string   // hash before segFirst
	seq      uint64   // last seq written
	last     string   // its hash, unless lastPending
	// lastHex is the last record's hash when lastPending: a record's hash becomes a string
	// only when something asks for it (lastHash), not once per record.
	lastHex     [hashHexLen]byte
	lastPending bool
	lastLen     int64 // its line's length
	// The first record written since the last digest (uLen 0: none): the integrity
	// check reads it back too, so a cut below it is found before a digest signs the
	// records after it.
	uSeg, uSeq   uint64
	uStart, uLen int64
	uHash        string
	closed       bool
	failure      *writeFailure // writes are failing: records are refused until a retry works
	// startDigest is the digest the current segment's opening digest follows, so an
	// interrupted segment start can be redone exactly.
	startDigest string
	// damaged is damage found where it could not be recorded (the chain's directory
	// gone when a segment was started): the next checkpoint records it.
	damaged *Damage

	// dmu guards the digest state and is taken after mu when both are held.
	dmu        sync.Mutex
	df         *os.File // digest file of dseg
	dseg       uint64
	doff       int64
	prevDigest string
	digested   uint64 // last seq covered by a digest
	recovered  int64  // torn bytes cut at Open, told by the next digest
	// The last digested record of segment dSeg: it ends at dEnd, dLen bytes long (0: the
	// segment's digests cover no record yet). The integrity check reads it back.
	dSeg       uint64
	dEnd, dLen int64
	dSeq       uint64
	dHash      string
	sinks      []*anchorSink

	bufs sync.Pool // of *recBuf
	wbuf []byte    // a batch's lines gathered for one write; guarded by mu
	// writeAt writes records to a segment file: (*os.File).WriteAt, which tests replace
	// to count or fail the writes.
	writeAt func(f *os.File, p []byte, off int64) (int, error)

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
// is on the record.
//
// A chain damaged in any other way — its newest segment cut below a digest or the head
// the anchor store holds, rewritten, emptied, or the whole chain deleted — is left as it
// is, as evidence, and never blocks the start: Open continues the chain in a new segment
// after the highest head it can prove (the anchor, a digest, the records that still
// link), and the new segment's first record is an AuditChainDamaged event naming the
// damage and the records missing. `phantom audit verify` reports the damage.
func Open(cfg Config) (*Log, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := &Log{
		cfg:     cfg,
		dir:     filepath.Join(cfg.Dir, cfg.Chain),
		pub:     cfg.Signer.Public().(ed25519.PublicKey),
		prefix:  recordPrefix(cfg.Chain),
		log:     cfg.Logger.With("chain", cfg.Chain),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		bufs:    sync.Pool{New: newRecBuf},
		writeAt: (*os.File).WriteAt,
	}
	l.keyID = KeyID(l.pub)
	for _, a := range cfg.Anchors {
		l.sinks = append(l.sinks, &anchorSink{store: a})
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := os.Mkdir(l.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := l.takeLock(); err != nil {
		return nil, err
	}
	anchor, err := l.register()
	if err != nil {
		l.closeFiles()
		return nil, err
	}
	torn, dmg, err := l.resume(anchor)
	if err != nil {
		l.closeFiles()
		return nil, err
	}
	if dmg != nil {
		if err := l.recordDamage(dmg); err != nil {
			l.closeFiles()
			return nil, err
		}
	}
	if torn > 0 {
		if err := l.recordRecovery(torn); err != nil {
			l.closeFiles()
			return nil, err
		}
	}
	l.flushAnchors()
	go l.digestLoop()
	return l, nil
}

// takeLock locks the chain directory's lock file: one writer per chain.
func (l *Log) takeLock() error {
	lf, err := os.OpenFile(filepath.Join(l.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("open audit chain %q in %s: another process is writing it", l.cfg.Chain, l.cfg.Dir)
		}
		return fmt.Errorf("lock audit chain %q: %w", l.cfg.Chain, err)
	}
	if l.lock != nil {
		l.lock.Close()
	}
	l.lock = lf
	return nil
}

// register adds the chain and the writer's certificate to the anchor stores and returns
// the highest head they anchor for the chain (nil: none). The first store must answer;
// the others are best effort.
func (l *Log) register() (*Anchor, error) {
	var best *Anchor
	for i, s := range l.sinks {
		ctx, cancel := context.WithTimeout(context.Background(), anchorTimeout)
		a, ok, err := l.registerOne(ctx, s.store)
		cancel()
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("open audit chain %q: anchor store: %w", l.cfg.Chain, err)
			}
			l.log.Error("audit anchor store unreachable at start; anchoring continues when it answers", "store", i, "error", err)
			s.failing = true
			continue
		}
		if ok && (best == nil || a.Seq > best.Seq || a.Seq == best.Seq && a.Segment > best.Segment) {
			best = &a
		}
	}
	return best, nil
}

func (l *Log) registerOne(ctx context.Context, s AnchorStore) (Anchor, bool, error) {
	if err := s.RegisterAuditChain(ctx, l.cfg.Chain, l.cfg.Now().UTC()); err != nil {
		return Anchor{}, false, err
	}
	if l.cfg.Certificate != nil {
		if err := s.PutAuditSigner(ctx, Signer{KeyID: l.keyID, Chain: l.cfg.Chain, Cert: l.cfg.Certificate}); err != nil {
			return Anchor{}, false, err
		}
	}
	a, ok, err := s.LatestAuditAnchor(ctx, l.cfg.Chain)
	if err != nil || !ok {
		return Anchor{}, false, err
	}
	// An anchor is only a hint of where to continue: one that does not hold together is
	// not followed (verification reports it).
	if a.Chain != l.cfg.Chain || ParseAnchor(a) != nil || a.Seq > maxSeq {
		l.log.Error("the anchor store's head of this chain does not parse; ignored", "seq", a.Seq)
		return Anchor{}, false, nil
	}
	return a, true, nil
}

// maxSeq bounds the seq an anchor may make a chain continue after.
const maxSeq = 1 << 62

func (c *Config) validate() error {
	if c.Dir == "" {
		return errors.New("audit: no directory")
	}
	if !ValidChain(c.Chain) {
		return fmt.Errorf("audit: chain name %q: want [a-z0-9-]+, at most 63 characters", c.Chain)
	}
	if !ed25519Signer(c.Signer) {
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
	for _, a := range c.Anchors {
		if a == nil {
			return errors.New("audit: nil anchor store")
		}
	}
	return nil
}

// ensureKeyFiles makes the chain directory name the writer's key: its certificate in
// signers.pem, or (uncertified) its public key in signer.pub.
func (l *Log) ensureKeyFiles() error {
	if l.cfg.Certificate != nil {
		return ensureCertificate(filepath.Join(l.dir, certFile), l.cfg.Certificate)
	}
	return ensurePublicKey(filepath.Join(l.dir, keyFile), l.pub)
}

// head is a point a chain can continue after: a record's seq and hash, and the hash of
// the last digest line known at that point.
type head struct {
	seq          uint64
	hash, digest string
}

// higher returns the head with the higher seq (a when equal).
func higher(a, b head) head {
	if b.seq > a.seq {
		return b
	}
	return a
}

// resume loads the newest segment's state, repairing a torn tail, or starts the chain.
// It returns the number of torn bytes it cut off, and the damage it found when it
// continued the chain in a new segment instead (see Open). anchor is the highest head
// the anchor stores hold (nil: none).
func (l *Log) resume(anchor *Anchor) (int64, *Damage, error) {
	segs, digs, _, err := chainFiles(os.DirFS(l.dir), ".")
	if err != nil {
		return 0, nil, fmt.Errorf("open audit chain: %w", err)
	}
	if err := l.ensureKeyFiles(); err != nil {
		return 0, nil, err
	}
	var n uint64
	if len(segs) > 0 {
		n = segs[len(segs)-1]
	}
	if len(digs) > 0 && digs[len(digs)-1] > n {
		n = digs[len(digs)-1]
	}
	chain := l.cfg.Chain
	var anchored head
	if anchor != nil {
		anchored = head{seq: anchor.Seq, hash: anchor.Hash, digest: anchor.DigestHash()}
	}
	if n == 0 {
		if anchor == nil {
			return 0, nil, l.startSegment(1, 1, zeroHash, "")
		}
		d := &Damage{Chain: chain, Kind: Removed, Detail: fmt.Sprintf("the chain holds no segment, but the anchor store holds its head at seq %d in segment %s", anchor.Seq, segmentName(anchor.Segment))}
		if anchor.Seq > 0 {
			d.From, d.To = 1, anchor.Seq
		}
		return 0, d, l.startSegment(anchor.Segment+1, anchored.seq+1, anchored.hash, anchored.digest)
	}
	next := n + 1
	if anchor != nil && anchor.Segment >= next {
		next = anchor.Segment + 1
	}
	damaged := func(d *Damage, best head) (int64, *Damage, error) {
		best = higher(best, anchored)
		if best.hash == "" {
			best.hash = zeroHash // nothing to continue after: the chain starts again
		}
		return 0, d, l.startSegment(next, best.seq+1, best.hash, best.digest)
	}

	// The digests of segment n, cutting a digest line torn by a crash.
	dpath := filepath.Join(l.dir, digestName(n))
	raw, err := os.ReadFile(dpath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, nil, fmt.Errorf("open audit chain %q: %w", chain, err)
	}
	var ds []*digest
	dlines := splitLines(raw)
	for i, ln := range dlines {
		d, perr := parseDigest(ln.Text)
		if perr == nil && !ln.Partial {
			ds = append(ds, d)
			continue
		}
		if i < len(dlines)-1 {
			h := head{}
			if len(ds) > 0 {
				last := ds[len(ds)-1]
				h = head{last.LastSeq, last.LastHash, last.hash()}
			}
			return damaged(&Damage{Chain: chain, Segment: n, Kind: Modified,
				Detail: fmt.Sprintf("%s line %d is not a digest", digestName(n), ln.No)}, h)
		}
		l.log.Warn("audit digest file had a torn last line; cut", "segment", digestName(n), "bytes", ln.End-ln.Start)
		if err := os.Truncate(dpath, ln.Start); err != nil {
			return 0, nil, fmt.Errorf("repair audit digest %s: %w", digestName(n), err)
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
			return damaged(&Damage{Chain: chain, Segment: n, Kind: Removed,
				Detail: fmt.Sprintf("segment %s has no digest and segment %s none to continue from", segmentName(n), segmentName(n-1))}, head{})
		}
		pd := pds[len(pds)-1]
		first, prev, prevDigest = pd.LastSeq+1, pd.LastHash, pd.hash()
	}

	spath := filepath.Join(l.dir, segmentName(n))
	data, err := os.ReadFile(spath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, nil, fmt.Errorf("open audit chain %q: %w", chain, err)
	}
	seq, last, good, lastLen, torn, err := scanTail(chain, data, first, prev)
	disk := head{seq, last, prevDigest}
	if err != nil {
		return damaged(&Damage{Chain: chain, Segment: n, Kind: Modified, From: seq + 1,
			Detail: fmt.Sprintf("%s: %v", segmentName(n), err)}, disk)
	}
	final := false
	if len(ds) > 0 {
		d := ds[len(ds)-1]
		covered := head{d.LastSeq, d.LastHash, d.hash()}
		if d.Bytes > good || d.LastSeq > seq {
			return damaged(&Damage{Chain: chain, Segment: n, Kind: Truncated, From: seq + 1, To: d.LastSeq,
				Detail: fmt.Sprintf("segment %s holds %d bytes up to seq %d, but its digest covers %d bytes up to seq %d", segmentName(n), good, seq, d.Bytes, d.LastSeq)}, higher(disk, covered))
		}
		if d.Final && (torn > 0 || good > d.Bytes) {
			return damaged(&Damage{Chain: chain, Segment: n, Kind: Modified, From: d.LastSeq + 1, To: seq,
				Detail: fmt.Sprintf("segment %s has data after its final digest", segmentName(n))}, covered)
		}
		final = d.Final
		l.digested = d.LastSeq
	}
	if anchor != nil {
		if d := l.checkAnchor(anchor, n, data, first, prev, seq); d != nil {
			return damaged(d, disk)
		}
	}
	if final {
		// Sealed before a crash: continue in the next segment.
		return 0, nil, l.startSegment(n+1, seq+1, last, prevDigest)
	}
	if torn > 0 {
		l.log.Warn("audit segment had a torn last record; cut", "segment", segmentName(n), "offset", good, "bytes", torn)
	}
	f, err := os.OpenFile(spath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, nil, fmt.Errorf("open audit segment %s: %w", segmentName(n), err)
	}
	if torn > 0 {
		if err := f.Truncate(good); err != nil {
			f.Close()
			return 0, nil, fmt.Errorf("repair audit segment %s: %w", segmentName(n), err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return 0, nil, fmt.Errorf("repair audit segment %s: %w", segmentName(n), err)
		}
	}
	l.seg, l.f, l.off, l.segFirst, l.segPrev, l.seq, l.last, l.lastPending, l.lastLen = n, f, good, first, prev, seq, last, false, lastLen
	l.dseg, l.prevDigest, l.recovered, l.startDigest = n, prevDigest, torn, prevDigest
	if len(ds) == 0 {
		// The opening digest was never written: write it now.
		if err := l.openDigestFile(0); err != nil {
			return 0, nil, err
		}
		if err := l.writeDigest(l.state(), false, true); err != nil {
			return 0, nil, err
		}
		return torn, nil, nil
	}
	l.startDigest = ds[0].PrevDigest
	return torn, nil, l.openDigestFile(0)
}

// checkAnchor compares the anchored head with the newest segment n (data, starting at
// seq first after prev, holding records up to seq): the anchored record must be there
// with the anchored hash.
func (l *Log) checkAnchor(a *Anchor, n uint64, data []byte, first uint64, prev string, seq uint64) *Damage {
	chain := l.cfg.Chain
	switch {
	case a.Segment > n:
		d := &Damage{Chain: chain, Segment: a.Segment, Kind: Removed,
			Detail: fmt.Sprintf("the anchor store holds the chain's head at seq %d in segment %s, which is missing", a.Seq, segmentName(a.Segment))}
		if a.Seq > seq {
			d.From, d.To = seq+1, a.Seq
		}
		return d
	case a.Seq > seq:
		return &Damage{Chain: chain, Segment: a.Segment, Kind: Truncated, From: seq + 1, To: a.Seq,
			Detail: fmt.Sprintf("the chain ends at seq %d, but the anchor store holds its head at seq %d", seq, a.Seq)}
	case a.Segment < n || a.Seq+1 < first:
		return nil // an older segment: verification checks it
	case a.Seq+1 == first:
		if a.Hash != prev {
			return &Damage{Chain: chain, Segment: n, Kind: Modified,
				Detail: fmt.Sprintf("segment %s does not start after the anchored record seq %d: it was replaced", segmentName(n), a.Seq)}
		}
		return nil
	}
	for _, ln := range splitLines(data) {
		r, err := ParseRecord(chain, ln.Text)
		if err == nil && r.Seq == a.Seq {
			if r.Hash != a.Hash {
				break
			}
			return nil
		}
	}
	return &Damage{Chain: chain, Segment: n, Kind: Modified, From: a.Seq,
		Detail: fmt.Sprintf("the record at seq %d is not the one the anchor store holds: the segment was rewritten", a.Seq)}
}

// scanTail checks the records of the newest segment's data, which must start at seq first
// after hash prev, and returns the last seq and hash, the length of the good prefix, the
// length of its last line and the number of torn bytes after it (a partial or
// unparsable last line). On an error (a bad line before the last) the values describe
// the good prefix before it.
func scanTail(chain string, data []byte, first uint64, prev string) (seq uint64, last string, good, lastLen, torn int64, err error) {
	seq, last = first-1, prev
	lines := splitLines(data)
	for i, ln := range lines {
		r, perr := ParseRecord(chain, ln.Text)
		if ln.Partial || (perr != nil && !errors.Is(perr, ErrModified)) {
			if i == len(lines)-1 {
				return seq, last, good, lastLen, int64(len(data)) - good, nil
			}
			return seq, last, good, lastLen, 0, fmt.Errorf("line %d is not a record", ln.No)
		}
		if perr != nil {
			return seq, last, good, lastLen, 0, fmt.Errorf("line %d (seq %d): %w", ln.No, r.Seq, perr)
		}
		if r.Seq != seq+1 || r.Prev != last {
			return seq, last, good, lastLen, 0, fmt.Errorf("line %d: record seq %d does not follow seq %d", ln.No, r.Seq, seq)
		}
		seq, last, good, lastLen = r.Seq, r.Hash, ln.End, ln.End-ln.Start
	}
	return seq, last, good, lastLen, 0, nil
}

// startSegment creates segment n, whose first record will be seq first after hash prev.
// Its digest file and signed opening digest come first, the segment file second: a
// reader that lists a segment file always finds its digests (Verify reads digests
// before the records they cover). Callers hold mu and dmu (or are Open).
func (l *Log) startSegment(n, first uint64, prev, prevDigest string) error {
	if l.f != nil {
		l.f.Close()
	}
	if _, err := os.Stat(l.dir); errors.Is(err, fs.ErrNotExist) && l.lock != nil {
		// The directory was removed under a running writer (at a rotation, before a
		// digest noticed): recreate it, and record the damage at the next checkpoint.
		d := &Damage{Chain: l.cfg.Chain, Segment: l.seg, Kind: Removed, Detail: "the chain's directory was removed while the chain was written"}
		if l.seq >= l.segFirst && l.seq > 0 {
			d.From, d.To = l.segFirst, l.seq
		}
		if err := l.recreateDir(); err != nil {
			return err
		}
		if l.damaged == nil {
			l.damaged = d
		}
	}
	l.seg, l.f, l.off, l.segFirst, l.segPrev, l.seq, l.last, l.lastPending, l.lastLen, l.uLen = n, nil, 0, first, prev, first-1, prev, false, 0, 0
	l.dseg, l.prevDigest, l.startDigest = n, prevDigest, prevDigest
	// A segment's files are new, or left by a start that failed (resumeLocked redoes it):
	// either way they start empty.
	if err := l.openDigestFile(os.O_TRUNC); err != nil {
		return err
	}
	if err := l.writeDigest(l.state(), false, true); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(l.dir, segmentName(n)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
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
	seg          uint64
	f            *os.File
	first, seq   uint64
	prev, last   string
	off, lastLen int64
}

// state snapshots the record state; callers hold mu (or own l exclusively).
func (l *Log) state() segState {
	return segState{seg: l.seg, f: l.f, first: l.segFirst, seq: l.seq, prev: l.segPrev, last: l.lastHash(), off: l.off, lastLen: l.lastLen}
}

// lastHash is the last record's hash. Callers hold mu.
func (l *Log) lastHash() string {
	if l.lastPending {
		l.last, l.lastPending = string(l.lastHex[:]), false
	}
	return l.last
}

// prevHash is the last record's hash as the next record's prev, without making a string.
// Callers hold mu.
func (l *Log) prevHash() []byte {
	if l.lastPending {
		return l.lastHex[:]
	}
	return []byte(l.last)
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
	l.dSeg, l.dEnd, l.dLen, l.dSeq, l.dHash = s.seg, s.off, 0, s.seq, s.last
	if s.seq >= s.first {
		l.dLen = s.lastLen
	}
	a := anchorOf(line[:len(line)-1], &body)
	for _, k := range l.sinks {
		k.add(a)
	}
	return nil
}

// checkpoint signs a digest of what has been written, if anything is new. It first
// checks that the chain on disk is still the one being written (see intact); a damaged
// chain continues in a new segment, and the damage is recorded there.
func (l *Log) checkpoint() error {
	l.mu.Lock()
	if dmg := l.damaged; dmg != nil {
		l.damaged = nil
		l.mu.Unlock()
		return l.recordDamage(dmg)
	}
	if dmg := l.intact(); dmg != nil {
		err := l.continueLive(dmg)
		l.mu.Unlock()
		if err != nil {
			return fmt.Errorf("continue damaged audit chain: %w", err)
		}
		return l.recordDamage(dmg)
	}
	s := l.state()
	l.mu.Unlock()
	l.dmu.Lock()
	if l.df == nil {
		l.dmu.Unlock()
		return nil
	}
	err := l.writeDigest(s, false, false)
	l.dmu.Unlock()
	if err == nil {
		l.mu.Lock()
		if l.uSeq <= s.seq || l.uSeg != l.seg {
			l.uLen = 0 // digested
		}
		l.mu.Unlock()
	}
	return err
}

// intact checks, before a digest signs more, that the files being written are still the
// chain's: not removed or replaced (the path names the open file), not cut shorter than
// what was written, and the last digested record still where it was written. It returns
// the damage found, or nil. Callers hold mu. It costs a few stat calls and one read of
// a record per digest, off the record path.
func (l *Log) intact() *Damage {
	if l.f == nil || l.closed || l.failure != nil {
		return nil
	}
	chain, name := l.cfg.Chain, segmentName(l.seg)
	missing := func(what string) *Damage {
		d := &Damage{Chain: chain, Segment: l.seg, Kind: Removed, Detail: what + " was removed or replaced while the chain was written"}
		if l.seq >= l.segFirst {
			d.From, d.To = l.segFirst, l.seq
		}
		if _, err := os.Stat(l.dir); errors.Is(err, fs.ErrNotExist) {
			d.Detail = "the chain's directory was removed while the chain was written"
		}
		return d
	}
	fst, err := l.f.Stat()
	if err != nil {
		return nil // an I/O problem, not evidence: the write path reports it
	}
	if pst, err := os.Stat(filepath.Join(l.dir, name)); err != nil || !os.SameFile(fst, pst) {
		return missing("segment " + name)
	}
	if fst.Size() < l.off {
		return truncation(l.dir, chain, l.seg, l.seq, fmt.Sprintf("segment %s was cut from %d to %d bytes while the chain was written", name, l.off, fst.Size()))
	}
	l.dmu.Lock()
	defer l.dmu.Unlock()
	// The last digested record, and the first one written since: a cut below either
	// is found even when the file was written again past the cut.
	for _, rb := range []struct {
		seg, seq uint64
		end, n   int64
		hash     string
	}{{l.dSeg, l.dSeq, l.dEnd, l.dLen, l.dHash}, {l.uSeg, l.uSeq, l.uStart + l.uLen, l.uLen, l.uHash}} {
		if rb.seg != l.seg || rb.n == 0 {
			continue
		}
		buf := make([]byte, rb.n)
		_, err := l.f.ReadAt(buf, rb.end-rb.n)
		r, perr := ParseRecord(chain, bytes.TrimSuffix(buf, []byte("\n")))
		if err != nil || perr != nil || buf[len(buf)-1] != '\n' || r.Seq != rb.seq || r.Hash != rb.hash {
			return truncation(l.dir, chain, l.seg, l.seq, fmt.Sprintf("segment %s no longer holds record seq %d where it was written: it was cut or rewritten while the chain was written", name, rb.seq))
		}
	}
	if l.df != nil && l.dseg == l.seg {
		dst, err := l.df.Stat()
		if err != nil {
			return nil
		}
		if pst, err := os.Stat(filepath.Join(l.dir, digestName(l.dseg))); err != nil || !os.SameFile(dst, pst) {
			return missing("digest file " + digestName(l.dseg))
		}
		if dst.Size() < l.doff {
			return &Damage{Chain: chain, Segment: l.seg, Kind: Truncated,
				Detail: fmt.Sprintf("digest file %s was cut from %d to %d bytes while the chain was written", digestName(l.dseg), l.doff, dst.Size())}
		}
	}
	return nil
}

// continueLive leaves the damaged segment as it is and continues the chain in a new one
// after the last record written (the writer's own state is the truth), recreating the
// chain's directory, lock and key files when they were removed. Callers hold mu.
func (l *Log) continueLive(dmg *Damage) error {
	l.log.Error("audit chain damaged while it was written; continuing in a new segment", "segment", segmentName(l.seg), "damage", dmg.Describe())
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if err := l.recreateDir(); err != nil {
		return err
	}
	// On a failure here l.f is nil: resumeLocked redoes the segment start.
	return l.startSegment(l.seg+1, l.seq+1, l.lastHash(), l.prevDigest)
}

// recreateDir makes the chain's directory, lock and key files exist again after they
// were removed under the writer.
func (l *Log) recreateDir() error {
	if _, err := os.Stat(filepath.Join(l.dir, lockFile)); err != nil {
		if err := os.MkdirAll(l.dir, 0o700); err != nil {
			return err
		}
		if err := l.takeLock(); err != nil {
			return err
		}
	}
	return l.ensureKeyFiles()
}

// recordDamage records dmg as the first record of the segment the chain continues in,
// and signs (and anchors) a digest right away.
func (l *Log) recordDamage(dmg *Damage) error {
	l.mu.Lock()
	next := l.seq + 1
	l.mu.Unlock()
	l.log.Error("audit chain damaged: recorded in the chain, which continues", "damage", dmg.Describe(), "next_seq", next)
	if err := l.Record(context.Background(), DamageEvent(dmg, next)); err != nil {
		return err
	}
	l.mu.Lock()
	s := l.state()
	l.mu.Unlock()
	l.dmu.Lock()
	defer l.dmu.Unlock()
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
			l.flushAnchors()
		}
	}
}

// anchorSink is one anchor store and the anchors not yet recorded in it, oldest first.
type anchorSink struct {
	store   AnchorStore
	pending []Anchor
	signers []Signer // certificates of renewed keys, recorded before the anchors
	failing bool     // logged once per run of failures
}

// maxPendingAnchors bounds the anchors kept for a store that does not answer: the
// newest cover the older ones (each names the chain's head), so the oldest are dropped.
const maxPendingAnchors = 64

func (k *anchorSink) add(a Anchor) {
	if len(k.pending) == maxPendingAnchors {
		k.pending = slices.Delete(k.pending, 0, 1)
	}
	k.pending = append(k.pending, a)
}

// flushAnchors records each store's pending anchors, in order. A failure keeps the rest
// pending for the next digest: a writer killed before its anchor is recorded leaves the
// store behind the chain, which is never taken for tampering.
func (l *Log) flushAnchors() {
	for i, k := range l.sinks {
		l.dmu.Lock()
		signers := k.signers
		l.dmu.Unlock()
		for _, sg := range signers {
			ctx, cancel := context.WithTimeout(context.Background(), anchorTimeout)
			err := k.store.PutAuditSigner(ctx, sg)
			cancel()
			if err != nil {
				l.log.Error("audit writer certificate not recorded; retrying with the next digest", "store", i, "key_id", sg.KeyID, "error", err)
				break
			}
			l.dmu.Lock()
			k.signers = k.signers[1:]
			l.dmu.Unlock()
		}
		for {
			l.dmu.Lock()
			if len(k.pending) == 0 {
				l.dmu.Unlock()
				break
			}
			a := k.pending[0]
			l.dmu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), anchorTimeout)
			err := k.store.PutAuditAnchor(ctx, a)
			cancel()
			if err != nil {
				if !k.failing {
					l.log.Error("audit anchor not recorded; retrying with the next digest", "store", i, "seq", a.Seq, "error", err)
					k.failing = true
				}
				break
			}
			l.dmu.Lock()
			if len(k.pending) > 0 && k.pending[0] == a {
				k.pending = k.pending[1:]
			}
			l.dmu.Unlock()
			if k.failing {
				l.log.Info("audit anchors recorded again", "store", i, "seq", a.Seq)
				k.failing = false
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
//
// Records commit in groups: a lone Record writes at once, and the Records that arrive
// while a write is in progress are written together by the next write(2), each
// returning when that write has returned.
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
	line, err := rb.encode(ev)
	if err != nil {
		return fmt.Errorf("audit record: %w", err)
	}
	// The event's share of the record hash is computed here, in parallel; under the lock
	// only the position (seq, prev) is hashed and the line written.
	rb.rec, rb.rh, rb.err = line, beginRecord(rb.h, &rb.sum, l.prefix, line), errUnwritten

	l.qmu.Lock()
	l.queue = append(l.queue, rb)
	if l.leading {
		// A batch is being written: wait to be written with the next one, by its writer
		// or, when this record heads the queue, by this call.
		l.qmu.Unlock()
		if err := <-rb.done; err != errLead {
			return err
		}
		l.qmu.Lock()
	}
	l.leading = true
	batch := l.queue
	l.queue, l.spare = l.spare, nil
	l.qmu.Unlock()
	return l.writeBatch(batch, rb)
}

// writeBatch writes batch, which holds rb (this call's record), and returns rb's
// outcome; it hands every other Record of the batch its own, and the next batch to the
// Record heading the queue.
func (l *Log) writeBatch(batch []*recBuf, rb *recBuf) error {
	// Deferred so that no Record waits for ever, even if writing panics (a record it
	// did not reach stays errUnwritten: refused).
	defer l.handOff(batch, rb)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.commitLocked(batch)
	return rb.err
}

// handOff returns to each waiting Record of batch (all but rb) its outcome, and makes
// the Record heading the queue, if any, write the next batch.
func (l *Log) handOff(batch []*recBuf, rb *recBuf) {
	for _, o := range batch {
		if o != rb {
			o.done <- o.err // o belongs to its caller again
		}
	}
	clear(batch)
	l.qmu.Lock()
	l.spare = batch[:0]
	if len(l.queue) > 0 {
		l.queue[0].done <- errLead
	} else {
		l.leading = false
	}
	l.qmu.Unlock()
}

// errUnwritten is a queued record's outcome until its batch's writer sets it.
var errUnwritten = errors.New("audit record: not written")

// errLead tells a waiting Record that it heads the queue: it writes the next batch.
var errLead = errors.New("audit: write the next batch")

// commitLocked appends batch's records to the chain, in order, setting each one's err:
// nil when it was written. Records that fit in the segment are written with one write;
// a batch that reaches the segment's end continues in the next segment with another.
// When a write fails, every record of the batch it did not write whole is refused, and
// the chain continues from the last record written. Callers hold mu.
func (l *Log) commitLocked(batch []*recBuf) {
	if l.closed {
		refuse(batch, ErrClosed)
		return
	}
	if l.failure != nil {
		if err := l.resumeLocked(); err != nil {
			l.failure.refused += len(batch)
			refuse(batch, err)
			return
		}
	}
	for len(batch) > 0 {
		n, err := l.appendLocked(batch)
		for _, rb := range batch[:n] {
			rb.err = nil
		}
		batch = batch[n:]
		if err != nil {
			l.failLocked(err)
			l.failure.refused += len(batch)
			refuse(batch, err)
			return
		}
	}
}

func refuse(batch []*recBuf, err error) {
	for _, rb := range batch {
		rb.err = err
	}
}

// maxWriteBytes bounds what one write gathers: a batch beyond it takes more writes.
const maxWriteBytes = 1 << 20

// appendLocked writes the first records of recs, as many as fit in the segment (at
// least one, moving to a new segment first when this one is full), with one write, and
// returns how many it wrote. On an error it returns the records written whole before
// the write failed (usually none): the record state is that of the last one, and the
// next record follows it. Callers hold mu.
func (l *Log) appendLocked(recs []*recBuf) (int, error) {
	// A record line is ~1-2 KiB; move on before the segment would exceed SegmentBytes.
	if l.off > 0 && l.off+int64(len(recs[0].rec))+256 > l.cfg.SegmentBytes {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	seq, prev, size, n := l.seq, l.prevHash(), int64(0), 0
	for _, rb := range recs {
		// The same test for each record after the first: a batch ends the segment
		// where records written one by one would.
		if n > 0 && (l.off+size+int64(len(rb.rec))+256 > l.cfg.SegmentBytes || size >= maxWriteBytes) {
			break
		}
		seq++
		rb.rec, rb.hx = rb.rh.finish(rb.rec, seq, prev)
		rb.line = rb.rec // keep the buffer finish may have grown
		prev = rb.hx[:]
		size += int64(len(rb.rec))
		n++
	}
	buf := recs[0].rec
	if n > 1 {
		l.wbuf = l.wbuf[:0]
		for _, rb := range recs[:n] {
			l.wbuf = append(l.wbuf, rb.rec...)
		}
		buf = l.wbuf
	}
	written, err := l.writeAt(l.f, buf, l.off)
	if cap(l.wbuf) > 2*maxWriteBytes {
		l.wbuf = nil // a batch of outsized events: do not keep its buffer
	}
	if err != nil {
		// A write can fail part way (a full disk): the records whose whole lines it
		// wrote stay, written like any other (a reader may have read them already, and
		// the chain never takes back a whole line); the rest, a partial line included,
		// is cut, and the next record starts there (if even the truncate fails,
		// resumeLocked cuts the file back before the next write).
		chunk := recs[:n]
		n, size = 0, 0
		for _, rb := range chunk {
			if size+int64(len(rb.rec)) > int64(written) {
				break
			}
			size += int64(len(rb.rec))
			n++
		}
		l.f.Truncate(l.off + size)
		if n > 0 {
			l.advance(recs[:n], size)
		}
		return n, fmt.Errorf("write audit segment %s: %w", segmentName(l.seg), err)
	}
	l.advance(recs[:n], size)
	return n, nil
}

// advance moves the record state past recs, written at l.off (size bytes). Callers hold
// mu.
func (l *Log) advance(recs []*recBuf, size int64) {
	first, last := recs[0], recs[len(recs)-1]
	l.lastHex, l.lastPending, l.lastLen = last.hx, true, int64(len(last.rec))
	if l.uLen == 0 {
		l.uSeg, l.uSeq, l.uStart, l.uLen, l.uHash = l.seg, l.seq+1, l.off, int64(len(first.rec)), string(first.hx[:])
	}
	l.off += size
	l.seq += uint64(len(recs))
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
	line, err := rb.encode(ev)
	if err != nil {
		l.failure = gap
		return fmt.Errorf("audit record of a gap: %w", err)
	}
	rb.rec, rb.rh = line, beginRecord(rb.h, &rb.sum, l.prefix, line)
	if _, err := l.appendLocked([]*recBuf{rb}); err != nil {
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
		return l.changedOutside(err)
	}
	l.f.Close()
	l.f = f
	if l.df == nil || l.dseg != l.seg {
		return nil
	}
	df, err := reopenAt(filepath.Join(l.dir, digestName(l.dseg)), l.doff)
	if err != nil {
		return l.changedOutside(err)
	}
	l.df.Close()
	l.df = df
	return nil
}

// changedOutside handles a file reopenAt refused: one cut by outside hands while the log
// could not write is damage, which the chain records and continues after in a new
// segment (as it does when a digest finds it); any other error (a file that cannot be
// opened, as on a read-only file system) stands, and the log keeps retrying. Callers
// hold mu and dmu.
func (l *Log) changedOutside(err error) error {
	if !errors.Is(err, errChangedOutside) {
		return err
	}
	dmg := truncation(l.dir, l.cfg.Chain, l.seg, l.seq, fmt.Sprintf("segment %s or its digests were cut while the chain could not be written", segmentName(l.seg)))
	l.log.Error("audit chain damaged while it could not be written; continuing in a new segment", "segment", segmentName(l.seg), "damage", dmg.Describe())
	if err := l.recreateDir(); err != nil {
		return err
	}
	if l.damaged == nil {
		l.damaged = dmg
	}
	return l.startSegment(l.seg+1, l.seq+1, l.lastHash(), l.prevDigest)
}

// errChangedOutside is reopenAt's refusal of a file shorter than what the log wrote.
var errChangedOutside = errors.New("changed from outside")

// reopenAt opens path for writing and makes it size bytes long, refusing a file shorter
// than that: bytes the log wrote and counted are gone, which only outside hands do.
func reopenAt(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0o600) // read too: the integrity check reads records back
	if err != nil {
		return nil, fmt.Errorf("reopen %s: %w", filepath.Base(path), err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() < size {
		err = fmt.Errorf("it holds %d bytes, fewer than the %d written: %w", st.Size(), size, errChangedOutside)
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

// recBuf is the per-call scratch of Record, pooled: the line being built, its hasher,
// the event writer and, for events it does not spell, a JSON encoder writing into the
// line (json.Marshal would copy the event once more); and the record as it waits in
// the queue to be written.
type recBuf struct {
	line []byte
	h    hash.Hash
	sum  [sha256.Size]byte
	w    eventWriter
	enc  *json.Encoder

	rec  []byte           // the record's line: its event part, whole once written
	rh   recordHasher     // the record's hash, begun over the event part
	hx   [hashHexLen]byte // the record's hash once its position is known
	err  error            // whether it was written, set by its batch's writer
	done chan error       // err, handed back to a waiting Record; or errLead
}

// encode builds the record's line up to the event's JSON: recEvent and ev.
func (rb *recBuf) encode(ev *Event) ([]byte, error) {
	line, ok := appendEvent(&rb.w, append(rb.line[:0], recEvent...), ev)
	if ok {
		rb.line = line
		return line, nil
	}
	rb.line = append(line[:0], recEvent...)
	if err := rb.enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(rb.line, []byte("\n")), nil // Encode's newline
}

func (rb *recBuf) Write(p []byte) (int, error) {
	rb.line = append(rb.line, p...)
	return len(p), nil
}

func newRecBuf() any {
	rb := &recBuf{h: sha256.New(), done: make(chan error, 1)}
	rb.enc = json.NewEncoder(rb)
	return rb
}

func (l *Log) putBuf(rb *recBuf) {
	if cap(rb.line) > 64<<10 {
		rb.line = nil // an outsized event: do not keep its buffer
	}
	rb.rec, rb.err = nil, nil
	l.bufs.Put(rb)
}

// rotate seals the current segment with a final digest and starts the next. Callers hold
// mu. A segment found damaged is not sealed (its final digest would sign the damage):
// the next one starts all the same, and the damage is recorded at the next checkpoint.
func (l *Log) rotate() error {
	dmg := l.intact()
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if dmg != nil {
		l.log.Error("audit chain damaged while it was written; continuing in a new segment", "segment", segmentName(l.seg), "damage", dmg.Describe())
		l.damaged = dmg
		if err := l.recreateDir(); err != nil {
			return err
		}
	} else if err := l.writeDigest(l.state(), true, true); err != nil {
		return fmt.Errorf("seal audit segment: %w", err)
	}
	// On a failure here l.f is nil: resumeLocked redoes the segment start.
	return l.startSegment(l.seg+1, l.seq+1, l.lastHash(), l.prevDigest)
}

// SetSigner makes key, certified by cert (DER, naming this chain), sign the chain's
// digests from the next one on: a writer renews its key before its certificate expires.
// The certificate goes to signers.pem now and to the anchor stores with the next
// anchors.
func (l *Log) SetSigner(key crypto.Signer, cert []byte) error {
	if !ed25519Signer(key) || len(cert) == 0 {
		return errors.New("audit: set signer: an Ed25519 key and its certificate are required")
	}
	pub := key.Public().(ed25519.PublicKey)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dmu.Lock()
	defer l.dmu.Unlock()
	if err := ensureCertificate(filepath.Join(l.dir, certFile), cert); err != nil {
		return err
	}
	l.cfg.Signer, l.cfg.Certificate, l.pub, l.keyID = key, cert, pub, KeyID(pub)
	for _, k := range l.sinks {
		k.signers = append(k.signers, Signer{KeyID: l.keyID, Chain: l.cfg.Chain, Cert: cert})
	}
	return nil
}

// ed25519Signer reports whether k is a signer of an Ed25519 public key.
func ed25519Signer(k crypto.Signer) bool {
	if k == nil {
		return false
	}
	if p, ok := k.(ed25519.PrivateKey); ok && len(p) != ed25519.PrivateKeySize {
		return false // Public would panic
	}
	pub, ok := k.Public().(ed25519.PublicKey)
	return ok && len(pub) == ed25519.PublicKeySize
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
	l.flushAnchors()
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
