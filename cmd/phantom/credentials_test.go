package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// credentialsEnv is the environment of a process in the test: nothing AWS_ or PHANTOM_
// from the test's own environment, HOME a fresh directory (its ~/.aws is the test's), no
// instance metadata, plus extra.
func credentialsEnv(home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "PHANTOM_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return append(append(env, "HOME="+home, "AWS_EC2_METADATA_DISABLED=true", "AWS_MAX_ATTEMPTS=1"), extra...)
}

type procResult struct {
	stdout, stderr string
	code           int
}

func runProc(t *testing.T, env []string, name string, args ...string) procResult {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("%s: %v", name, err)
		}
		return procResult{out.String(), errb.String(), cmd.ProcessState.ExitCode()}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s %s did not finish in 60s (a credential_process loop?)\n%s", name, strings.Join(args, " "), errb.String())
	}
	return procResult{}
}

type processCreds struct {
	Version                                                int
	AccessKeyId, SecretAccessKey, SessionToken, Expiration string
}

// TestCredentialsProcess runs the real binary as a credential_process for the AWS CLI and
// botocore/boto3 against a real phantom sts, and its refusals: a role the caller may not
// assume, no source credentials, a profile whose source is itself, no STS URL.
func TestCredentialsProcess(t *testing.T) {
	testenv.LookPath(t, "aws")
	python := testenv.Python(t, "botocore")
	if testing.Short() {
		t.Skip("builds and runs the binary, the AWS CLI and python")
	}
	bin := buildPhantom(t)
	s := startSTS(t, bin)
	ca := filepath.Join(s.dataDir, "ca.pem")
	const app = "arn:aws:iam::123456789012:role/app"
	const partner = "arn:aws:iam::123456789012:role/partner"

	keys := map[string][2]string{}
	for _, user := range []string{"alice", "bob"} {
		var created struct {
			AccessKey struct{ AccessKeyId, SecretAccessKey string }
		}
		if err := json.Unmarshal(s.phantom(t, bin, "iam", "create-access-key", "--user", user), &created); err != nil {
			t.Fatal(err)
		}
		keys[user] = [2]string{created.AccessKey.AccessKeyId, created.AccessKey.SecretAccessKey}
	}

	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o700); err != nil {
		t.Fatal(err)
	}
	var creds strings.Builder
	for _, user := range []string{"alice", "bob"} {
		fmt.Fprintf(&creds, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n\n", user, keys[user][0], keys[user][1])
	}
	process := func(role, extra string) string {
		return fmt.Sprintf("%s credentials --role %s --sts %s --ca-bundle %s%s", bin, role, s.url, ca, extra)
	}
	config := fmt.Sprintf(`[profile demo-role]
region = us-east-1
credential_process = %s

[profile denied-role]
region = us-east-1
credential_process = %s

[profile loop]
region = us-east-1
credential_process = %s
`, process(app, " --source-profile alice --session-name cli-session"),
		process(app, " --source-profile bob"),
		process(app, "")) // no source profile: with AWS_PROFILE=loop it would source itself
	for name, data := range map[string]string{"credentials": creds.String(), "config": config} {
		if err := os.WriteFile(filepath.Join(home, ".aws", name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	envCreds := func(user string) []string {
		return credentialsEnv(home, "AWS_ACCESS_KEY_ID="+keys[user][0], "AWS_SECRET_ACCESS_KEY="+keys[user][1])
	}
	wantARN := "arn:aws:sts::123456789012:assumed-role/app/cli-session"

	// The server picks the new keys up within its poll interval.
	var direct procResult
	eventually(t, "phantom credentials with alice's key", func() error {
		direct = runProc(t, envCreds("alice"), bin, "credentials", "--role", app, "--sts", s.url, "--ca-bundle", ca, "--duration", "15m")
		if direct.code != 0 {
			return errors.New(direct.stderr)
		}
		return nil
	})

	t.Run("JSON from environment credentials", func(t *testing.T) {
		var c processCreds
		if err := json.Unmarshal([]byte(direct.stdout), &c); err != nil {
			t.Fatalf("output %q: %v", direct.stdout, err)
		}
		if c.Version != 1 || !strings.HasPrefix(c.AccessKeyId, "ASIA") || c.SecretAccessKey == "" || c.SessionToken == "" {
			t.Fatalf("credential_process JSON = %+v", c)
		}
		exp, err := time.Parse(time.RFC3339, c.Expiration)
		if err != nil {
			t.Fatalf("Expiration %q is not RFC 3339: %v", c.Expiration, err)
		}
		if d := time.Until(exp); d < 13*time.Minute || d > 16*time.Minute {
			t.Fatalf("Expiration %s is %s away, want about the 15m asked for", c.Expiration, d)
		}
	})

	t.Run("AWS CLI profile", func(t *testing.T) {
		r := runProc(t, credentialsEnv(home, "AWS_CA_BUNDLE="+ca), "aws", "sts", "get-caller-identity",
			"--profile", "demo-role", "--endpoint-url", s.url, "--output", "json")
		if r.code != 0 {
			t.Fatalf("aws sts get-caller-identity --profile demo-role: exit %d\n%s\nserver:\n%s", r.code, r.stderr, s.logs())
		}
		var who callerIdentity
		if err := json.Unmarshal([]byte(r.stdout), &who); err != nil || who.Arn != wantARN {
			t.Fatalf("caller identity %q (%v), want %s", r.stdout, err, wantARN)
		}
	})

	t.Run("boto3 or botocore session", func(t *testing.T) {
		script := `import sys
try:
    import boto3
    client = boto3.Session(profile_name="demo-role").client("sts", endpoint_url=sys.argv[1], verify=sys.argv[2])
except ImportError:
    import botocore.session
    client = botocore.session.Session(profile="demo-role").create_client("sts", endpoint_url=sys.argv[1], verify=sys.argv[2])
print(client.get_caller_identity()["Arn"])
`
		r := runProc(t, credentialsEnv(home), python, "-c", script, s.url, ca)
		if r.code != 0 || strings.TrimSpace(r.stdout) != wantARN {
			t.Fatalf("python: exit %d, %q, want %s\n%s", r.code, r.stdout, wantARN, r.stderr)
		}
	})

	t.Run("role not allowed", func(t *testing.T) {
		r := runProc(t, envCreds("bob"), bin, "credentials", "--role", app, "--sts", s.url, "--ca-bundle", ca)
		if r.code != exitService || r.stdout != "" || !strings.Contains(r.stderr, "An error occurred (AccessDenied) when calling the AssumeRole operation: ") {
			t.Fatalf("bob assuming app: exit %d, stdout %q, stderr %q; want %d and AWS's AccessDenied", r.code, r.stdout, r.stderr, exitService)
		}
		// The AWS CLI passes the refusal on.
		r = runProc(t, credentialsEnv(home, "AWS_CA_BUNDLE="+ca), "aws", "sts", "get-caller-identity", "--profile", "denied-role", "--endpoint-url", s.url)
		if r.code == 0 || !strings.Contains(r.stderr, "AccessDenied") {
			t.Fatalf("aws --profile denied-role: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("external id", func(t *testing.T) {
		r := runProc(t, envCreds("alice"), bin, "credentials", "--role", partner, "--sts", s.url, "--ca-bundle", ca)
		if r.code != exitService || !strings.Contains(r.stderr, "(AccessDenied)") {
			t.Fatalf("partner without its external id: exit %d, %q", r.code, r.stderr)
		}
		r = runProc(t, envCreds("alice"), bin, "credentials", "--role", partner, "--sts", s.url, "--ca-bundle", ca, "--external-id", "partner-7f3a")
		if r.code != 0 || !strings.Contains(r.stdout, `"AccessKeyId": "ASIA`) {
			t.Fatalf("partner with its external id: exit %d, %q %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("no source credentials", func(t *testing.T) {
		r := runProc(t, credentialsEnv(t.TempDir()), bin, "credentials", "--role", app, "--sts", s.url, "--ca-bundle", ca)
		if r.code != exitConfig || !strings.Contains(r.stderr, "Unable to locate credentials") || !strings.Contains(r.stderr, "--source-profile") {
			t.Fatalf("no credentials: exit %d, %q", r.code, r.stderr)
		}
	})

	t.Run("profile sourcing itself", func(t *testing.T) {
		// AWS_PROFILE=loop: the SDK would run loop's credential_process, which runs
		// phantom credentials for the same role, which would load loop again, ...
		start := time.Now()
		r := runProc(t, credentialsEnv(home, "AWS_PROFILE=loop"), bin, "credentials", "--role", app, "--sts", s.url, "--ca-bundle", ca)
		if r.code == 0 || !strings.Contains(r.stderr, "credential_process loop") || !strings.Contains(r.stderr, "--source-profile") {
			t.Fatalf("loop: exit %d, %q", r.code, r.stderr)
		}
		t.Logf("the loop was refused after %s", time.Since(start))
	})

	t.Run("no STS URL", func(t *testing.T) {
		r := runProc(t, envCreds("alice"), bin, "credentials", "--role", app)
		if r.code != exitUsage || !strings.Contains(r.stderr, "PHANTOM_STS_URL") {
			t.Fatalf("no STS URL: exit %d, %q", r.code, r.stderr)
		}
		// $PHANTOM_STS_URL and $AWS_CA_BUNDLE stand in for the flags.
		r = runProc(t, append(envCreds("alice"), "PHANTOM_STS_URL="+s.url, "AWS_CA_BUNDLE="+ca), bin, "credentials", "--role", app)
		if r.code != 0 {
			t.Fatalf("from the environment: exit %d, %q", r.code, r.stderr)
		}
	})
}
