package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// findingsPerimeter is a data directory whose store stays open for the whole test, as
// a running 'phantom up' holds it, with three findings in it.
func findingsPerimeter(t *testing.T) (string, *store.SQLite) {
	t.Helper()
	dir := t.TempDir()
	mk, err := store.LoadOrCreateMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(t.Context(), store.Config{DataDir: dir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	for i, f := range []detect.Finding{
		testFinding("aaaaaaaaaaaaaaaa1111111111111111", "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", 8,
			"arn:aws:sts::123456789012:assumed-role/app/i-1", t0),
		testFinding("bbbbbbbbbbbbbbbb2222222222222222", "Recon:IAMUser/AccessDeniedSweep", 2,
			"arn:aws:iam::123456789012:user/alice", t0.Add(time.Minute)),
		testFinding("bbbbbbbbbbbbbbbb3333333333333333", "Recon:IAMUser/AccessDeniedSweep", 5,
			"arn:aws:iam::123456789012:user/bob", t0.Add(2*time.Minute)),
	} {
		rec, err := export.ToStore(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutFinding(t.Context(), rec); err != nil {
			t.Fatalf("finding %d: %v", i, err)
		}
	}
	return dir, st
}

func testFinding(id, typ string, sev float64, principal string, at time.Time) detect.Finding {
	return detect.Finding{
		SchemaVersion: "2.0", AccountID: "123456789012", Region: "us-east-1", Partition: "aws", ID: id,
		ARN:  "arn:aws:guardduty:us-east-1:123456789012:detector/phantom/finding/" + id,
		Type: typ, Title: "title " + id, Description: "desc", Severity: sev, CreatedAt: at, UpdatedAt: at,
		Resource: detect.Resource{ResourceType: "AccessKey", AccessKeyDetails: &detect.AccessKeyDetails{AccessKeyID: "AKIAEXAMPLE", PrincipalARN: principal}},
		Service: detect.Service{ServiceName: "guardduty", DetectorID: "phantom", ResourceRole: "TARGET", Count: 2,
			EventFirstSeen: at, EventLastSeen: at, Action: detect.Action{ActionType: "AWS_API_CALL"}},
	}
}

type findingsResult struct {
	code           int
	stdout, stderr string
}

func runFindings(t *testing.T, dir string, args ...string) findingsResult {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(append([]string{"findings"}, args...), "--data-dir", dir)
	code := run(args, strings.NewReader(""), &out, &errb)
	return findingsResult{code, out.String(), errb.String()}
}

func findingsOK(t *testing.T, r findingsResult) findingsResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return r
}

func TestFindingsListTable(t *testing.T) {
	dir, _ := findingsPerimeter(t)
	r := findingsOK(t, runFindings(t, dir, "list"))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines, want header + 3:\n%s", len(lines), r.stdout)
	}
	for _, h := range []string{"ID", "TYPE", "SEVERITY", "COUNT", "PRINCIPAL", "LAST SEEN", "ARCHIVED"} {
		if !strings.Contains(lines[0], h) {
			t.Errorf("header %q lacks %s", lines[0], h)
		}
	}
	// Newest first; ids shortened to 12 characters.
	if !strings.HasPrefix(lines[1], "bbbbbbbbbbbb ") || !strings.Contains(lines[1], "Medium 5.0") ||
		!strings.Contains(lines[3], "High 8.0") || !strings.Contains(lines[3], "arn:aws:sts::123456789012:assumed-role/app/i-1") {
		t.Errorf("table:\n%s", r.stdout)
	}
}

func TestFindingsListJSONFormats(t *testing.T) {
	dir, _ := findingsPerimeter(t)
	r := findingsOK(t, runFindings(t, dir, "list", "--output", "json", "--type", "Recon:IAMUser/AccessDeniedSweep", "--min-severity", "4"))
	var gd struct{ Findings []detect.Finding }
	if err := json.Unmarshal([]byte(r.stdout), &gd); err != nil {
		t.Fatal(err)
	}
	if len(gd.Findings) != 1 || gd.Findings[0].ID != "bbbbbbbbbbbbbbbb3333333333333333" {
		t.Errorf("filtered list = %+v", gd.Findings)
	}

	r = findingsOK(t, runFindings(t, dir, "list", "--format", "ocsf"))
	var oc []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &oc); err != nil {
		t.Fatal(err)
	}
	if len(oc) != 3 || oc[0]["class_uid"] != float64(2004) {
		t.Errorf("ocsf list = %s", r.stdout)
	}

	r = findingsOK(t, runFindings(t, dir, "list", "--format", "asff", "--limit", "1"))
	var as struct{ Findings []map[string]any }
	if err := json.Unmarshal([]byte(r.stdout), &as); err != nil {
		t.Fatal(err)
	}
	if len(as.Findings) != 1 || as.Findings[0]["SchemaVersion"] != "2018-10-08" {
		t.Errorf("asff list = %s", r.stdout)
	}
}

func TestFindingsShowAndArchive(t *testing.T) {
	dir, st := findingsPerimeter(t)
	// show by unique prefix.
	r := findingsOK(t, runFindings(t, dir, "show", "aaaaaaaaaaaa"))
	var f detect.Finding
	if err := json.Unmarshal([]byte(r.stdout), &f); err != nil {
		t.Fatal(err)
	}
	if f.ID != "aaaaaaaaaaaaaaaa1111111111111111" {
		t.Errorf("show = %s", r.stdout)
	}
	r = findingsOK(t, runFindings(t, dir, "show", "aaaaaaaaaaaa", "--output", "table"))
	if !strings.Contains(r.stdout, "High 8.0") || !strings.Contains(r.stdout, "Archived") {
		t.Errorf("show table:\n%s", r.stdout)
	}

	r = findingsOK(t, runFindings(t, dir, "archive", "aaaaaaaaaaaaaaaa1111111111111111"))
	if !strings.HasPrefix(r.stdout, "archived aaaaaaaaaaaaaaaa1111111111111111 ") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("archive says what it archived, one line per finding; got %q", r.stdout)
	}
	// The store held open by the "running perimeter" sees it.
	rec, err := st.GetFinding(t.Context(), "aaaaaaaaaaaaaaaa1111111111111111")
	if err != nil || !rec.Archived {
		t.Fatalf("after archive: %+v %v", rec, err)
	}
	r = findingsOK(t, runFindings(t, dir, "list", "--output", "json"))
	if strings.Contains(r.stdout, "aaaaaaaaaaaaaaaa1111111111111111") {
		t.Error("archived finding in the default list")
	}
	r = findingsOK(t, runFindings(t, dir, "list", "--archived", "--output", "json"))
	if !strings.Contains(r.stdout, "aaaaaaaaaaaaaaaa1111111111111111") || strings.Contains(r.stdout, "bbbb") {
		t.Errorf("--archived list:\n%s", r.stdout)
	}
	r = findingsOK(t, runFindings(t, dir, "archive", "aaaaaaaaaaaa", "--unarchive"))
	if !strings.HasPrefix(r.stdout, "unarchived aaaaaaaaaaaaaaaa1111111111111111 ") {
		t.Errorf("--unarchive: %q", r.stdout)
	}
	if rec, _ := st.GetFinding(t.Context(), "aaaaaaaaaaaaaaaa1111111111111111"); rec.Archived {
		t.Error("still archived after --unarchive")
	}
}

func TestFindingsErrors(t *testing.T) {
	dir, st := findingsPerimeter(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown id", []string{"show", "ffffffffffff"}, 254, "An error occurred (BadRequestException) when calling the GetFindings operation: The finding ffffffffffff does not exist."},
		{"ambiguous prefix", []string{"show", "bbbbbbbb"}, 254, "matches 2 findings"},
		{"archive unknown id changes nothing", []string{"archive", "aaaaaaaaaaaaaaaa1111111111111111", "nope"}, 254, "(BadRequestException) when calling the ArchiveFindings operation"},
		{"bad format", []string{"list", "--format", "csv"}, 2, "--format"},
		{"table with ocsf", []string{"list", "--format", "ocsf", "--output", "table"}, 2, "--format ocsf is JSON"},
		{"bad output", []string{"list", "--output", "yaml"}, 2, "--output"},
		{"archived and all", []string{"list", "--archived", "--all"}, 2, "exclude"},
		{"show needs an id", []string{"show"}, 2, "accepts 1 arg"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runFindings(t, dir, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("exit %d stderr %q; want exit %d and %q", r.code, r.stderr, tc.code, tc.stderr)
			}
		})
	}
	if rec, _ := st.GetFinding(t.Context(), "aaaaaaaaaaaaaaaa1111111111111111"); rec.Archived {
		t.Error("a failed archive of several ids archived some")
	}
	r := runFindings(t, t.TempDir(), "list")
	if r.code != 1 || !strings.Contains(r.stderr, "no perimeter in") {
		t.Errorf("empty data dir: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestFindingsRiskLevels(t *testing.T) {
	dir, st := findingsPerimeter(t)
	if err := st.PutRiskLevel(t.Context(), store.RiskLevel{Principal: "arn:aws:iam::123456789012:user/alice", Level: "high", FindingID: "bbbb"}); err != nil {
		t.Fatal(err)
	}
	r := findingsOK(t, runFindings(t, dir, "risk-levels"))
	if !strings.Contains(r.stdout, "arn:aws:iam::123456789012:user/alice") || !strings.Contains(r.stdout, "high") {
		t.Errorf("risk-levels:\n%s", r.stdout)
	}
	findingsOK(t, runFindings(t, dir, "risk-levels", "--clear", "arn:aws:iam::123456789012:user/alice"))
	if l, _ := st.ListRiskLevels(t.Context()); len(l) != 0 {
		t.Errorf("after --clear: %+v", l)
	}
	if r := runFindings(t, dir, "risk-levels", "--clear", "arn:aws:iam::123456789012:user/alice"); r.code != 254 {
		t.Errorf("clearing again: exit %d, want 254", r.code)
	}
}

// TestFindingsLift: the break-glass command makes the key a response disabled Active
// again and clears the risk level it raised, reports revoked sessions as not liftable,
// refuses to run without a reason, and is audited in the admin chain with the reason.
func TestFindingsLift(t *testing.T) {
	dir, st := findingsPerimeter(t)
	const id = "bbbbbbbbbbbbbbbb2222222222222222"
	ctx := t.Context()
	if err := st.PutAccessKey(ctx, store.AccessKey{ID: "AKIAEXAMPLEEXAMPLE01", User: "alice", Secret: strings.Repeat("s", 40), Status: store.StatusInactive}); err != nil {
		t.Fatal(err)
	}
	// The finding names AKIAEXAMPLE; point it at the stored key.
	rec, _ := st.GetFinding(ctx, id)
	f, _ := export.FromStore(rec)
	f.Resource.AccessKeyDetails.AccessKeyID = "AKIAEXAMPLEEXAMPLE01"
	rec, _ = export.ToStore(f)
	if err := st.PutFinding(ctx, rec); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"disableAccessKey", "raiseRiskLevel:high", "revokeSessions"} {
		if _, err := st.MarkFindingResponse(ctx, id, a, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutRiskLevel(ctx, store.RiskLevel{Principal: "arn:aws:iam::123456789012:user/alice", Level: "high", FindingID: id, SetAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if r := runFindings(t, dir, "lift", "bbbbbbbbbbbbbbbb2222"); r.code != 2 {
		t.Fatalf("without --reason: exit %d %s", r.code, r.stderr)
	}
	r := findingsOK(t, runFindings(t, dir, "lift", "bbbbbbbbbbbbbbbb2222", "--reason", "INC-1: false positive"))
	var out struct {
		FindingId string
		Lifted    []struct{ Action, Result, Detail string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.FindingId != id || len(out.Lifted) != 3 {
		t.Fatalf("output %s: %v", r.stdout, err)
	}
	if k, _ := st.GetAccessKey(ctx, "AKIAEXAMPLEEXAMPLE01"); k.Status != store.StatusActive {
		t.Errorf("key after the lift: %s", k.Status)
	}
	if levels, _ := st.ListRiskLevels(ctx); len(levels) != 0 {
		t.Errorf("risk levels after the lift: %+v", levels)
	}
	evs := auditEvents(t, filepath.Join(dir, "audit"))
	if len(evs) != 1 || evs[0].EventName != "LiftResponses" || evs[0].RequestParameters["reason"] != "INC-1: false positive" || evs[0].UserIdentity.Type != "PhantomOperator" {
		t.Fatalf("admin chain: %+v", evs)
	}
}
