package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// TestClientExamples runs every client example of examples/clients against phantom up, as
// a user does after `source phantom-data/demo.env`: from another directory, with nothing
// from this environment's AWS settings, so the README never shows code that does not run.
// The aws-sdk-go-v2 example is also compiled by go vet and go build ./... with the module.
func TestClientExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("runs phantom up")
	}
	testenv.LookPath(t, "curl")
	testenv.LookPath(t, "aws")
	python := testenv.Python(t, "boto3")
	examples, err := filepath.Abs("../../examples/clients")
	if err != nil {
		t.Fatal(err)
	}
	bin := buildPhantom(t)
	goClient := filepath.Join(t.TempDir(), "go-client")
	if out, err := exec.Command("go", "build", "-o", goClient, "../../examples/clients/go").CombinedOutput(); err != nil {
		t.Fatalf("go build examples/clients/go: %v\n%s", err, out)
	}
	u := startUp(t, bin)

	// The environment of a shell that sourced demo.env, and a HOME of its own (no
	// ~/.aws), in a directory other than the data directory's parent.
	home := t.TempDir()
	env := []string{"HOME=" + home}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "PHANTOM_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	for k, v := range u.env {
		env = append(env, k+"="+v)
	}
	user := regexp.QuoteMeta(`"principal":"arn:aws:iam::123456789012:user/demo"`)
	role := `arn:aws:sts::123456789012:assumed-role/service-a/phantom-credentials-\d+`
	// Service A runs as a workload on the demo node: no keys, the agent and the proxy.
	workload := []string{"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + u.env["PHANTOM_IMDS_ENDPOINT"], "HTTPS_PROXY=" + u.env["PHANTOM_EGRESS_PROXY"]}
	for _, tc := range []struct {
		name     string
		cmd      []string
		workload bool
		want     []string // regular expressions, each matching the output
	}{
		{"curl", []string{"bash", filepath.Join(examples, "curl.sh")}, false,
			[]string{`(?m)^\{"caller":\{` + user + `.*"orders":`, `(?m)^\{"caller":\{` + user + `.*"order":\{"id":"\d+","item":\{"item":"book"\}`, `(?m)^403$`}},
		{"AWS CLI", []string{"bash", filepath.Join(examples, "awscli.sh")}, false,
			[]string{`(?m)^arn:aws:iam::123456789012:user/demo$`, `(?m)^` + role + `$`, `(?m)^ASIA[A-Z0-9]{16}$`, `"FindingIds": \[`}},
		{"boto3", []string{python, filepath.Join(examples, "boto3_client.py")}, false,
			[]string{`(?m)^caller: ` + role + `$`, `(?m)^200 \{"caller":\{"principal":"` + role}},
		{"Service A, a workload on the demo node (boto3)", []string{python, filepath.Join(examples, "service_a.py")}, true,
			[]string{`(?m)^credentials: iam-role ASIA`, `(?m)^orders API: 200 \{"caller":\{"principal":"` + regexp.QuoteMeta(nodePrincipal) + `"`,
				`(?m)^example.com: refused by the egress proxy$`}},
		{"aws-sdk-go-v2", []string{goClient}, false,
			[]string{`(?m)^caller: ` + role + `$`, `(?m)^201 \{"caller":\{"principal":"` + role + `".*"item":\{"item":"book"\}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(tc.cmd[0], tc.cmd[1:]...)
			cmd.Dir, cmd.Env = t.TempDir(), env
			if tc.workload {
				cmd.Env = append(withoutKeys(env), workload...)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(tc.cmd, " "), err, out)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(w).Match(out) {
					t.Errorf("output does not match %s:\n%s", w, out)
				}
			}
		})
	}
}

// withoutKeys is env without the demo user's access key (as env -u does).
func withoutKeys(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k != "AWS_ACCESS_KEY_ID" && k != "AWS_SECRET_ACCESS_KEY" && k != "AWS_SESSION_TOKEN" {
			out = append(out, kv)
		}
	}
	return out
}
