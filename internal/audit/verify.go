package audit

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// PublicKeys pins the keys digests must be signed with. When empty, each chain's
	// signer.pub is trusted and the report says the check was unpinned: whoever can
	// rewrite the log can also replace that file.
	PublicKeys []ed25519.PublicKey
	// Chains limits verification to these chains (default: every chain in the directory).
	Chains []string
}

// Kind says what is wrong.
type Kind string

// Kinds of problems and warnings.
const (
	Modified     Kind = "modified"      // a record or digest's content changed
	Removed      Kind = "removed"       // records, segments or digests are missing
	Reordered    Kind = "reordered"     // records out of sequence
	Truncated    Kind = "truncated"     // a segment is shorter than a signed digest says
	BadSignature Kind = "bad-signature" // a digest's signature does not verify with a trusted key
	Malformed    Kind = "malformed"     // a line that is not a record or digest at all
	TornTail     Kind = "torn-tail"     // a partial record at the very end (crash); warning
	NotCovered   Kind = "not-covered"   // records after the last signed digest; warning
	Unpinned     Kind = "unpinned"      // digests checked against the log's own key file; warning
	KeyReplaced  Kind = "key-replaced"  // the log's key file names a key that is not pinned
)

// Problem is one finding: where (chain, file, line, record seq) and what.
type Problem struct {
	Chain   string `json:"chain"`
	File    string `json:"file,omitempty"` // segment or digest file, relative to the chain
	Line    int    `json:"line,omitempty"` // 1-based line in File
	Seq     uint64 `json:"seq,omitempty"`  // record sequence number, when one is concerned
	Kind    Kind   `json:"kind"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	var b bytes.Buffer
	b.WriteString(p.Chain)
	if p.File != "" {
		b.WriteString("/" + p.File)
	}
	if p.Line > 0 {
		fmt.Fprintf(&b, " line %d", p.Line)
	}
	if p.Seq > 0 {
		fmt.Fprintf(&b, " seq %d", p.Seq)
	}
	fmt.Fprintf(&b, ": %s: %s", p.Kind, p.Message)
	return b.String()
}

// ChainReport summarizes one chain.
type ChainReport struct {
	Name     string `json:"name"`
	Segments int    `json:"segments"`
	// Records is how many records verified (hash and position).
	Records  uint64 `json:"records"`
	FirstSeq uint64 `json:"firstSeq,omitempty"`
	LastSeq  uint64 `json:"lastSeq,omitempty"`
	LastHash string `json:"lastHash,omitempty"`
	// CoveredSeq is the last seq a valid signed digest covers; LastDigest its time.
	CoveredSeq uint64    `json:"coveredSeq,omitempty"`
	LastDigest time.Time `json:"lastDigest,omitzero"`
	Digests    int       `json:"digests"`
}

// Report is the result of Verify.
type Report struct {
	Dir    string        `json:"dir"`
	Pinned bool          `json:"pinned"`
	Chains []ChainReport `json:"chains"`
	// Records is the total of records verified.
	Records uint64 `json:"records"`
	// Problems are evidence of tampering (or of damage that looks the same): verification failed.
	Problems []Problem `json:"problems"`
	// Warnings do not fail verification: a torn tail left by a crash, records not yet
	// covered by a digest, an unpinned key.
	Warnings []Problem `json:"warnings"`
}

// OK reports whether verification found no problems.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify checks every chain under dir: each record's hash, the hash chain across records
// and segments, that sequence numbers are contiguous, and that every signed digest
// verifies and matches the segment it covers. It returns an error only when dir cannot
// be read or holds no chain; what it finds is in the Report.
func Verify(dir string, opts VerifyOptions) (*Report, error) {
	return verifyFS(os.DirFS(dir), dir, opts)
}

// verifyFS verifies the audit directory fsys, named dir in the report.
func verifyFS(fsys fs.FS, dir string, opts VerifyOptions) (*Report, error) {
	rep := &Report{Dir: dir, Pinned: len(opts.PublicKeys) > 0, Problems: []Problem{}, Warnings: []Problem{}}
	chains, err := findChains(fsys, dir)
	if err != nil {
		return nil, err
	}
	if len(opts.Chains) > 0 {
		var sel []chainDir
		for _, name := range opts.Chains {
			i := slices.IndexFunc(chains, func(c chainDir) bool { return c.name == name })
			if i < 0 {
				return nil, fmt.Errorf("verify audit log: no chain %q in %s", name, dir)
			}
			sel = append(sel, chains[i])
		}
		chains = sel
	}
	if len(chains) == 0 {
		return nil, fmt.Errorf("verify audit log: no audit chain in %s", dir)
	}
	for _, c := range chains {
		v := &chainVerifier{rep: rep, fsys: fsys, name: c.name, dir: c.dir, cr: ChainReport{Name: c.name}}
		v.verify(opts.PublicKeys)
		rep.Chains = append(rep.Chains, v.cr)
		rep.Records += v.cr.Records
	}
	return rep, nil
}

type chainDir struct{ name, dir string }

// findChains lists the chains of an audit directory fsys (named dir): its
// subdirectories holding chain files. A chain directory itself is accepted too (its
// name is the chain's).
func findChains(fsys fs.FS, dir string) ([]chainDir, error) {
	ents, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read audit directory %s: %w", dir, err)
	}
	if isChainDir(fsys, ".") {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		return []chainDir{{name: filepath.Base(abs), dir: "."}}, nil
	}
	var out []chainDir
	for _, e := range ents {
		if e.IsDir() && ValidChain(e.Name()) && isChainDir(fsys, e.Name()) {
			out = append(out, chainDir{name: e.Name(), dir: e.Name()})
		}
	}
	return out, nil
}

func isChainDir(fsys fs.FS, dir string) bool {
	if _, err := fs.Stat(fsys, path.Join(dir, keyFile)); err == nil {
		return true
	}
	segs, digs, _, err := chainFiles(fsys, dir)
	return err == nil && len(segs)+len(digs) > 0
}

type chainVerifier struct {
	rep  *Report
	fsys fs.FS
	name string
	dir  string
	cr   ChainReport
	keys []ed25519.PublicKey

	expSeq     uint64 // next seq expected
	expPrev    string // hash the next record must name as prev
	prevDigest string // hash of the last trusted digest line
	started    bool
}

func (v *chainVerifier) problem(p Problem) {
	p.Chain = v.name
	v.rep.Problems = append(v.rep.Problems, p)
}

func (v *chainVerifier) warn(p Problem) {
	p.Chain = v.name
	v.rep.Warnings = append(v.rep.Warnings, p)
}

func (v *chainVerifier) loadKeys(pinned []ed25519.PublicKey) {
	data, err := fs.ReadFile(v.fsys, path.Join(v.dir, keyFile))
	var own []ed25519.PublicKey
	if err == nil {
		own, err = ParsePublicKeys(data)
	}
	if len(pinned) > 0 {
		v.keys = pinned
		for _, k := range own {
			if !slices.ContainsFunc(pinned, func(p ed25519.PublicKey) bool { return p.Equal(k) }) {
				v.problem(Problem{File: keyFile, Kind: KeyReplaced, Message: fmt.Sprintf("the chain's key file names key %s, which is not a pinned key", KeyID(k))})
			}
		}
		return
	}
	if err != nil {
		v.problem(Problem{File: keyFile, Kind: BadSignature, Message: fmt.Sprintf("no usable public key to check digests with: %v", err)})
		return
	}
	v.keys = own
	v.warn(Problem{File: keyFile, Kind: Unpinned, Message: "digests checked against the chain's own key file, which whoever can rewrite the log can replace; pin the key (--public-key) to detect that"})
}

func (v *chainVerifier) verify(pinned []ed25519.PublicKey) {
	v.loadKeys(pinned)
	segs, digs, _, err := chainFiles(v.fsys, v.dir)
	if err != nil {
		v.problem(Problem{Kind: Malformed, Message: err.Error()})
		return
	}
	all := append(slices.Clone(segs), digs...)
	slices.Sort(all)
	all = slices.Compact(all)
	if len(all) == 0 {
		v.warn(Problem{Kind: NotCovered, Message: "chain has no segments yet"})
		return
	}
	v.cr.Segments = len(segs)
	if all[0] != 1 {
		v.problem(Problem{File: segmentName(1), Kind: Removed, Message: missingSegments(1, all[0]-1)})
	} else {
		v.expSeq, v.expPrev, v.started = 1, zeroHash, true
	}
	for i, n := range all {
		if i > 0 && n != all[i-1]+1 {
			v.problem(Problem{File: segmentName(all[i-1] + 1), Kind: Removed, Message: missingSegments(all[i-1]+1, n-1)})
		}
		v.segment(n, i == len(all)-1)
	}
}

func missingSegments(from, to uint64) string {
	if from == to {
		return fmt.Sprintf("segment %d is missing (records and digests)", from)
	}
	return fmt.Sprintf("segments %d to %d are missing (records and digests)", from, to)
}

// recInfo is what digests are checked against.
type recInfo struct {
	seq  uint64
	hash string
	line int
}

// segment verifies segment n. Whether its files exist is decided when they are read,
// not from the directory listing, which a running writer may have changed since.
func (v *chainVerifier) segment(n uint64, newest bool) {
	sname, dname := segmentName(n), digestName(n)

	// The digests first: what they cover decides whether a bad last line is a torn
	// tail (after them: a crash) or truncation (within them: tampering).
	var ds []*digest
	var dlines []int
	raw, err := fs.ReadFile(v.fsys, path.Join(v.dir, dname))
	haveDig := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		v.problem(Problem{File: dname, Kind: Malformed, Message: err.Error()})
	}
	if haveDig {
		lines := splitLines(raw)
		for i, ln := range lines {
			d, perr := parseDigest(ln.Text)
			if perr != nil || ln.Partial {
				if i == len(lines)-1 && (ln.Partial || len(bytes.TrimSpace(ln.Text)) == 0 || perr != nil) && newest {
					v.warn(Problem{File: dname, Line: ln.No, Kind: TornTail, Message: "the last digest line is incomplete (a crash while it was written); ignored"})
					continue
				}
				msg := "not a digest line"
				if perr != nil {
					msg = "not a digest line: " + perr.Error()
				}
				v.problem(Problem{File: dname, Line: ln.No, Kind: Malformed, Message: msg})
				continue
			}
			if !d.verifySig(v.keys) {
				v.problem(Problem{File: dname, Line: ln.No, Kind: BadSignature, Message: fmt.Sprintf("digest signature (key %s) does not verify with a trusted key: the digest was modified or forged", d.KeyID)})
				continue
			}
			if d.Chain != v.name || d.Segment != n {
				v.problem(Problem{File: dname, Line: ln.No, Kind: Modified, Message: fmt.Sprintf("digest belongs to chain %q segment %d: copied from elsewhere", d.Chain, d.Segment)})
				continue
			}
			if d.PrevDigest != v.prevDigest && (v.prevDigest != "" || n == 1) {
				v.problem(Problem{File: dname, Line: ln.No, Kind: Removed, Message: "digest does not follow the chain's previous digest: a digest before it was removed or replaced"})
			}
			v.prevDigest = d.hash()
			ds = append(ds, d)
			dlines = append(dlines, ln.No)
		}
	}
	// Read after the digests: a running writer signs only what it has already written, so
	// segment bytes read later are never fewer than a digest read earlier covers.
	data, err := fs.ReadFile(v.fsys, path.Join(v.dir, sname))
	haveSeg := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		v.problem(Problem{File: sname, Kind: Malformed, Message: err.Error()})
		return
	}
	var covered int64
	var coveredSeq uint64
	final := false
	for _, d := range ds {
		if d.Bytes > covered {
			covered, coveredSeq = d.Bytes, d.LastSeq
		}
		if d.Final {
			final = true
		}
		v.cr.Digests++
		v.cr.LastDigest = d.Time
	}
	if len(ds) > 0 {
		if coveredSeq > v.cr.CoveredSeq {
			v.cr.CoveredSeq = coveredSeq
		}
		if !v.started {
			// The chain's start is missing: continue from what this segment's opening digest signed.
			v.expSeq, v.expPrev, v.started = ds[0].FirstSeq, ds[0].PrevHash, true
		}
	}
	// The newest segment's digests may exist before its file (see startSegment).
	if !haveSeg && (covered > 0 || !newest) {
		v.problem(Problem{File: sname, Kind: Removed, Message: "segment file is missing"})
	}
	if !haveDig && haveSeg && (len(data) > 0 || !newest) {
		v.problem(Problem{File: dname, Kind: Removed, Message: "digest file is missing: the segment's records are covered by no signature"})
	}

	// The records.
	lines := splitLines(data)
	bySeq := map[uint64]int{} // seq -> line index, for telling reordering from removal
	parsed := make([]*Record, len(lines))
	modified := make([]bool, len(lines))
	for i, ln := range lines {
		r, err := ParseRecord(v.name, ln.Text)
		if err == nil || errors.Is(err, ErrModified) {
			parsed[i] = &r
			modified[i] = err != nil
			if _, dup := bySeq[r.Seq]; !dup {
				bySeq[r.Seq] = i
			}
		}
	}
	byEnd := map[int64]recInfo{}
	var uncoveredFirst, uncoveredLast uint64
	var uncovered int
	for i, ln := range lines {
		r := parsed[i]
		last := i == len(lines)-1
		if ln.Partial || r == nil {
			switch {
			case last && newest && ln.Start >= covered:
				v.warn(Problem{File: sname, Line: ln.No, Seq: v.expSeq, Kind: TornTail, Message: fmt.Sprintf("the last %d bytes are an incomplete record (a crash while it was written); everything before it verifies", ln.End-ln.Start)})
			case ln.Partial && ln.Start < covered:
				v.problem(Problem{File: sname, Line: ln.No, Seq: v.expSeq, Kind: Truncated, Message: fmt.Sprintf("the segment ends inside a record at byte %d, but a signed digest covers it up to byte %d (seq %d)", ln.End, covered, coveredSeq)})
			case ln.Partial:
				v.problem(Problem{File: sname, Line: ln.No, Seq: v.expSeq, Kind: Truncated, Message: "the segment ends inside a record, and it is not the newest segment"})
			default:
				v.problem(Problem{File: sname, Line: ln.No, Seq: v.expSeq, Kind: Modified, Message: "line is not a well-formed record"})
			}
			continue
		}
		if !v.started {
			// The chain's start is missing (reported): take it up from here.
			v.expSeq, v.expPrev, v.started = r.Seq, r.Prev, true
		}
		if modified[i] {
			v.problem(Problem{File: sname, Line: ln.No, Seq: r.Seq, Kind: Modified, Message: "the record's hash does not match its content: the record was modified"})
		} else {
			switch {
			case r.Seq == v.expSeq && r.Prev != v.expPrev:
				v.problem(Problem{File: sname, Line: ln.No, Seq: r.Seq, Kind: Modified, Message: fmt.Sprintf("the record's previous hash is not the hash of record %d: a record before it was modified or replaced", r.Seq-1)})
			case r.Seq == v.expSeq:
				v.cr.Records++
			case r.Seq > v.expSeq:
				if j, ok := bySeq[v.expSeq]; ok && j > i {
					v.problem(Problem{File: sname, Line: ln.No, Seq: r.Seq, Kind: Reordered, Message: fmt.Sprintf("record %d is where record %d belongs (that one is at line %d)", r.Seq, v.expSeq, lines[j].No)})
				} else if v.expSeq == r.Seq-1 {
					v.problem(Problem{File: sname, Line: ln.No, Seq: v.expSeq, Kind: Removed, Message: fmt.Sprintf("record %d is missing before record %d", v.expSeq, r.Seq)})
				} else {
					v.problem(Problem{File: sname, Line: ln.No, Seq: v.expSeq, Kind: Removed, Message: fmt.Sprintf("records %d to %d are missing before record %d", v.expSeq, r.Seq-1, r.Seq)})
				}
			default:
				v.problem(Problem{File: sname, Line: ln.No, Seq: r.Seq, Kind: Reordered, Message: fmt.Sprintf("record %d comes again or out of order, after record %d", r.Seq, v.expSeq-1)})
			}
		}
		byEnd[ln.End] = recInfo{seq: r.Seq, hash: r.Hash, line: ln.No}
		if v.cr.FirstSeq == 0 {
			v.cr.FirstSeq = r.Seq
		}
		v.cr.LastSeq, v.cr.LastHash = r.Seq, r.Hash
		v.expSeq, v.expPrev = r.Seq+1, r.Hash
		if ln.End > covered {
			if uncovered == 0 {
				uncoveredFirst = r.Seq
			}
			uncovered++
			uncoveredLast = r.Seq
		}
	}

	// What the digests claim against what is there.
	size := int64(len(data))
	for i, d := range ds {
		dl := dlines[i]
		if d.Bytes > size {
			if d.Bytes == covered {
				have := "no records"
				if len(lines) > 0 && v.cr.LastSeq > 0 {
					have = fmt.Sprintf("records up to seq %d", v.cr.LastSeq)
				}
				v.problem(Problem{File: sname, Seq: d.LastSeq, Kind: Truncated, Message: fmt.Sprintf("%s line %d signs %d bytes up to seq %d, the segment has %d bytes (%s): records were cut off", dname, dl, d.Bytes, d.LastSeq, size, have)})
			}
			continue
		}
		if d.Records == 0 {
			if d.Bytes != 0 || d.LastHash != d.PrevHash {
				v.problem(Problem{File: dname, Line: dl, Kind: Modified, Message: "opening digest is inconsistent"})
			}
			if i == 0 && len(lines) > 0 && parsed[0] != nil && (parsed[0].Seq != d.FirstSeq || parsed[0].Prev != d.PrevHash) {
				v.problem(Problem{File: sname, Line: 1, Seq: parsed[0].Seq, Kind: Modified, Message: fmt.Sprintf("the segment's first record is not seq %d following the previous segment, as its opening digest signs", d.FirstSeq)})
			}
			continue
		}
		ri, ok := byEnd[d.Bytes]
		switch {
		case !ok:
			v.problem(Problem{File: sname, Seq: d.LastSeq, Kind: Modified, Message: fmt.Sprintf("%s line %d signs seq %d ending at byte %d, but no record ends there: records before it were changed, added or removed", dname, dl, d.LastSeq, d.Bytes)})
		case ri.seq != d.LastSeq || ri.hash != d.LastHash:
			v.problem(Problem{File: sname, Line: ri.line, Seq: ri.seq, Kind: Modified, Message: fmt.Sprintf("%s line %d signs seq %d with hash %.12s… here, the segment has seq %d with hash %.12s…", dname, dl, d.LastSeq, d.LastHash, ri.seq, ri.hash)})
		}
	}

	if uncovered > 0 {
		switch {
		case newest:
			v.warn(Problem{File: sname, Seq: uncoveredFirst, Kind: NotCovered, Message: fmt.Sprintf("%d records (seq %d to %d) are not yet covered by a signed digest: their removal could not be detected", uncovered, uncoveredFirst, uncoveredLast)})
		case final:
			v.problem(Problem{File: sname, Seq: uncoveredFirst, Kind: Modified, Message: fmt.Sprintf("records seq %d to %d follow the segment's final digest: added after it was sealed", uncoveredFirst, uncoveredLast)})
		default:
			v.problem(Problem{File: sname, Seq: uncoveredFirst, Kind: NotCovered, Message: fmt.Sprintf("records seq %d to %d are covered by no digest in a sealed segment: its digests were removed", uncoveredFirst, uncoveredLast)})
		}
	}
	if !newest && !final && haveDig {
		v.problem(Problem{File: dname, Kind: Removed, Message: "the segment has no final digest: its last digests were removed"})
	}
}
