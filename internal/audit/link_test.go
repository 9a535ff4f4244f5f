package audit

import (
	"bytes"
	"testing"
)

// TestEditedMiddleRecordBreaksTheLink: an attacker edits one record in the middle of a
// segment, keeps its length, and recomputes its own hash. The record then verifies on its
// own and every digest still matches (the segment's length and last hash are unchanged);
// only the next record's previous-hash link, which no longer names it, shows the edit.
func TestEditedMiddleRecordBreaksTheLink(t *testing.T) {
	fx := newFixture(t, nil)
	// A record with another after it in the same segment (so not at the segment's end,
	// where the digests would catch the edit).
	var edited uint64
	for s := uint64(2); s < 12; s++ {
		here, _ := fx.segOf(s)
		if next, _ := fx.segOf(s + 1); here == next {
			edited = s
			break
		}
	}
	if edited == 0 {
		t.Fatal("the fixture has no segment holding two records")
	}
	seg, i := fx.segOf(edited)
	ls := fx.lines(t, seg)
	r, err := ParseRecord("gateway", bytes.TrimSuffix(ls[i], []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	ev := bytes.Replace(r.Event, []byte(`"sourceIPAddress":"10.0.3.17"`), []byte(`"sourceIPAddress":"10.0.3.18"`), 1)
	if bytes.Equal(ev, r.Event) {
		t.Fatal("the fixture's record has no sourceIPAddress 10.0.3.17 to edit")
	}
	line, _ := appendRecord(nil, "gateway", r.Seq, r.Prev, ev)
	if len(line) != len(ls[i]) {
		t.Fatalf("the edit changed the line's length (%d to %d)", len(ls[i]), len(line))
	}
	if _, err := ParseRecord("gateway", bytes.TrimSuffix(line, []byte("\n"))); err != nil {
		t.Fatalf("the edited record does not verify on its own, so this is not the attack: %v", err)
	}
	ls[i] = line
	fx.write(t, seg, ls)

	rep := mustVerify(t, fx.dir, pinned(t))
	if rep.OK() {
		t.Fatal("an edited middle record with its own hash recomputed verifies as OK")
	}
	for _, p := range rep.Problems {
		if p.Kind == Modified && p.File == seg && p.Seq == edited+1 && p.Line == i+2 {
			t.Logf("detected: %s", p)
			return
		}
	}
	t.Fatalf("want a %s problem at record %d (%s line %d), the first that links to the edit; got:\n%s", Modified, edited+1, seg, i+2, problems(rep))
}

func TestRecordLineParsesBack(t *testing.T) {
	line, hash := appendRecord(nil, "gateway", 7, zeroHash, []byte(`{"eventName":"GetObject"}`))
	line = line[:len(line)-1]
	r, err := ParseRecord("gateway", line)
	if err != nil || r.Hash != hash {
		t.Fatalf("ParseRecord = %+v, %v", r, err)
	}
	if got := r.AppendLine(nil); string(got) != string(line) {
		t.Fatalf("AppendLine = %s, want %s", got, line)
	}
}
