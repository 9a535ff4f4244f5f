package audit

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"
)

// FuzzAnchorSet feeds Verify an arbitrary anchor set, as `--anchors FILE` or a store
// holding rows someone inserted would: it never panics, and anchors only ever add
// problems — a chain that verifies with the genuine anchors fails with any set that
// holds one more anchor it does not satisfy, never the other way round.
func FuzzAnchorSet(f *testing.F) {
	dir, ca, m := f.TempDir(), newPerimeterCA(f), &memAnchors{}
	key, cert := ca.writer(f, "sts")
	l, err := Open(Config{Dir: dir, Chain: "sts", Signer: key, Certificate: cert, Anchors: []AnchorStore{m}, DigestInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	writeN(f, l, 0, 3)
	l.Close()
	fsys := fstest.MapFS{}
	for _, name := range []string{segmentName(1), digestName(1), certFile} {
		b, err := os.ReadFile(filepath.Join(dir, "sts", name))
		if err != nil {
			f.Fatal(err)
		}
		fsys["sts/"+name] = &fstest.MapFile{Data: b, Mode: 0o600}
	}
	genuine, _ := json.Marshal(m.set())
	f.Add(genuine)
	f.Add([]byte(`{"chains":[{"name":"sts"},{"name":"gateway"}],"anchors":[{"chain":"sts","segment":1,"seq":99,"hash":"x","digest":"{}"}]}`))
	f.Add([]byte(`{"checkpoints":[{"chain":"sts","segment":1,"seq":3,"hash":"00"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var set AnchorSet
		if json.Unmarshal(data, &set) != nil {
			return
		}
		rep, err := verifyFS(maps.Clone(fsys), "audit", VerifyOptions{Signers: ca, Anchors: &set})
		if err != nil {
			t.Fatal(err)
		}
		// The input's anchors and chains with the genuine ones added (and its
		// checkpoints, which can only excuse gaps, dropped): more to satisfy, so never
		// fewer problems.
		set.Checkpoints = nil
		set.Anchors = append(set.Anchors, m.set().Anchors...)
		set.Chains = append(set.Chains, m.set().Chains...)
		more, err := verifyFS(maps.Clone(fsys), "audit", VerifyOptions{Signers: ca, Anchors: &set})
		if err != nil {
			t.Fatal(err)
		}
		if more.OK() && !rep.OK() {
			t.Fatalf("more anchors, fewer problems: %v", rep.Problems)
		}
	})
}

// FuzzDamageOf reads the damage an arbitrary event says was recorded: it never panics,
// and a damage it returns names a valid chain.
func FuzzDamageOf(f *testing.F) {
	b, _ := json.Marshal(DamageEvent(&Damage{Chain: "sts", Segment: 2, Kind: Truncated, From: 5, To: 9, Detail: "cut"}, 10))
	f.Add(b)
	f.Add([]byte(`{"eventSource":"audit.phantom.internal","eventName":"AuditChainDamaged","additionalEventData":{"chain":"../x","from":-1,"to":1e300}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev Event
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		d, ok := DamageOf(&ev)
		if ok && (!ValidChain(d.Chain) || d.Describe() == "" && d.Detail != "") {
			t.Fatalf("damage %+v from %s", d, data)
		}
	})
}
