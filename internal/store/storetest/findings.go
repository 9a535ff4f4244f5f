package storetest

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

func findingCases() []struct {
	name string
	fn   func(t *testing.T, s Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"FindingUpsertKeepsArchived", testFindingUpsert},
		{"FindingList", testFindingList},
		{"FindingNotFound", testFindingNotFound},
		{"FindingInvalid", testFindingInvalid},
		{"FindingResponseOnce", testFindingResponseOnce},
		{"FindingsSurviveReopen", testFindingsReopen},
		{"RiskLevels", testRiskLevels},
		{"FindingWritesBumpVersion", testFindingVersion},
	}
}

func newFinding(id, typ string, sev float64, principal string, updated time.Time) store.Finding {
	doc, _ := json.Marshal(map[string]any{"id": id, "type": typ, "severity": sev, "updatedAt": updated})
	return store.Finding{ID: id, Type: typ, Severity: sev, Principal: principal, CreatedAt: updated.Add(-time.Minute), UpdatedAt: updated, Document: doc}
}

func sameFinding(t *testing.T, got, want store.Finding) {
	t.Helper()
	if got.ID != want.ID || got.Type != want.Type || got.Severity != want.Severity || got.Principal != want.Principal ||
		got.Archived != want.Archived || !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) ||
		string(got.Document) != string(want.Document) {
		t.Errorf("finding = %+v\nwant %+v", got, want)
	}
}

func findingIDs(fs []store.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

const (
	typeExfil = "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
	typeRecon = "Recon:IAMUser/AccessDeniedSweep"
	roleARN   = "arn:aws:sts::123456789012:assumed-role/app/i-1"
	userARN   = "arn:aws:iam::123456789012:user/alice"
)

func testFindingUpsert(t *testing.T, s Store) {
	f := newFinding("f1", typeExfil, 8, roleARN, t0)
	must(t, s.PutFinding(ctx(t), f))
	got, err := s.GetFinding(ctx(t), "f1")
	must(t, err)
	sameFinding(t, got, f)

	must(t, s.ArchiveFinding(ctx(t), "f1", true))
	// The detector updates the finding (a repeat): the analyst's archive stays, and so does
	// the creation time, whatever the update carries.
	upd := newFinding("f1", typeExfil, 8.5, roleARN, t0.Add(time.Hour))
	upd.Archived = false
	must(t, s.PutFinding(ctx(t), upd))
	got, err = s.GetFinding(ctx(t), "f1")
	must(t, err)
	want := upd
	want.Archived = true
	want.CreatedAt = f.CreatedAt
	sameFinding(t, got, want)

	must(t, s.ArchiveFinding(ctx(t), "f1", true)) // already archived: no error
	must(t, s.ArchiveFinding(ctx(t), "f1", false))
	got, err = s.GetFinding(ctx(t), "f1")
	must(t, err)
	if got.Archived {
		t.Error("unarchived finding reads archived")
	}

	// A new finding may arrive archived (suppressed at creation).
	a := newFinding("f2", typeRecon, 2, userARN, t0)
	a.Archived = true
	must(t, s.PutFinding(ctx(t), a))
	got, err = s.GetFinding(ctx(t), "f2")
	must(t, err)
	sameFinding(t, got, a)
}

func testFindingList(t *testing.T, s Store) {
	fs := []store.Finding{
		newFinding("a", typeExfil, 8, roleARN, t0.Add(3*time.Second)),
		newFinding("b", typeRecon, 2, userARN, t0.Add(1*time.Second)),
		newFinding("c", typeRecon, 5, roleARN, t0.Add(2*time.Second)),
		newFinding("d", typeExfil, 5, userARN, t0.Add(4*time.Second)),
	}
	for _, f := range fs {
		must(t, s.PutFinding(ctx(t), f))
	}
	must(t, s.ArchiveFinding(ctx(t), "d", true))
	yes, no := true, false
	tests := []struct {
		name string
		f    store.FindingFilter
		want []string
	}{
		{"all, newest first", store.FindingFilter{}, []string{"d", "a", "c", "b"}},
		{"active", store.FindingFilter{Archived: &no}, []string{"a", "c", "b"}},
		{"archived", store.FindingFilter{Archived: &yes}, []string{"d"}},
		{"type", store.FindingFilter{Type: typeRecon}, []string{"c", "b"}},
		{"min severity is inclusive", store.FindingFilter{MinSeverity: 5}, []string{"d", "a", "c"}},
		{"principal", store.FindingFilter{Principal: userARN}, []string{"d", "b"}},
		{"limit", store.FindingFilter{Limit: 2}, []string{"d", "a"}},
		{"combined", store.FindingFilter{Archived: &no, Type: typeExfil, MinSeverity: 7}, []string{"a"}},
		{"none", store.FindingFilter{Type: "Nope:IAMUser/None"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListFindings(ctx(t), tc.f)
			must(t, err)
			if !slices.Equal(findingIDs(got), tc.want) {
				t.Errorf("ListFindings(%+v) = %v, want %v", tc.f, findingIDs(got), tc.want)
			}
		})
	}
}

func testFindingNotFound(t *testing.T, s Store) {
	if _, err := s.GetFinding(ctx(t), "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetFinding(missing) = %v, want ErrNotFound", err)
	}
	if err := s.ArchiveFinding(ctx(t), "missing", true); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ArchiveFinding(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.MarkFindingResponse(ctx(t), "missing", "notify", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MarkFindingResponse(missing) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteRiskLevel(ctx(t), userARN); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteRiskLevel(missing) = %v, want ErrNotFound", err)
	}
}

func testFindingInvalid(t *testing.T, s Store) {
	good := newFinding("ok", typeExfil, 5, roleARN, t0)
	bad := map[string]func(f *store.Finding){
		"empty id":        func(f *store.Finding) { f.ID = "" },
		"id with space":   func(f *store.Finding) { f.ID = "a b" },
		"empty type":      func(f *store.Finding) { f.Type = "" },
		"severity > 10":   func(f *store.Finding) { f.Severity = 11 },
		"negative sev":    func(f *store.Finding) { f.Severity = -1 },
		"not JSON":        func(f *store.Finding) { f.Document = []byte("{") },
		"JSON array":      func(f *store.Finding) { f.Document = []byte("[]") },
		"JSON null":       func(f *store.Finding) { f.Document = []byte("null") },
		"empty document":  func(f *store.Finding) { f.Document = nil },
		"time overflowed": func(f *store.Finding) { f.UpdatedAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, mut := range bad {
		f := good
		mut(&f)
		if err := s.PutFinding(ctx(t), f); err == nil {
			t.Errorf("PutFinding with %s succeeded", name)
		}
	}
	if got, err := s.ListFindings(ctx(t), store.FindingFilter{}); err != nil || len(got) != 0 {
		t.Errorf("after refused puts: %v, %v; want nothing stored", findingIDs(got), err)
	}
	for name, r := range map[string]store.RiskLevel{
		"empty principal": {Level: "high"},
		"empty level":     {Principal: userARN},
	} {
		if err := s.PutRiskLevel(ctx(t), r); err == nil {
			t.Errorf("PutRiskLevel with %s succeeded", name)
		}
	}
}

func testFindingResponseOnce(t *testing.T, s Store) {
	must(t, s.PutFinding(ctx(t), newFinding("f", typeExfil, 8, roleARN, t0)))
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.MarkFindingResponse(ctx(t), "f", "revokeSessions", t0)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d concurrent MarkFindingResponse calls reported true, want exactly 1", wins.Load())
	}
	// The finding updated (a count bump) keeps its applied actions.
	must(t, s.PutFinding(ctx(t), newFinding("f", typeExfil, 8, roleARN, t0.Add(time.Minute))))
	ok, err := s.MarkFindingResponse(ctx(t), "f", "revokeSessions", t0)
	must(t, err)
	if ok {
		t.Error("action marked again after the finding was updated")
	}
	ok, err = s.MarkFindingResponse(ctx(t), "f", "notify", time.Time{})
	must(t, err)
	if !ok {
		t.Error("a second action was not marked")
	}
	got, err := s.ListFindingResponses(ctx(t), "f")
	must(t, err)
	if !slices.Equal(got, []string{"notify", "revokeSessions"}) {
		t.Errorf("ListFindingResponses = %v", got)
	}
}

func testFindingsReopen(t *testing.T, s Store) {
	f := newFinding("f", typeExfil, 8, roleARN, t0)
	must(t, s.PutFinding(ctx(t), f))
	must(t, s.ArchiveFinding(ctx(t), "f", true))
	_, err := s.MarkFindingResponse(ctx(t), "f", "notify", t0)
	must(t, err)
	must(t, s.PutRiskLevel(ctx(t), store.RiskLevel{Principal: userARN, Level: "high", FindingID: "f", SetAt: t0}))
	s2, err := s.Reopen(t, s.MasterKey())
	must(t, err)
	got, err := s2.GetFinding(ctx(t), "f")
	must(t, err)
	f.Archived = true
	sameFinding(t, got, f)
	ok, err := s2.MarkFindingResponse(ctx(t), "f", "notify", t0)
	must(t, err)
	if ok {
		t.Error("applied response forgotten across reopen")
	}
	rl, err := s2.ListRiskLevels(ctx(t))
	must(t, err)
	if len(rl) != 1 || rl[0].Level != "high" {
		t.Errorf("risk levels after reopen = %+v", rl)
	}
}

func testRiskLevels(t *testing.T, s Store) {
	must(t, s.PutRiskLevel(ctx(t), store.RiskLevel{Principal: userARN, Level: "medium", FindingID: "f1", SetAt: t0}))
	must(t, s.PutRiskLevel(ctx(t), store.RiskLevel{Principal: "arn:aws:iam::123456789012:role/app", Level: "high", FindingID: "f2", SetAt: t0}))
	// Replacing is the store's job; whether to lower is the responder's.
	must(t, s.PutRiskLevel(ctx(t), store.RiskLevel{Principal: userARN, Level: "high", FindingID: "f3", SetAt: t0.Add(time.Second)}))
	got, err := s.ListRiskLevels(ctx(t))
	must(t, err)
	want := []store.RiskLevel{
		{Principal: "arn:aws:iam::123456789012:role/app", Level: "high", FindingID: "f2", SetAt: t0},
		{Principal: userARN, Level: "high", FindingID: "f3", SetAt: t0.Add(time.Second)},
	}
	if len(got) != len(want) {
		t.Fatalf("ListRiskLevels = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Principal != want[i].Principal || got[i].Level != want[i].Level || got[i].FindingID != want[i].FindingID || !got[i].SetAt.Equal(want[i].SetAt) {
			t.Errorf("risk level %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	must(t, s.DeleteRiskLevel(ctx(t), userARN))
	got, err = s.ListRiskLevels(ctx(t))
	must(t, err)
	if len(got) != 1 {
		t.Errorf("after delete: %+v", got)
	}
}

func testFindingVersion(t *testing.T, s Store) {
	steps := []struct {
		name string
		fn   func() error
	}{
		{"PutFinding", func() error { return s.PutFinding(ctx(t), newFinding("v", typeExfil, 8, roleARN, t0)) }},
		{"PutFinding update", func() error { return s.PutFinding(ctx(t), newFinding("v", typeExfil, 8, roleARN, t0.Add(time.Second))) }},
		{"ArchiveFinding", func() error { return s.ArchiveFinding(ctx(t), "v", true) }},
		{"UnarchiveFinding", func() error { return s.ArchiveFinding(ctx(t), "v", false) }},
		{"MarkFindingResponse", func() error { _, err := s.MarkFindingResponse(ctx(t), "v", "notify", t0); return err }},
		{"PutRiskLevel", func() error {
			return s.PutRiskLevel(ctx(t), store.RiskLevel{Principal: userARN, Level: "high", FindingID: "v", SetAt: t0})
		}},
		{"DeleteRiskLevel", func() error { return s.DeleteRiskLevel(ctx(t), userARN) }},
	}
	prev, err := s.Version(ctx(t))
	must(t, err)
	for _, st := range steps {
		if err := st.fn(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		v, err := s.Version(ctx(t))
		must(t, err)
		if v <= prev {
			t.Errorf("%s: Version %d -> %d, want it to go up", st.name, prev, v)
		}
		prev = v
	}
}
