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
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// upServer is a running `phantom up` on free ports with its own data directory.
type upServer struct {
	bin     string
	dataDir string
	env     map[string]string
	cmd     *exec.Cmd
	mu      sync.Mutex
	out     bytes.Buffer
	exited  chan error
}

func (u *upServer) logs() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.out.String()
}

func startUp(t *testing.T, bin string, extra ...string) *upServer {
	t.Helper()
	return startUpIn(t, bin, filepath.Join(t.TempDir(), "phantom-data"), extra...)
}

// startUpIn is startUp on the data directory dataDir (which may hold an earlier run's
// state), run from the directory above it.
func startUpIn(t *testing.T, bin, dataDir string, extra ...string) *upServer {
	t.Helper()
	u := &upServer{bin: bin, dataDir: dataDir, exited: make(chan error, 1)}
	u.cmd = exec.Command(bin, append([]string{"up", "--data-dir", u.dataDir, "--port-base", "0", "--poll", "200ms"}, extra...)...)
	u.cmd.Dir = filepath.Dir(dataDir)
	pr, pw := io.Pipe()
	u.cmd.Stdout, u.cmd.Stderr = pw, pw
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{}, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			u.mu.Lock()
			u.out.WriteString(sc.Text() + "\n")
			u.mu.Unlock()
			if strings.HasPrefix(sc.Text(), "phantom up: the demo perimeter is running") {
				select {
				case ready <- struct{}{}:
				default:
				}
			}
		}
	}()
	go func() { err := u.cmd.Wait(); pw.Close(); u.exited <- err }()
	t.Cleanup(func() {
		if u.cmd.ProcessState == nil {
			_ = u.cmd.Process.Kill()
			<-u.exited
		}
	})
	select {
	case <-ready:
	case err := <-u.exited:
		t.Fatalf("phantom up exited before it was ready: %v\n%s", err, u.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("phantom up not ready after 30s:\n%s", u.logs())
	}
	u.env = readEnvFile(t, filepath.Join(u.dataDir, "demo.env"))
	return u
}

// stop ends phantom up as Ctrl-C does and waits for a clean exit.
func (u *upServer) stop(t *testing.T) {
	t.Helper()
	if err := u.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	u.awaitCleanExit(t)
}

// awaitCleanExit waits for phantom up, sent SIGINT, to exit 0.
func (u *upServer) awaitCleanExit(t *testing.T) {
	t.Helper()
	select {
	case err := <-u.exited:
		if err != nil {
			t.Fatalf("phantom up exited with %v after SIGINT:\n%s", err, u.logs())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("phantom up still running 20s after SIGINT")
	}
}

// readEnvFile sources demo.env in a shell, as a user would, and returns what it exported.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	out, err := exec.Command("sh", "-c", `. "$1" && env -0`, "sh", path).Output()
	if err != nil {
		t.Fatalf("source %s: %v", path, err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(out), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && (strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "PHANTOM_")) {
			env[k] = v
		}
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_CA_BUNDLE", "PHANTOM_STS_URL",
		"PHANTOM_API_URL", "PHANTOM_ENDPOINT_ADDR", "PHANTOM_GATEWAY_ADDR", "PHANTOM_DEMO_ROLE_ARN", "PHANTOM_DEMO_BACKEND_URL"} {
		if env[k] == "" {
			t.Fatalf("demo.env has no %s:\n%v", k, env)
		}
	}
	return env
}

func (u *upServer) user() aws.Credentials {
	return aws.Credentials{AccessKeyID: u.env["AWS_ACCESS_KEY_ID"], SecretAccessKey: u.env["AWS_SECRET_ACCESS_KEY"]}
}

// aws runs the AWS CLI with creds and demo.env's region and CA bundle, nothing else from
// the environment.
func (u *upServer) aws(t *testing.T, creds aws.Credentials, args ...string) ([]byte, string, error) {
	t.Helper()
	cmd := exec.Command("aws", append(args, "--output", "json")...)
	cmd.Env = testenv.AWSEnv(u.env["AWS_CA_BUNDLE"], u.env["AWS_REGION"], creds)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.Bytes(), errb.String(), err
}

func (u *upServer) assumeRole(t *testing.T, roleARN, session string) aws.Credentials {
	t.Helper()
	out, errOut, err := u.aws(t, u.user(), "sts", "assume-role", "--role-arn", roleARN, "--role-session-name", session, "--endpoint-url", u.env["PHANTOM_STS_URL"])
	if err != nil {
		t.Fatalf("aws sts assume-role %s: %v\n%s", roleARN, err, errOut)
	}
	var c cliCreds
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatal(err)
	}
	return c.aws()
}

// reply is an HTTP answer as a client saw it.
type reply struct {
	Status int
	Type   string // x-amzn-ErrorType
	ReqID  string // x-amzn-RequestId
	Body   string
}

func (r reply) String() string {
	return fmt.Sprintf("%d %s %s", r.Status, r.Type, strings.TrimSpace(r.Body))
}

// curl calls url with curl's own SigV4 signer (--aws-sigv4) when creds are set.
func (u *upServer) curl(t *testing.T, creds *aws.Credentials, url string, extra ...string) reply {
	t.Helper()
	dir := t.TempDir()
	// Never through a proxy the environment names (a test may have set the node's
	// HTTPS_PROXY): these are the demo user's calls from this host.
	args := []string{"-sS", "--noproxy", "*", "--max-time", "10", "--cacert", u.env["AWS_CA_BUNDLE"], "-o", filepath.Join(dir, "body"), "-D", filepath.Join(dir, "headers"), "-w", "%{http_code}"}
	if creds != nil {
		args = append(args, "--aws-sigv4", "aws:amz:"+u.env["AWS_REGION"]+":execute-api", "--user", creds.AccessKeyID+":"+creds.SecretAccessKey)
		if creds.SessionToken != "" {
			args = append(args, "-H", "x-amz-security-token: "+creds.SessionToken)
		}
	}
	out, err := exec.Command("curl", append(append(args, extra...), url)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, out)
	}
	var r reply
	fmt.Sscanf(string(out), "%d", &r.Status)
	body, _ := os.ReadFile(filepath.Join(dir, "body"))
	r.Body = string(body)
	hdr, _ := os.ReadFile(filepath.Join(dir, "headers"))
	for _, line := range strings.Split(string(hdr), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch strings.ToLower(k) {
		case "x-amzn-errortype":
			r.Type = strings.TrimSpace(v)
		case "x-amzn-requestid":
			r.ReqID = strings.TrimSpace(v)
		}
	}
	return r
}

// botocore signs a request with botocore's SigV4Auth and sends it with Python's own
// HTTPS client.
func (u *upServer) botocore(t *testing.T, creds aws.Credentials, method, url string) reply {
	t.Helper()
	py := testenv.Python(t, "botocore")
	script := `import sys, json, ssl, http.client, urllib.parse
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
method, url, ak, sk, tok, ca, region = sys.argv[1:8]
req = AWSRequest(method=method, url=url, data=b"")
SigV4Auth(Credentials(ak, sk, tok or None), "execute-api", region).add_auth(req)
u = urllib.parse.urlsplit(url)
c = http.client.HTTPSConnection(u.hostname, u.port, context=ssl.create_default_context(cafile=ca), timeout=10)
c.request(method, u.path + ("?" + u.query if u.query else ""), headers=dict(req.headers.items()))
r = c.getresponse()
print(json.dumps({"Status": r.status, "Type": r.getheader("x-amzn-ErrorType") or "", "ReqID": r.getheader("x-amzn-RequestId") or "", "Body": r.read().decode()}))
`
	cmd := exec.Command(py, "-c", script, method, url, creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken, u.env["AWS_CA_BUNDLE"], u.env["AWS_REGION"])
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("botocore %s %s: %v\n%s", method, url, err, out)
	}
	var r reply
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("botocore printed %q: %v", out, err)
	}
	return r
}

// goClient is a Go HTTPS client trusting the perimeter CA, optionally presenting cert.
func (u *upServer) goClient(t *testing.T, cert *tls.Certificate) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(u.env["AWS_CA_BUNDLE"])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// signedGo sends a request signed by aws-sdk-go-v2's signer, with extra headers added
// after signing (so they are not covered by the signature, as a forger's would not be).
func (u *upServer) signedGo(t *testing.T, c *http.Client, creds aws.Credentials, url string, extra http.Header) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, emptyPayloadHash, "execute-api", u.env["AWS_REGION"], time.Now()); err != nil {
		t.Fatal(err)
	}
	for k, vs := range extra {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Type: resp.Header.Get("x-amzn-ErrorType"), ReqID: resp.Header.Get("x-amzn-RequestId"), Body: string(body)}
}

const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// auditEvents reads every event of every chain under dir.
func auditEvents(t *testing.T, dir string) []audit.Event {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var evs []audit.Event
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var rec struct{ Event audit.Event }
			if err := json.Unmarshal(line, &rec); err != nil {
				t.Fatalf("%s: %v: %s", f, err, line)
			}
			evs = append(evs, rec.Event)
		}
	}
	return evs
}

// awaitEvent waits for an audit event that match accepts.
func (u *upServer) awaitEvent(t *testing.T, what string, match func(*audit.Event) bool) *audit.Event {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		evs := auditEvents(t, filepath.Join(u.dataDir, "audit"))
		for i := range evs {
			if match(&evs[i]) {
				return &evs[i]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event for %s among %d events", what, len(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventFor returns the one gateway event of the request with this id.
func (u *upServer) eventFor(t *testing.T, r reply) *audit.Event {
	t.Helper()
	if r.ReqID == "" {
		t.Fatalf("reply without x-amzn-RequestId: %s", r)
	}
	ev := u.awaitEvent(t, "request "+r.ReqID, func(e *audit.Event) bool { return e.RequestID == r.ReqID })
	n := 0
	for _, e := range auditEvents(t, filepath.Join(u.dataDir, "audit")) {
		if e.RequestID == r.ReqID {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("request %s has %d audit events, want exactly 1", r.ReqID, n)
	}
	return ev
}

func (u *upServer) phantom(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(u.bin, append(args, "--config", filepath.Join(u.dataDir, "perimeter.yaml"), "--data-dir", u.dataDir)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("phantom %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestUpEndToEnd runs `phantom up` and drives it with curl --aws-sigv4, botocore,
// aws-sdk-go-v2 and the AWS CLI: allowed calls through the endpoint with user and role
// credentials, then every denial the perimeter promises, each with its audit event;
// then a graceful stop and the audit log verified, and tampering found.
func TestUpEndToEnd(t *testing.T) {
	testenv.LookPath(t, "curl")
	testenv.LookPath(t, "aws")
	u := startUp(t, buildPhantom(t))
	user := u.user()
	api := u.env["PHANTOM_API_URL"]
	direct := "https://" + u.env["PHANTOM_GATEWAY_ADDR"] + "/prod/orders"
	viaEndpoint := func(path string) string { return "https://" + u.env["PHANTOM_ENDPOINT_ADDR"] + "/prod" + path }
	role := u.assumeRole(t, u.env["PHANTOM_DEMO_ROLE_ARN"], "e2e")

	allowed := func(t *testing.T, r reply, principal string) {
		t.Helper()
		if r.Status != http.StatusOK || !strings.Contains(r.Body, `"principal":"`+principal+`"`) {
			t.Fatalf("want 200 naming %s, got %s", principal, r)
		}
		ev := u.eventFor(t, r)
		if ev.ErrorCode != "" || ev.VPCEndpointID != "vpce-0123456789abcdef0" || ev.UserIdentity.ARN != principal || ev.TLSDetails == nil {
			t.Fatalf("allowed call's audit event: %+v", ev)
		}
	}
	userARN := "arn:aws:iam::123456789012:user/demo"
	roleARN := "arn:aws:sts::123456789012:assumed-role/service-a/e2e"

	t.Run("allowed/curl user", func(t *testing.T) { allowed(t, u.curl(t, &user, api), userARN) })
	t.Run("allowed/curl role", func(t *testing.T) { allowed(t, u.curl(t, &role, api), roleARN) })
	t.Run("allowed/botocore user", func(t *testing.T) { allowed(t, u.botocore(t, user, "GET", api), userARN) })
	t.Run("allowed/botocore role", func(t *testing.T) { allowed(t, u.botocore(t, role, "GET", api), roleARN) })
	t.Run("allowed/sdk user by private DNS name", func(t *testing.T) {
		// The endpoint's certificate names its private DNS name; dial the endpoint for it.
		c := u.goClient(t, nil)
		c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, u.env["PHANTOM_ENDPOINT_ADDR"])
		}
		_, port, _ := net.SplitHostPort(u.env["PHANTOM_ENDPOINT_ADDR"])
		allowed(t, u.signedGo(t, c, user, "https://orders.internal.example:"+port+"/prod/orders", nil), userARN)
	})
	t.Run("allowed/NONE route unsigned", func(t *testing.T) {
		if r := u.curl(t, nil, viaEndpoint("/health")); r.Status != http.StatusOK {
			t.Fatalf("GET /health unsigned: %s", r)
		}
	})

	denied := func(t *testing.T, r reply, status int, errType, errorCode string) *audit.Event {
		t.Helper()
		if r.Status != status || r.Type != errType {
			t.Fatalf("want %d %s, got %s", status, errType, r)
		}
		var body struct{ Message string }
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body.Message == "" {
			t.Fatalf("denial body is not API Gateway's {\"message\": ...}: %q", r.Body)
		}
		ev := u.eventFor(t, r)
		if ev.ErrorCode != errorCode {
			t.Fatalf("audit event errorCode %q, want %q: %+v", ev.ErrorCode, errorCode, ev)
		}
		return ev
	}

	t.Run("denied/no signature", func(t *testing.T) {
		denied(t, u.curl(t, nil, api), 403, "MissingAuthenticationTokenException", "MissingAuthenticationToken")
	})
	t.Run("denied/bad signature", func(t *testing.T) {
		bad := user
		bad.SecretAccessKey = strings.Repeat("x", 40)
		denied(t, u.curl(t, &bad, api), 403, "InvalidSignatureException", "SignatureDoesNotMatch")
		denied(t, u.botocore(t, bad, "GET", api), 403, "InvalidSignatureException", "SignatureDoesNotMatch")
	})
	t.Run("denied/expired session", func(t *testing.T) {
		ids := openIdentity(t, u.dataDir)
		claims, token, err := ids.NewSession(identity.Claims{
			Principal:   roleARN,
			Role:        "arn:aws:iam::123456789012:role/service-a",
			SessionName: "e2e",
		}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		expired := aws.Credentials{AccessKeyID: claims.AccessKeyID, SecretAccessKey: claims.SecretAccessKey, SessionToken: token}
		denied(t, u.botocore(t, expired, "GET", api), 403, "ExpiredTokenException", "ExpiredToken")
	})
	t.Run("denied/path the identity policy does not allow", func(t *testing.T) {
		r := u.curl(t, &user, viaEndpoint("/admin/users"))
		denied(t, r, 403, "AccessDeniedException", "AccessDenied")
		// The encoded authorization message explains the denial to a permitted caller.
		var body struct{ EncodedAuthorizationMessage string }
		if err := json.Unmarshal([]byte(r.Body), &body); err != nil || body.EncodedAuthorizationMessage == "" {
			t.Fatalf("no encoded authorization message: %s", r.Body)
		}
		out, errOut, err := u.aws(t, user, "sts", "decode-authorization-message", "--encoded-message", body.EncodedAuthorizationMessage, "--endpoint-url", u.env["PHANTOM_STS_URL"])
		if err != nil {
			t.Fatalf("decode-authorization-message: %v\n%s", err, errOut)
		}
		var dec struct{ DecodedMessage string }
		if err := json.Unmarshal(out, &dec); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(dec.DecodedMessage, `"allowed":false`) || !strings.Contains(dec.DecodedMessage, "/prod/GET/admin/users") {
			t.Fatalf("decoded message does not explain the denial: %s", dec.DecodedMessage)
		}
	})
	t.Run("denied/role the endpoint policy does not admit", func(t *testing.T) {
		other := u.assumeRole(t, "arn:aws:iam::123456789012:role/reporting", "e2e")
		denied(t, u.curl(t, &other, api), 403, "AccessDeniedException", "AccessDenied")
	})
	t.Run("denied/right credentials on the direct gateway address", func(t *testing.T) {
		ev := denied(t, u.curl(t, &user, direct), 403, "AccessDeniedException", "AccessDenied")
		if ev.VPCEndpointID != "" {
			t.Fatalf("a direct call was recorded as coming through %s", ev.VPCEndpointID)
		}
	})
	t.Run("denied/forged endpoint headers on the direct address", func(t *testing.T) {
		forged := http.Header{
			"X-Phantom-Source-Ip":   {"10.0.1.15"},
			"X-Phantom-Api-Id":      {"a1b2c3d4e5"},
			"X-Phantom-Tls-Version": {"TLSv1.3"},
			"X-Forwarded-For":       {"10.0.1.15"},
			"Forwarded":             {"for=10.0.1.15"},
		}
		ev := denied(t, u.signedGo(t, u.goClient(t, nil), user, direct, forged), 403, "AccessDeniedException", "AccessDenied")
		if ev.VPCEndpointID != "" || ev.SourceIPAddress != "127.0.0.1" {
			t.Fatalf("forged headers reached the decision: vpce %q source %q", ev.VPCEndpointID, ev.SourceIPAddress)
		}
	})
	t.Run("denied/certificate from another CA posing as the endpoint", func(t *testing.T) {
		rogue, err := pki.New(pki.Config{Dir: t.TempDir(), Account: "123456789012"})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := rogue.Issue(pki.Request{Identity: pki.Identity{Account: "123456789012", Kind: pki.KindEndpoint, Name: "vpce-0123456789abcdef0"}, Client: true})
		if err != nil {
			t.Fatal(err)
		}
		forged := http.Header{"X-Phantom-Source-Ip": {"10.0.1.15"}, "X-Phantom-Api-Id": {"a1b2c3d4e5"}}
		r := u.signedGo(t, u.goClient(t, cert), user, direct, forged)
		ev := denied(t, r, 403, "ForbiddenException", "InvalidClientCertificate")
		if ev.VPCEndpointID != "" {
			t.Fatalf("a certificate from another CA was taken as endpoint %s", ev.VPCEndpointID)
		}
	})
	t.Run("denied/revoked session", func(t *testing.T) {
		victim := u.assumeRole(t, u.env["PHANTOM_DEMO_ROLE_ARN"], "victim")
		if r := u.curl(t, &victim, api); r.Status != http.StatusOK {
			t.Fatalf("before revocation: %s", r)
		}
		time.Sleep(1100 * time.Millisecond) // revocation is by issue time, to the second
		u.phantom(t, "iam", "revoke-sessions", "--role", "service-a")
		var r reply
		eventually(t, "revoked session denied", func() error {
			if r = u.curl(t, &victim, api); r.Status != http.StatusForbidden {
				return fmt.Errorf("still %s", r)
			}
			return nil
		})
		denied(t, r, 403, "AccessDeniedException", "AccessDenied")
	})
	t.Run("denied/inactive key", func(t *testing.T) {
		var k struct {
			AccessKey struct{ AccessKeyId, SecretAccessKey string }
		}
		if err := json.Unmarshal([]byte(u.phantom(t, "iam", "create-access-key", "--user", "demo", "--output", "json")), &k); err != nil {
			t.Fatal(err)
		}
		second := aws.Credentials{AccessKeyID: k.AccessKey.AccessKeyId, SecretAccessKey: k.AccessKey.SecretAccessKey}
		eventually(t, "new key works", func() error {
			if r := u.curl(t, &second, api); r.Status != http.StatusOK {
				return fmt.Errorf("%s", r)
			}
			return nil
		})
		u.phantom(t, "iam", "update-access-key", "--user", "demo", "--access-key-id", second.AccessKeyID, "--status", "Inactive")
		var r reply
		eventually(t, "inactive key denied", func() error {
			if r = u.curl(t, &second, api); r.Status != http.StatusForbidden {
				return fmt.Errorf("still %s", r)
			}
			return nil
		})
		denied(t, r, 403, "UnrecognizedClientException", "InvalidClientTokenId")
	})
	t.Run("denied/source outside the security group", func(t *testing.T) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}, Timeout: 5 * time.Second}
		// The endpoint closes the connection at accept: the dial or the handshake fails.
		if conn, err := d.Dial("tcp", u.env["PHANTOM_ENDPOINT_ADDR"]); err == nil {
			defer conn.Close()
			tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err == nil {
				t.Fatal("TLS handshake from outside the security group succeeded")
			}
		}
		u.awaitEvent(t, "security group refusal", func(e *audit.Event) bool {
			return e.ErrorCode == "SecurityGroupDenied" && e.SourceIPAddress == "127.0.0.9"
		})
	})
	t.Run("denied/plaintext to the endpoint", func(t *testing.T) {
		out, _ := exec.Command("curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "http://"+u.env["PHANTOM_ENDPOINT_ADDR"]+"/prod/orders").Output()
		if string(out) == "200" {
			t.Fatal("plaintext HTTP to the endpoint was served")
		}
		u.awaitEvent(t, "plaintext refusal", func(e *audit.Event) bool { return e.ErrorCode == "PlaintextRefused" })
	})

	t.Run("graceful stop and audit verify", func(t *testing.T) {
		// A POST whose body is still arriving when SIGINT lands must be finished.
		body := []byte(`{"sku":"graceful-1","quantity":2}`)
		pr, pw := io.Pipe()
		req, err := http.NewRequest(http.MethodPost, api, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/json")
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(context.Background(), user, req, hex.EncodeToString(sum[:]), "execute-api", u.env["AWS_REGION"], time.Now()); err != nil {
			t.Fatal(err)
		}
		inflight := make(chan reply, 1)
		go func() {
			resp, err := u.goClient(t, nil).Do(req)
			if err != nil {
				inflight <- reply{Body: err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			inflight <- reply{Status: resp.StatusCode, Body: string(b)}
		}()
		if _, err := pw.Write(body[:10]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the request is through the endpoint and waiting for its body
		if err := u.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if _, err := pw.Write(body[10:]); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		if r := <-inflight; r.Status != http.StatusCreated || !strings.Contains(r.Body, "graceful-1") {
			t.Fatalf("the request in flight at SIGINT: %s", r)
		}
		u.awaitCleanExit(t)
		auditDir := filepath.Join(u.dataDir, "audit")
		if out, err := exec.Command(u.bin, "audit", "verify", auditDir).CombinedOutput(); err != nil {
			t.Fatalf("phantom audit verify on the run's log: %v\n%s", err, out)
		}
		// Pinned to the key derived from the master key, as an operator keeps it.
		pub, err := exec.Command(u.bin, "audit", "public-key", "--data-dir", u.dataDir).Output()
		if err != nil {
			t.Fatalf("phantom audit public-key: %v", err)
		}
		pubFile := filepath.Join(t.TempDir(), "audit-signer.pem")
		if err := os.WriteFile(pubFile, pub, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(u.bin, "audit", "verify", "--public-key", pubFile, auditDir).CombinedOutput(); err != nil || strings.Contains(string(out), "unpinned") {
			t.Fatalf("phantom audit verify --public-key: %v\n%s", err, out)
		}
		testAuditTampering(t, u.bin, auditDir)
	})
}

// testAuditTampering edits, deletes and truncates the gateway chain's third record (seq
// 3, the segment's third line) in copies of dir and expects `phantom audit verify` to fail
// with the problem line that names what was done to it: the record modified, the record
// missing, the segment cut off after record 2.
func testAuditTampering(t *testing.T, bin, dir string) {
	seg := filepath.Join("gateway", "00000001.jsonl")
	for _, tc := range []struct {
		name   string
		tamper func(lines [][]byte) [][]byte
		want   *regexp.Regexp // a whole line of the output
	}{
		{"edit", func(l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte(`"sourceIPAddress":"127.0.0.1"`), []byte(`"sourceIPAddress":"127.0.0.9"`), 1)
			return l
		}, regexp.MustCompile(`(?m)^TAMPERED: gateway/00000001\.jsonl line 3 seq 3: modified: the record's hash does not match its content`)},
		{"delete", func(l [][]byte) [][]byte { return append(l[:2], l[3:]...) },
			regexp.MustCompile(`(?m)^TAMPERED: gateway/00000001\.jsonl line 3 seq 3: removed: record 3 is missing before record 4$`)},
		// The digest signs every record; what is left ends at record 2.
		{"truncate", func(l [][]byte) [][]byte { return l[:2] },
			regexp.MustCompile(`(?m)^TAMPERED: gateway/00000001\.jsonl seq [0-9]+: truncated: 00000001\.digest line [0-9]+ signs [0-9]+ bytes up to seq [0-9]+, the segment has [0-9]+ bytes \(records up to seq 2\): records were cut off$`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := filepath.Join(t.TempDir(), "audit")
			if err := os.CopyFS(cp, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(cp, seg)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.SplitAfter(data, []byte("\n"))
			if len(lines) < 5 {
				t.Fatalf("the gateway chain has only %d records", len(lines))
			}
			if err := os.WriteFile(path, bytes.Join(tc.tamper(lines), nil), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "audit", "verify", cp).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("audit verify after %s: %v, want exit 1\n%s", tc.name, err, out)
			}
			if !tc.want.Match(out) {
				t.Fatalf("audit verify after %s: no line matching %s:\n%s", tc.name, tc.want, out)
			}
		})
	}
}
