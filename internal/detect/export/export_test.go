package export_test

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
)

func loadFinding(t *testing.T) detect.Finding {
	t.Helper()
	b, err := os.ReadFile("testdata/finding.json")
	if err != nil {
		t.Fatal(err)
	}
	var f detect.Finding
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// compareGolden compares got, marshalled, with the golden file field by field, so a
// difference names the field.
func compareGolden(t *testing.T, got any, golden string) {
	t.Helper()
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var have, want map[string]any
	if err := json.Unmarshal(b, &have); err != nil {
		t.Fatal(err)
	}
	wb, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(wb, &want); err != nil {
		t.Fatalf("%s: %v", golden, err)
	}
	keys := map[string]bool{}
	for k := range have {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if !reflect.DeepEqual(have[k], want[k]) {
			hb, _ := json.Marshal(have[k])
			wb, _ := json.Marshal(want[k])
			t.Errorf("%s: field %s = %s, want %s", golden, k, hb, wb)
		}
	}
}

func TestASFFGolden(t *testing.T) {
	compareGolden(t, export.ASFF(loadFinding(t)), "testdata/finding.asff.json")
}

func TestOCSFGolden(t *testing.T) {
	compareGolden(t, export.OCSF(loadFinding(t)), "testdata/finding.ocsf.json")
}

func TestArchived(t *testing.T) {
	f := loadFinding(t)
	f.Service.Archived = true
	a := export.ASFF(f)
	if a.RecordState != "ARCHIVED" || a.Workflow.Status != "RESOLVED" {
		t.Errorf("ASFF archived: RecordState %s Workflow %s", a.RecordState, a.Workflow.Status)
	}
	o := export.OCSF(f)
	if o.ActivityID != export.OCSFActivityClose || o.TypeUID != 200403 || o.StatusID != 4 {
		t.Errorf("OCSF archived: activity %d type %d status %d", o.ActivityID, o.TypeUID, o.StatusID)
	}
	f.Service.Archived = false
	f.Service.Count = 1
	f.UpdatedAt = f.CreatedAt
	if o := export.OCSF(f); o.ActivityID != export.OCSFActivityCreate || o.TypeUID != 200401 {
		t.Errorf("OCSF new finding: activity %d", o.ActivityID)
	}
}

func TestSeverityMapping(t *testing.T) {
	// GuardDuty's bands (Low 1.0-3.9, Medium 4.0-6.9, High 7.0-8.9, Critical 9.0-10.0)
	// onto OCSF severity_id and ASFF's label and normalized score.
	tests := []struct {
		sev        float64
		ocsf       int
		label      string
		normalized int
	}{
		{1, 2, "LOW", 10},
		{3.9, 2, "LOW", 39},
		{4, 3, "MEDIUM", 40},
		{6.9, 3, "MEDIUM", 69},
		{7, 4, "HIGH", 70},
		{8.9, 4, "HIGH", 89},
		{9, 5, "CRITICAL", 90},
	}
	for _, tc := range tests {
		f := detect.Finding{ID: "x", Severity: tc.sev}
		if id, _ := export.OCSFSeverityID(tc.sev); id != tc.ocsf {
			t.Errorf("OCSFSeverityID(%v) = %d, want %d", tc.sev, id, tc.ocsf)
		}
		s := export.ASFF(f).Severity
		if s.Label != tc.label || s.Normalized != tc.normalized {
			t.Errorf("ASFF severity(%v) = %+v, want %s %d", tc.sev, s, tc.label, tc.normalized)
		}
	}
}

func TestASFFTypes(t *testing.T) {
	tests := map[string]string{
		"Recon:IAMUser/AccessDeniedSweep":           "TTPs/Discovery/Recon:IAMUser-AccessDeniedSweep",
		"Exfiltration:IAMUser/EgressDenied":         "Effects/Data Exfiltration/Exfiltration:IAMUser-EgressDenied",
		"Policy:IAMUser/RootCredentialUsage":        "Software and Configuration Checks/AWS Security Best Practices/Policy:IAMUser-RootCredentialUsage",
		"Stealth:IAMUser/CloudTrailLoggingDisabled": "TTPs/Defense Evasion/Stealth:IAMUser-CloudTrailLoggingDisabled",
		"Made:Up/Thing":                             "Unusual Behaviors/User/Made:Up-Thing",
	}
	for in, want := range tests {
		if got := export.ASFFType(in); got != want {
			t.Errorf("ASFFType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStoreRoundTrip(t *testing.T) {
	f := loadFinding(t)
	rec, err := export.ToStore(f)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Principal != "arn:aws:sts::123456789012:assumed-role/app/i-0abc" || rec.Type != f.Type || rec.Severity != 8 ||
		!rec.UpdatedAt.Equal(f.UpdatedAt) {
		t.Errorf("record = %+v", rec)
	}
	rec.Archived = true // archived beneath the document
	back, err := export.FromStore(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Service.Archived || back.Service.Count != 3 || !back.CreatedAt.Equal(f.CreatedAt.Truncate(time.Millisecond)) {
		t.Errorf("decoded = %+v", back)
	}
	rec.ID = "other"
	if _, err := export.FromStore(rec); err == nil {
		t.Error("FromStore accepted a document whose id differs from the record's")
	}
}
