package sts

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// awsCLI runs the AWS CLI against the test server with only the given credentials: no
// config or credentials files, no instance metadata.
func (e *env) awsCLI(t *testing.T, creds aws.Credentials, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := needTool(t, "aws")
	cmd := exec.Command(bin, append([]string{"--endpoint-url", e.srv.URL, "--output", "json"}, args...)...)
	cmd.Env = testenv.AWSEnv(e.caFile, "us-east-1", creds)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

type cliCreds struct {
	Credentials struct {
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
		SessionToken    string
		Expiration      string
	}
	AssumedRoleUser struct {
		AssumedRoleID string `json:"AssumedRoleId"`
		Arn           string
	}
}

func (c *cliCreds) aws() aws.Credentials {
	return aws.Credentials{AccessKeyID: c.Credentials.AccessKeyID, SecretAccessKey: c.Credentials.SecretAccessKey, SessionToken: c.Credentials.SessionToken}
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}

// TestAWSCLI drives the AWS CLI (aws-cli v1 / botocore's query protocol) over HTTPS.
func TestAWSCLI(t *testing.T) {
	needTool(t, "aws")
	e := newEnv(t)
	e.serve(t)
	alice := e.users["alice"]

	out, stderr, err := e.awsCLI(t, alice, "sts", "get-caller-identity")
	if err != nil {
		t.Fatalf("get-caller-identity: %v\n%s", err, stderr)
	}
	var id struct{ UserId, Account, Arn string }
	decodeJSON(t, out, &id)
	if id.Arn != "arn:aws:iam::123456789012:user/alice" || id.Account != testAccount {
		t.Fatalf("identity %+v", id)
	}

	out, stderr, err = e.awsCLI(t, alice, "sts", "assume-role", "--role-arn", appARN, "--role-session-name", "cli-session",
		"--duration-seconds", "900", "--tags", "Key=team,Value=payments", "--transitive-tag-keys", "team", "--source-identity", "alice")
	if err != nil {
		t.Fatalf("assume-role: %v\n%s", err, stderr)
	}
	var ar cliCreds
	decodeJSON(t, out, &ar)
	if ar.AssumedRoleUser.Arn != "arn:aws:sts::123456789012:assumed-role/app/cli-session" || !strings.HasPrefix(ar.Credentials.AccessKeyID, "ASIA") {
		t.Fatalf("assume-role %s", out)
	}
	out, stderr, err = e.awsCLI(t, ar.aws(), "sts", "get-caller-identity")
	if err != nil {
		t.Fatalf("get-caller-identity as the role: %v\n%s", err, stderr)
	}
	decodeJSON(t, out, &id)
	if id.Arn != ar.AssumedRoleUser.Arn || !strings.HasSuffix(id.UserId, ":cli-session") {
		t.Fatalf("identity as the role %+v", id)
	}

	out, stderr, err = e.awsCLI(t, alice, "sts", "get-session-token", "--duration-seconds", "900")
	if err != nil {
		t.Fatalf("get-session-token: %v\n%s", err, stderr)
	}
	var st cliCreds
	decodeJSON(t, out, &st)
	out, stderr, err = e.awsCLI(t, st.aws(), "sts", "get-caller-identity")
	if err != nil {
		t.Fatalf("get-caller-identity with the session token: %v\n%s", err, stderr)
	}
	decodeJSON(t, out, &id)
	if id.Arn != "arn:aws:iam::123456789012:user/alice" {
		t.Fatalf("identity with session token %+v", id)
	}

	// Denials: the CLI prints "An error occurred (Code) when calling the X operation: Message".
	denials := []struct {
		name  string
		creds aws.Credentials
		args  []string
		want  string
	}{
		{"untrusted principal", e.users["bob"], []string{"sts", "assume-role", "--role-arn", appARN, "--role-session-name", "bob"},
			"An error occurred (AccessDenied) when calling the AssumeRole operation: User: arn:aws:iam::123456789012:user/bob is not authorized to perform: sts:AssumeRole on resource: " + appARN},
		{"wrong ExternalId", alice, []string{"sts", "assume-role", "--role-arn", partnerARN, "--role-session-name", "pp", "--external-id", "wrong-id"},
			"An error occurred (AccessDenied) when calling the AssumeRole operation"},
		{"duration over the role's max", alice, []string{"sts", "assume-role", "--role-arn", appARN, "--role-session-name", "pp", "--duration-seconds", "7200"},
			"An error occurred (ValidationError) when calling the AssumeRole operation: The requested DurationSeconds exceeds the MaxSessionDuration set for this role."},
		{"bad session name", alice, []string{"sts", "assume-role", "--role-arn", appARN, "--role-session-name", "has space"},
			"An error occurred (ValidationError) when calling the AssumeRole operation: 1 validation error detected: Value 'has space' at 'roleSessionName'"},
		{"malformed session policy", alice, []string{"sts", "assume-role", "--role-arn", appARN, "--role-session-name", "pp", "--policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow"}]}`},
			"An error occurred (MalformedPolicyDocument) when calling the AssumeRole operation: Syntax errors in policy."},
		{"unknown key", aws.Credentials{AccessKeyID: "AKIAUNKNOWNUNKNOWN00", SecretAccessKey: "secret"}, []string{"sts", "get-caller-identity"},
			"An error occurred (InvalidClientTokenId) when calling the GetCallerIdentity operation: The security token included in the request is invalid."},
	}
	for _, d := range denials {
		t.Run(d.name, func(t *testing.T) {
			_, stderr, err := e.awsCLI(t, d.creds, d.args...)
			if err == nil || !strings.Contains(stderr, d.want) {
				t.Fatalf("err %v, stderr %q; want %q", err, stderr, d.want)
			}
		})
	}
	noSecrets(t, e.audit.all(), alice.SecretAccessKey, ar.Credentials.SecretAccessKey, ar.Credentials.SessionToken, st.Credentials.SessionToken)
}

// TestAWSCLIUnsigned: --no-sign-request sends no Authorization at all.
func TestAWSCLIUnsigned(t *testing.T) {
	needTool(t, "aws")
	e := newEnv(t)
	e.serve(t)
	_, stderr, err := e.awsCLI(t, aws.Credentials{}, "sts", "get-caller-identity", "--no-sign-request")
	want := "An error occurred (MissingAuthenticationToken) when calling the GetCallerIdentity operation: Request is missing Authentication Token"
	if err == nil || !strings.Contains(stderr, want) {
		t.Fatalf("err %v, stderr %q", err, stderr)
	}
}
