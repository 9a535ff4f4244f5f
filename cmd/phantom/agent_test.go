package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
)

// agentTestSpec is stsTestSpec with a node whose role trusts the nodes of its VPC.
const agentTestSpec = stsTestSpec + `  - name: node-app
    maxSessionDuration: 1h
    trustPolicy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Principal: {AWS: "arn:aws:iam::123456789012:root"}
          Action: sts:AssumeRole
          Condition:
            StringEquals: {"aws:EC2InstanceSourceVPC": "vpc-0a1b2c3d4e5f60718"}
nodes:
  - name: service-a-1
    role: node-app
    vpc: vpc-0a1b2c3d4e5f60718
    privateIp: 127.0.0.1
`

// agentProc is a running `phantom agent`.
type agentProc struct {
	cmd             *exec.Cmd
	imds, container string
	exited          chan error
	mu              sync.Mutex
	log             bytes.Buffer
}

func (a *agentProc) logs() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.String()
}

func startAgentProc(t *testing.T, bin string, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{cmd: exec.Command(bin, append([]string{"agent", "--imds-listen", "127.0.0.1:0", "--container-listen", "127.0.0.1:0"}, args...)...), exited: make(chan error, 1)}
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			a.mu.Lock()
			a.log.WriteString(line + "\n")
			a.mu.Unlock()
			// phantom agent: serving IMDS on http://A and container credentials on http://B/v1/credentials
			if rest, ok := strings.CutPrefix(line, "phantom agent: serving IMDS on "); ok {
				f := strings.Fields(rest)
				ready <- [2]string{f[0], f[len(f)-1]}
			}
		}
		a.exited <- a.cmd.Wait()
	}()
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			_ = a.cmd.Process.Kill()
			<-a.exited
		}
	})
	select {
	case addrs := <-ready:
		a.imds, a.container = addrs[0], addrs[1]
	case err := <-a.exited:
		t.Fatalf("phantom agent exited before it was ready: %v\n%s", err, a.logs())
	case <-time.After(20 * time.Second):
		t.Fatalf("phantom agent not ready after 20s:\n%s", a.logs())
	}
	return a
}

func (a *agentProc) stop(t *testing.T) {
	t.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.exited:
		if err != nil {
			t.Fatalf("phantom agent on SIGTERM: %v\n%s", err, a.logs())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("phantom agent did not stop on SIGTERM")
	}
}

// sdkCallerARN loads aws-sdk-go-v2's default configuration with env (the SDK's standard
// variables pointing at the agent; no keys) and calls GetCallerIdentity on stsURL.
func sdkCallerARN(t *testing.T, stsURL, bundle string, env map[string]string) string {
	t.Helper()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_DISABLED"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CA_BUNDLE", bundle)
	for k, v := range env {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := awssts.NewFromConfig(cfg, func(o *awssts.Options) { o.BaseEndpoint = aws.String(stsURL) }).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	return aws.ToString(out.Arn)
}

// TestAgentBinary: `phantom agent` enrolls with a join token made by `phantom node
// join-token` against a running `phantom sts`, serves credentials aws-sdk-go-v2 finds
// through IMDS and the container endpoint, and on its next run reuses its state without
// a token.
func TestAgentBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildPhantom(t)
	s := startSTSWithSpec(t, bin, agentTestSpec)
	bundle := filepath.Join(s.dataDir, "ca.pem")
	dir := t.TempDir()
	tokenFile, containerToken, state := filepath.Join(dir, "token"), filepath.Join(dir, "container-token"), filepath.Join(dir, "state")
	tok := s.phantom(t, bin, "node", "join-token", "--node", "service-a-1", "--output", "text")
	if err := os.WriteFile(tokenFile, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	a := startAgentProc(t, bin, "--sts", s.url, "--ca-bundle", bundle, "--state-dir", state, "--join-token-file", tokenFile, "--container-token-file", containerToken)
	if strings.Contains(a.logs(), strings.TrimSpace(string(tok))) {
		t.Fatal("the agent logged its join token")
	}
	for _, f := range []string{filepath.Join(state, "node.key"), containerToken} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v; want mode 0600", f, fi, err)
		}
	}
	ct, err := os.ReadFile(containerToken)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(a.logs(), strings.TrimSpace(string(ct))) {
		t.Fatal("the agent logged its container token")
	}
	const want = "arn:aws:sts::123456789012:assumed-role/node-app/service-a-1"
	if got := sdkCallerARN(t, s.url, bundle, map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT": a.imds + "/"}); got != want {
		t.Fatalf("via IMDS: %s", got)
	}
	if got := sdkCallerARN(t, s.url, bundle, map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": a.container, "AWS_CONTAINER_AUTHORIZATION_TOKEN": strings.TrimSpace(string(ct))}); got != want {
		t.Fatalf("via the container endpoint: %s", got)
	}
	a.stop(t)

	// The next run: no token, the state directory's certificate.
	b := startAgentProc(t, bin, "--sts", s.url, "--ca-bundle", bundle, "--state-dir", state)
	if got := sdkCallerARN(t, s.url, bundle, map[string]string{"AWS_EC2_METADATA_SERVICE_ENDPOINT": b.imds + "/"}); got != want {
		t.Fatalf("second run via IMDS: %s", got)
	}
	b.stop(t)
}

// TestAgentUsage: flag errors exit 2 before anything is contacted.
func TestAgentUsage(t *testing.T) {
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no --sts", []string{"agent", "--ca-bundle", bundle, "--state-dir", t.TempDir()}},
		{"IMDS on a routable address", []string{"agent", "--sts", "https://127.0.0.1:1", "--ca-bundle", bundle, "--state-dir", t.TempDir(), "--imds-listen", "0.0.0.0:8169"}},
		{"container endpoint on a routable address", []string{"agent", "--sts", "https://127.0.0.1:1", "--ca-bundle", bundle, "--state-dir", t.TempDir(), "--container-listen", "10.0.0.1:8170"}},
		{"CA bundle without a certificate", []string{"agent", "--sts", "https://127.0.0.1:1", "--ca-bundle", bundle, "--state-dir", t.TempDir(), "--imds-listen", "127.0.0.1:0", "--container-listen", "127.0.0.1:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, strings.NewReader(""), &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2: %s", code, errb.String())
			}
		})
	}
}
