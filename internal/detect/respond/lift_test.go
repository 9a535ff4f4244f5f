package respond_test

import (
	"testing"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// TestLift: the break-glass puts a disabled key back and clears the risk level the
// finding raised; revoked sessions stay revoked (lifting would let the stolen session
// in); a repeat of the finding does not apply the lifted actions again.
func TestLift(t *testing.T) {
	e, _ := safeEnv(t, &config.Spec{Detection: config.Detection{Responses: []config.Response{
		{FindingType: "*", MinSeverity: 1, Actions: everything, RiskLevel: "high", Mode: config.ModeEnforce, MaxPerHour: 60},
	}}})
	const key = "AKIAALICEALICEALICE1"
	if err := e.st.PutAccessKey(t.Context(), store.AccessKey{ID: key, User: "alice", Secret: "0123456789012345678901234567890123456789", Status: store.StatusActive}); err != nil {
		t.Fatal(err)
	}
	f := finding("f", "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom", 5, userARN, key)
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	// (The fake identity service does not write the store; the key is disabled here.)
	if err := e.st.UpdateAccessKeyStatus(t.Context(), key, store.StatusInactive); err != nil {
		t.Fatal(err)
	}
	res, err := respond.Lift(t.Context(), e.st, "f", t0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range res {
		got[r.Action] = r.Result
	}
	want := map[string]string{"disableAccessKey": respond.Lifted, "raiseRiskLevel:high": respond.Lifted, "revokeSessions": respond.NotLiftable}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("lift %s: %q, want %q (all: %+v)", k, got[k], v, res)
		}
	}
	k, err := e.st.GetAccessKey(t.Context(), key)
	if err != nil || k.Status != store.StatusActive {
		t.Errorf("key after the lift: %+v %v", k, err)
	}
	if levels, _ := e.st.ListRiskLevels(t.Context()); len(levels) != 0 {
		t.Errorf("risk levels after the lift: %+v", levels)
	}
	// Lifting again: nothing left; the finding repeating: nothing applied again.
	if res, err := respond.Lift(t.Context(), e.st, "f", t0); err != nil || len(res) != 1 || res[0].Result != respond.NotLiftable {
		t.Errorf("second lift: %+v %v", res, err)
	}
	before := len(e.ids.disabled)
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	if len(e.ids.disabled) != before {
		t.Error("the repeat applied the lifted action again")
	}
	if _, err := respond.Lift(t.Context(), e.st, "nope", t0); err == nil {
		t.Error("lifting an unknown finding succeeded")
	}
}
