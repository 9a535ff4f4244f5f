package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/authzmsg"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// stsTestSpec is the perimeter the end-to-end tests run: alice may assume app, which
// trusts her; bob may only get session tokens.
const stsTestSpec = `version: 1
account: "123456789012"
region: us-east-1
users:
  - name: alice
    policies:
      - name: assume-app
        document:
          Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: ["sts:AssumeRole", "sts:TagSession"]
              Resource: "arn:aws:iam::123456789012:role/app"
            - Effect: Allow
              Action: sts:DecodeAuthorizationMessage
              Resource: "*"
            - Effect: Allow
              Action: sts:AssumeRole
              Resource: "arn:aws:iam::123456789012:role/partner"
  - name: bob
roles:
  - name: partner
    trustPolicy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Principal: {AWS: "arn:aws:iam::123456789012:user/alice"}
          Action: sts:AssumeRole
          Condition:
            StringEquals: {"sts:ExternalId": "partner-7f3a"}
  - name: app
    maxSessionDuration: 1h
    trustPolicy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Principal: {AWS: "arn:aws:iam::123456789012:user/alice"}
          Action: ["sts:AssumeRole", "sts:TagSession"]
`

// buildPhantom builds the real binary into a temporary directory.
func buildPhantom(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "phantom")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// stsServer is a running `phantom sts`.
type stsServer struct {
	url     string
	dataDir string
	cmd     *exec.Cmd
	mu      sync.Mutex
	log     bytes.Buffer
	exited  chan error
}

func (s *stsServer) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// startSTS starts `phantom sts` on a free port with a fresh data directory and waits for
// its readiness line.
func startSTS(t testing.TB, bin string, extra ...string) *stsServer {
	t.Helper()
	return startSTSWithSpec(t, bin, stsTestSpec, extra...)
}

// startSTSWithSpec is startSTS on another spec.
func startSTSWithSpec(t testing.TB, bin, spec string, extra ...string) *stsServer {
	t.Helper()
	dir := t.TempDir()
	specPath := filepath.Join(dir, "perimeter.yaml")
	if err := os.WriteFile(specPath, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &stsServer{dataDir: filepath.Join(dir, "data"), exited: make(chan error, 1)}
	args := append([]string{"sts", "--config", specPath, "--data-dir", s.dataDir, "--listen", "127.0.0.1:0", "--poll", "200ms"}, extra...)
	s.cmd = exec.Command(bin, args...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if rest, ok := strings.CutPrefix(line, "phantom sts: listening on "); ok {
				select {
				case ready <- strings.Fields(rest)[0]:
				default:
				}
			}
		}
		s.exited <- s.cmd.Wait()
	}()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	select {
	case s.url = <-ready:
	case err := <-s.exited:
		t.Fatalf("phantom sts exited before it was ready: %v\n%s", err, s.logs())
	case <-time.After(20 * time.Second):
		t.Fatalf("phantom sts not ready after 20s:\n%s", s.logs())
	}
	return s
}

// openIdentity opens the server's data directory from the test process, as the admin
// commands do: writes go through the shared store, which the server polls.
func openIdentity(t testing.TB, dataDir string) *identity.Service {
	t.Helper()
	ctx := context.Background()
	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.OpenSQLite(ctx, store.Config{DataDir: dataDir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	svc, err := identity.New(identity.Config{Account: "123456789012", Logger: slog.New(slog.DiscardHandler)},
		identity.Deps{AccessKeys: db, SealingKeys: db, Revocations: db, Changes: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	return svc
}

// phantom runs an admin command of the binary on the server's spec and data directory and
// returns its stdout.
func (s *stsServer) phantom(t testing.TB, bin string, args ...string) []byte {
	t.Helper()
	args = append(args, "--config", filepath.Join(filepath.Dir(s.dataDir), "perimeter.yaml"), "--data-dir", s.dataDir)
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("phantom %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// awsCLI runs `aws sts ...` against s with creds and nothing from the environment's
// profiles. It returns stdout, stderr and the exit error.
func (s *stsServer) awsCLI(t testing.TB, creds aws.Credentials, args ...string) ([]byte, string, error) {
	t.Helper()
	cmd := exec.Command("aws", append(append([]string{"sts"}, args...), "--endpoint-url", s.url, "--output", "json")...)
	cmd.Env = append(testenv.AWSEnv(filepath.Join(s.dataDir, "ca.pem"), "us-east-1", creds), "AWS_RETRY_MODE=standard")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.Bytes(), errb.String(), err
}

func (s *stsServer) mustAWS(t testing.TB, creds aws.Credentials, v any, args ...string) {
	t.Helper()
	out, errOut, err := s.awsCLI(t, creds, args...)
	if err != nil {
		t.Fatalf("aws sts %s: %v\n%s\nserver:\n%s", strings.Join(args, " "), err, errOut, s.logs())
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("aws sts %s printed %q: %v", args[0], out, err)
	}
}

// awsCode waits up to 3 s (the poll interval and more) for a call with creds to fail
// with code.
func (s *stsServer) awaitAWSError(t testing.TB, creds aws.Credentials, code string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, errOut, err := s.awsCLI(t, creds, "get-caller-identity")
		if err != nil && strings.Contains(errOut, "("+code+")") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("get-caller-identity: want %s within 3s, got err=%v %s", code, err, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type cliCreds struct {
	Credentials struct {
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
		SessionToken    string
		Expiration      string
	}
	AssumedRoleUser struct{ Arn string }
}

func (c cliCreds) aws() aws.Credentials {
	return aws.Credentials{AccessKeyID: c.Credentials.AccessKeyID, SecretAccessKey: c.Credentials.SecretAccessKey, SessionToken: c.Credentials.SessionToken}
}

type callerIdentity struct{ Arn, Account, UserId string }

// TestSTSEndToEndAWSCLI runs the real binary and drives it with the AWS CLI: caller
// identity, session tokens, AssumeRole and the assumed session, the session credentials
// through `phantom sigv4 verify`, then revocation and an inactive key.
func TestSTSEndToEndAWSCLI(t *testing.T) {
	testenv.LookPath(t, "aws")
	if testing.Short() {
		t.Skip("builds and runs the binary and the AWS CLI")
	}
	bin := buildPhantom(t)
	s := startSTS(t, bin)
	// The admin commands of the same binary, on the same data directory.
	var created struct {
		AccessKey struct{ AccessKeyId, SecretAccessKey, Status string }
	}
	if err := json.Unmarshal(s.phantom(t, bin, "iam", "create-access-key", "--user", "alice"), &created); err != nil {
		t.Fatal(err)
	}
	alice := aws.Credentials{AccessKeyID: created.AccessKey.AccessKeyId, SecretAccessKey: created.AccessKey.SecretAccessKey}
	if !strings.HasPrefix(alice.AccessKeyID, "AKIA") || alice.SecretAccessKey == "" {
		t.Fatalf("phantom iam create-access-key gave %q", alice.AccessKeyID)
	}

	// The server picks the new key up within its poll interval (200ms here).
	var who callerIdentity
	deadline := time.Now().Add(3 * time.Second)
	for {
		out, errOut, err := s.awsCLI(t, alice, "get-caller-identity")
		if err == nil {
			if err := json.Unmarshal(out, &who); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("get-caller-identity as alice: %v %s\n%s", err, errOut, s.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if who.Arn != "arn:aws:iam::123456789012:user/alice" || who.Account != "123456789012" {
		t.Fatalf("get-caller-identity = %+v", who)
	}

	var st cliCreds
	s.mustAWS(t, alice, &st, "get-session-token", "--duration-seconds", "900")
	if !strings.HasPrefix(st.Credentials.AccessKeyID, "ASIA") || st.Credentials.SessionToken == "" {
		t.Fatalf("get-session-token = %+v", st.Credentials.AccessKeyID)
	}
	s.mustAWS(t, st.aws(), &who, "get-caller-identity")
	if who.Arn != "arn:aws:iam::123456789012:user/alice" {
		t.Fatalf("get-caller-identity with the session token's credentials = %+v", who)
	}

	var ar cliCreds
	s.mustAWS(t, alice, &ar, "assume-role", "--role-arn", "arn:aws:iam::123456789012:role/app", "--role-session-name", "e2e",
		"--tags", "Key=project,Value=phantom", "--duration-seconds", "900")
	sess := ar.aws()
	if !strings.HasPrefix(sess.AccessKeyID, "ASIA") || ar.AssumedRoleUser.Arn != "arn:aws:sts::123456789012:assumed-role/app/e2e" {
		t.Fatalf("assume-role = %s %s", sess.AccessKeyID, ar.AssumedRoleUser.Arn)
	}
	s.mustAWS(t, sess, &who, "get-caller-identity")
	if who.Arn != "arn:aws:sts::123456789012:assumed-role/app/e2e" {
		t.Fatalf("get-caller-identity as the role session = %+v", who)
	}

	t.Run("denials", func(t *testing.T) {
		var bobKey struct {
			AccessKey struct{ AccessKeyId, SecretAccessKey string }
		}
		if err := json.Unmarshal(s.phantom(t, bin, "iam", "create-access-key", "--user", "bob"), &bobKey); err != nil {
			t.Fatal(err)
		}
		bob := aws.Credentials{AccessKeyID: bobKey.AccessKey.AccessKeyId, SecretAccessKey: bobKey.AccessKey.SecretAccessKey}
		for _, tt := range []struct {
			name  string
			creds aws.Credentials
			args  []string
			code  string
		}{
			// The trust policy names alice only, and bob has no sts:AssumeRole either.
			{"untrusted principal", bob, []string{"assume-role", "--role-arn", "arn:aws:iam::123456789012:role/app", "--role-session-name", "denied"}, "AccessDenied"},
			// app's maxSessionDuration is 1h ("DurationSeconds", AssumeRole API reference).
			{"duration over the role's max", alice, []string{"assume-role", "--role-arn", "arn:aws:iam::123456789012:role/app", "--role-session-name", "denied", "--duration-seconds", "7200"}, "ValidationError"},
			// The trust policy's sts:ExternalId condition ("confused deputy").
			{"wrong ExternalId", alice, []string{"assume-role", "--role-arn", "arn:aws:iam::123456789012:role/partner", "--role-session-name", "denied", "--external-id", "guess"}, "AccessDenied"},
			{"session credentials cannot get session tokens", sess, []string{"get-session-token"}, "AccessDenied"},
		} {
			var out []byte
			var errOut string
			var err error
			// bob's new key reaches the server within its poll interval.
			deadline := time.Now().Add(3 * time.Second)
			for {
				out, errOut, err = s.awsCLI(t, tt.creds, tt.args...)
				if !strings.Contains(errOut, "(InvalidClientTokenId)") || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err == nil || !strings.Contains(errOut, "("+tt.code+")") {
				t.Errorf("%s: want %s, got err=%v %q %q", tt.name, tt.code, err, out, errOut)
			}
		}
	})

	t.Run("right ExternalId", func(t *testing.T) {
		var pr cliCreds
		s.mustAWS(t, alice, &pr, "assume-role", "--role-arn", "arn:aws:iam::123456789012:role/partner", "--role-session-name", "partner", "--external-id", "partner-7f3a")
		if pr.AssumedRoleUser.Arn != "arn:aws:sts::123456789012:assumed-role/partner/partner" {
			t.Fatalf("assume-role partner = %s", pr.AssumedRoleUser.Arn)
		}
	})

	t.Run("boto3", func(t *testing.T) {
		py := testenv.Python(t, "boto3")
		script := `import boto3, json, sys
kw = dict(region_name="us-east-1", endpoint_url=sys.argv[1], verify=sys.argv[2],
          aws_access_key_id=sys.argv[3], aws_secret_access_key=sys.argv[4])
sts = boto3.client("sts", **kw)
c = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/app", RoleSessionName="boto3")["Credentials"]
s = boto3.client("sts", region_name="us-east-1", endpoint_url=sys.argv[1], verify=sys.argv[2],
                 aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
print(json.dumps({"arn": s.get_caller_identity()["Arn"], "akid": c["AccessKeyId"]}))
`
		cmd := exec.Command(py, "-c", script, s.url, filepath.Join(s.dataDir, "ca.pem"), alice.AccessKeyID, alice.SecretAccessKey)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true"}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("boto3: %v\n%s", err, out)
		}
		var got struct{ Arn, Akid string }
		if err := json.Unmarshal(out, &got); err != nil || got.Arn != "arn:aws:sts::123456789012:assumed-role/app/boto3" || !strings.HasPrefix(got.Akid, "ASIA") {
			t.Fatalf("boto3 printed %s (%v)", out, err)
		}
	})

	t.Run("session credentials pass phantom sigv4 verify", func(t *testing.T) {
		raw := signedRawRequest(t, s, sess)
		reqFile := filepath.Join(t.TempDir(), "req.txt")
		if err := os.WriteFile(reqFile, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		verify := func(token string) (int, map[string]any) {
			cmd := exec.Command(bin, "sigv4", "verify", "--request", reqFile, "--access-key-id", sess.AccessKeyID,
				"--secret-access-key", sess.SecretAccessKey, "--session-token", token, "--region", "us-east-1", "--service", "sts")
			out, err := cmd.Output()
			var ee *exec.ExitError
			code := 0
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			var v map[string]any
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatalf("sigv4 verify printed %q: %v", out, err)
			}
			return code, v
		}
		if code, v := verify(sess.SessionToken); code != 0 || v["valid"] != true {
			t.Fatalf("sigv4 verify with the session's token: exit %d %v", code, v)
		}
		if code, v := verify(st.Credentials.SessionToken); code != 1 || v["code"] != "InvalidClientTokenId" {
			t.Fatalf("sigv4 verify with another session's token: exit %d %v", code, v)
		}
	})

	t.Run("decode-authorization-message", func(t *testing.T) {
		// A message sealed as the gateway will: under the key derived from the data
		// directory's master key.
		mk, err := store.LoadOrCreateMasterKey(s.dataDir)
		if err != nil {
			t.Fatal(err)
		}
		key, err := keys.Derive(mk, keys.AuthzMessages)
		if err != nil {
			t.Fatal(err)
		}
		sealer, err := authzmsg.NewSealer(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		msg := &authzmsg.Message{ExplicitDeny: true,
			MatchedStatements: authzmsg.Statements{Items: []authzmsg.Statement{{StatementID: "DenyDelete", Effect: "DENY"}}},
			Context:           authzmsg.Context{Principal: authzmsg.Principal{ARN: ar.AssumedRoleUser.Arn}, Action: "execute-api:Invoke", Resource: "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/DELETE/items"}}
		enc, err := sealer.Seal(msg)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ DecodedMessage string }
		s.mustAWS(t, alice, &got, "decode-authorization-message", "--encoded-message", enc)
		var decoded authzmsg.Message
		if err := json.Unmarshal([]byte(got.DecodedMessage), &decoded); err != nil || !decoded.ExplicitDeny || decoded.Context.Principal.ARN != ar.AssumedRoleUser.Arn {
			t.Fatalf("decode-authorization-message = %q (%v)", got.DecodedMessage, err)
		}
		// The role session has no permission to decode; garbage is refused with AWS's code.
		if _, errOut, err := s.awsCLI(t, sess, "decode-authorization-message", "--encoded-message", enc); err == nil || !strings.Contains(errOut, "(AccessDenied)") {
			t.Fatalf("decode as the role session: %v %s", err, errOut)
		}
		if _, errOut, err := s.awsCLI(t, alice, "decode-authorization-message", "--encoded-message", enc[:len(enc)-4]); err == nil || !strings.Contains(errOut, "(InvalidAuthorizationMessageException)") {
			t.Fatalf("decode a truncated message: %v %s", err, errOut)
		}
	})

	// Revoking the role's sessions denies this session (AccessDenied, as AWS's revocation
	// policy does) within the poll interval; alice's own session token is unaffected.
	s.phantom(t, bin, "iam", "revoke-sessions", "--role", "app")
	s.awaitAWSError(t, sess, "AccessDenied")
	s.mustAWS(t, st.aws(), &who, "get-caller-identity")

	// An inactive key is refused within the poll interval.
	s.phantom(t, bin, "iam", "update-access-key", "--user", "alice", "--access-key-id", alice.AccessKeyID, "--status", "Inactive")
	s.awaitAWSError(t, alice, "InvalidClientTokenId")

	// Graceful shutdown on SIGTERM.
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("phantom sts exit after SIGTERM: %v\n%s", err, s.logs())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("phantom sts did not stop within 15s of SIGTERM")
	}

	// Every call was audited as one CloudTrail JSON line, and no secret reached the file
	// or the server's log.
	audit, err := os.ReadFile(filepath.Join(s.dataDir, "audit", "sts", "00000001.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(audit), []byte("\n")) {
		var rec struct {
			Event struct{ EventName, ErrorCode string }
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		names[rec.Event.EventName+"/"+rec.Event.ErrorCode]++
	}
	if out, err := exec.Command(bin, "audit", "verify", filepath.Join(s.dataDir, "audit")).CombinedOutput(); err != nil {
		t.Fatalf("phantom audit verify on the STS chain: %v\n%s", err, out)
	}
	for _, want := range []string{"AssumeRole/", "GetSessionToken/", "GetCallerIdentity/", "GetCallerIdentity/AccessDenied", "GetCallerIdentity/InvalidClientTokenId"} {
		if names[want] == 0 {
			t.Errorf("no audit event %s in %v", want, names)
		}
	}
	for _, secret := range []string{alice.SecretAccessKey, sess.SecretAccessKey, sess.SessionToken, st.Credentials.SecretAccessKey, st.Credentials.SessionToken} {
		if bytes.Contains(audit, []byte(secret)) || strings.Contains(s.logs(), secret) {
			t.Fatal("a secret reached the audit file or the server log")
		}
	}
}

// signedRawRequest signs a GetCallerIdentity POST with aws-sdk-go-v2's signer, checks the
// server accepts it, and returns it as raw HTTP/1.1 for `phantom sigv4 verify`.
func signedRawRequest(t testing.TB, s *stsServer, creds aws.Credentials) []byte {
	t.Helper()
	body := "Action=GetCallerIdentity&Version=2011-06-15"
	newReq := func() *http.Request {
		r, err := http.NewRequest(http.MethodPost, s.url+"/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		return r
	}
	r := newReq()
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "sts", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	raw, err := httputil.DumpRequest(r, true)
	if err != nil {
		t.Fatal(err)
	}
	// DumpRequest consumed the body; send an identical copy to the server too.
	sent := newReq()
	sent.Header = r.Header.Clone()
	resp, err := s.client(t).Do(sent)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("the server refused the signed request: %d %s", resp.StatusCode, b)
	}
	return raw
}

// client is an HTTPS client trusting the server's CA bundle (DIR/ca.pem) only.
func (s *stsServer) client(t testing.TB) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(s.dataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("ca.pem holds no certificate")
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}
