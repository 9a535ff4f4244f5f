package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"
)

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// PublicKeys pins keys digests may be signed with, for any chain.
	PublicKeys []ed25519.PublicKey
	// Signers checks writers' certificates (each chain's signers.pem, and the anchor
	// store's) against the perimeter CA. With it a digest must be signed by a key whose
	// certificate names the digest's chain, within the certificate's validity; a key no
	// certificate vouches for is reported. Without it, and without PublicKeys, each
	// chain's own key files are trusted and the report says so: whoever can rewrite the
	// log can also replace them.
	Signers SignerVerifier
	// Anchors are the anchor store's chains, heads, certificates and prune checkpoints.
	// Without them, what only anchors can show — a chain cut back to an earlier digest,
	// emptied, deleted whole, or replaced by a shorter valid one — is not detected, and
	// the report's Limits say so.
	Anchors *AnchorSet
	// Chains limits verification to these chains (default: every chain in the directory,
	// and every chain the anchors name).
	Chains []string
}

// SignerVerifier checks an audit writer's certificate against the perimeter CA
// (pki.Verifier, adapted by the caller).
type SignerVerifier interface {
	// VerifyAuditSigner verifies cert (DER) and returns what it vouches for.
	VerifyAuditSigner(cert []byte) (SignerInfo, error)
}

// SignerInfo is what a writer's certificate vouches for: Key signs the digests of Chain
// between NotBefore and NotAfter.
type SignerInfo struct {
	Chain               string
	Key                 ed25519.PublicKey
	NotBefore, NotAfter time.Time
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
	WrongKey     Kind = "wrong-key"     // a digest signed by a key certified for another chain, or outside its certificate
	UnknownKey   Kind = "unknown-key"   // a digest signed by a key no certificate or pin vouches for
	Pruned       Kind = "pruned"        // records removed by `phantom audit prune`; a note
	Unanchored   Kind = "unanchored"    // a chain the anchor store does not know; warning
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
	// Pruned are the gaps a prune checkpoint accounts for.
	Pruned []Problem `json:"pruned"`
	// Keys says what vouched for the digests' keys: "certified" (the perimeter CA),
	// "pinned", or "unpinned" (the chains' own key files).
	Keys string `json:"keys"`
	// Anchors names the anchor source used ("" none).
	Anchors string `json:"anchors,omitempty"`
	// Limits say, in plain words, what this verification could not detect.
	Limits []string `json:"limits"`
}

// OK reports whether verification found no problems.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify checks every chain under dir: each record's hash, the hash chain across records
// and segments, that sequence numbers are contiguous, that every signed digest verifies
// with a key trusted for its chain and matches the segment it covers, and, with anchors,
// that every chain the anchor store knows is there and holds every head it anchored. It
// returns an error only when dir cannot be read or holds no chain (and no anchor names
// one); what it finds is in the Report.
func Verify(dir string, opts VerifyOptions) (*Report, error) {
	return verifyFS(os.DirFS(dir), dir, opts)
}

// verifyFS verifies the audit directory fsys, named dir in the report.
func verifyFS(fsys fs.FS, dir string, opts VerifyOptions) (*Report, error) {
	rep := &Report{Dir: dir, Pinned: len(opts.PublicKeys) > 0, Problems: []Problem{}, Warnings: []Problem{}, Pruned: []Problem{}, Limits: []string{}}
	chains, err := findChains(fsys, dir)
	if err != nil {
		return nil, err
	}
	set := opts.Anchors
	registered := map[string]ChainEntry{}
	if set != nil {
		rep.Anchors = set.Source
		if rep.Anchors == "" {
			rep.Anchors = "anchor set"
		}
		for _, c := range set.Chains {
			registered[c.Name] = c
		}
	}
	onDisk := map[string]bool{}
	for _, c := range chains {
		onDisk[c.name] = true
	}
	if len(opts.Chains) > 0 {
		var sel []chainDir
		for _, name := range opts.Chains {
			i := slices.IndexFunc(chains, func(c chainDir) bool { return c.name == name })
			if i < 0 {
				if _, ok := registered[name]; ok {
					continue // missing from disk: reported below
				}
				return nil, fmt.Errorf("verify audit log: no chain %q in %s", name, dir)
			}
			sel = append(sel, chains[i])
		}
		chains = sel
	}
	if len(chains) == 0 && len(registered) == 0 {
		return nil, fmt.Errorf("verify audit log: no audit chain in %s", dir)
	}
	keys := newKeyring(fsys, chains, opts)
	rep.Keys = keys.mode()
	for _, c := range chains {
		v := &chainVerifier{rep: rep, fsys: fsys, name: c.name, dir: c.dir, cr: ChainReport{Name: c.name}, keys: keys}
		if set != nil {
			v.anchored(set)
			if _, ok := registered[c.name]; !ok {
				v.warn(Problem{Kind: Unanchored, Message: "the anchor store does not know this chain: it was never anchored, or was made elsewhere"})
			}
		} else {
			v.localCheckpoint()
		}
		v.verify()
		rep.Chains = append(rep.Chains, v.cr)
		rep.Records += v.cr.Records
	}
	if set != nil {
		missingChains(rep, set, onDisk, opts.Chains, keys)
	}
	rep.Limits = limits(rep, set != nil)
	return rep, nil
}

// missingChains reports the chains the anchor store knows that are not in the directory.
func missingChains(rep *Report, set *AnchorSet, onDisk map[string]bool, only []string, keys *keyring) {
	for _, c := range set.Chains {
		if onDisk[c.Name] || len(only) > 0 && !slices.Contains(only, c.Name) {
			continue
		}
		p := Problem{Chain: c.Name, Kind: Removed}
		var head *Anchor
		for i := range set.Anchors {
			a := &set.Anchors[i]
			if a.Chain == c.Name && keys.anchorTrusted(a) && (head == nil || a.Seq > head.Seq) {
				head = a
			}
		}
		cp := latestCheckpoint(set.Checkpoints, c.Name)
		if head != nil && head.Seq > 0 && (cp == nil || cp.Seq < head.Seq) {
			from := uint64(1)
			if cp != nil {
				from = cp.Seq + 1
			}
			p.Seq = from
			p.Message = fmt.Sprintf("the chain is missing: the anchor store registered it at %s and holds its head at seq %d (signed %s): records %d to %d are gone",
				c.Created.UTC().Format(time.RFC3339), head.Seq, head.Time.UTC().Format(time.RFC3339), from, head.Seq)
		} else {
			p.Message = fmt.Sprintf("the chain is missing: the anchor store registered it at %s", c.Created.UTC().Format(time.RFC3339))
		}
		rep.Problems = append(rep.Problems, p)
	}
}

// limits says what the verification could not detect.
func limits(rep *Report, anchored bool) []string {
	var out []string
	if !anchored {
		out = append(out, "no anchors: a chain cut back to an earlier digest, emptied, deleted whole or replaced by a shorter valid chain cannot be detected from the directory alone (verify with the store, --store URL, or an exported anchor set, --anchors FILE)")
	}
	if rep.Keys == "unpinned" {
		out = append(out, "keys unpinned: digests were checked against keys the chain directories list, which whoever can rewrite them can replace (give the perimeter CA, --ca FILE, or pin keys, --public-key FILE)")
	}
	return append(out, "records written after a chain's last digest (about a second's worth on a running writer) are covered by no signature or anchor")
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
	keys *keyring

	expSeq     uint64 // next seq expected
	expPrev    string // hash the next record must name as prev
	prevDigest string // hash of the last trusted digest line
	started    bool
	certified  bool // a digest was signed by a certified or pinned key

	// anchors maps each anchored seq to its anchor; seen records which of them the chain
	// showed, and with which hash. anchorHead is the highest.
	anchors    map[uint64]*Anchor
	anchorHead *Anchor
	seen       map[uint64]string
	checkpoint *Checkpoint
	localCP    bool // the checkpoint comes from the chain's own pruned.json (no anchors)
}

func (v *chainVerifier) problem(p Problem) {
	p.Chain = v.name
	v.rep.Problems = append(v.rep.Problems, p)
}

func (v *chainVerifier) warn(p Problem) {
	p.Chain = v.name
	v.rep.Warnings = append(v.rep.Warnings, p)
}

// anchored takes this chain's anchors and latest checkpoint from set. An anchor whose
// digest line no key trusted for the chain signed was not written by the chain's writer:
// it is reported, and not used.
func (v *chainVerifier) anchored(set *AnchorSet) {
	v.anchors, v.seen = map[uint64]*Anchor{}, map[uint64]string{}
	v.checkpoint = latestCheckpoint(set.Checkpoints, v.name)
	for i := range set.Anchors {
		a := &set.Anchors[i]
		if a.Chain != v.name {
			continue
		}
		if !v.keys.anchorTrusted(a) {
			v.problem(Problem{Seq: a.Seq, Kind: BadSignature, Message: fmt.Sprintf("the anchor store holds an anchor of seq %d that no key trusted for this chain signed: it was inserted by someone else", a.Seq)})
			continue
		}
		if v.checkpoint != nil && a.Seq <= v.checkpoint.Seq {
			continue
		}
		if old, ok := v.anchors[a.Seq]; !ok || a.Segment > old.Segment {
			v.anchors[a.Seq] = a
		}
		if v.anchorHead == nil || a.Seq > v.anchorHead.Seq {
			v.anchorHead = a
		}
	}
}

// localCheckpoint reads the chain's pruned.json, the prune record `phantom audit prune`
// leaves beside the chain, for a verification without anchors: it only turns the gap it
// describes from a problem into a warning, since whoever can write the directory can
// write it too.
func (v *chainVerifier) localCheckpoint() {
	data, err := fs.ReadFile(v.fsys, path.Join(v.dir, prunedFile))
	if err != nil {
		return
	}
	var cp Checkpoint
	if json.Unmarshal(data, &cp) == nil && cp.Chain == v.name && cp.Segment > 0 {
		v.checkpoint, v.localCP = &cp, true
	}
}

// latestCheckpoint is chain's checkpoint with the highest seq, or nil.
func latestCheckpoint(cps []Checkpoint, chain string) *Checkpoint {
	var best *Checkpoint
	for i := range cps {
		if cps[i].Chain == chain && (best == nil || cps[i].Seq > best.Seq) {
			best = &cps[i]
		}
	}
	return best
}

// record notes a record the chain holds, for the anchor check: its own hash, and its
// prev as the hash of the record before it (which an anchor of a segment's opening
// digest names).
func (v *chainVerifier) record(r *Record) {
	if v.anchors == nil {
		return
	}
	if _, ok := v.anchors[r.Seq]; ok {
		v.seen[r.Seq] = r.Hash
	}
	if _, ok := v.anchors[r.Seq-1]; ok {
		if _, done := v.seen[r.Seq-1]; !done {
			v.seen[r.Seq-1] = r.Prev
		}
	}
}

// checkAnchors compares the anchored heads with what the chain holds: a record the
// chain holds with another hash is a rewritten chain, a head beyond its end a chain cut
// short (or emptied).
func (v *chainVerifier) checkAnchors() {
	if v.anchors == nil {
		return
	}
	for _, seq := range slices.Sorted(maps.Keys(v.anchors)) {
		a := v.anchors[seq]
		if h, ok := v.seen[seq]; ok && h != a.Hash {
			v.problem(Problem{Seq: seq, File: segmentName(a.Segment), Kind: Modified, Message: fmt.Sprintf("record seq %d is not the one the anchor store holds (signed %s): the chain was rewritten or replaced", seq, a.Time.UTC().Format(time.RFC3339))})
			return // the records after it differ too
		}
	}
	a := v.anchorHead
	if a == nil || a.Seq == 0 || a.Seq <= v.cr.LastSeq {
		return
	}
	from, have := v.cr.LastSeq+1, fmt.Sprintf("ends at seq %d", v.cr.LastSeq)
	if v.cr.LastSeq == 0 {
		from, have = 1, "holds no record"
		if v.checkpoint != nil {
			from = v.checkpoint.Seq + 1
		}
	}
	v.problem(Problem{Seq: from, File: segmentName(a.Segment), Kind: Truncated, Message: fmt.Sprintf("the chain %s, but the anchor store holds its head at seq %d in %s (signed %s): records %d to %d were removed",
		have, a.Seq, segmentName(a.Segment), a.Time.UTC().Format(time.RFC3339), from, a.Seq)})
}

func (v *chainVerifier) verify() {
	v.loadKeys()
	defer v.checkAnchors()
	segs, digs, _, err := chainFiles(v.fsys, v.dir)
	if err != nil {
		v.problem(Problem{Kind: Malformed, Message: err.Error()})
		return
	}
	all := append(slices.Clone(segs), digs...)
	slices.Sort(all)
	all = slices.Compact(all)
	if len(all) == 0 {
		if v.anchorHead == nil {
			v.warn(Problem{Kind: NotCovered, Message: "chain has no segments yet"})
		}
		return
	}
	v.cr.Segments = len(segs)
	switch cp := v.checkpoint; {
	case all[0] == 1:
		v.expSeq, v.expPrev, v.started = 1, zeroHash, true
	case cp != nil && cp.Segment+1 >= all[0]:
		msg := fmt.Sprintf("segments before %s (records up to seq %d) were pruned at %s, those sealed before %s",
			segmentName(all[0]), cp.Seq, cp.Time.UTC().Format(time.RFC3339), cp.Before.UTC().Format(time.RFC3339))
		if v.localCP {
			v.warn(Problem{File: segmentName(1), Kind: Pruned, Message: msg + ", says the chain's pruned.json, which without anchors nothing vouches for"})
		} else {
			v.rep.Pruned = append(v.rep.Pruned, Problem{Chain: v.name, File: segmentName(1), Kind: Pruned, Message: msg})
		}
		if cp.Segment+1 == all[0] {
			v.expSeq, v.expPrev, v.started = cp.Seq+1, cp.Hash, true
		}
	default:
		msg := missingSegments(1, all[0]-1)
		if raw, err := fs.ReadFile(v.fsys, path.Join(v.dir, digestName(all[0]))); err == nil {
			if ls := splitLines(raw); len(ls) > 0 {
				if d, err := parseDigest(ls[0].Text); err == nil && d.FirstSeq > 1 {
					msg += fmt.Sprintf(": records 1 to %d", d.FirstSeq-1)
				}
			}
		}
		v.problem(Problem{File: segmentName(1), Kind: Removed, Seq: 1, Message: msg})
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
			if !v.checkDigest(d, dname, ln.No) {
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
		if !modified[i] {
			v.record(r)
		}
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
