package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

// memAnchors is an in-memory AnchorStore that, like the store, only inserts.
type memAnchors struct {
	mu      sync.Mutex
	chains  []ChainEntry
	anchors []Anchor
	signers []Signer
	fail    error // returned by every call while set
}

func (m *memAnchors) RegisterAuditChain(_ context.Context, chain string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	if !slices.ContainsFunc(m.chains, func(c ChainEntry) bool { return c.Name == chain }) {
		m.chains = append(m.chains, ChainEntry{Name: chain, Created: at})
	}
	return nil
}

func (m *memAnchors) PutAuditSigner(_ context.Context, s Signer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.signers = append(m.signers, s)
	return nil
}

func (m *memAnchors) PutAuditAnchor(_ context.Context, a Anchor) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.anchors = append(m.anchors, a)
	return nil
}

func (m *memAnchors) LatestAuditAnchor(_ context.Context, chain string) (Anchor, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return Anchor{}, false, m.fail
	}
	var best *Anchor
	for i := range m.anchors {
		a := &m.anchors[i]
		if a.Chain == chain && (best == nil || a.Seq > best.Seq || a.Seq == best.Seq && a.Segment > best.Segment) {
			best = a
		}
	}
	if best == nil {
		return Anchor{}, false, nil
	}
	return *best, true, nil
}

func (m *memAnchors) set() *AnchorSet {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &AnchorSet{Chains: slices.Clone(m.chains), Anchors: slices.Clone(m.anchors), Signers: slices.Clone(m.signers), Source: "test"}
}

// perimeterCA is a CA and what verification needs of it.
type perimeterCA struct {
	ca *pki.CA
}

func newPerimeterCA(t testing.TB) *perimeterCA {
	ca, err := pki.New(pki.Config{Dir: filepath.Join(t.TempDir(), "ca"), Account: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	return &perimeterCA{ca: ca}
}

// writer certifies a fresh key as chain's writer.
func (p *perimeterCA) writer(t testing.TB, chain string) (ed25519.PrivateKey, []byte) {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	cert, err := p.ca.Sign(pub, pki.Request{Identity: pki.Identity{Account: "123456789012", Kind: pki.KindAudit, Name: chain}, AuditSigning: true})
	if err != nil {
		t.Fatal(err)
	}
	return key, cert.Raw
}

func (p *perimeterCA) VerifyAuditSigner(der []byte) (SignerInfo, error) {
	s, err := p.ca.Verifier().VerifyAuditSigner(der)
	return SignerInfo{Chain: s.Chain, Key: s.Key, NotBefore: s.NotBefore, NotAfter: s.NotAfter}, err
}

// anchoredChain is a closed chain of n records written by a certified writer that
// anchors in m, over several small segments.
func anchoredChain(t *testing.T, dir, chain string, ca *perimeterCA, m *memAnchors, n int) {
	t.Helper()
	key, cert := ca.writer(t, chain)
	l := openTest(t, dir, chain, func(c *Config) {
		c.SegmentBytes = minSegmentBytes
		c.Signer, c.Certificate, c.Anchors = key, cert, []AnchorStore{m}
		c.DigestInterval = time.Millisecond
	})
	for i := range n {
		writeN(t, l, i, 1)
		if i%2 == 1 {
			time.Sleep(3 * time.Millisecond) // digests (and anchors) between records
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAnchoredVerify: a certified, anchored chain verifies with nothing to warn about;
// every digest left an anchor, and the store knows the chain.
func TestAnchoredVerify(t *testing.T) {
	dir, ca, m := t.TempDir(), newPerimeterCA(t), &memAnchors{}
	anchoredChain(t, dir, "sts", ca, m, 12)
	rep := mustVerify(t, dir, VerifyOptions{Signers: ca, Anchors: m.set()})
	if !rep.OK() || len(rep.Warnings) != 0 || rep.Keys != "certified" || rep.Records != 12 {
		t.Fatalf("problems\n%swarnings %v keys %s records %d", problems(rep), rep.Warnings, rep.Keys, rep.Records)
	}
	if len(m.chains) != 1 || m.chains[0].Name != "sts" || len(m.signers) != 1 {
		t.Fatalf("store: chains %v signers %d", m.chains, len(m.signers))
	}
	ds := 0
	for _, n := range []uint64{1, 2, 3, 4, 5, 6} {
		d, _, _, _ := readDigests(filepath.Join(dir, "sts", digestName(n)))
		ds += len(d)
	}
	if len(m.anchors) != ds {
		t.Fatalf("%d anchors for %d digests", len(m.anchors), ds)
	}
	if a, _, _ := m.LatestAuditAnchor(t.Context(), "sts"); a.Seq != 12 {
		t.Fatalf("anchored head %d, want 12", a.Seq)
	}
	if _, err := os.Stat(filepath.Join(dir, "sts", keyFile)); err == nil {
		t.Fatal("a certified writer wrote an uncertified key file")
	}
	for _, l := range rep.Limits {
		if strings.Contains(l, "no anchors") || strings.Contains(l, "unpinned") {
			t.Fatalf("limits %q with anchors and the CA", l)
		}
	}
}

// cutBack cuts the chain in dir back to the digest boundary before record seq: the
// newest segment ends at the record its earlier digest covers, the digest file with it,
// later segments are removed. What is left is a valid, shorter chain.
func cutBack(t *testing.T, dir, chain string, seq uint64) {
	t.Helper()
	cdir := filepath.Join(dir, chain)
	segs, _, _, _ := chainFiles(os.DirFS(cdir), ".")
	for _, n := range slices.Backward(segs) {
		ds, lines, _, _ := readDigests(filepath.Join(cdir, digestName(n)))
		for i := len(ds) - 1; i >= 0; i-- {
			d := ds[i]
			if d.LastSeq < seq && !d.Final && d.Records > 0 {
				os.Truncate(filepath.Join(cdir, segmentName(n)), d.Bytes)
				os.Truncate(filepath.Join(cdir, digestName(n)), lines[i].End)
				return
			}
		}
		os.Remove(filepath.Join(cdir, segmentName(n)))
		os.Remove(filepath.Join(cdir, digestName(n)))
	}
	t.Fatalf("no digest before seq %d", seq)
}

// TestAnchorsFindWhatDigestsCannot: the tamperings the chain alone verifies — cut back
// to a digest, deleted whole, emptied, replaced by a shorter valid chain — fail against
// the anchors, naming the chain and the records missing; so does a longer forged chain
// and an anchor inserted by someone without the writer's key.
func TestAnchorsFindWhatDigestsCannot(t *testing.T) {
	ca := newPerimeterCA(t)
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, dir string, m *memAnchors)
		blind   bool // verifies without anchors
		kind    Kind
		message string
	}{
		{"cut back to an earlier digest", func(t *testing.T, dir string, _ *memAnchors) { cutBack(t, dir, "sts", 9) }, true, Truncated, "to 12 were removed"},
		{"chain deleted", func(t *testing.T, dir string, _ *memAnchors) { os.RemoveAll(filepath.Join(dir, "sts")) }, true, Removed, "records 1 to 12 are gone"},
		{"newest files emptied", func(t *testing.T, dir string, _ *memAnchors) {
			segs, _, _, _ := chainFiles(os.DirFS(filepath.Join(dir, "sts")), ".")
			n := segs[len(segs)-1]
			os.Truncate(filepath.Join(dir, "sts", segmentName(n)), 0)
			os.Truncate(filepath.Join(dir, "sts", digestName(n)), 0)
		}, false, Truncated, "to 12 were removed"},
		{"replaced by a shorter valid chain", func(t *testing.T, dir string, _ *memAnchors) {
			os.RemoveAll(filepath.Join(dir, "sts"))
			anchoredChain(t, dir, "sts", ca, &memAnchors{}, 5)
		}, true, Modified, "not the one the anchor store holds"},
		{"replaced by a longer forged chain", func(t *testing.T, dir string, _ *memAnchors) {
			os.RemoveAll(filepath.Join(dir, "sts"))
			anchoredChain(t, dir, "sts", ca, &memAnchors{}, 20)
		}, true, Modified, "not the one the anchor store holds"},
		{"an anchor inserted by someone else", func(t *testing.T, dir string, m *memAnchors) {
			_, other, _ := ed25519.GenerateKey(rand.Reader)
			body := digestBody{Version: 1, Chain: "sts", Segment: 9, LastSeq: 40, LastHash: zeroHash, KeyID: KeyID(other.Public().(ed25519.PublicKey)), Time: time.Now()}
			line, _, _ := appendDigest(nil, other, &body)
			m.anchors = append(m.anchors, anchorOf(bytes.TrimSuffix(line, []byte("\n")), &body))
		}, true, BadSignature, "no key trusted for this chain signed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, m := t.TempDir(), &memAnchors{}
			anchoredChain(t, dir, "sts", ca, m, 12)
			anchoredChain(t, dir, "gateway", ca, m, 4)
			tc.tamper(t, dir, m)
			if rep, err := Verify(dir, VerifyOptions{Signers: ca}); tc.blind && (err != nil || !rep.OK()) {
				t.Fatalf("without anchors: %v\n%s (the case is meant to be one digests alone cannot see)", err, problems(rep))
			}
			rep := mustVerify(t, dir, VerifyOptions{Signers: ca, Anchors: m.set()})
			for _, p := range rep.Problems {
				if p.Chain == "sts" && p.Kind == tc.kind && strings.Contains(p.Message, tc.message) {
					t.Logf("found: %s", p)
					return
				}
			}
			t.Fatalf("want a %s problem of chain sts saying %q, got:\n%s", tc.kind, tc.message, problems(rep))
		})
	}
}

// TestWriterKeys: a digest signed by the key certified for another chain, by a key no
// certificate vouches for, or by a key another CA certified is named as such.
func TestWriterKeys(t *testing.T) {
	ca, rogue := newPerimeterCA(t), newPerimeterCA(t)
	for _, tc := range []struct {
		name string
		key  func(t *testing.T) (ed25519.PrivateKey, []byte)
		kind Kind
		msg  string
	}{
		{"the gateway's key signs the sts chain", func(t *testing.T) (ed25519.PrivateKey, []byte) { return ca.writer(t, "gateway") }, WrongKey, `certified for chain "gateway"`},
		{"an uncertified key", func(t *testing.T) (ed25519.PrivateKey, []byte) {
			_, k, _ := ed25519.GenerateKey(rand.Reader)
			return k, nil
		}, UnknownKey, "only the chain's own key files vouch for"},
		{"another CA's certificate", func(t *testing.T) (ed25519.PrivateKey, []byte) { return rogue.writer(t, "sts") }, UnknownKey, "the perimeter CA did not issue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, m := t.TempDir(), &memAnchors{}
			anchoredChain(t, dir, "sts", ca, m, 4)
			key, cert := tc.key(t)
			l := openTest(t, dir, "sts", func(c *Config) { c.Signer, c.Certificate = key, cert })
			writeN(t, l, 10, 2)
			l.Close()
			rep := mustVerify(t, dir, VerifyOptions{Signers: ca, Anchors: m.set()})
			for _, p := range rep.Problems {
				if p.Kind == tc.kind && strings.Contains(p.Message, tc.msg) && strings.HasSuffix(p.File, digestExt) {
					t.Logf("found: %s", p)
					return
				}
			}
			t.Fatalf("want %s saying %q:\n%s", tc.kind, tc.msg, problems(rep))
		})
	}
}

// TestOpenContinuesAfterAnchoredHead: a writer opening a chain cut short, emptied or
// deleted continues after the head the anchor store holds (no seq is used twice), and
// records the damage first.
func TestOpenContinuesAfterAnchoredHead(t *testing.T) {
	ca := newPerimeterCA(t)
	for _, tc := range []struct {
		name   string
		tamper func(dir string)
	}{
		{"cut back", func(dir string) { cutBack(t, dir, "sts", 9) }},
		{"deleted", func(dir string) { os.RemoveAll(filepath.Join(dir, "sts")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, m := t.TempDir(), &memAnchors{}
			anchoredChain(t, dir, "sts", ca, m, 12)
			tc.tamper(dir)
			var left uint64 // the records the tampering left
			if _, err := os.Stat(filepath.Join(dir, "sts")); err == nil {
				if err := ReadChain(dir, "sts", 0, func(e Entry) error { left = e.Seq; return nil }); err != nil {
					t.Fatal(err)
				}
			}
			key, cert := ca.writer(t, "sts")
			l := openTest(t, dir, "sts", func(c *Config) { c.Signer, c.Certificate, c.Anchors = key, cert, []AnchorStore{m} })
			writeN(t, l, 50, 1)
			l.Close()
			r, err := NewReader(dir, "sts", 12)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			e, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			ev, _ := e.Decode()
			d, ok := DamageOf(ev)
			if e.Seq != 13 || !ok || d.From != left+1 || d.To != 12 {
				t.Fatalf("first record after the damage: seq %d %+v", e.Seq, d)
			}
			if e, err := r.Next(); err != nil || e.Seq != 14 {
				t.Fatalf("then: %v seq %d", err, e.Seq)
			}
			rep := mustVerify(t, dir, VerifyOptions{Signers: ca, Anchors: m.set()})
			if rep.OK() {
				t.Fatal("the damage is no longer reported once the chain continued")
			}
			t.Logf("%s", problems(rep))
		})
	}
}

// TestLiveTampering: a running writer finds its chain cut, emptied or deleted at its
// next digest, records the damage and goes on in a new segment; a reader following it
// finds the damage too.
func TestLiveTampering(t *testing.T) {
	ca := newPerimeterCA(t)
	for _, tc := range []struct {
		name   string
		tamper func(cdir string, seg uint64)
	}{
		{"segment cut", func(cdir string, seg uint64) { os.Truncate(filepath.Join(cdir, segmentName(seg)), 100) }},
		{"files emptied", func(cdir string, seg uint64) {
			os.Truncate(filepath.Join(cdir, segmentName(seg)), 0)
			os.Truncate(filepath.Join(cdir, digestName(seg)), 0)
		}},
		{"chain deleted", func(cdir string, _ uint64) { os.RemoveAll(cdir) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, m := t.TempDir(), &memAnchors{}
			key, cert := ca.writer(t, "sts")
			l := openTest(t, dir, "sts", func(c *Config) {
				c.Signer, c.Certificate, c.Anchors = key, cert, []AnchorStore{m}
				c.DigestInterval = 20 * time.Millisecond
			})
			defer l.Close()
			writeN(t, l, 0, 10)
			r, err := NewReader(dir, "sts", 0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for range 10 {
				if _, err := r.Next(); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(50 * time.Millisecond) // digested and anchored
			tc.tamper(filepath.Join(dir, "sts"), 1)
			// The reader finds the damage itself, or reads the writer's record of it:
			// within a second or two (a digest), 15 s on a loaded machine.
			deadline := time.Now().Add(15 * time.Second)
			for i := 0; ; i++ {
				writeN(t, l, 100+i, 1)
				e, err := r.Next()
				var dmg *Damage
				if errors.As(err, &dmg) {
					t.Logf("reader: %v", dmg)
					break
				}
				if err == nil {
					if ev, _ := e.Decode(); ev.EventName == EventChainDamaged {
						d, _ := DamageOf(ev)
						t.Logf("writer: %v", d)
						break
					}
				}
				if time.Now().After(deadline) {
					var files []string
					ents, _ := os.ReadDir(filepath.Join(dir, "sts"))
					for _, e := range ents {
						fi, _ := e.Info()
						files = append(files, fmt.Sprintf("%s:%d", e.Name(), fi.Size()))
					}
					t.Fatalf("no damage found within 15s (last: %v, record seq %d); files %v", err, e.Seq, files)
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The writer recorded it and went on.
			found := false
			for deadline := time.Now().Add(15 * time.Second); !found && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				segs, _, _, _ := chainFiles(os.DirFS(filepath.Join(dir, "sts")), ".")
				for _, n := range segs {
					data, _ := os.ReadFile(filepath.Join(dir, "sts", segmentName(n)))
					found = found || bytes.Contains(data, []byte(EventChainDamaged))
				}
			}
			if !found {
				t.Fatal("the writer recorded no damage")
			}
			writeN(t, l, 200, 1)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			rep := mustVerify(t, dir, VerifyOptions{Signers: ca, Anchors: m.set()})
			if rep.OK() {
				t.Fatal("verify passes after live tampering")
			}
			t.Logf("verify: %d problems, first %s", len(rep.Problems), rep.Problems[0])
		})
	}
}

// TestAnchorStoreDown: a writer whose anchor store fails keeps writing and anchors the
// newest head once the store answers again; a chain ahead of its anchors is not damage.
func TestAnchorStoreDown(t *testing.T) {
	dir, m, ca := t.TempDir(), &memAnchors{}, newPerimeterCA(t)
	key, cert := ca.writer(t, "sts")
	l := openTest(t, dir, "sts", func(c *Config) {
		c.Signer, c.Certificate, c.Anchors = key, cert, []AnchorStore{m}
		c.DigestInterval = 5 * time.Millisecond
	})
	writeN(t, l, 0, 3)
	time.Sleep(30 * time.Millisecond)
	m.mu.Lock()
	m.fail = fmt.Errorf("store down")
	m.mu.Unlock()
	writeN(t, l, 3, 3)
	time.Sleep(30 * time.Millisecond)
	rep := mustVerify(t, dir, VerifyOptions{Signers: ca, Anchors: m.set()})
	if !rep.OK() {
		t.Fatalf("a chain ahead of its anchors: %s", problems(rep))
	}
	m.mu.Lock()
	m.fail = nil
	m.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		a, _, _ := m.LatestAuditAnchor(context.Background(), "sts")
		if a.Seq == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("anchored head %d 5s after the store came back, want 6", a.Seq)
		}
	}
	l.Close()
}

// TestPrune: pruning the sealed segments before a date leaves a checkpoint; what
// remains verifies, the gap reported as pruned (against the anchors; without them only
// as a warning that nothing vouches for the chain's own pruned.json, and without that
// as removed segments).
func TestPrune(t *testing.T) {
	dir, ca, m := t.TempDir(), newPerimeterCA(t), &memAnchors{}
	anchoredChain(t, dir, "sts", ca, m, 12)
	plan, ok, err := PlanPrune(dir, "sts", time.Now().Add(time.Hour))
	if err != nil || !ok {
		t.Fatalf("PlanPrune: %v %v", ok, err)
	}
	segs, _, _, _ := chainFiles(os.DirFS(filepath.Join(dir, "sts")), ".")
	if len(plan.Segments) != len(segs)-1 || plan.FirstSeq != 1 {
		t.Fatalf("plan %+v for segments %v: want every segment but the newest", plan, segs)
	}
	if _, ok, _ := PlanPrune(dir, "sts", time.Now().Add(-time.Hour)); ok {
		t.Fatal("a plan for segments sealed after the date")
	}
	var cps []Checkpoint
	archive := t.TempDir()
	if err := Prune(dir, plan, archive, time.Now(), func(c Checkpoint) error { cps = append(cps, c); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(archive, "sts", segmentName(1))); err != nil {
		t.Fatalf("segment 1 not archived: %v", err)
	}
	set := m.set()
	set.Checkpoints = cps
	rep := mustVerify(t, dir, VerifyOptions{Signers: ca, Anchors: set})
	if !rep.OK() || len(rep.Pruned) != 1 || len(rep.Warnings) != 0 || rep.Chains[0].FirstSeq != cps[0].Seq+1 {
		t.Fatalf("after prune: problems\n%spruned %v warnings %v", problems(rep), rep.Pruned, rep.Warnings)
	}
	t.Logf("pruned: %s", rep.Pruned[0])
	rep = mustVerify(t, dir, VerifyOptions{Signers: ca})
	if !rep.OK() || len(rep.Warnings) != 1 || rep.Warnings[0].Kind != Pruned {
		t.Fatalf("without anchors: %s %v", problems(rep), rep.Warnings)
	}
	os.Remove(filepath.Join(dir, "sts", prunedFile))
	if rep := mustVerify(t, dir, VerifyOptions{Signers: ca}); rep.OK() {
		t.Fatal("a chain without its first segments verifies without anchors or pruned.json")
	}
	// A writer resumes the pruned chain; a reader from the start reads what remains.
	key, cert := ca.writer(t, "sts")
	l := openTest(t, dir, "sts", func(c *Config) { c.Signer, c.Certificate, c.Anchors = key, cert, []AnchorStore{m} })
	writeN(t, l, 100, 1)
	l.Close()
	n := 0
	if err := ReadChain(dir, "sts", 0, func(Entry) error { n++; return nil }); err != nil || n != 12-int(cps[0].Seq)+1 {
		t.Fatalf("reading the pruned chain: %v, %d records", err, n)
	}
}

// TestReaderAtAFreshSegment: a reader resuming after the last record of a segment the
// writer just sealed, with the next one open but empty, waits (io.EOF) instead of taking
// the chain for cut short; the first record then follows.
func TestReaderAtAFreshSegment(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	defer l.Close()
	writeN(t, l, 0, 5)
	l.mu.Lock()
	err := l.rotate()
	l.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(dir, "gateway", 5)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.seg != 2 {
		t.Fatalf("the reader starts in segment %d, want the fresh segment 2", r.seg)
	}
	var h string
	ReadChain(dir, "gateway", 4, func(e Entry) error { h = e.Record.Hash; return nil })
	r.ExpectAfter(h)
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next at a fresh segment: %v, want io.EOF", err)
	}
	writeN(t, l, 5, 1)
	if e, err := r.Next(); err != nil || e.Seq != 6 {
		t.Fatalf("then: %v seq %d", err, e.Seq)
	}
}
