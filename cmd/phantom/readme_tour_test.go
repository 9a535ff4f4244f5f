package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// tourStep is what one ```sh block of the README must do: the block contains match (so a
// block added, removed or moved is noticed here), exits 0, and its output matches every
// pattern of want and none of wantNot.
type tourStep struct {
	match         string
	want, wantNot []string
}

const (
	tourUser = `arn:aws:iam::123456789012:user/demo`
	tourRole = `arn:aws:sts::123456789012:assumed-role/service-a/`
)

// tourSteps are the README's ```sh blocks, in order.
var tourSteps = []tourStep{
	{match: "source phantom-data/demo.env"},
	{match: "curl -i", want: []string{`(?m)^HTTP/2 403`, `(?mi)^x-amzn-errortype: AccessDeniedException`, `(?mi)^x-amzn-requestid: [0-9a-f-]{36}`,
		`is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/orders with an explicit deny`,
		`"encodedAuthorizationMessage":"`}},
	{match: "aws sts decode-authorization-message", want: []string{`"allowed": false`, `"explicitDeny": true`,
		`"statementId": "OnlyThroughTheDemoEndpoint"`, `"arn": "` + tourUser + `"`}},
	{match: "phantom audit show", want: []string{`"errorCode": "AccessDenied"`, `"decision": "ExplicitDeny"`, `"path": "/prod/orders"`}},
	{match: "for path in users roles keys secrets backups", want: []string{`users 403  users 403  roles 403  roles 403`,
		`Recon:IAMUser/AccessDeniedSweep`}},
	{match: `"$PHANTOM_API_URL"`, want: []string{`"principal":"` + tourUser + `","vpce":"vpce-0123456789abcdef0"`, `"orders":\[`}},
	{match: `/prod/admin/users"`, want: []string{`"message":"User: ` + tourUser + ` is not authorized to perform: execute-api:Invoke`},
		wantNot: []string{`explicit deny`}},
	{match: "aws sts assume-role", want: []string{`"Arn": "` + tourUser + `"`, `"principal":"` + tourRole + `demo"`}},
	{match: "phantom iam revoke-sessions --role service-a", want: []string{`"TokenIssueTimeBefore": "`, `(?m)^403$`}},
	{match: "source phantom-data/demo.env"},
	{match: "examples/clients/curl.sh", want: []string{`"principal":"` + tourUser + `".*"orders":\[`, `"order":\{"id":"\d+","item":\{"item":"book"\}`, `(?m)^403$`}},
	{match: "examples/clients/awscli.sh", want: []string{`(?m)^` + tourUser + `$`, `(?m)^` + tourRole + `phantom-credentials-\d+$`, `(?m)^ASIA[A-Z0-9]{16}$`, `"FindingIds": \[`}},
	{match: "examples/clients/boto3_client.py", want: []string{`(?m)^caller: ` + tourRole, `(?m)^200 \{"caller":\{"principal":"` + tourRole}},
	{match: "go run ./examples/clients/go", want: []string{`(?m)^caller: ` + tourRole, `(?m)^201 \{"caller":\{"principal":"` + tourRole}},
	{match: "phantom sigv4 verify --request req.txt", want: []string{`"valid": true`, `"service": "execute-api"`}},
	{match: "phantom iam list-access-keys --user demo", want: []string{`"UserName": "demo"`,
		`An error occurred \(NoSuchEntity\) when calling the CreateAccessKey operation: The user with name mallory cannot be found.`, `(?m)^exit status 254$`}},
	{match: `phantom findings archive "$ID"`, want: []string{`"type": "`, `(?m)^archived [0-9a-f]{32} \S+`, `"FindingIds": \[`,
		`Recon:IAMUser/AccessDeniedSweep`, `(?m)^exit status 1$`}},
	{match: "latest/api/token", want: []string{`"Code": "Success"`, `"AccessKeyId": "ASIA`}},
	{match: "examples/clients/service_a.py", want: []string{`(?m)^credentials: iam-role ASIA`,
		`(?m)^orders API: 200 \{"caller":\{"principal":"` + tourRole + `service-a-1"`, `(?m)^example.com: refused by the egress proxy$`}},
	{match: "$PHANTOM_METRICS_URL", want: []string{`(?m)^phantom_gateway_requests_total\{api="a1b2c3d4e5",reason="AccessDenied",result="deny"\} \d+`}},
	{match: "phantom export cloudformation", want: []string{`"AWS::EC2::VPCEndpoint"`, `"AWS::ApiGateway::RestApi"`}},
}

// TestReadmeTour runs every ```sh block of README.md in its written order, in one shell
// (variables and exports carry over, as in a user's), from a copy of the repository,
// against the built binary's `phantom up --port-base 0` (not the default port base, so
// nothing may assume 8443..), after `source phantom-data/demo.env` as the README says; each
// block's output is checked against tourSteps. A failing block does not stop the ones
// after it, as it would not stop a user.
func TestReadmeTour(t *testing.T) {
	if testing.Short() {
		t.Skip("runs phantom up and the README's commands")
	}
	for _, name := range []string{"bash", "curl", "jq", "aws"} {
		testenv.LookPath(t, name)
	}
	testenv.Python(t, "boto3")
	var blocks []readmeBlock
	for _, b := range readmeBlocks(t) {
		if b.lang == "sh" {
			blocks = append(blocks, b)
		}
	}
	if len(blocks) != len(tourSteps) {
		var firsts []string
		for _, b := range blocks {
			firsts = append(firsts, fmt.Sprintf("line %d: %s", b.line, strings.SplitN(b.text, "\n", 2)[0]))
		}
		t.Fatalf("README.md has %d ```sh blocks, tourSteps %d: every tour block needs its step\n%s", len(blocks), len(tourSteps), strings.Join(firsts, "\n"))
	}
	for i, b := range blocks {
		if !strings.Contains(b.text, tourSteps[i].match) {
			t.Fatalf("README.md line %d: tour block %d does not contain %q (a block was added, removed or moved):\n%s", b.line, i+1, tourSteps[i].match, b.text)
		}
	}

	repo := copyRepo(t, true)
	bin := buildPhantom(t)
	// The README's `phantom up`, from the repository, with its default poll (the tour's
	// sleeps are written for it).
	startUpIn(t, bin, filepath.Join(repo, "phantom-data"), "--poll", identity.DefaultRefreshInterval.String())

	outDir := t.TempDir()
	var script strings.Builder
	script.WriteString("set -o pipefail\n")
	for i, b := range blocks {
		fmt.Fprintf(&script, "{\n%s} >%q 2>&1 </dev/null\necho $? >%q\n", b.text,
			filepath.Join(outDir, strconv.Itoa(i)+".out"), filepath.Join(outDir, strconv.Itoa(i)+".rc"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir, cmd.Env = repo, shellEnv(t, bin)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the tour's shell: %v\n%s", err, out)
	}
	t.Logf("the tour's %d blocks ran in %s", len(blocks), time.Since(start).Round(time.Second))

	for i, b := range blocks {
		out, _ := os.ReadFile(filepath.Join(outDir, strconv.Itoa(i)+".out"))
		rc, _ := os.ReadFile(filepath.Join(outDir, strconv.Itoa(i)+".rc"))
		var problems []string
		if code := strings.TrimSpace(string(rc)); code != "0" {
			problems = append(problems, "exit status "+code)
		}
		for _, w := range matchAll(out, tourSteps[i].want) {
			problems = append(problems, "output does not match "+w)
		}
		for _, w := range tourSteps[i].wantNot {
			if regexp.MustCompile(w).Match(out) {
				problems = append(problems, "output matches "+w)
			}
		}
		if len(problems) > 0 {
			t.Errorf("README.md line %d, tour block %d:\n%s\n%s\noutput:\n%s", b.line, i+1, strings.Join(problems, "\n"), b.text, out)
		}
	}
}
