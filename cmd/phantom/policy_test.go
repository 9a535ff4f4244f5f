package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// policyTestdata is the validator's corpus: one policy per finding.
const policyTestdata = "../../internal/policy/testdata/validate"

func runPolicy(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"policy"}, args...), strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func policyFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyValidateClean(t *testing.T) {
	code, stdout, stderr := runPolicy(t, "", "validate", "--type", "identity", filepath.Join(policyTestdata, "clean.json"))
	if code != 0 || stdout != "" || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and no output", code, stdout, stderr)
	}
}

func TestPolicyValidateText(t *testing.T) {
	effect := filepath.Join(policyTestdata, "invalid_effect.json")
	notAction := filepath.Join(policyTestdata, "allow_with_not_action.json")
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"error", []string{effect}, 1, []string{
			effect + `:4:15: ERROR INVALID_EFFECT: Effect must be "Allow" or "Deny", not "allow" (Statement.Effect)`}},
		{"security warning only: exit 0", []string{notAction}, 0, []string{
			notAction + ":5:5: SECURITY_WARNING ALLOW_WITH_NOT_ACTION: Allow with NotAction allows every action not listed, including those of services added later; list the allowed actions instead (Statement.NotAction)"}},
		{"several files, in order", []string{notAction, effect}, 1, []string{
			notAction + ":5:5: SECURITY_WARNING ALLOW_WITH_NOT_ACTION: Allow with NotAction allows every action not listed, including those of services added later; list the allowed actions instead (Statement.NotAction)",
			effect + `:4:15: ERROR INVALID_EFFECT: Effect must be "Allow" or "Deny", not "allow" (Statement.Effect)`}},
		{"kind adds errors", []string{"--type", "identity", filepath.Join(policyTestdata, "unsupported_principal_identity.json")}, 1, []string{
			filepath.Join(policyTestdata, "unsupported_principal_identity.json") + ":5:5: ERROR UNSUPPORTED_PRINCIPAL: an identity policy cannot have Principal: it applies to the principal it is attached to; remove it (Statement.Principal)"}},
		{"kind unknown: Parse accepts Principal", []string{filepath.Join(policyTestdata, "unsupported_principal_identity.json")}, 0, nil},
		{"invalid JSON without a path", []string{filepath.Join(policyTestdata, "invalid_json.json")}, 1, []string{
			filepath.Join(policyTestdata, "invalid_json.json") + ":4:50: ERROR JSON_SYNTAX_ERROR: expected ',' or '}' in JSON object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runPolicy(t, "", append([]string{"validate"}, tt.args...)...)
			if code != tt.code || stderr != "" {
				t.Fatalf("exit %d (stderr %q), want %d", code, stderr, tt.code)
			}
			want := ""
			if len(tt.want) > 0 {
				want = strings.Join(tt.want, "\n") + "\n"
			}
			if stdout != want {
				t.Fatalf("stdout:\n%s\nwant:\n%s", stdout, want)
			}
		})
	}
}

func TestPolicyValidateStdin(t *testing.T) {
	code, stdout, _ := runPolicy(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject"}}`,
		"validate", "--type", "identity", "-")
	want := "<stdin>:1:37: ERROR MISSING_RESOURCE: statement has neither Resource nor NotResource, which every statement outside a resource-based policy needs (Statement)\n"
	if code != 1 || stdout != want {
		t.Fatalf("exit %d, stdout %q; want 1, %q", code, stdout, want)
	}
}

func TestPolicyValidateJSON(t *testing.T) {
	files := []string{filepath.Join(policyTestdata, "clean.json"), filepath.Join(policyTestdata, "pass_role_star.json"), filepath.Join(policyTestdata, "invalid_cidr.json")}
	code, stdout, stderr := runPolicy(t, "", append([]string{"validate", "--output", "json"}, files...)...)
	if code != 1 || stderr != "" {
		t.Fatalf("exit %d, stderr %q; want 1", code, stderr)
	}
	var got []jsonFinding
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	want := []jsonFinding{
		{File: files[1], Line: 6, Column: 17, Severity: "SECURITY_WARNING", Code: "PASS_ROLE_WITH_STAR_IN_RESOURCE",
			Message: `iam:PassRole with Resource "*" lets the caller pass any role to a service; name the roles that may be passed`, Path: "Statement.Resource"},
		{File: files[2], Line: 9, Column: 68, Severity: "ERROR", Code: "INVALID_CONDITION_VALUE",
			Message: `IP condition value "192.0.2.300/32" is not an IPv4 or IPv6 address or CIDR block`, Path: "Statement[1].Condition.IpAddress.aws:SourceIp[1]"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// A clean file alone prints an empty array, not null.
	code, stdout, _ = runPolicy(t, "", "validate", "-o", "json", files[0])
	if code != 0 || strings.TrimSpace(stdout) != "[]" {
		t.Fatalf("exit %d, stdout %q; want 0 and []", code, stdout)
	}
}

func TestPolicyValidateUnusable(t *testing.T) {
	clean := filepath.Join(policyTestdata, "clean.json")
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"missing file", []string{clean, filepath.Join(t.TempDir(), "nope.json")}, "nope.json: no such file"},
		{"directory", []string{t.TempDir()}, "is a directory"},
		{"bad type", []string{"--type", "group", clean}, `--type "group"`},
		{"bad output", []string{"--output", "yaml", clean}, `--output "yaml"`},
		{"no files", nil, "requires at least 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runPolicy(t, "", append([]string{"validate"}, tt.args...)...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2, nothing printed, stderr naming %q", code, stdout, stderr, tt.stderr)
			}
		})
	}
}

type simResult struct {
	Decision string `json:"decision"`
	Matched  []struct {
		Policy    int    `json:"policy"`
		Statement string `json:"statement"`
	} `json:"matched"`
	Reason string `json:"reason"`
}

const simCase = `{"policies": [
  {"type": "identity", "document": {"Version": "2012-10-17", "Statement": [
    {"Sid": "Read", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::reports/*",
     "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}]}},
  {"type": "resource", "document": {"Version": "2012-10-17", "Statement": [
    {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::reports/*",
     "Condition": {"Bool": {"aws:SecureTransport": false}}}]}}],
 "request": {"principal": "arn:aws:iam::111122223333:user/ana", "action": "s3:GetObject",
   "resource": "arn:aws:s3:::reports/q1.csv", "context": {"aws:SourceIp": "%IP%", "aws:SecureTransport": %TLS%}}}`

func simCaseWith(ip, tls string) string {
	return strings.NewReplacer("%IP%", ip, "%TLS%", tls).Replace(simCase)
}

func decodeSim(t *testing.T, stdout string) []simResult {
	t.Helper()
	var got []simResult
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("output is not a JSON array of results: %v\n%s", err, stdout)
	}
	return got
}

func TestPolicySimulate(t *testing.T) {
	t.Run("single case", func(t *testing.T) {
		file := policyFile(t, "case.json", simCaseWith("192.0.2.7", "true"))
		code, stdout, stderr := runPolicy(t, "", "simulate", "--input", file)
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		got := decodeSim(t, stdout)
		if len(got) != 1 || got[0].Decision != "Allow" || len(got[0].Matched) != 1 ||
			got[0].Matched[0].Policy != 0 || got[0].Matched[0].Statement != "Read" || got[0].Reason == "" {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("array from stdin, in order", func(t *testing.T) {
		in := "[" + simCaseWith("192.0.2.7", "true") + "," + simCaseWith("198.51.100.1", "true") + "," + simCaseWith("192.0.2.7", "false") + "]"
		code, stdout, stderr := runPolicy(t, in, "simulate", "--input", "-")
		if code != 0 || stderr != "" {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		got := decodeSim(t, stdout)
		var decisions []string
		for _, r := range got {
			decisions = append(decisions, r.Decision)
		}
		if want := []string{"Allow", "ImplicitDeny", "ExplicitDeny"}; !reflect.DeepEqual(decisions, want) {
			t.Fatalf("got %v, want %v", decisions, want)
		}
		// The explicit deny names the resource policy's unnamed statement by index.
		if m := got[2].Matched; len(m) != 1 || m[0].Policy != 1 || m[0].Statement != "0" {
			t.Fatalf("matched %+v", m)
		}
		if got[1].Matched == nil || len(got[1].Matched) != 0 {
			t.Fatalf("implicit deny matched %+v, want []", got[1].Matched)
		}
	})
}

func TestPolicySimulateUnusable(t *testing.T) {
	good := simCaseWith("192.0.2.7", "true")
	tests := []struct {
		name, in, stderr string
	}{
		{"bad JSON", "[" + good + ",\n  {\"policies\": ]", "invalid JSON at line"},
		{"unknown field", "[" + good + "," + strings.Replace(good, `"request"`, `"requets"`, 1) + "]", `case 1: unknown field "requets"`},
		{"unknown policy type", strings.Replace(good, `"type": "resource"`, `"type": "bucket"`, 1), `case 0: policy 1: unknown policy type "bucket"`},
		{"policy parse error", "[" + good + "," + good + "," + strings.Replace(good, `"Effect": "Deny"`, `"Effect": "Block"`, 1) + "]",
			`case 2: policy 1 (resource): line 22, column 16: INVALID_EFFECT`},
		// Documents IAM refuses for their policy type (W7, W11 of the IAM conformance cases).
		{"resource policy statement without Principal", "[" + good + "," + strings.Replace(good, `"Principal": "*", `, ``, 1) + "]",
			`case 1: policy 1 (resource): line 14, column 5: MISSING_PRINCIPAL`},
		{"identity policy with Principal", strings.Replace(good, `"Effect": "Allow",`, `"Effect": "Allow", "Principal": "*",`, 1),
			`case 0: policy 0 (identity): line 3, column 40: UNSUPPORTED_PRINCIPAL`},
		{"endpoint policy without Principal", strings.Replace(strings.Replace(good, `"type": "resource"`, `"type": "endpoint"`, 1), `"Principal": "*", `, ``, 1),
			`case 0: policy 1 (endpoint): line 6, column 5: MISSING_PRINCIPAL`},
		{"missing action", strings.Replace(good, `"action": "s3:GetObject",`, ``, 1), `case 0: request: missing "action"`},
		{"bad context value", strings.Replace(good, `"aws:SecureTransport": true`, `"aws:SecureTransport": null`, 1), `case 0: request: context key "aws:SecureTransport"`},
		{"empty input", "", "input is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runPolicy(t, tt.in, "simulate", "--input", "-")
			if code != 2 || stdout != "" || !strings.Contains(stderr, tt.stderr) || !strings.Contains(stderr, "<stdin>") {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2, nothing printed, stderr naming %q", code, stdout, stderr, tt.stderr)
			}
		})
	}
	t.Run("unreadable file", func(t *testing.T) {
		code, stdout, stderr := runPolicy(t, "", "simulate", "--input", filepath.Join(t.TempDir(), "missing.json"))
		if code != 2 || stdout != "" || !strings.Contains(stderr, "missing.json") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
	t.Run("no input flag", func(t *testing.T) {
		code, _, stderr := runPolicy(t, "", "simulate")
		if code != 2 || !strings.Contains(stderr, "--input is required") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})
}
