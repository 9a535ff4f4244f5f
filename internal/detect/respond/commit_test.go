package respond_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// TestCommitThenApply: Commit stores the finding with the cursor in one transaction,
// Apply applies its responses once (a repeat committed later applies nothing again and
// keeps the list of applied actions in the stored document), and a stale cursor is
// ErrConflict with nothing written.
func TestCommitThenApply(t *testing.T) {
	e := newEnv(t, config.Response{FindingType: "UnauthorizedAccess:*", MinSeverity: 5,
		Actions: []config.Action{config.ActionRevokeSessions}})
	ctx := t.Context()
	f := finding("f1", exfilType, 8, sessionARN, "ASIAEXAMPLEEXAMPLE01")
	adv := []store.CursorAdvance{{Chain: "gateway", From: 0, To: 3, Hash: "h3", Events: 3}}
	if err := e.r.Commit(ctx, "detector", adv, []detect.Finding{f}); err != nil {
		t.Fatal(err)
	}
	if len(e.ids.revoked) != 0 {
		t.Fatalf("Commit applied responses: revoked %v", e.ids.revoked)
	}
	if got := stored(t, e.st, "f1"); got.Service.Count != 1 {
		t.Fatalf("stored count %d", got.Service.Count)
	}
	if err := e.r.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := e.r.Apply(ctx, f); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.ids.revoked, []string{"app"}) {
		t.Fatalf("revoked %v, want [app] once", e.ids.revoked)
	}

	f.Service.Count = 2
	f.UpdatedAt = t0.Add(time.Minute)
	adv = []store.CursorAdvance{{Chain: "gateway", From: 3, To: 5, Hash: "h5", Events: 2}}
	if err := e.r.Commit(ctx, "detector", adv, []detect.Finding{f}); err != nil {
		t.Fatal(err)
	}
	got := stored(t, e.st, "f1")
	if resp, _ := got.Service.AdditionalInfo[respond.AdditionalInfoKey].([]any); got.Service.Count != 2 || len(resp) != 1 {
		t.Errorf("after the repeat's commit: count %d, additionalInfo %v; want 2 and the revocation listed", got.Service.Count, got.Service.AdditionalInfo)
	}
	if err := e.r.Apply(ctx, f); err != nil || len(e.ids.revoked) != 1 {
		t.Errorf("Apply after a repeat: %v, revoked %v", err, e.ids.revoked)
	}

	// Another consumer's view of the cursor is stale: nothing is written.
	f.Service.Count = 99
	err := e.r.Commit(ctx, "detector", []store.CursorAdvance{{Chain: "gateway", From: 3, To: 9, Hash: "h9", Events: 6}}, []detect.Finding{f})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale commit: %v, want ErrConflict", err)
	}
	if got := stored(t, e.st, "f1"); got.Service.Count != 2 {
		t.Errorf("a conflicting commit wrote the finding: count %d", got.Service.Count)
	}
	cs, err := e.r.Cursors(ctx, "detector")
	if err != nil || len(cs) != 1 || cs[0].Seq != 5 || cs[0].Events != 5 || cs[0].Hash != "h5" {
		t.Errorf("cursors %+v, %v; want gateway at 5 with 5 events", cs, err)
	}
	fs, err := e.r.Findings(ctx, 10)
	if err != nil || len(fs) != 1 || fs[0].ID != "f1" {
		t.Errorf("Findings = %+v, %v", fs, err)
	}
}
