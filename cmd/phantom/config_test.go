package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	// Two problems: both are printed, in file order, and the exit status is 1.
	if err := os.WriteFile(bad, []byte("version: 1\naccount: \"1234\"\nregoin: us-east-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{
			name:       "the demo perimeter is valid",
			args:       []string{"config", "validate", "../../examples/demo.yaml"},
			wantStdout: "../../examples/demo.yaml: valid: account 123456789012 in us-east-1, 1 users, 0 groups, 2 roles, 1 OIDC providers, 1 APIs, 1 endpoints, 1 nodes\n",
		},
		{
			name:     "every problem is printed with its location",
			args:     []string{"config", "validate", bad},
			wantCode: 1,
			wantStderr: bad + `:2:10: account: "1234" is not a 12-digit account id; write the 12 digits in quotes, e.g. "123456789012"` + "\n" +
				bad + `:3:1: unknown key "regoin"; did you mean "region"?` + "\n" +
				"phantom: " + bad + ": 2 problem(s)\n",
		},
		{
			name:       "a missing file is an error",
			args:       []string{"config", "validate", filepath.Join(dir, "nope.yaml")},
			wantCode:   1,
			wantStderr: "phantom: open perimeter spec: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory\n",
		},
		{
			name:       "the file argument is required",
			args:       []string{"config", "validate"},
			wantCode:   2,
			wantStderr: "phantom: accepts 1 arg(s), received 0\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, nil, &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d (stderr: %s)", code, tc.wantCode, stderr.String())
			}
			if stdout.String() != tc.wantStdout {
				t.Errorf("stdout:\n got: %q\nwant: %q", stdout.String(), tc.wantStdout)
			}
			if stderr.String() != tc.wantStderr {
				t.Errorf("stderr:\n got: %q\nwant: %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}
