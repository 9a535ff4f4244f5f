package audit

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture is a closed chain of 12 records over several small segments, every record
// covered by a signed digest, with where each record is.
type fixture struct {
	dir, chainDir string
	where         map[uint64]Position
	segments      uint64
}

func newFixture(t *testing.T, signer ed25519.PrivateKey) *fixture {
	t.Helper()
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", func(c *Config) {
		c.SegmentBytes = minSegmentBytes // about three records a segment
		if signer != nil {
			c.Signer = signer
		}
	})
	writeN(t, l, 0, 12)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	fx := &fixture{dir: dir, chainDir: filepath.Join(dir, "gateway"), where: map[uint64]Position{}}
	err := ReadChain(dir, "gateway", 0, func(e Entry) error {
		fx.where[e.Seq] = e.Position
		fx.segments = max(fx.segments, e.Segment)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fx.segments < 4 {
		t.Fatalf("fixture has %d segments, want at least 4", fx.segments)
	}
	return fx
}

func (fx *fixture) path(name string) string { return filepath.Join(fx.chainDir, name) }

func (fx *fixture) lines(t *testing.T, name string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(fx.path(name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(data, []byte("\n"))
}

func (fx *fixture) write(t *testing.T, name string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(fx.path(name), bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// segOf returns the segment file name and 0-based line index of record seq.
func (fx *fixture) segOf(seq uint64) (string, int) {
	p := fx.where[seq]
	return segmentName(p.Segment), p.Line - 1
}

func pinned(t *testing.T) VerifyOptions {
	return VerifyOptions{PublicKeys: []ed25519.PublicKey{testSigner(t).Public().(ed25519.PublicKey)}}
}

func TestFixtureVerifies(t *testing.T) {
	fx := newFixture(t, nil)
	rep := mustVerify(t, fx.dir, pinned(t))
	if !rep.OK() || len(rep.Warnings) != 0 || rep.Records != 12 {
		t.Fatalf("problems:\n%swarnings %v records %d", problems(rep), rep.Warnings, rep.Records)
	}
	// Verifying the chain directory itself works too.
	rep = mustVerify(t, fx.chainDir, pinned(t))
	if !rep.OK() || rep.Records != 12 {
		t.Fatalf("chain dir: %s", problems(rep))
	}
}

func TestTamperDetected(t *testing.T) {
	type want struct {
		kind Kind
		file string // "" = any
		seq  uint64 // 0 = any
		line int    // 0 = any
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, fx *fixture) want
	}{
		{"edit a field of a record", func(t *testing.T, fx *fixture) want {
			seg, i := fx.segOf(5)
			ls := fx.lines(t, seg)
			ls[i] = bytes.Replace(ls[i], []byte(`"sourceIPAddress":"10.0.3.17"`), []byte(`"sourceIPAddress":"10.0.3.18"`), 1)
			fx.write(t, seg, ls)
			return want{Modified, seg, 5, i + 1}
		}},
		{"edit a record and rehash the rest of its segment", func(t *testing.T, fx *fixture) want {
			// The hash chain alone cannot catch an attacker who recomputes it: the digests must.
			seg, i := fx.segOf(4)
			ls := fx.lines(t, seg)
			prev := zeroHash
			if i > 0 {
				r, err := ParseRecord("gateway", bytes.TrimSuffix(ls[i-1], []byte("\n")))
				if err != nil {
					t.Fatal(err)
				}
				prev = r.Hash
			} else {
				prev = mustRecord(t, fx, 3).Hash
			}
			for j := i; j < len(ls) && len(ls[j]) > 0; j++ {
				r, err := ParseRecord("gateway", bytes.TrimSuffix(ls[j], []byte("\n")))
				if err != nil {
					t.Fatal(err)
				}
				ev := bytes.Replace(r.Event, []byte(`"errorCode"`), []byte(`"x"`), 1)
				ev = bytes.Replace(ev, []byte(`"statusCode":200`), []byte(`"statusCode":201`), 1)
				ls[j], prev = appendRecord(nil, "gateway", r.Seq, prev, ev)
			}
			fx.write(t, seg, ls)
			return want{Modified, seg, 0, 0}
		}},
		{"delete a record", func(t *testing.T, fx *fixture) want {
			seg, i := fx.segOf(5)
			ls := fx.lines(t, seg)
			fx.write(t, seg, append(ls[:i:i], ls[i+1:]...))
			return want{Removed, seg, 5, i + 1}
		}},
		{"swap two records", func(t *testing.T, fx *fixture) want {
			seg, i := fx.segOf(5)
			seg6, j := fx.segOf(6)
			if seg6 != seg {
				seg, i = fx.segOf(4)
				_, j = fx.segOf(5)
				ls := fx.lines(t, seg)
				ls[i], ls[j] = ls[j], ls[i]
				fx.write(t, seg, ls)
				return want{Reordered, seg, 5, i + 1}
			}
			ls := fx.lines(t, seg)
			ls[i], ls[j] = ls[j], ls[i]
			fx.write(t, seg, ls)
			return want{Reordered, seg, 6, i + 1}
		}},
		{"truncate the newest segment mid-record under a digest", func(t *testing.T, fx *fixture) want {
			seg, i := fx.segOf(12)
			ls := fx.lines(t, seg)
			ls[i] = ls[i][:len(ls[i])/2]
			fx.write(t, seg, ls)
			return want{Truncated, seg, 12, i + 1}
		}},
		{"truncate the newest segment at a record boundary under a digest", func(t *testing.T, fx *fixture) want {
			seg, i := fx.segOf(12)
			ls := fx.lines(t, seg)
			fx.write(t, seg, ls[:i])
			return want{Truncated, seg, 12, 0}
		}},
		{"truncate a middle segment at a record boundary", func(t *testing.T, fx *fixture) want {
			seg := segmentName(2)
			ls := fx.lines(t, seg)
			fx.write(t, seg, ls[:len(ls)-2]) // last line is empty after SplitAfter
			return want{Truncated, seg, 0, 0}
		}},
		{"delete a whole middle segment", func(t *testing.T, fx *fixture) want {
			os.Remove(fx.path(segmentName(2)))
			os.Remove(fx.path(digestName(2)))
			return want{Removed, segmentName(2), 0, 0}
		}},
		{"delete the first segment", func(t *testing.T, fx *fixture) want {
			os.Remove(fx.path(segmentName(1)))
			os.Remove(fx.path(digestName(1)))
			return want{Removed, segmentName(1), 0, 0}
		}},
		{"delete a segment file but keep its digests", func(t *testing.T, fx *fixture) want {
			os.Remove(fx.path(segmentName(3)))
			return want{Removed, segmentName(3), 0, 0}
		}},
		{"delete a digest file", func(t *testing.T, fx *fixture) want {
			os.Remove(fx.path(digestName(2)))
			return want{Removed, digestName(2), 0, 0}
		}},
		{"delete the newest digest file", func(t *testing.T, fx *fixture) want {
			os.Remove(fx.path(digestName(fx.segments)))
			return want{Removed, digestName(fx.segments), 0, 0}
		}},
		{"delete a digest line", func(t *testing.T, fx *fixture) want {
			name := digestName(2)
			ls := fx.lines(t, name)
			fx.write(t, name, append(ls[:0:0], ls[1:]...)) // the opening digest
			return want{Removed, name, 0, 1}
		}},
		{"delete the final digest of a segment", func(t *testing.T, fx *fixture) want {
			name := digestName(2)
			ls := fx.lines(t, name)
			fx.write(t, name, ls[:len(ls)-2])
			return want{Removed, "", 0, 0}
		}},
		{"modify a digest", func(t *testing.T, fx *fixture) want {
			name := digestName(2)
			ls := fx.lines(t, name)
			i := len(ls) - 2
			ls[i] = bytes.Replace(ls[i], []byte(`"records":`), []byte(`"records":1`), 1)
			fx.write(t, name, ls)
			return want{BadSignature, name, 0, i + 1}
		}},
		{"replace a digest file with another segment's", func(t *testing.T, fx *fixture) want {
			data, _ := os.ReadFile(fx.path(digestName(1)))
			os.WriteFile(fx.path(digestName(2)), data, 0o600)
			return want{Modified, digestName(2), 0, 1}
		}},
		{"append a record to a sealed segment", func(t *testing.T, fx *fixture) want {
			seg := segmentName(1)
			ls := fx.lines(t, seg)
			ls = append(ls[:len(ls)-1], ls[len(ls)-2])
			fx.write(t, seg, ls)
			return want{Reordered, seg, 0, len(ls)}
		}},
		{"garbage in a middle segment", func(t *testing.T, fx *fixture) want {
			seg, i := fx.segOf(5)
			ls := fx.lines(t, seg)
			ls[i] = []byte("{}\n")
			fx.write(t, seg, ls)
			return want{Modified, seg, 0, i + 1}
		}},
		{"replace the key file when pinned", func(t *testing.T, fx *fixture) want {
			_, other, _ := ed25519.GenerateKey(nil)
			p, _ := MarshalPublicKey(other.Public().(ed25519.PublicKey))
			os.WriteFile(fx.path(keyFile), p, 0o600)
			return want{KeyReplaced, keyFile, 0, 0}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			w := tc.tamper(t, fx)
			rep := mustVerify(t, fx.dir, pinned(t))
			if rep.OK() {
				t.Fatalf("tampering not detected; warnings %v", rep.Warnings)
			}
			for _, p := range rep.Problems {
				if p.Kind == w.kind && (w.file == "" || p.File == w.file) && (w.seq == 0 || p.Seq == w.seq) && (w.line == 0 || p.Line == w.line) {
					t.Logf("detected: %s", p)
					return
				}
			}
			t.Fatalf("want a %s problem in %q seq %d line %d, got:\n%s", w.kind, w.file, w.seq, w.line, problems(rep))
		})
	}
}

func mustRecord(t *testing.T, fx *fixture, seq uint64) Record {
	t.Helper()
	var rec Record
	err := ReadChain(fx.dir, "gateway", seq-1, func(e Entry) error {
		if e.Seq == seq {
			rec = e.Record
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// A log re-signed by another key verifies only against that key's own key file, and
// fails once the real key is pinned.
func TestForgedSignerNeedsPin(t *testing.T) {
	_, attacker, _ := ed25519.GenerateKey(nil)
	fx := newFixture(t, attacker)
	rep := mustVerify(t, fx.dir, VerifyOptions{})
	if !rep.OK() {
		t.Fatalf("unpinned: %s", problems(rep))
	}
	if len(rep.Warnings) == 0 || rep.Warnings[0].Kind != Unpinned {
		t.Fatalf("no unpinned warning: %v", rep.Warnings)
	}
	rep = mustVerify(t, fx.dir, pinned(t))
	var bad, replaced bool
	for _, p := range rep.Problems {
		bad = bad || p.Kind == BadSignature && strings.HasSuffix(p.File, digestExt) && p.Line > 0
		replaced = replaced || p.Kind == KeyReplaced
	}
	if !bad || !replaced {
		t.Fatalf("pinned: want bad-signature and key-replaced, got:\n%s", problems(rep))
	}
}

func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail string
	}{
		{"partial line", `{"seq":13,"prev":"ab`},
		{"zeros from a lost page", "\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"invalid JSON with newline", "{\"seq\":13,\"prev\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openTest(t, dir, "gateway", nil)
			writeN(t, l, 0, 5)
			l.Close()
			seg := filepath.Join(dir, "gateway", segmentName(1))
			f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(tc.tail)
			f.Close()

			rep := mustVerify(t, dir, pinned(t))
			if !rep.OK() || rep.Records != 5 {
				t.Fatalf("a torn tail fails verification:\n%s", problems(rep))
			}
			if len(rep.Warnings) != 1 || rep.Warnings[0].Kind != TornTail || rep.Warnings[0].Line != 6 || rep.Warnings[0].File != segmentName(1) {
				t.Fatalf("warnings %v", rep.Warnings)
			}

			// Open cuts the tail, records that it did, and the chain goes on.
			l = openTest(t, dir, "gateway", nil)
			writeN(t, l, 5, 2)
			l.Close()
			rep = mustVerify(t, dir, pinned(t))
			if !rep.OK() || len(rep.Warnings) != 0 || rep.Records != 8 {
				t.Fatalf("after repair: problems\n%swarnings %v records %d", problems(rep), rep.Warnings, rep.Records)
			}
			var recovered bool
			ReadChain(dir, "gateway", 0, func(e Entry) error {
				ev, _ := e.Decode()
				if ev.EventName == "AuditLogRecovered" && e.Seq == 6 && ev.AdditionalEventData["tornBytes"] == float64(len(tc.tail)) {
					recovered = true
				}
				return nil
			})
			if !recovered {
				t.Fatal("no AuditLogRecovered event for the repair")
			}
			ds, _, _, err := readDigests(filepath.Join(dir, "gateway", digestName(1)))
			if err != nil {
				t.Fatal(err)
			}
			var told bool
			for _, d := range ds {
				told = told || d.Recovered == int64(len(tc.tail))
			}
			if !told {
				t.Fatal("no digest tells the repair")
			}
		})
	}
}

// A torn last digest line (a crash while signing) is a warning, and Open cuts it.
func TestTornDigest(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	writeN(t, l, 0, 3)
	l.Close()
	f, _ := os.OpenFile(filepath.Join(dir, "gateway", digestName(1)), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"digest":{"v":1,"chain":"gat`)
	f.Close()
	rep := mustVerify(t, dir, pinned(t))
	if !rep.OK() || len(rep.Warnings) != 1 || rep.Warnings[0].Kind != TornTail {
		t.Fatalf("problems\n%swarnings %v", problems(rep), rep.Warnings)
	}
	l = openTest(t, dir, "gateway", nil)
	writeN(t, l, 3, 1)
	l.Close()
	rep = mustVerify(t, dir, pinned(t))
	if !rep.OK() || len(rep.Warnings) != 0 || rep.Records != 4 {
		t.Fatalf("problems\n%swarnings %v", problems(rep), rep.Warnings)
	}
}

// Open never refuses a chain whose newest segment was tampered with: it leaves the
// damage as evidence, continues in a new segment after the highest head it can prove,
// and records the damage there; verification still reports it.
func TestOpenContinuesDamagedChain(t *testing.T) {
	fx := newFixture(t, nil)
	seg, i := fx.segOf(12)
	ls := fx.lines(t, seg)
	fx.write(t, seg, ls[:i]) // record 12 cut off below its digest
	l := openTest(t, fx.dir, "gateway", nil)
	writeN(t, l, 100, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A reader through the cut finds record 12 missing.
	err := ReadChain(fx.dir, "gateway", 10, func(Entry) error { return nil })
	var dmg *Damage
	if !errors.As(err, &dmg) || dmg.Kind != Removed || dmg.From != 12 || dmg.To != 12 || dmg.Next == nil || dmg.Next.Seq != 12 {
		t.Fatalf("reading through the cut: %v %+v, want record 12 missing", err, dmg)
	}
	// The new segment starts at seq 13, after record 12 its digest signed: the damage
	// record first.
	r, err := NewReader(fx.dir, "gateway", 12)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	e, err := r.Next()
	if err != nil {
		t.Fatalf("reading the continued segment: %v", err)
	}
	first, err := e.Decode()
	if err != nil || first.EventName != EventChainDamaged || e.Seq != 13 {
		t.Fatalf("first record after the damage: seq %d %+v", e.Seq, first)
	}
	d, ok := DamageOf(first)
	if !ok || d.Chain != "gateway" || d.Kind != Truncated || d.From != 12 || d.To != 12 {
		t.Fatalf("recorded damage %+v", d)
	}
	rep := mustVerify(t, fx.dir, pinned(t))
	if rep.OK() {
		t.Fatal("the cut is no longer reported after the chain continued")
	}
	t.Logf("verify: %s", problems(rep))
}
