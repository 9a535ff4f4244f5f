// Package testenv tells tests what the machine gives them that Go does not: outside
// clients (curl, the AWS CLI, python3 with boto3), an IPv6 loopback, the conformance data
// in ../shared. A missing piece skips the test locally, with one line saying what is
// missing, and fails it in CI (CI=true), where .ci/run installs every client: a green CI
// run has skipped nothing it could have run. It is imported by tests only.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// CI reports whether the tests run in CI (.ci/run; CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Skipf skips t, except in CI, where the same message fails it: CI provides everything a
// test may skip for.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=true: "+format+" (.ci/run must provide it)", args...)
	}
	t.Skipf(format+" (CI=true makes this a failure)", args...)
}

// LookPath returns the path of an outside program the test drives, or skips (fails in CI).
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skipf(t, "%s is not installed: %v", name, err)
	}
	return p
}

// Python returns python3 if it imports every module named (boto3, botocore), or skips
// (fails in CI).
func Python(t testing.TB, modules ...string) string {
	t.Helper()
	p := LookPath(t, "python3")
	if len(modules) > 0 {
		if out, err := exec.Command(p, "-c", "import "+strings.Join(modules, ", ")).CombinedOutput(); err != nil {
			Skipf(t, "python3 cannot import %s: %v: %s", strings.Join(modules, ", "), err, strings.TrimSpace(lastLine(string(out))))
		}
	}
	return p
}

// IPv6Loopback skips (fails in CI) unless the machine can listen on [::1].
func IPv6Loopback(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		Skipf(t, "no IPv6 loopback: %v", err)
		return
	}
	ln.Close()
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Latency reports a measured delay against the product's target for it and fails the
// test only past limit, a bound generous enough for a loaded 2-core CI machine: a figure
// between the two is reported, not failed (timed assertions must not flake; the
// benchmarks and bench programs measure the target itself).
func Latency(t testing.TB, what string, got, target, limit time.Duration) {
	t.Helper()
	switch {
	case got > limit:
		t.Errorf("%s took %s: over the CI limit of %s (target %s)", what, got, limit, target)
	case got > target:
		t.Logf("%s took %s: over the %s target, within the CI limit of %s", what, got, target, limit)
	default:
		t.Logf("%s took %s (target %s)", what, got, target)
	}
}

// AWSEnv is the environment of an AWS CLI or SDK process a test runs against a Phantom
// server: this process's environment without any AWS_ setting or proxy, then creds, the
// CA bundle ca and region, no config or credentials file, no instance metadata, one
// attempt per call (a retry would hide a server error) and no pager.
func AWSEnv(ca, region string, creds aws.Credentials) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "AWS_") && !strings.EqualFold(name, "HTTPS_PROXY") && !strings.EqualFold(name, "HTTP_PROXY") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_CA_BUNDLE="+ca, "AWS_REGION="+region, "AWS_DEFAULT_REGION="+region,
		"AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_MAX_ATTEMPTS=1", "AWS_PAGER=",
		"AWS_ACCESS_KEY_ID="+creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+creds.SecretAccessKey)
	if creds.SessionToken != "" {
		env = append(env, "AWS_SESSION_TOKEN="+creds.SessionToken)
	}
	return env
}
