package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// Cases for issue 8's additions: named secrets, audit cursors and change notifications.
func additionCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"Secrets", testSecrets},
		{"SecretFirstWriterWins", testSecretRace},
		{"SecretEncryptedAndBound", testSecretAtRest},
		{"AuditCursors", testAuditCursors},
		{"AuditConflictWritesNothing", testAuditConflict},
		{"AuditCommitFindings", testAuditFindings},
		{"AuditCommitInvalid", testAuditInvalid},
		{"AuditCommitRace", testAuditRace},
		{"Subscribe", testSubscribe},
		{"UsedSignatures", testUsedSignatures},
	}
}

func version(t *testing.T, s Store) int64 {
	t.Helper()
	v, err := s.Version(ctx(t))
	must(t, err)
	return v
}

func testSecrets(t *testing.T, s Store) {
	if _, err := s.GetSecret(ctx(t), "ca"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSecret(missing): err = %v, want ErrNotFound", err)
	}
	v0 := version(t, s)
	first := []byte("first\x00value\xff")
	got, err := s.PutSecretIfAbsent(ctx(t), "ca", first)
	must(t, err)
	if !bytes.Equal(got, first) {
		t.Errorf("PutSecretIfAbsent on an empty name returned %q, want %q", got, first)
	}
	got, err = s.PutSecretIfAbsent(ctx(t), "ca", []byte("second"))
	must(t, err)
	if !bytes.Equal(got, first) {
		t.Errorf("second PutSecretIfAbsent returned %q, want the stored %q", got, first)
	}
	got, err = s.GetSecret(ctx(t), "ca")
	must(t, err)
	if !bytes.Equal(got, first) {
		t.Errorf("GetSecret = %q, want %q", got, first)
	}
	if v := version(t, s); v != v0 {
		t.Errorf("Version after secret writes = %d, want unchanged %d", v, v0)
	}
	for name, c := range map[string]struct {
		name  string
		value []byte
	}{
		"empty name":     {"", []byte("x")},
		"name with tab":  {"a\tb", []byte("x")},
		"empty value":    {"empty", nil},
		"oversize value": {"big", make([]byte, 1<<20+1)},
	} {
		if _, err := s.PutSecretIfAbsent(ctx(t), c.name, c.value); err == nil {
			t.Errorf("PutSecretIfAbsent with %s accepted it", name)
		}
	}
	if _, err := s.GetSecret(ctx(t), "empty"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused secret was stored: err = %v", err)
	}

	s2, err := s.Reopen(t, s.MasterKey())
	must(t, err)
	got, err = s2.GetSecret(ctx(t), "ca")
	must(t, err)
	if !bytes.Equal(got, first) {
		t.Errorf("GetSecret after reopen = %q, want %q", got, first)
	}
}

// Replicas starting together each offer a CA; all must end up with one and the same.
func testSecretRace(t *testing.T, s Store) {
	const n = 16
	results := make([][]byte, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			v, err := s.PutSecretIfAbsent(ctx(t), "ca-key", fmt.Appendf(nil, "candidate-%02d", i))
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		})
	}
	close(start)
	wg.Wait()
	stored, err := s.GetSecret(ctx(t), "ca-key")
	must(t, err)
	if !bytes.HasPrefix(stored, []byte("candidate-")) {
		t.Fatalf("stored secret %q is none of the candidates", stored)
	}
	for i, r := range results {
		if !bytes.Equal(r, stored) {
			t.Errorf("caller %d got %q, want the stored %q", i, r, stored)
		}
	}
}

func testSecretAtRest(t *testing.T, s Store) {
	a := bytes.Repeat([]byte("CA-PRIVATE-KEY-A"), 4)
	b := bytes.Repeat([]byte("CA-PRIVATE-KEY-B"), 4)
	_, err := s.PutSecretIfAbsent(ctx(t), "secret-a", a)
	must(t, err)
	_, err = s.PutSecretIfAbsent(ctx(t), "secret-b", b)
	must(t, err)
	row := s.RawRow(t, KindSecret, "secret-a")
	if !bytes.Contains(row, []byte("secret-a")) {
		t.Fatal("raw secret row does not hold its name: the hook reads the wrong row")
	}
	if bytes.Contains(row, []byte("CA-PRIVATE-KEY")) {
		t.Error("secret stored in plain text")
	}
	// A ciphertext moved to another name does not decrypt there.
	s.SwapSecrets(t, KindSecret, "secret-a", "secret-b")
	for _, name := range []string{"secret-a", "secret-b"} {
		got, err := s.GetSecret(ctx(t), name)
		if !errors.Is(err, store.ErrDecrypt) {
			t.Errorf("GetSecret(%s) after swap: err = %v (value returned: %v), want ErrDecrypt", name, err, got != nil)
		}
		if _, err := s.PutSecretIfAbsent(ctx(t), name, []byte("x")); !errors.Is(err, store.ErrDecrypt) {
			t.Errorf("PutSecretIfAbsent(%s) after swap: err = %v, want ErrDecrypt", name, err)
		}
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

// Two detector instances reading the same chain from the same point: exactly one
// commit lands, and only its findings are stored.
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

// wakeWithin reports whether ch receives within d.
func wakeWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func testSubscribe(t *testing.T, s Store) {
	n, ok := s.(store.Notifier)
	if !ok {
		t.Skipf("%T does not implement store.Notifier (optional)", s)
	}
	a, cancelA := n.Subscribe()
	defer cancelA()
	b, cancelB := n.Subscribe()
	defer cancelB()
	writes := []struct {
		name string
		fn   func() error
	}{
		{"PutRevocation", func() error { return s.PutRevocation(ctx(t), store.Revocation{Role: "r", Before: t0}) }},
		{"PutNode", func() error {
			return s.PutNode(ctx(t), store.Node{Name: "n", Role: "r", CertSerial: "01", EnrolledAt: t0})
		}},
		{"CommitAudit with a finding", func() error {
			return s.CommitAudit(ctx(t), "detector", []store.CursorAdvance{{Chain: "c", From: 0, To: 1, Hash: "h", Events: 1}},
				[]store.Finding{newFinding("sub", typeExfil, 8, roleARN, t0)})
		}},
	}
	for _, w := range writes {
		// A wakeup must mean the write is visible: drain, write, then wait.
		drain(a)
		drain(b)
		before := version(t, s)
		must(t, w.fn())
		for name, ch := range map[string]<-chan struct{}{"first": a, "second": b} {
			if !wakeWithin(ch, 2*time.Second) {
				t.Errorf("%s: %s subscriber not woken within 2 s", w.name, name)
			}
		}
		if v := version(t, s); v <= before {
			t.Errorf("%s: Version %d after the wakeup, want more than %d", w.name, v, before)
		}
	}
	// After cancel, nothing more is sent; the other subscriber still hears.
	cancelA()
	cancelA() // idempotent
	drain(a)
	drain(b)
	must(t, s.PutRevocation(ctx(t), store.Revocation{Role: "r", Before: t0.Add(time.Hour)}))
	if !wakeWithin(b, 2*time.Second) {
		t.Error("remaining subscriber not woken after another unsubscribed")
	}
	if wakeWithin(a, 200*time.Millisecond) {
		t.Error("cancelled subscriber still woken")
	}
}
