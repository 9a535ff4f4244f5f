package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/detect"
)

func runDetectCmd(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"detect"}, args...), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

const detectRecords = `{"Records":[
{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/eve","accountId":"123456789012","accessKeyId":"AKIAEVE","userName":"eve"},"eventTime":"2026-11-01T09:00:00Z","eventSource":"cloudtrail.amazonaws.com","eventName":"StopLogging","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15","requestParameters":{"name":"main"},"responseElements":null,"eventID":"e1","recipientAccountId":"123456789012"},
{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/eve","accountId":"123456789012","accessKeyId":"AKIAEVE","userName":"eve"},"eventTime":"2026-11-01T09:01:00Z","eventSource":"sts.amazonaws.com","eventName":"GetCallerIdentity","awsRegion":"us-east-1","sourceIPAddress":"185.220.101.4","userAgent":"aws-cli/2.15","requestParameters":null,"responseElements":null,"eventID":"e2","recipientAccountId":"123456789012"}
]}`

const benignRecords = `{"Records":[{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/alice","accountId":"123456789012","accessKeyId":"AKIAALICE","userName":"alice"},"eventTime":"2026-11-01T09:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15","requestParameters":null,"responseElements":null,"eventID":"b1","recipientAccountId":"123456789012"}]}`

func TestDetectCommand(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	good := filepath.Join(dir, "good.json")
	tor := filepath.Join(dir, "tor.txt")
	os.WriteFile(bad, []byte(detectRecords), 0o600)
	os.WriteFile(good, []byte(benignRecords), 0o600)
	os.WriteFile(tor, []byte("# exits\n185.220.101.4\n"), 0o600)

	code, out, errOut := runDetectCmd("--input", bad, "--output", "json", "--threat-list", "tor-exits="+tor, "--stats")
	if code != 1 {
		t.Fatalf("findings: exit %d, stderr %s", code, errOut)
	}
	var fs []detect.Finding
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		t.Fatalf("output is not a JSON array of findings: %v\n%s", err, out)
	}
	types := map[string]bool{}
	for _, f := range fs {
		types[f.Type] = true
	}
	if len(fs) != 2 || !types["Stealth:IAMUser/CloudTrailLoggingDisabled"] || !types["UnauthorizedAccess:IAMUser/TorIPCaller"] {
		t.Fatalf("findings %v", types)
	}
	if !strings.Contains(errOut, "2 events, 2 findings") || !strings.Contains(errOut, "events/s") {
		t.Fatalf("--stats: %q", errOut)
	}

	code, out, _ = runDetectCmd("--input", bad)
	if code != 1 || !strings.Contains(out, "SEVERITY") || !strings.Contains(out, "CloudTrailLoggingDisabled") {
		t.Fatalf("table: exit %d\n%s", code, out)
	}
	code, out, _ = runDetectCmd("--input", good, "--output", "json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("benign: exit %d %q", code, out)
	}

	for _, args := range [][]string{
		{},
		{"--input", good, "--output", "xml"},
		{"--input", good, "--threat-list", "nofile"},
		{"--input", good, "--learning-period", "-1h"},
		{"--input", good, "--bogus"},
	} {
		if code, _, _ := runDetectCmd(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runDetectCmd("--input", filepath.Join(dir, "absent.json")); code != 2 || !strings.Contains(errOut, "absent.json") {
		t.Errorf("missing input: exit %d %q", code, errOut)
	}
}

// TestDetectSigmaRules: --sigma-rules runs the directory's CloudTrail rules, each match a
// finding carrying the rule's title, id, author and level; a rule that cannot be loaded
// is named on stderr with the reason while the others run; a directory that cannot be
// read is a usage error.
func TestDetectSigmaRules(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	os.MkdirAll(filepath.Join(rules, "aws"), 0o700)
	head := "logsource:\n  product: aws\n  service: cloudtrail\n"
	os.WriteFile(filepath.Join(rules, "aws", "list_buckets.yml"), []byte("title: Bucket Enumeration By A User\nid: 6c3b3f2e-7d7a-4f51-9a55-2f1f4b8a9c01\n"+
		"author: Phantom tests\nlevel: high\ntags: [attack.discovery, attack.t1619]\n"+head+
		"detection:\n  selection:\n    eventSource: s3.amazonaws.com\n    eventName: ListBuckets\n    userIdentity.type: IAMUser\n  condition: selection\n"), 0o600)
	os.WriteFile(filepath.Join(rules, "aws", "broken.yml"), []byte("title: Uses Windash\nid: 6c3b3f2e-7d7a-4f51-9a55-2f1f4b8a9c02\n"+head+
		"detection:\n  selection:\n    eventName|windash: x\n  condition: selection\n"), 0o600)
	os.WriteFile(filepath.Join(rules, "windows.yml"), []byte("title: Not CloudTrail\nlogsource:\n  product: windows\ndetection:\n  s:\n    EventID: 1\n  condition: s\n"), 0o600)
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(benignRecords), 0o600)

	code, out, errOut := runDetectCmd("--input", good, "--output", "json", "--sigma-rules", rules)
	if code != 1 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var fs []detect.Finding
	if err := json.Unmarshal([]byte(out), &fs); err != nil || len(fs) != 1 {
		t.Fatalf("findings %v: %s", err, out)
	}
	f := fs[0]
	if f.Type != "Discovery:IAMUser/Sigma!6c3b3f2e-7d7a-4f51-9a55-2f1f4b8a9c01" || f.Title != "Bucket Enumeration By A User" || f.Severity != 8 ||
		!strings.Contains(f.Description, "by Phantom tests") || f.Resource.AccessKeyDetails.UserName != "alice" {
		t.Errorf("finding %+v", f)
	}
	if !strings.Contains(errOut, "1 Sigma rules loaded from "+rules+" (1 for other log sources skipped)") ||
		!strings.Contains(errOut, "Sigma rule not loaded: aws/broken.yml (Uses Windash): search selection: field eventName: modifier \"windash\" is not supported") {
		t.Errorf("stderr %q", errOut)
	}
	if code, _, errOut := runDetectCmd("--input", good, "--sigma-rules", filepath.Join(dir, "absent")); code != 2 || !strings.Contains(errOut, "absent") {
		t.Errorf("absent rules directory: exit %d %q", code, errOut)
	}
}

// TestDetectReadsWhatItCan: a broken file, a record in a time layout neither CloudTrail
// nor Panther writes (a time without a zone) and a labels.json beside the logs do not
// stop the analysis of the rest; each is named, and the exit status tells findings (1)
// from unreadable input (2) from both (3). Panther's own layout is read (as UTC).
// The old code stopped at the first bad record, printed no findings, exited 1 for either
// and counted labels.json's objects as events.
func TestDetectReadsWhatItCan(t *testing.T) {
	write := func(dir, name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const labels = `[{"file": "bad.json", "label": "malicious"}, {"file": "good.json", "label": "benign"}]`
	const noZone = `{"enabled": true, "event": {"eventName": "ListUsers", "eventSource": "iam.amazonaws.com", "eventTime": "2025-01-21T17:49:47"}}` + "\n"
	const panther = `{"enabled": true, "event": {"eventName": "ListUsers", "eventSource": "iam.amazonaws.com", "eventTime": "2025-01-21 17:49:48.000000000"}}` + "\n"

	mixed := t.TempDir()
	write(mixed, "a-broken.json", `{"Records":[{"eventName":`)
	write(mixed, "b-times.jsonl", noZone+panther+`{"enabled": true, "event": {"eventName": "ListUsers", "eventSource": "iam.amazonaws.com", "eventTime": "2025-01-21T17:49:47Z"}}`+"\n")
	write(mixed, "c-bad.json", detectRecords)
	write(mixed, "labels.json", labels)
	code, out, errOut := runDetectCmd("--input", mixed, "--output", "json")
	var fs []detect.Finding
	if err := json.Unmarshal([]byte(out), &fs); err != nil || len(fs) == 0 {
		t.Fatalf("the findings of the readable files are missing (%v):\n%s\n%s", err, out, errOut)
	}
	if code != 3 {
		t.Errorf("findings with unreadable input: exit %d, want 3\n%s", code, errOut)
	}
	for _, want := range []string{
		"could not read " + filepath.Join(mixed, "a-broken.json") + ": ",
		"could not read " + filepath.Join(mixed, "b-times.jsonl") + ": 1 record(s) left out, the first: record 0: eventTime \"2025-01-21T17:49:47\" is neither RFC 3339",
		"skipped " + filepath.Join(mixed, "labels.json") + ": not CloudTrail",
		"read 4 events from 2 files of " + mixed + "; could not read 1 file(s) and 1 record(s)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	for _, tc := range []struct {
		name  string
		files map[string]string
		code  int
		want  string
	}{
		{"benign with a labels file beside it", map[string]string{"good.json": benignRecords, "labels.json": labels}, 0, "skipped "},
		{"no findings, a broken file", map[string]string{"good.json": benignRecords, "broken.json": "{"}, 2, "could not read 1 file(s)"},
		{"only a labels file", map[string]string{"labels.json": labels}, 2, "no CloudTrail events could be read"},
		{"no event files at all", map[string]string{"notes.txt": "hello"}, 2, "no CloudTrail events could be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				write(dir, name, content)
			}
			code, _, errOut := runDetectCmd("--input", dir)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, want %d and %q on stderr:\n%s", code, tc.code, tc.want, errOut)
			}
		})
	}
}
