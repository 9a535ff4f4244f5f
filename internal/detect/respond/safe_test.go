package respond_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
)

// safeEnv is newEnv with a spec the test edits and a clock it moves.
func safeEnv(t *testing.T, spec *config.Spec) (*env, *atomic.Int64) {
	t.Helper()
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	e := &env{st: openStore(t, t.TempDir()), ids: &fakeIdentity{}, aud: &fakeAuditor{}}
	if spec.Account == "" {
		spec.Account, spec.Region = account, "eu-west-1"
	}
	r, err := respond.New(respond.Config{
		Spec: func() *config.Spec { return spec }, Identity: e.ids, Store: e.st, Auditor: e.aud,
		Now: func() time.Time { return time.Unix(0, clock.Load()).UTC() }, NotifyBackoff: 10 * time.Millisecond, NotifyTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	e.r = r
	return e, &clock
}

var everything = []config.Action{config.ActionRevokeSessions, config.ActionDisableAccessKey, config.ActionRaiseRiskLevel}

// TestClaimedIdentityNeverActedOn is the attack the issue names: with
// examples/workloads.yaml's disableAccessKey response, a caller on a threat-listed address
// who knows a key id (key ids are not secret) sends a request with a bad signature naming
// that key; the finding names the key, and the old responder disabled it. A claimed
// identity raises its finding; no action touches it; the refusal is audited. Notify is
// no action on the principal and still runs.
func TestClaimedIdentityNeverActedOn(t *testing.T) {
	var posted atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posted.Add(1) }))
	defer hook.Close()
	e, _ := safeEnv(t, &config.Spec{Detection: config.Detection{Responses: []config.Response{
		{FindingType: "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom", MinSeverity: 5, Actions: everything, RiskLevel: "high", Mode: config.ModeEnforce, MaxPerHour: 60},
		{FindingType: "*", MinSeverity: 1, Actions: []config.Action{config.ActionNotify}, Webhook: hook.URL, Mode: config.ModeEnforce, MaxPerHour: 60},
	}}})
	f := finding("claimed", "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom", 5, userARN, "AKIAVICTIMVICTIM0001")
	f.Resource.AccessKeyDetails.Claimed = true
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	if len(e.ids.disabled) != 0 || len(e.ids.revoked) != 0 || e.r.RiskLevel(userARN) != "" {
		t.Fatalf("acted on a claimed identity: disabled %v, revoked %v, risk %q", e.ids.disabled, e.ids.revoked, e.r.RiskLevel(userARN))
	}
	for _, name := range []string{respond.EventRevokeSessions, respond.EventDisableAccessKey, respond.EventRaiseRiskLevel} {
		evs := e.aud.byName(name)
		if len(evs) != 1 || evs[0].ErrorCode != "NotApplicable" {
			t.Errorf("%s: %+v, want one NotApplicable event", name, evs)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for posted.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if posted.Load() != 1 {
		t.Errorf("the webhook got %d posts, want 1: notify is no action on the principal", posted.Load())
	}
	// The same finding, verified: acted on.
	v := finding("verified", "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom", 5, userARN, "AKIAVICTIMVICTIM0001")
	if err := e.r.Handle(t.Context(), v); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.ids.disabled, []string{"AKIAVICTIMVICTIM0001"}) {
		t.Errorf("verified: disabled %v", e.ids.disabled)
	}
}

// TestProtectedPrincipals: a protected user, a protected role (and so its sessions) are
// never revoked, disabled or raised; others are.
func TestProtectedPrincipals(t *testing.T) {
	spec := &config.Spec{Detection: config.Detection{
		ProtectedPrincipals: []string{"arn:aws:iam::123456789012:user/admin-*", "arn:aws:iam::123456789012:role/svc/app"},
		Responses:           []config.Response{{FindingType: "*", MinSeverity: 1, Actions: everything, RiskLevel: "high", Mode: config.ModeEnforce, MaxPerHour: 60}},
	}}
	e, _ := safeEnv(t, spec)
	mustParse := func() {
		s, err := config.Parse("spec.yaml", []byte(`version: 1
account: "123456789012"
region: eu-west-1
roles:
  - name: app
    path: /svc/
    trustPolicy: {Version: "2012-10-17", Statement: [{Effect: Allow, Principal: {AWS: "arn:aws:iam::123456789012:root"}, Action: sts:AssumeRole}]}
`))
		if err != nil {
			t.Fatal(err)
		}
		s.Detection = spec.Detection
		*spec = *s
	}
	mustParse()
	for i, p := range []struct{ principal, key string }{
		{"arn:aws:iam::123456789012:user/admin-jo", "AKIAADMINADMINADMIN1"},
		{sessionARN, "ASIASESSIONSESSION01"},
		{roleARN, ""},
	} {
		if err := e.r.Handle(t.Context(), finding(string(rune('a'+i)), exfilType, 8, p.principal, p.key)); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.ids.disabled) != 0 || len(e.ids.revoked) != 0 || e.r.RiskLevel(sessionARN) != "" {
		t.Fatalf("acted on a protected principal: disabled %v, revoked %v", e.ids.disabled, e.ids.revoked)
	}
	for _, ev := range e.aud.byName(respond.EventRevokeSessions) {
		if ev.ErrorCode != "NotApplicable" {
			t.Errorf("revoke of %v: %s %s", ev.RequestParameters["principal"], ev.ErrorCode, ev.ErrorMessage)
		}
	}
	if err := e.r.Handle(t.Context(), finding("d", exfilType, 8, userARN, "AKIAALICEALICEALICE1")); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.ids.disabled, []string{"AKIAALICEALICEALICE1"}) || !slices.Equal(e.ids.revoked, []string{"alice"}) {
		t.Errorf("an unprotected user: disabled %v, revoked %v", e.ids.disabled, e.ids.revoked)
	}
}

// TestReportMode: a response in report mode records what it would have done and does
// nothing; switched to enforce, it acts on the finding's next repeat.
func TestReportMode(t *testing.T) {
	rsp := config.Response{FindingType: "*", MinSeverity: 1, Actions: []config.Action{config.ActionRevokeSessions}, Mode: config.ModeReport, MaxPerHour: 60}
	spec := &config.Spec{Detection: config.Detection{Responses: []config.Response{rsp}}}
	e, _ := safeEnv(t, spec)
	f := finding("f", exfilType, 8, sessionARN, "ASIASESSIONSESSION01")
	for range 2 {
		if err := e.r.Handle(t.Context(), f); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.ids.revoked) != 0 {
		t.Fatalf("report mode revoked %v", e.ids.revoked)
	}
	evs := e.aud.byName(respond.EventRevokeSessions)
	if len(evs) != 1 || evs[0].ErrorCode != "" || evs[0].RequestParameters["mode"] != "report" || evs[0].ResponseElements["applied"] != false {
		t.Fatalf("report events %+v", evs)
	}
	spec.Detection.Responses[0].Mode = config.ModeEnforce
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.ids.revoked, []string{"app"}) {
		t.Errorf("enforced: revoked %v", e.ids.revoked)
	}
}

// TestRateCap: past maxPerHour findings in an hour a response waits, audited once per
// finding; the waiting finding is acted on when it repeats within the cap again.
func TestRateCap(t *testing.T) {
	spec := &config.Spec{Detection: config.Detection{Responses: []config.Response{
		{FindingType: "*", MinSeverity: 1, Actions: []config.Action{config.ActionRevokeSessions, config.ActionRaiseRiskLevel}, RiskLevel: "high", Mode: config.ModeEnforce, MaxPerHour: 2},
	}}}
	e, clock := safeEnv(t, spec)
	roles := []string{"r1", "r2", "r3"}
	for _, r := range roles {
		if err := e.r.Handle(t.Context(), finding("f-"+r, exfilType, 8, "arn:aws:sts::123456789012:assumed-role/"+r+"/s", "ASIAXXXXXXXXXXXXXXX1")); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(e.ids.revoked, []string{"r1", "r2"}) {
		t.Fatalf("revoked %v, want the first two findings' roles (cap 2)", e.ids.revoked)
	}
	// The third repeats within the hour: still waiting, and audited only once.
	if err := e.r.Handle(t.Context(), finding("f-r3", exfilType, 8, "arn:aws:sts::123456789012:assumed-role/r3/s", "ASIAXXXXXXXXXXXXXXX1")); err != nil {
		t.Fatal(err)
	}
	var throttled int
	for _, ev := range e.aud.events {
		if ev.ErrorCode == "Throttling" {
			throttled++
		}
	}
	if throttled != 2 { // revoke and raise of f-r3, each once
		t.Errorf("%d Throttling events, want 2", throttled)
	}
	clock.Add(int64(time.Hour))
	if err := e.r.Handle(t.Context(), finding("f-r3", exfilType, 8, "arn:aws:sts::123456789012:assumed-role/r3/s", "ASIAXXXXXXXXXXXXXXX1")); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.ids.revoked, roles) {
		t.Errorf("an hour later: revoked %v, want all three", e.ids.revoked)
	}
}
