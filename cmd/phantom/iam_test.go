package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/store"
)

const admSpec = "../../examples/demo.yaml" // user alice, roles app and ci-deployer, node service-a-1

type admResult struct {
	code           int
	stdout, stderr string
}

// admRun runs phantom in-process with the data directory and the demo spec.
func admRun(t *testing.T, dataDir, stdin string, args ...string) admResult {
	t.Helper()
	var out, errb bytes.Buffer
	args = append(args, "--data-dir", dataDir, "--config", admSpec)
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return admResult{code, out.String(), errb.String()}
}

func admOK(t *testing.T, r admResult) admResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return r
}

// admWantAWSError checks the AWS CLI's service-error line and exit status.
func admWantAWSError(t *testing.T, r admResult, op, code string) {
	t.Helper()
	prefix := "An error occurred (" + code + ") when calling the " + op + " operation: "
	if r.code != 254 || !strings.HasPrefix(r.stderr, prefix) || r.stdout != "" {
		t.Fatalf("want exit 254 and %q…, got exit %d\nstdout: %s\nstderr: %s", prefix, r.code, r.stdout, r.stderr)
	}
}

type admAccessKey struct {
	UserName, AccessKeyId, Status, SecretAccessKey, CreateDate string
}

// admReplica is a running process's identity service on the same data directory.
func admReplica(t *testing.T, dataDir string) *identity.Service {
	t.Helper()
	ctx := context.Background()
	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(ctx, store.Config{DataDir: dataDir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := identity.New(identity.Config{Account: "123456789012"}, identity.Deps{AccessKeys: st, SealingKeys: st, Revocations: st, Changes: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIAMAccessKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	r := admOK(t, admRun(t, dir, "", "iam", "create-access-key", "--user", "alice"))
	var created struct{ AccessKey admAccessKey }
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	k := created.AccessKey
	if k.UserName != "alice" || !strings.HasPrefix(k.AccessKeyId, "AKIA") || len(k.SecretAccessKey) != 40 || k.Status != "Active" ||
		!strings.HasSuffix(k.CreateDate, "+00:00") {
		t.Fatalf("created %+v", k)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data dir %v, %v", st, err)
	}

	list := func() []admAccessKey {
		t.Helper()
		r := admOK(t, admRun(t, dir, "", "iam", "list-access-keys", "--user", "alice"))
		if strings.Contains(r.stdout, k.SecretAccessKey) || strings.Contains(r.stdout, "Secret") {
			t.Fatalf("list prints a secret: %s", r.stdout)
		}
		var l struct{ AccessKeyMetadata []admAccessKey }
		if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || l.AccessKeyMetadata == nil {
			t.Fatalf("%v: %s", err, r.stdout)
		}
		return l.AccessKeyMetadata
	}
	if l := list(); len(l) != 1 || l[0].AccessKeyId != k.AccessKeyId || l[0].Status != "Active" {
		t.Fatalf("list %+v", l)
	}
	text := admOK(t, admRun(t, dir, "", "iam", "list-access-keys", "--user", "alice", "--output", "text"))
	if want := "ACCESSKEYMETADATA\t" + k.AccessKeyId + "\t"; !strings.HasPrefix(text.stdout, want) || !strings.HasSuffix(text.stdout, "\tActive\talice\n") {
		t.Fatalf("text %q", text.stdout)
	}

	rep := admReplica(t, dir)
	lookup := func() error {
		t.Helper()
		if err := rep.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := rep.LookupCredential(ctx, k.AccessKeyId, "")
		return err
	}
	if err := lookup(); err != nil {
		t.Fatalf("new key refused: %v", err)
	}
	r = admOK(t, admRun(t, dir, "", "iam", "update-access-key", "--user", "alice", "--access-key-id", k.AccessKeyId, "--status", "Inactive"))
	if r.stdout != "" {
		t.Fatalf("update printed %q", r.stdout)
	}
	if err := lookup(); !errors.Is(err, identity.ErrAccessKeyInactive) {
		t.Fatalf("inactive key: %v", err)
	}
	if l := list(); l[0].Status != "Inactive" {
		t.Fatalf("list %+v", l)
	}
	admOK(t, admRun(t, dir, "", "iam", "update-access-key", "--user", "alice", "--access-key-id", k.AccessKeyId, "--status", "Active"))
	if err := lookup(); err != nil {
		t.Fatalf("reactivated key refused: %v", err)
	}
	admOK(t, admRun(t, dir, "", "iam", "delete-access-key", "--user", "alice", "--access-key-id", k.AccessKeyId))
	if err := lookup(); !errors.Is(err, identity.ErrAccessKeyUnknown) {
		t.Fatalf("deleted key: %v", err)
	}
	if l := list(); len(l) != 0 {
		t.Fatalf("list after delete %+v", l)
	}
	admWantAWSError(t, admRun(t, dir, "", "iam", "delete-access-key", "--user", "alice", "--access-key-id", k.AccessKeyId), "DeleteAccessKey", "NoSuchEntity")
}

func TestIAMErrors(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		admOK(t, admRun(t, dir, "", "iam", "create-access-key", "--user", "alice"))
	}
	r := admRun(t, dir, "", "iam", "create-access-key", "--user", "alice")
	admWantAWSError(t, r, "CreateAccessKey", "LimitExceeded")
	if !strings.Contains(r.stderr, "Cannot exceed quota for AccessKeysPerUser: 2") {
		t.Fatalf("stderr %q", r.stderr)
	}

	tests := []struct {
		name, op, code string
		args           []string
	}{
		{"create for a user not in the spec", "CreateAccessKey", "NoSuchEntity", []string{"create-access-key", "--user", "mallory"}},
		{"list for a user not in the spec", "ListAccessKeys", "NoSuchEntity", []string{"list-access-keys", "--user", "mallory"}},
		{"unknown key id", "UpdateAccessKey", "NoSuchEntity", []string{"update-access-key", "--user", "alice", "--access-key-id", "AKIAAAAAAAAAAAAAAAAA", "--status", "Inactive"}},
		{"delete an unknown key", "DeleteAccessKey", "NoSuchEntity", []string{"delete-access-key", "--user", "alice", "--access-key-id", "AKIAAAAAAAAAAAAAAAAA"}},
		{"status outside IAM's enum", "UpdateAccessKey", "ValidationError", []string{"update-access-key", "--user", "alice", "--access-key-id", "AKIAAAAAAAAAAAAAAAAA", "--status", "Disabled"}},
		{"user name outside IAM's pattern", "CreateAccessKey", "ValidationError", []string{"create-access-key", "--user", "a b"}},
		{"revoke an unknown role", "RevokeSessions", "NoSuchEntity", []string{"revoke-sessions", "--role", "nosuchrole"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admWantAWSError(t, admRun(t, dir, "", append([]string{"iam"}, tt.args...)...), tt.op, tt.code)
		})
	}

	// Usage and configuration errors are not service errors: the AWS CLI's 252 and 253.
	if r := admRun(t, dir, "", "iam", "create-access-key"); r.code != 252 || !strings.Contains(r.stderr, `"user"`) {
		t.Fatalf("missing --user: %+v", r)
	}
	if r := admRun(t, dir, "", "iam", "list-access-keys", "--user", "alice", "--output", "yaml"); r.code != 252 {
		t.Fatalf("--output yaml: %+v", r)
	}
	if r := admRun(t, dir, "", "iam", "list-access-keys", "--user", "alice", "--bogus"); r.code != 252 {
		t.Fatalf("unknown flag: %+v", r)
	}
	if r := admRun(t, dir, "", "keys", "list", "extra-argument"); r.code != 252 {
		t.Fatalf("extra argument: %+v", r)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"iam", "list-access-keys", "--user", "alice", "--data-dir", dir, "--config", filepath.Join(dir, "none.yaml")}, nil, &out, &errb); code != 253 ||
		!strings.Contains(errb.String(), "--config") {
		t.Fatalf("missing spec: exit %d, %s", code, errb.String())
	}
}

func TestIAMRevokeSessions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	admOK(t, admRun(t, dir, "", "keys", "rotate")) // the first sealing key
	rep := admReplica(t, dir)
	c, tok, err := rep.NewSession(identity.Claims{
		Principal: "arn:aws:sts::123456789012:assumed-role/app/s", Role: "arn:aws:iam::123456789012:role/app", SessionName: "s",
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rep.LookupCredential(ctx, c.AccessKeyID, tok); err != nil {
		t.Fatalf("fresh session: %v", err)
	}
	time.Sleep(2 * time.Millisecond)
	r := admOK(t, admRun(t, dir, "", "iam", "revoke-sessions", "--role", "app"))
	var out struct{ RoleName, RoleArn, TokenIssueTimeBefore string }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.RoleArn != "arn:aws:iam::123456789012:role/app" {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if before, err := time.Parse(time.RFC3339Nano, out.TokenIssueTimeBefore); err != nil || !c.IssuedAt.Before(before) {
		t.Fatalf("revoked before %q (session issued %s): %v", out.TokenIssueTimeBefore, c.IssuedAt, err)
	}
	if err := rep.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rep.LookupCredential(ctx, c.AccessKeyID, tok); !errors.Is(err, identity.ErrSessionRevoked) {
		t.Fatalf("session issued before revoke-sessions: %v", err)
	}
}

func TestKeysRotateList(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	type key struct{ KeyId, Status, CreateDate, RetireAfter string }
	var first struct {
		KeyId       string
		SealingKeys []key
	}
	r := admOK(t, admRun(t, dir, "", "keys", "rotate"))
	if err := json.Unmarshal([]byte(r.stdout), &first); err != nil || first.KeyId == "" || len(first.SealingKeys) != 1 {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	rep := admReplica(t, dir)
	c, tok, err := rep.NewSession(identity.Claims{
		Principal: "arn:aws:sts::123456789012:assumed-role/app/s", Role: "arn:aws:iam::123456789012:role/app", SessionName: "s",
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	admOK(t, admRun(t, dir, "", "keys", "rotate"))
	r = admOK(t, admRun(t, dir, "", "keys", "list"))
	var list struct{ SealingKeys []key }
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.SealingKeys) != 2 {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	newest, old := list.SealingKeys[0], list.SealingKeys[1]
	if old.KeyId != first.KeyId || old.Status != "Retiring" || old.RetireAfter == "" || newest.Status != "Current" || newest.RetireAfter != "" {
		t.Fatalf("keys %+v", list.SealingKeys)
	}
	if err := rep.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rep.LookupCredential(ctx, c.AccessKeyID, tok); err != nil {
		t.Fatalf("token sealed before the rotation: %v", err)
	}
	if got := rep.Sealer().CurrentKeyID(); got != newest.KeyId {
		t.Fatalf("sealing with %s, want %s", got, newest.KeyId)
	}
	// Ids and times only: the JSON has exactly those fields.
	if strings.Contains(r.stdout, `"Key"`) {
		t.Fatalf("key material field: %s", r.stdout)
	}
}

func TestNodeJoinTokenEnroll(t *testing.T) {
	dir := t.TempDir()
	admWantAWSError(t, admRun(t, dir, "", "node", "join-token", "--node", "nosuchnode"), "CreateJoinToken", "NoSuchEntity")

	r := admOK(t, admRun(t, dir, "", "node", "join-token", "--node", "service-a-1", "--ttl", "10m", "--output", "text"))
	token := strings.TrimSuffix(r.stdout, "\n")
	if !strings.HasPrefix(token, "phjt_") || strings.ContainsAny(token, "\n\t") {
		t.Fatalf("token %q", r.stdout)
	}
	out := filepath.Join(t.TempDir(), "node")
	r = admOK(t, admRun(t, dir, "", "node", "enroll", "--token", token, "--out", out))
	var res struct {
		Node struct{ NodeName, RoleName, Identity, CertificateFile, PrivateKeyFile, CABundleFile string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Node.RoleName != "app" {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if strings.Contains(r.stdout, token) {
		t.Fatal("enroll printed the token")
	}
	cert := admLeaf(t, filepath.Join(out, "node.crt"))
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://phantom/123456789012/node/service-a-1" {
		t.Fatalf("URI SANs %v", cert.URIs)
	}
	for name, mode := range map[string]os.FileMode{"node.key": 0o600, "node.crt": 0o644, "ca.crt": 0o644} {
		if st, err := os.Stat(filepath.Join(out, name)); err != nil || st.Mode().Perm() != mode {
			t.Fatalf("%s: %v, %v", name, st, err)
		}
	}
	admWantAWSError(t, admRun(t, dir, "", "node", "enroll", "--token", token, "--out", t.TempDir()), "EnrollNode", "InvalidClientTokenId")

	// --token-file - keeps the token out of the process list.
	r = admOK(t, admRun(t, dir, "", "node", "join-token", "--node", "service-a-1"))
	var jt struct {
		JoinToken struct{ NodeName, Token, Expiration string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &jt); err != nil || jt.JoinToken.NodeName != "service-a-1" {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	admOK(t, admRun(t, dir, jt.JoinToken.Token+"\n", "node", "enroll", "--token-file", "-", "--out", t.TempDir()))
	if r := admRun(t, dir, "", "node", "enroll", "--out", t.TempDir()); r.code != 252 {
		t.Fatalf("no token: %+v", r)
	}
}

// TestAdminBinary runs the built binary, with the data directory and spec from the
// environment, as an operator would.
func TestAdminBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "phantom")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	spec, err := filepath.Abs(admSpec)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	phantom := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PHANTOM_DATA_DIR="+data, "PHANTOM_CONFIG="+spec)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	}
	stdout, stderr, code := phantom("iam", "create-access-key", "--user", "alice")
	var created struct{ AccessKey admAccessKey }
	if code != 0 || json.Unmarshal([]byte(stdout), &created) != nil || created.AccessKey.SecretAccessKey == "" {
		t.Fatalf("create: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = phantom("iam", "list-access-keys", "--user", "alice")
	var list struct{ AccessKeyMetadata []admAccessKey }
	if code != 0 || json.Unmarshal([]byte(stdout), &list) != nil || len(list.AccessKeyMetadata) != 1 ||
		list.AccessKeyMetadata[0].AccessKeyId != created.AccessKey.AccessKeyId || strings.Contains(stdout, created.AccessKey.SecretAccessKey) {
		t.Fatalf("list: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "phantom.db")); err != nil {
		t.Fatalf("PHANTOM_DATA_DIR not used: %v", err)
	}
	_, stderr, code = phantom("iam", "create-access-key", "--user", "mallory")
	if code != 254 || stderr != "An error occurred (NoSuchEntity) when calling the CreateAccessKey operation: The user with name mallory cannot be found.\n" {
		t.Fatalf("unknown user: exit %d, %q", code, stderr)
	}
}
