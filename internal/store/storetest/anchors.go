package storetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// Cases for issue 16: audit anchors, prune checkpoints, spec reports, cursor resets.
func anchorCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"AuditAnchorsFromAWriter", testAnchorsFromWriter},
		{"AuditAnchorsAppendOnly", testAnchorsAppendOnly},
		{"AuditAnchorInvalid", testAnchorInvalid},
		{"AuditCheckpoints", testCheckpoints},
		{"SpecReplicas", testSpecReplicas},
		{"AuditCursorReset", testCursorReset},
	}
}

// caSigners adapts a CA to audit.SignerVerifier.
type caSigners struct{ v *pki.Verifier }

func (c caSigners) VerifyAuditSigner(der []byte) (audit.SignerInfo, error) {
	s, err := c.v.VerifyAuditSigner(der)
	return audit.SignerInfo{Chain: s.Chain, Key: s.Key, NotBefore: s.NotBefore, NotAfter: s.NotAfter}, err
}

// writeAnchoredChain writes n records to chain in dir with a certified writer that
// anchors in s, over several segments; it returns the CA that certified it.
func writeAnchoredChain(t *testing.T, s Store, dir, chain string, n int) *pki.CA {
	t.Helper()
	ca, err := pki.New(pki.Config{Dir: filepath.Join(t.TempDir(), "ca"), Account: "123456789012"})
	must(t, err)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	cert, err := ca.Sign(pub, pki.Request{Identity: pki.Identity{Account: "123456789012", Kind: pki.KindAudit, Name: chain}, AuditSigning: true})
	must(t, err)
	l, err := audit.Open(audit.Config{Dir: dir, Chain: chain, Signer: key, Certificate: cert.Raw, Anchors: []audit.AnchorStore{s},
		SegmentBytes: 4 << 10, DigestInterval: time.Millisecond})
	must(t, err)
	for i := range n {
		must(t, l.Record(ctx(t), &audit.Event{EventSource: "sts.amazonaws.com", EventName: "GetCallerIdentity",
			RequestParameters: map[string]any{"n": i, "pad": strings.Repeat("x", 900)}}))
		time.Sleep(2 * time.Millisecond)
	}
	must(t, l.Close())
	return ca
}

// testAnchorsFromWriter: a writer's chains, certificate and anchors land in the store;
// the set names the newest anchor of every segment and verifies the chain.
func testAnchorsFromWriter(t *testing.T, s Store) {
	dir := t.TempDir()
	v0 := version(t, s)
	ca := writeAnchoredChain(t, s, dir, "sts", 12)
	if v := version(t, s); v != v0 {
		t.Errorf("anchors bumped the version from %d to %d", v0, v)
	}
	must(t, s.RegisterAuditChain(ctx(t), "sts", t0)) // again: kept
	cs, err := s.ListAuditChains(ctx(t))
	must(t, err)
	if len(cs) != 1 || cs[0].Name != "sts" {
		t.Fatalf("ListAuditChains = %+v", cs)
	}
	set, err := s.AuditAnchorSet(ctx(t))
	must(t, err)
	if len(set.Chains) != 1 || set.Chains[0].Name != "sts" || set.Chains[0].Created.Equal(t0) {
		t.Fatalf("chains %+v", set.Chains)
	}
	if len(set.Signers) != 1 || set.Signers[0].Chain != "sts" {
		t.Fatalf("signers %+v", set.Signers)
	}
	head, ok, err := s.LatestAuditAnchor(ctx(t), "sts")
	must(t, err)
	if !ok || head.Seq != 12 {
		t.Fatalf("latest anchor %+v %v, want seq 12", head, ok)
	}
	segs := map[uint64]uint64{}
	for _, a := range set.Anchors {
		if _, dup := segs[a.Segment]; dup {
			t.Fatalf("two anchors of segment %d in the set", a.Segment)
		}
		segs[a.Segment] = a.Seq
	}
	if len(segs) < 3 || segs[head.Segment] != 12 {
		t.Fatalf("anchors by segment %v", segs)
	}
	after, err := s.AuditAnchorsAfter(ctx(t), "sts", 5, 100)
	must(t, err)
	if len(after) == 0 || after[len(after)-1].Seq != 12 {
		t.Fatalf("anchors after seq 5: %+v", after)
	}
	for i, a := range after {
		if a.Chain != "sts" || a.Seq <= 5 || (i > 0 && a.Seq < after[i-1].Seq) || a.Hash == "" {
			t.Fatalf("anchors after seq 5, by seq: %+v", after)
		}
	}
	if one, err := s.AuditAnchorsAfter(ctx(t), "sts", 5, 1); err != nil || len(one) != 1 || one[0].Seq != after[0].Seq {
		t.Fatalf("one anchor after seq 5: %+v %v", one, err)
	}
	if none, err := s.AuditAnchorsAfter(ctx(t), "sts", 12, 100); err != nil || len(none) != 0 {
		t.Fatalf("anchors after the newest: %+v %v", none, err)
	}
	must(t, s.PutAuditAnchor(ctx(t), head)) // again: one row
	if _, ok, _ := s.LatestAuditAnchor(ctx(t), "other"); ok {
		t.Fatal("an anchor for a chain never written")
	}
	rep, err := audit.Verify(dir, audit.VerifyOptions{Anchors: &set, Signers: caSigners{ca.Verifier()}})
	must(t, err)
	if !rep.OK() || len(rep.Warnings) != 0 {
		t.Fatalf("verify against the store's anchors: %v %v", rep.Problems, rep.Warnings)
	}
}

// testAnchorsAppendOnly: beneath the store, with its own login, anchors, chains,
// certificates and checkpoints cannot be changed or removed.
func testAnchorsAppendOnly(t *testing.T, s Store) {
	writeAnchoredChain(t, s, t.TempDir(), "gateway", 3)
	must(t, s.PutAuditCheckpoint(ctx(t), audit.Checkpoint{Chain: "gateway", Segment: 1, Seq: 1, Hash: strings.Repeat("0", 64), Before: t0}))
	stmts := []string{}
	for _, tab := range []string{"audit_chains", "audit_anchors", "audit_signers", "audit_checkpoints"} {
		stmts = append(stmts, `DELETE FROM `+tab, `UPDATE `+tab+` SET chain = 'x'`)
		if s.Backend() == "postgres" {
			stmts = append(stmts, `TRUNCATE `+tab)
		}
	}
	for _, stmt := range stmts {
		if err := s.ExecRaw(t, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want refused as append-only", stmt, err)
		}
	}
	head, ok, err := s.LatestAuditAnchor(ctx(t), "gateway")
	must(t, err)
	if !ok || head.Seq != 3 {
		t.Fatalf("anchor after the attempts: %+v", head)
	}
}

func testAnchorInvalid(t *testing.T, s Store) {
	dir := t.TempDir()
	writeAnchoredChain(t, s, dir, "sts", 2)
	good, _, err := s.LatestAuditAnchor(ctx(t), "sts")
	must(t, err)
	for name, a := range map[string]audit.Anchor{
		"fields not the digest's":  func() audit.Anchor { a := good; a.Seq = 99; return a }(),
		"not a digest line":        func() audit.Anchor { a := good; a.Digest = "{}"; return a }(),
		"bad chain name":           func() audit.Anchor { a := good; a.Chain = "../etc"; return a }(),
		"segment zero":             func() audit.Anchor { a := good; a.Segment = 0; return a }(),
		"digest of another chain":  func() audit.Anchor { a := good; a.Chain = "gateway"; return a }(),
		"digest line of 5 KiB":     func() audit.Anchor { a := good; a.Digest += strings.Repeat(" ", 5<<10); return a }(),
		"seq beyond int64 (wraps)": func() audit.Anchor { a := good; a.Seq = 1 << 63; return a }(),
	} {
		if err := s.PutAuditAnchor(ctx(t), a); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	if err := s.PutAuditSigner(ctx(t), audit.Signer{KeyID: "k", Chain: "UPPER", Cert: []byte{1}}); err == nil {
		t.Error("a signer of a bad chain name was stored")
	}
	if err := s.RegisterAuditChain(ctx(t), "no/slash", t0); err == nil {
		t.Error("a bad chain name was registered")
	}
}

func testCheckpoints(t *testing.T, s Store) {
	cp := audit.Checkpoint{Chain: "sts", Segment: 4, Seq: 1000, Hash: strings.Repeat("a", 64), Before: t0, Time: t0.Add(time.Hour)}
	must(t, s.PutAuditCheckpoint(ctx(t), cp))
	if err := s.PutAuditCheckpoint(ctx(t), audit.Checkpoint{Chain: "sts", Segment: 0, Seq: 1, Hash: "x", Before: t0}); err == nil {
		t.Error("a checkpoint of segment 0 was stored")
	}
	set, err := s.AuditAnchorSet(ctx(t))
	must(t, err)
	if len(set.Checkpoints) != 1 {
		t.Fatalf("checkpoints %+v", set.Checkpoints)
	}
	got := set.Checkpoints[0]
	if got.Chain != cp.Chain || got.Segment != 4 || got.Seq != 1000 || got.Hash != cp.Hash || !got.Before.Equal(t0) || !got.Time.Equal(cp.Time) {
		t.Fatalf("checkpoint %+v, want %+v", got, cp)
	}
}

func testSpecReplicas(t *testing.T, s Store) {
	a := store.SpecReplica{ID: "host-a/1", Process: "gateway", Host: "host-a", Digest: "sha256:aa", File: "/etc/p.yaml", LoadedAt: t0, SeenAt: t0.Add(time.Minute)}
	b := store.SpecReplica{ID: "host-b/2", Process: "gateway", Host: "host-b", Digest: "sha256:bb", File: "/etc/p.yaml", LoadedAt: t0, SeenAt: t0.Add(2 * time.Minute)}
	must(t, s.PutSpecReplica(ctx(t), a))
	must(t, s.PutSpecReplica(ctx(t), b))
	rs, err := s.ListSpecReplicas(ctx(t), t0.Add(90*time.Second))
	must(t, err)
	if len(rs) != 1 || rs[0].ID != b.ID || rs[0].Digest != "sha256:bb" || !rs[0].LoadedAt.Equal(t0) {
		t.Fatalf("replicas seen since: %+v", rs)
	}
	a.Digest, a.LoadedAt, a.SeenAt = "sha256:cc", t0.Add(3*time.Minute), t0.Add(3*time.Minute)
	must(t, s.PutSpecReplica(ctx(t), a))
	rs, err = s.ListSpecReplicas(ctx(t), t0)
	must(t, err)
	if len(rs) != 2 || rs[0].Digest != "sha256:cc" || !rs[0].LoadedAt.Equal(a.LoadedAt) {
		t.Fatalf("after the update: %+v", rs)
	}
	// A report two hours later expires the ones not refreshed for an hour.
	c := store.SpecReplica{ID: "host-c/3", Process: "sts", Host: "host-c", Digest: "sha256:cc", LoadedAt: t0, SeenAt: t0.Add(2 * time.Hour)}
	must(t, s.PutSpecReplica(ctx(t), c))
	rs, err = s.ListSpecReplicas(ctx(t), time.Time{})
	must(t, err)
	if len(rs) != 1 || rs[0].ID != c.ID {
		t.Fatalf("after expiry: %+v", rs)
	}
	if err := s.PutSpecReplica(ctx(t), store.SpecReplica{ID: "", Process: "x", Host: "h", Digest: "d"}); err == nil {
		t.Error("a replica without id was stored")
	}
}

// testCursorReset: a cursor moves back only when the advance says it is a reset.
func testCursorReset(t *testing.T, s Store) {
	hash := strings.Repeat("b", 64)
	must(t, s.CommitAudit(ctx(t), "detector", []store.CursorAdvance{{Chain: "sts", From: 0, To: 50, Hash: hash, Events: 50}}, nil))
	if err := s.CommitAudit(ctx(t), "detector", []store.CursorAdvance{{Chain: "sts", From: 50, To: 20, Hash: hash}}, nil); err == nil {
		t.Fatal("a cursor moved back without a reset")
	}
	must(t, s.CommitAudit(ctx(t), "detector", []store.CursorAdvance{{Chain: "sts", From: 50, To: 20, Hash: hash, Reset: true}}, nil))
	cs, err := s.ListAuditCursors(ctx(t), "detector")
	must(t, err)
	if len(cs) != 1 || cs[0].Seq != 20 || cs[0].Events != 50 {
		t.Fatalf("cursor after the reset: %+v", cs)
	}
}
