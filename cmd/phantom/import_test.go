package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// TestImportAWSIAM runs the command on the documented-shape account: the spec it writes
// validates, and what it could not carry is on stderr and in the file's header alike.
func TestImportAWSIAM(t *testing.T) {
	out := filepath.Join(t.TempDir(), "perimeter.yaml")
	var stdout, stderr bytes.Buffer
	code := run([]string{"import", "aws-iam", "--input", "../../internal/iamimport/testdata/documented.json", "--output", out,
		"--region", "eu-west-1", "--oidc-provider", "https://token.actions.githubusercontent.com=sts.amazonaws.com"},
		strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	spec, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) < 2 || !strings.Contains(lines[len(lines)-1], "account 111122223333: 3 managed policies, 1 groups, 2 users, 3 roles carried; 11 notes") {
		t.Errorf("stderr summary: %q", lines[len(lines)-1])
	}
	for _, l := range lines[:len(lines)-1] {
		note, ok := strings.CutPrefix(l, "phantom import: not carried as it was: ")
		if !ok || !bytes.Contains(spec, []byte("# - "+note+"\n")) {
			t.Errorf("stderr line %q is not a note in the file's header", l)
		}
	}
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"config", "validate", out}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("config validate: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "valid: account 111122223333 in eu-west-1, 2 users, 1 groups, 3 roles, 1 OIDC providers") {
		t.Errorf("config validate: %s", stdout.String())
	}

	// A malformed --oidc-provider and an unreadable input are usage errors, not specs.
	if code := run([]string{"import", "aws-iam", "--input", "../../internal/iamimport/testdata/documented.json", "--oidc-provider", "https://x"},
		strings.NewReader(""), &stdout, &stderr); code != 2 {
		t.Errorf("--oidc-provider without client ids: exit %d", code)
	}
	if code := run([]string{"import", "aws-iam", "--input", "-"}, strings.NewReader(`{"IsTruncated": true}`), &stdout, &stderr); code != 1 {
		t.Errorf("a truncated page on stdin: exit %d", code)
	}
}

// TestVersion: --version names the build.
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--version"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "phantom ") || !strings.Contains(stdout.String(), "(revision ") || !strings.Contains(stdout.String(), " go1.") {
		t.Errorf("--version printed %q", stdout.String())
	}
}

// TestManPages: one page per command, the import's among them, in roff that man reads.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"man", "--dir", dir}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, page := range []string{"phantom.1", "phantom-import-aws-iam.1", "phantom-gateway.1", "phantom-completion-bash.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte(".nh\n.TH \"PHANTOM\" \"1\" \"Jan 2026\"")) || !bytes.Contains(b, []byte(".SH NAME")) {
			t.Errorf("%s does not start as a dated section 1 page:\n%.200s", page, b)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "phantom-import-aws-iam.1")); !bytes.Contains(b, []byte("oidc-provider")) {
		t.Error("the import's page lacks its flags")
	}
	if _, err := exec.LookPath("man"); err == nil {
		out, err := exec.Command("man", "-l", filepath.Join(dir, "phantom-import-aws-iam.1")).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("get-account-authorization-details")) {
			t.Errorf("man -l: %v\n%s", err, out)
		}
	}
}

// TestCompletion: the scripts cobra generates from the command tree parse in their
// shells, and completing "phantom imp" offers import.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"completion", shell}, strings.NewReader(""), &stdout, &stderr); code != 0 || stdout.Len() == 0 {
			t.Fatalf("completion %s: exit %d: %s", shell, code, stderr.String())
		}
		if shell != "bash" {
			continue
		}
		bash := testenv.LookPath(t, "bash")
		f := filepath.Join(t.TempDir(), "phantom.bash")
		if err := os.WriteFile(f, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bash, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("bash -n: %v: %s", err, out)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"__complete", "imp"}, strings.NewReader(""), &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "import\t") {
		t.Errorf("__complete imp: exit %d: %q", code, stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"__complete", "import", "aws-iam", "--input", "x", "--oi"}, strings.NewReader(""), &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "--oidc-provider") {
		t.Errorf("__complete import aws-iam --input x --oi: exit %d: %q", code, stdout.String())
	}
}
