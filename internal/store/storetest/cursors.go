package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// Audit cursors: a consumer's place in each chain, committed with its findings in one
// transaction, refused when another consumer moved them first.
func cursorCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"AuditCursors", testAuditCursors},
		{"AuditConflictWritesNothing", testAuditConflict},
		{"AuditCommitFindings", testAuditFindings},
		{"AuditCommitInvalid", testAuditInvalid},
		{"AuditCommitRace", testAuditRace},
	}
}

func cursorsOf(t *testing.T, s Store, consumer string) []store.AuditCursor {
	t.Helper()
	cs, err := s.ListAuditCursors(ctx(t), consumer)
	must(t, err)
	return cs
}

func sameCursors(t *testing.T, got []store.AuditCursor, want ...store.AuditCursor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("cursors = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Consumer != w.Consumer || g.Chain != w.Chain || g.Seq != w.Seq || g.Hash != w.Hash || g.Events != w.Events {
			t.Errorf("cursor %d = %+v, want %+v", i, g, w)
		}
		// The store stamps UpdatedAt with its own clock.
		if d := time.Since(g.UpdatedAt); g.UpdatedAt.IsZero() || d < -time.Minute || d > time.Minute {
			t.Errorf("cursor %d UpdatedAt = %s, want about now", i, g.UpdatedAt)
		}
	}
}

func testAuditCursors(t *testing.T, s Store) {
	if cs := cursorsOf(t, s, "detector"); len(cs) != 0 {
		t.Fatalf("new store has cursors %+v", cs)
	}
	v0 := version(t, s)
	must(t, s.CommitAudit(ctx(t), "detector", []store.CursorAdvance{{Chain: "gateway", From: 0, To: 10, Hash: "h10", Events: 10}}, nil))
	sameCursors(t, cursorsOf(t, s, "detector"),
		store.AuditCursor{Consumer: "detector", Chain: "gateway", Seq: 10, Hash: "h10", Events: 10})
	must(t, s.CommitAudit(ctx(t), "detector", []store.CursorAdvance{
		{Chain: "gateway", From: 10, To: 15, Hash: "h15", Events: 5},
		{Chain: "egress", From: 0, To: 3, Hash: "e3", Events: 2},
	}, nil))
	sameCursors(t, cursorsOf(t, s, "detector"),
		store.AuditCursor{Consumer: "detector", Chain: "egress", Seq: 3, Hash: "e3", Events: 2},
		store.AuditCursor{Consumer: "detector", Chain: "gateway", Seq: 15, Hash: "h15", Events: 15})
	if v := version(t, s); v != v0 {
		t.Errorf("Version after cursor-only commits = %d, want unchanged %d", v, v0)
	}
	// Consumers are independent.
	if cs := cursorsOf(t, s, "archiver"); len(cs) != 0 {
		t.Errorf("another consumer sees %+v", cs)
	}
	must(t, s.CommitAudit(ctx(t), "archiver", []store.CursorAdvance{{Chain: "gateway", From: 0, To: 1, Hash: "h1", Events: 1}}, nil))
	sameCursors(t, cursorsOf(t, s, "archiver"),
		store.AuditCursor{Consumer: "archiver", Chain: "gateway", Seq: 1, Hash: "h1", Events: 1})
	if cs := cursorsOf(t, s, "detector"); len(cs) != 2 || cs[1].Seq != 15 {
		t.Errorf("detector's cursors changed by another consumer: %+v", cs)
	}
	// An empty commit is allowed and changes nothing.
	must(t, s.CommitAudit(ctx(t), "detector", nil, nil))

	s2, err := s.Reopen(t, s.MasterKey())
	must(t, err)
	sameCursors(t, cursorsOf(t, s2, "detector"),
		store.AuditCursor{Consumer: "detector", Chain: "egress", Seq: 3, Hash: "e3", Events: 2},
		store.AuditCursor{Consumer: "detector", Chain: "gateway", Seq: 15, Hash: "h15", Events: 15})
}

func testAuditConflict(t *testing.T, s Store) {
	must(t, s.CommitAudit(ctx(t), "detector", []store.CursorAdvance{
		{Chain: "gateway", From: 0, To: 10, Hash: "h10", Events: 10},
		{Chain: "egress", From: 0, To: 3, Hash: "e3", Events: 3},
	}, nil))
	v0 := version(t, s)
	tests := []struct {
		name string
		adv  []store.CursorAdvance
	}{
		{"stale From", []store.CursorAdvance{{Chain: "gateway", From: 5, To: 20, Hash: "h20", Events: 1}}},
		{"From ahead", []store.CursorAdvance{{Chain: "gateway", From: 11, To: 20, Hash: "h20", Events: 1}}},
		{"new chain with From", []store.CursorAdvance{{Chain: "sts", From: 4, To: 9, Hash: "s9", Events: 1}}},
		{"known chain from 0", []store.CursorAdvance{{Chain: "gateway", From: 0, To: 20, Hash: "h20", Events: 1}}},
		// One good advance beside a bad one: neither is written.
		{"one of two", []store.CursorAdvance{
			{Chain: "egress", From: 3, To: 4, Hash: "e4", Events: 1},
			{Chain: "gateway", From: 9, To: 20, Hash: "h20", Events: 1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.CommitAudit(ctx(t), "detector", tc.adv, []store.Finding{newFinding("conflict", typeExfil, 8, roleARN, t0)})
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("CommitAudit: err = %v, want ErrConflict", err)
			}
			sameCursors(t, cursorsOf(t, s, "detector"),
				store.AuditCursor{Consumer: "detector", Chain: "egress", Seq: 3, Hash: "e3", Events: 3},
				store.AuditCursor{Consumer: "detector", Chain: "gateway", Seq: 10, Hash: "h10", Events: 10})
			if _, err := s.GetFinding(ctx(t), "conflict"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("finding of a conflicting commit: err = %v, want ErrNotFound (not written)", err)
			}
			if v := version(t, s); v != v0 {
				t.Errorf("Version after a conflicting commit = %d, want unchanged %d", v, v0)
			}
		})
	}
}

func testAuditFindings(t *testing.T, s Store) {
	v0 := version(t, s)
	f1 := newFinding("f1", typeExfil, 8, roleARN, t0)
	f2 := newFinding("f2", typeRecon, 2, userARN, t0.Add(time.Second))
	must(t, s.CommitAudit(ctx(t), "detector", []store.CursorAdvance{{Chain: "gateway", From: 0, To: 7, Hash: "h7", Events: 7}},
		[]store.Finding{f1, f2}))
	for _, f := range []store.Finding{f1, f2} {
		got, err := s.GetFinding(ctx(t), f.ID)
		must(t, err)
		sameFinding(t, got, f)
	}
	v1 := version(t, s)
	if v1 <= v0 {
		t.Errorf("Version after a commit with findings = %d, want more than %d", v1, v0)
	}
	// Upserted exactly as PutFinding does: the analyst's archive and the creation time stay.
	must(t, s.ArchiveFinding(ctx(t), "f1", true))
	upd := newFinding("f1", typeExfil, 8.5, roleARN, t0.Add(time.Hour))
	must(t, s.CommitAudit(ctx(t), "detector", []store.CursorAdvance{{Chain: "gateway", From: 7, To: 9, Hash: "h9", Events: 2}},
		[]store.Finding{upd}))
	got, err := s.GetFinding(ctx(t), "f1")
	must(t, err)
	want := upd
	want.Archived = true
	want.CreatedAt = f1.CreatedAt
	sameFinding(t, got, want)
	// Findings without advances (a consumer flushing at shutdown) are allowed.
	f3 := newFinding("f3", typeRecon, 3, userARN, t0)
	must(t, s.CommitAudit(ctx(t), "detector", nil, []store.Finding{f3}))
	if _, err := s.GetFinding(ctx(t), "f3"); err != nil {
		t.Errorf("finding committed without advances: %v", err)
	}
}

func testAuditInvalid(t *testing.T, s Store) {
	good := store.CursorAdvance{Chain: "gateway", From: 0, To: 5, Hash: "h5", Events: 5}
	edit := func(f func(*store.CursorAdvance)) []store.CursorAdvance {
		a := good
		f(&a)
		return []store.CursorAdvance{a}
	}
	bad := newFinding("bad", typeExfil, 8, roleARN, t0)
	bad.Document = []byte("[]")
	tests := []struct {
		name     string
		consumer string
		adv      []store.CursorAdvance
		findings []store.Finding
	}{
		{"empty consumer", "", []store.CursorAdvance{good}, nil},
		{"empty chain", "detector", edit(func(a *store.CursorAdvance) { a.Chain = "" }), nil},
		{"To equals From", "detector", edit(func(a *store.CursorAdvance) { a.To = 0 }), nil},
		{"To before From", "detector", edit(func(a *store.CursorAdvance) { a.From, a.To = 5, 4 }), nil},
		{"To beyond int64", "detector", edit(func(a *store.CursorAdvance) { a.To = 1 << 63 }), nil},
		{"empty hash", "detector", edit(func(a *store.CursorAdvance) { a.Hash = "" }), nil},
		{"negative events", "detector", edit(func(a *store.CursorAdvance) { a.Events = -1 }), nil},
		{"chain twice", "detector", []store.CursorAdvance{good, {Chain: "gateway", From: 5, To: 6, Hash: "h6", Events: 1}}, nil},
		{"invalid finding", "detector", []store.CursorAdvance{good}, []store.Finding{bad}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.CommitAudit(ctx(t), tc.consumer, tc.adv, tc.findings)
			if err == nil {
				t.Fatal("CommitAudit accepted it")
			}
			if errors.Is(err, store.ErrConflict) {
				t.Errorf("invalid input reported as a conflict: %v", err)
			}
		})
	}
	if cs := cursorsOf(t, s, "detector"); len(cs) != 0 {
		t.Errorf("refused commits wrote cursors %+v", cs)
	}
	if fs, err := s.ListFindings(ctx(t), store.FindingFilter{}); err != nil || len(fs) != 0 {
		t.Errorf("refused commits wrote findings %v (err %v)", findingIDs(fs), err)
	}
	if _, err := s.ListAuditCursors(ctx(t), ""); err == nil {
		t.Error("ListAuditCursors with no consumer accepted it")
	}
}

func testAuditRace(t *testing.T, s Store) {
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = s.CommitAudit(ctx(t), "detector",
				[]store.CursorAdvance{{Chain: "gateway", From: 0, To: 5, Hash: fmt.Sprintf("h%d", i), Events: 5}},
				[]store.Finding{newFinding(fmt.Sprintf("race-%d", i), typeExfil, 8, roleARN, t0)})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("commits %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("commit %d: err = %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no commit succeeded")
	}
	sameCursors(t, cursorsOf(t, s, "detector"),
		store.AuditCursor{Consumer: "detector", Chain: "gateway", Seq: 5, Hash: fmt.Sprintf("h%d", winner), Events: 5})
	fs, err := s.ListFindings(ctx(t), store.FindingFilter{})
	must(t, err)
	if want := []string{fmt.Sprintf("race-%d", winner)}; !slices.Equal(findingIDs(fs), want) {
		t.Errorf("findings = %v, want only the winner's %v", findingIDs(fs), want)
	}
}
