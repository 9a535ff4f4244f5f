package respond_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/store"
)

const (
	account    = "123456789012"
	sessionARN = "arn:aws:sts::123456789012:assumed-role/app/i-0abc"
	roleARN    = "arn:aws:iam::123456789012:role/svc/app"
	userARN    = "arn:aws:iam::123456789012:user/alice"
	exfilType  = "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
)

var t0 = time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)

type fakeIdentity struct {
	mu       sync.Mutex
	revoked  []string
	disabled []string
	fail     error
}

func (f *fakeIdentity) RevokeSessions(_ context.Context, role string) (identity.Revocation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return identity.Revocation{}, f.fail
	}
	f.revoked = append(f.revoked, role)
	return identity.Revocation{Role: role, Before: t0}, nil
}

func (f *fakeIdentity) UpdateAccessKeyStatus(_ context.Context, id, status string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if status != "Inactive" {
		return errors.New("unexpected status " + status)
	}
	f.disabled = append(f.disabled, id)
	return nil
}

type fakeAuditor struct {
	mu     sync.Mutex
	events []*audit.Event
}

func (a *fakeAuditor) Record(_ context.Context, ev *audit.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	return nil
}

func (a *fakeAuditor) byName(name string) []*audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*audit.Event
	for _, e := range a.events {
		if e.EventName == name {
			out = append(out, e)
		}
	}
	return out
}

func openStore(t *testing.T, dir string) *store.SQLite {
	t.Helper()
	mk, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenSQLite(t.Context(), store.Config{DataDir: dir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type env struct {
	r   *respond.Responder
	st  *store.SQLite
	ids *fakeIdentity
	aud *fakeAuditor
}

func newEnv(t *testing.T, responses ...config.Response) *env {
	t.Helper()
	spec := &config.Spec{Account: account, Region: "eu-west-1", Detection: config.Detection{Responses: responses}}
	e := &env{st: openStore(t, t.TempDir()), ids: &fakeIdentity{}, aud: &fakeAuditor{}}
	r, err := respond.New(respond.Config{
		Spec: func() *config.Spec { return spec }, Identity: e.ids, Store: e.st, Auditor: e.aud,
		Now: func() time.Time { return t0 }, NotifyBackoff: 10 * time.Millisecond, NotifyTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	e.r = r
	return e
}

func finding(id, typ string, sev float64, principal, key string) detect.Finding {
	return detect.Finding{
		SchemaVersion: "2.0", AccountID: account, Region: "eu-west-1", Partition: "aws", ID: id,
		ARN:  "arn:aws:guardduty:eu-west-1:" + account + ":detector/d/finding/" + id,
		Type: typ, Title: "t", Description: "d", Severity: sev, CreatedAt: t0, UpdatedAt: t0,
		Resource: detect.Resource{ResourceType: "AccessKey", AccessKeyDetails: &detect.AccessKeyDetails{AccessKeyID: key, PrincipalARN: principal}},
		Service: detect.Service{ServiceName: "guardduty", DetectorID: "d", Count: 1, EventFirstSeen: t0, EventLastSeen: t0,
			AdditionalInfo: map[string]any{"rule": "x"}},
	}
}

func stored(t *testing.T, st *store.SQLite, id string) detect.Finding {
	t.Helper()
	rec, err := st.GetFinding(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	f, err := export.FromStore(rec)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestHandleAppliesOncePerFinding(t *testing.T) {
	e := newEnv(t, config.Response{FindingType: "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*", MinSeverity: 5,
		Actions: []config.Action{config.ActionRevokeSessions, config.ActionDisableAccessKey, config.ActionRaiseRiskLevel}, RiskLevel: "high"})
	f := finding("f1", exfilType, 8, sessionARN, "ASIAEXAMPLEEXAMPLE01")
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	// A repeat: the detector bumps the count; nothing is applied again.
	f.Service.Count = 2
	f.UpdatedAt = t0.Add(time.Minute)
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.ids.revoked, []string{"app"}) {
		t.Errorf("revoked = %v, want [app] once", e.ids.revoked)
	}
	if len(e.ids.disabled) != 0 {
		t.Errorf("disabled %v: an ASIA key cannot be disabled", e.ids.disabled)
	}
	if got := e.r.RiskLevel(sessionARN); got != "high" {
		t.Errorf("RiskLevel(session) = %q, want high", got)
	}
	for _, name := range []string{respond.EventRevokeSessions, respond.EventDisableAccessKey, respond.EventRaiseRiskLevel} {
		if n := len(e.aud.byName(name)); n != 1 {
			t.Errorf("%d %s audit events, want 1", n, name)
		}
	}
	ev := e.aud.byName(respond.EventRevokeSessions)[0]
	if ev.EventSource != respond.EventSource || ev.ErrorCode != "" || ev.RequestParameters["findingId"] != "f1" ||
		ev.RequestParameters["principal"] != sessionARN || ev.RequestParameters["roleName"] != "app" || ev.RecipientAccountID != account {
		t.Errorf("revoke audit event = %+v", ev)
	}
	if ev := e.aud.byName(respond.EventDisableAccessKey)[0]; ev.ErrorCode != "NotApplicable" {
		t.Errorf("disable audit errorCode = %q, want NotApplicable", ev.ErrorCode)
	}
	got := stored(t, e.st, "f1")
	if got.Service.Count != 2 {
		t.Errorf("stored count = %d, want 2", got.Service.Count)
	}
	resp, _ := got.Service.AdditionalInfo[respond.AdditionalInfoKey].([]any)
	if len(resp) != 3 || got.Service.AdditionalInfo["rule"] != "x" {
		t.Errorf("additionalInfo = %v, want the detector's keys and 3 phantomResponses", got.Service.AdditionalInfo)
	}
	if f.Service.AdditionalInfo[respond.AdditionalInfoKey] != nil {
		t.Error("Handle modified the caller's additionalInfo map")
	}
}

func TestHandleMatching(t *testing.T) {
	rsp := config.Response{FindingType: "Recon:*", MinSeverity: 5, Actions: []config.Action{config.ActionDisableAccessKey}}
	tests := []struct {
		name    string
		typ     string
		sev     float64
		disable bool
	}{
		{"type and severity match", "Recon:IAMUser/AccessDeniedSweep", 5, true},
		{"severity below the minimum", "Recon:IAMUser/AccessDeniedSweep", 4.9, false},
		{"other type", "Discovery:IAMUser/AnomalousBehavior", 8, false},
		{"glob is anchored at the start", "X-Recon:IAMUser/A", 8, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, rsp)
			if err := e.r.Handle(t.Context(), finding("f", tc.typ, tc.sev, userARN, "AKIAEXAMPLEEXAMPLE01")); err != nil {
				t.Fatal(err)
			}
			if got := len(e.ids.disabled) == 1; got != tc.disable {
				t.Errorf("disabled = %v, want %v", e.ids.disabled, tc.disable)
			}
			if _, err := e.st.GetFinding(t.Context(), "f"); err != nil {
				t.Errorf("finding not stored: %v", err)
			}
		})
	}
}

func TestHandleUserPrincipal(t *testing.T) {
	e := newEnv(t, config.Response{FindingType: "*", MinSeverity: 1,
		Actions: []config.Action{config.ActionRevokeSessions, config.ActionDisableAccessKey}})
	if err := e.r.Handle(t.Context(), finding("f", "Policy:IAMUser/X", 5, userARN, "AKIAEXAMPLEEXAMPLE01")); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.ids.disabled, []string{"AKIAEXAMPLEEXAMPLE01"}) || !slices.Equal(e.ids.revoked, []string{"alice"}) {
		t.Errorf("disabled %v revoked %v", e.ids.disabled, e.ids.revoked)
	}
	if ev := e.aud.byName(respond.EventDisableAccessKey)[0]; ev.ErrorCode != "" || ev.ResponseElements["status"] != "Inactive" {
		t.Errorf("disable event = %+v", ev)
	}
}

func TestHandleRetriesTransientFailure(t *testing.T) {
	e := newEnv(t, config.Response{FindingType: "*", MinSeverity: 1, Actions: []config.Action{config.ActionRevokeSessions}})
	e.ids.fail = errors.New("database is locked")
	f := finding("f", exfilType, 8, sessionARN, "")
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	if ev := e.aud.byName(respond.EventRevokeSessions); len(ev) != 1 || ev[0].ErrorCode != "InternalFailure" {
		t.Fatalf("events after failure = %+v", ev)
	}
	e.ids.fail = nil
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.ids.revoked, []string{"app"}) {
		t.Errorf("revoked = %v after the retry", e.ids.revoked)
	}
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	if len(e.ids.revoked) != 1 {
		t.Errorf("revoked again after success: %v", e.ids.revoked)
	}
}

func TestHandleKeepsArchive(t *testing.T) {
	e := newEnv(t)
	f := finding("f", exfilType, 8, sessionARN, "")
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	if err := e.st.ArchiveFinding(t.Context(), "f", true); err != nil {
		t.Fatal(err)
	}
	f.Service.Count = 5
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, e.st, "f"); !got.Service.Archived || got.Service.Count != 5 {
		t.Errorf("after update: archived %v count %d, want archived with count 5", got.Service.Archived, got.Service.Count)
	}
}

func TestRiskLevels(t *testing.T) {
	e := newEnv(t,
		config.Response{FindingType: "*", MinSeverity: 1, Actions: []config.Action{config.ActionRaiseRiskLevel}, RiskLevel: "medium"},
		config.Response{FindingType: "*", MinSeverity: 7, Actions: []config.Action{config.ActionRaiseRiskLevel}, RiskLevel: "high"},
	)
	// Severity 8 matches both: high wins whatever the order.
	if err := e.r.Handle(t.Context(), finding("a", exfilType, 8, userARN, "")); err != nil {
		t.Fatal(err)
	}
	// A later, lower finding never lowers it.
	if err := e.r.Handle(t.Context(), finding("b", "Recon:IAMUser/X", 2, userARN, "")); err != nil {
		t.Fatal(err)
	}
	if got := e.r.RiskLevel(userARN); got != "high" {
		t.Errorf("RiskLevel(user) = %q, want high", got)
	}
	if got := e.r.RiskLevel("arn:aws:iam::123456789012:user/bob"); got != "" {
		t.Errorf("RiskLevel(bob) = %q, want none", got)
	}

	// Another process raises a role's level: a second responder on the same store sees
	// it after Refresh, and applies it to the role's sessions.
	if err := e.st.PutRiskLevel(t.Context(), store.RiskLevel{Principal: roleARN, Level: "critical", FindingID: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := e.r.RiskLevel(sessionARN); got != "" {
		t.Errorf("before Refresh: RiskLevel(session) = %q", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- e.r.Run(ctx, 10*time.Millisecond) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.r.RiskLevel(sessionARN) != "critical" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := e.r.RiskLevel(sessionARN); got != "critical" {
		t.Errorf("RiskLevel(session of role svc/app) = %q, want critical (set on the role)", got)
	}
	if got := e.r.RiskLevel(roleARN); got != "critical" {
		t.Errorf("RiskLevel(role) = %q", got)
	}
	if got := e.r.RiskLevel("arn:aws:sts::999999999999:assumed-role/app/i-0abc"); got != "" {
		t.Errorf("another account's role session got %q", got)
	}
	// An analyst clears the user's level: Run picks it up.
	if err := e.st.DeleteRiskLevel(t.Context(), userARN); err != nil {
		t.Fatal(err)
	}
	for e.r.RiskLevel(userARN) != "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := e.r.RiskLevel(userARN); got != "" {
		t.Errorf("after clearing: %q", got)
	}
	cancel()
	<-done
}

func TestNotify(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // retried
			return
		}
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, b)
		if r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("content type %q", r.Header.Get("Content-Type"))
		}
	}))
	defer srv.Close()
	hook := srv.URL + "/secret-token/phantom"
	e := newEnv(t, config.Response{FindingType: "*", MinSeverity: 1, Actions: []config.Action{config.ActionNotify}, Webhook: hook})
	f := finding("f", exfilType, 8, sessionARN, "")
	if err := e.r.Handle(t.Context(), f); err != nil {
		t.Fatal(err)
	}
	f.Service.Count = 2
	if err := e.r.Handle(t.Context(), f); err != nil { // not notified again
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 || len(bodies) != 1 {
		t.Fatalf("webhook calls = %d, bodies = %d; want one retry then one delivery", calls, len(bodies))
	}
	var ev respond.Event
	if err := json.Unmarshal(bodies[0], &ev); err != nil {
		t.Fatal(err)
	}
	if ev.DetailType != "GuardDuty Finding" || ev.Source != "aws.guardduty" || ev.Detail.ID != "f" || ev.Account != account {
		t.Errorf("event = %+v", ev)
	}
	evs := e.aud.byName(respond.EventNotify)
	if len(evs) != 1 || evs[0].ErrorCode != "" {
		t.Fatalf("notify audit events = %+v", evs)
	}
	b, _ := json.Marshal(evs[0])
	if strings.Contains(string(b), "secret-token") {
		t.Errorf("audit event holds the webhook path: %s", b)
	}
}

func TestNotifyFailureAudited(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden) // not retried
	}))
	defer srv.Close()
	e := newEnv(t, config.Response{FindingType: "*", MinSeverity: 1, Actions: []config.Action{config.ActionNotify}, Webhook: srv.URL})
	if err := e.r.Handle(t.Context(), finding("f", exfilType, 8, sessionARN, "")); err != nil {
		t.Fatal(err)
	}
	e.r.Close(t.Context())
	evs := e.aud.byName(respond.EventNotify)
	if len(evs) != 1 || evs[0].ErrorCode != "WebhookRejected" {
		t.Fatalf("events = %+v", evs)
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "anything", true},
		{"*", "", true},
		{"Recon:IAMUser/X", "Recon:IAMUser/X", true},
		{"Recon:IAMUser/X", "Recon:IAMUser/XY", false},
		{"UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*", exfilType, true},
		{"*:IAMUser/*", "Discovery:IAMUser/AnomalousBehavior", true},
		{"*.InsideAWS", exfilType, false},
		{"a*b*a", "aba", true},                   // the middle may be empty
		{"a*ba", "aba", true},                    // the prefix and suffix may not overlap...
		{"ab*ba", "aba", false},                  // ...so this needs 4 characters
		{"Recon:[A-Z]*", "Recon:IAMUser", false}, // brackets are literal
	}
	for _, tc := range tests {
		if got := respond.Glob(tc.pattern, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

func TestRoleName(t *testing.T) {
	tests := []struct {
		arn, want string
		ok        bool
	}{
		{sessionARN, "app", true},
		{roleARN, "app", true},
		{userARN, "alice", true},
		{"arn:aws:iam::123456789012:user/dev/bob", "bob", true},
		{"arn:aws:iam::123456789012:root", "", false},
		{"arn:aws:sts::123456789012:assumed-role/app", "", false},
		{"arn:aws:s3:::bucket", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, ok := respond.RoleName(tc.arn)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RoleName(%q) = %q, %v; want %q, %v", tc.arn, got, ok, tc.want, tc.ok)
		}
	}
}

func TestValidateWebhook(t *testing.T) {
	for _, ok := range []string{"https://hooks.example/p", "http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]/x"} {
		if _, err := respond.ValidateWebhook(ok); err != nil {
			t.Errorf("ValidateWebhook(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"http://hooks.example/p", "https://u:p@hooks.example/", "https://h/?q=1", "https://h/#f",
		"ftp://h/", "/relative", "https://", "file:///etc/passwd", "http://127.0.0.1.example/"} {
		if _, err := respond.ValidateWebhook(bad); err == nil {
			t.Errorf("ValidateWebhook(%q) accepted", bad)
		}
	}
}

func FuzzValidateWebhook(f *testing.F) {
	for _, s := range []string{"https://hooks.example/p", "http://127.0.0.1/x", "http://evil/", "https://u@h/", "http://[::1]:1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := respond.ValidateWebhook(raw)
		if err != nil {
			return
		}
		if u.Scheme != "https" && !(u.Scheme == "http" && (u.Hostname() == "localhost" || strings.HasPrefix(u.Hostname(), "127.") || u.Hostname() == "::1" || strings.Contains(u.Hostname(), ":"))) {
			t.Fatalf("accepted %q (scheme %q host %q)", raw, u.Scheme, u.Hostname())
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("accepted %q with credentials, query or fragment", raw)
		}
	})
}

func BenchmarkRiskLevel(b *testing.B) {
	spec := &config.Spec{Account: account}
	st := openStoreB(b)
	for _, p := range []string{userARN, roleARN, "arn:aws:iam::123456789012:user/x"} {
		if err := st.PutRiskLevel(context.Background(), store.RiskLevel{Principal: p, Level: "high", FindingID: "f"}); err != nil {
			b.Fatal(err)
		}
	}
	r, err := respond.New(respond.Config{Spec: func() *config.Spec { return spec }, Store: st, Auditor: &fakeAuditor{}})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Run("baseline map lookup", func(b *testing.B) {
		m := map[string]string{userARN: "high"}
		b.ReportAllocs()
		for b.Loop() {
			_ = m[sessionARN]
		}
	})
	b.Run("session of a raised role", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r.RiskLevel(sessionARN) != "high" {
				b.Fatal("wrong level")
			}
		}
	})
}

func openStoreB(b *testing.B) *store.SQLite {
	dir := b.TempDir()
	mk, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		b.Fatal(err)
	}
	s, err := store.OpenSQLite(context.Background(), store.Config{DataDir: dir, MasterKey: mk})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkHandleRepeat is the cost of a repeat of a finding whose responses were applied
// (the common case in a burst): one read and one durable write. Baseline: the bare
// PutFinding it contains.
func BenchmarkHandleRepeat(b *testing.B) {
	spec := &config.Spec{Account: account, Detection: config.Detection{Responses: []config.Response{
		{FindingType: "*", MinSeverity: 1, Actions: []config.Action{config.ActionRaiseRiskLevel}, RiskLevel: "high"}}}}
	st := openStoreB(b)
	r, err := respond.New(respond.Config{Spec: func() *config.Spec { return spec }, Store: st, Auditor: &fakeAuditor{}})
	if err != nil {
		b.Fatal(err)
	}
	f := finding("f", exfilType, 8, sessionARN, "")
	ctx := context.Background()
	if err := r.Handle(ctx, f); err != nil {
		b.Fatal(err)
	}
	b.Run("baseline PutFinding", func(b *testing.B) {
		rec, _ := export.ToStore(f)
		b.ReportAllocs()
		for b.Loop() {
			if err := st.PutFinding(ctx, rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Handle", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f.Service.Count++
			if err := r.Handle(ctx, f); err != nil {
				b.Fatal(err)
			}
		}
	})
}
