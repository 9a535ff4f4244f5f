package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// nodeSession is the demo agent's credential lifetime in these tests: short, so the
// tests see credentials expire and the agent's refreshed ones take over.
const nodeSession = 20 * time.Second

// serviceAScript is Service A written with boto3's own stack: botocore finds credentials
// with its default provider chain (nothing but the agent's address in the environment),
// signs with SigV4Auth and sends through HTTPS_PROXY with botocore's HTTP session. It
// calls, waits past the first credentials' expiry, and calls again.
const serviceAScript = `import os, sys, json, time
import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.httpsession import URLLib3Session
from botocore.utils import get_environ_proxies
url, wait = sys.argv[1], float(sys.argv[2])
session = boto3.session.Session()
creds = session.get_credentials()
def call():
    frozen = creds.get_frozen_credentials()
    req = AWSRequest(method="GET", url=url)
    SigV4Auth(frozen, "execute-api", session.region_name or os.environ["AWS_REGION"]).add_auth(req)
    http = URLLib3Session(verify=os.environ["AWS_CA_BUNDLE"], proxies=get_environ_proxies(url))
    r = http.send(req.prepare())
    return {"status": r.status_code, "body": r.content.decode(), "akid": frozen.access_key, "method": creds.method}
out = [call()]
time.sleep(wait)
out.append(call())
print(json.dumps(out))
`

type svcCall struct {
	Status int
	Body   string
	Akid   string
	Method string
}

// serviceAEnv is the environment of a workload on the demo node: no keys, only the
// agent's address (by protocol) and the egress proxy.
func (u *upServer) serviceAEnv(protocol string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(),
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_REGION=" + u.env["AWS_REGION"], "AWS_DEFAULT_REGION=" + u.env["AWS_REGION"],
		"AWS_CA_BUNDLE=" + u.env["AWS_CA_BUNDLE"], "HTTPS_PROXY=" + u.env["PHANTOM_EGRESS_PROXY"]}
	switch protocol {
	case "imds":
		env = append(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+u.env["PHANTOM_IMDS_ENDPOINT"])
	case "container":
		env = append(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI="+u.env["PHANTOM_CONTAINER_CREDENTIALS_URI"],
			"AWS_CONTAINER_AUTHORIZATION_TOKEN="+u.env["PHANTOM_CONTAINER_AUTH_TOKEN"])
	}
	return env
}

// runServiceA runs Service A (boto3) once over protocol and returns its calls; callers
// check boto3 first (testenv.Python), so a missing module is a failure here.
func (u *upServer) runServiceA(t *testing.T, protocol string, wait time.Duration) []svcCall {
	t.Helper()
	calls, err := u.serviceA(protocol, wait)
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

// serviceA is runServiceA without the testing.T, for a goroutine of its own (which must
// not call t.Fatal or t.Skip: a skip there would leave the test waiting forever).
func (u *upServer) serviceA(protocol string, wait time.Duration) ([]svcCall, error) {
	py, err := exec.LookPath("python3")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(py, "-c", serviceAScript, u.env["PHANTOM_NODE_API_URL"], fmt.Sprint(wait.Seconds()))
	cmd.Env = u.serviceAEnv(protocol)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("Service A (boto3, %s): %v\n%s", protocol, err, ee.Stderr)
		}
		return nil, err
	}
	var calls []svcCall
	if err := json.Unmarshal(out, &calls); err != nil {
		return nil, fmt.Errorf("Service A printed %q: %v", out, err)
	}
	return calls, nil
}

const nodePrincipal = "arn:aws:sts::123456789012:assumed-role/service-a/service-a-1"

// sdkServiceA is Service A written with aws-sdk-go-v2: LoadDefaultConfig with only the
// agent's address in the environment, the SDK's signer, and HTTPS_PROXY as it is (Go's
// environment proxy never proxies loopback, so the client names the proxy itself).
type sdkServiceA struct {
	creds  aws.CredentialsProvider
	client *http.Client
}

func (u *upServer) newSDKServiceA(t *testing.T, protocol string) *sdkServiceA {
	t.Helper()
	for _, kv := range u.serviceAEnv(protocol) {
		k, v, _ := strings.Cut(kv, "=")
		if k != "PATH" && k != "HOME" {
			t.Setenv(k, v)
		}
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	cfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := url.Parse(os.Getenv("HTTPS_PROXY"))
	if err != nil {
		t.Fatal(err)
	}
	c := u.goClient(t, nil)
	c.Transport.(*http.Transport).Proxy = http.ProxyURL(proxy)
	return &sdkServiceA{creds: cfg.Credentials, client: c}
}

func (s *sdkServiceA) call(t *testing.T, rawURL string) (reply, aws.Credentials) {
	t.Helper()
	creds, err := s.creds.Retrieve(context.Background())
	if err != nil {
		t.Fatalf("aws-sdk-go-v2 credentials: %v", err)
	}
	r, err := s.send(creds, rawURL)
	if err != nil {
		t.Fatalf("GET %s through the egress proxy: %v", rawURL, err)
	}
	return r, creds
}

// try is call that returns the failure.
func (s *sdkServiceA) try(rawURL string) (reply, error) {
	creds, err := s.creds.Retrieve(context.Background())
	if err != nil {
		return reply{}, err
	}
	return s.send(creds, rawURL)
}

func (s *sdkServiceA) send(creds aws.Credentials, rawURL string) (reply, error) {
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return reply{}, err
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, emptyPayloadHash, "execute-api", os.Getenv("AWS_REGION"), time.Now()); err != nil {
		return reply{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Type: resp.Header.Get("x-amzn-ErrorType"), ReqID: resp.Header.Get("x-amzn-RequestId"), Body: string(body)}, nil
}

// TestUpWorkload drives the demo Service A node of `phantom up`: unmodified SDKs get the
// node's credentials from the agent (IMDSv2 and container credentials), reach the orders
// API only through the egress proxy and the endpoint, and keep working past their first
// credentials' expiry; the egress proxy refuses everything else; the node's credentials
// are refused outside the node's network.
func TestUpWorkload(t *testing.T) {
	testenv.LookPath(t, "curl")
	testenv.Python(t, "boto3")
	if testing.Short() {
		t.Skip("runs phantom up and waits past a credential expiry")
	}
	u := startUp(t, buildPhantom(t), "--node-session-duration", nodeSession.String())
	wait := nodeSession + 5*time.Second

	// boto3 over the container endpoint and aws-sdk-go-v2 over IMDS, both across an expiry,
	// at the same time (botocore's IMDS provider extends short-lived credentials by design,
	// so boto3's across-expiry check uses the container provider; see internal/agent).
	type result struct {
		calls []svcCall
		err   error
	}
	pyDone := make(chan result, 1)
	go func() {
		calls, err := u.serviceA("container", wait)
		pyDone <- result{calls, err}
	}()

	t.Run("boto3 over IMDS", func(t *testing.T) {
		calls := u.runServiceA(t, "imds", 0)
		if c := calls[0]; c.Status != http.StatusOK || !strings.Contains(c.Body, nodePrincipal) || c.Method != "iam-role" {
			t.Fatalf("boto3 with IMDS credentials through the egress proxy: %+v", c)
		}
	})

	sdk := u.newSDKServiceA(t, "imds")
	first, firstCreds := sdk.call(t, u.env["PHANTOM_NODE_API_URL"])
	if first.Status != http.StatusOK || !strings.Contains(first.Body, nodePrincipal) {
		t.Fatalf("aws-sdk-go-v2 via IMDS: %s", first)
	}
	ev := u.eventFor(t, first)
	if ev.UserIdentity.SessionContext == nil || ev.UserIdentity.SessionContext.EC2RoleDelivery != "2.0" {
		t.Fatalf("the node session's audit event has no ec2RoleDelivery: %+v", ev.UserIdentity)
	}
	// By the endpoint's private DNS name too (the endpoint serves the one API), which only
	// the egress proxy resolves; by the endpoint's address, with no server name to bind the
	// tunnel to an API, the proxy refuses.
	_, port, _ := net.SplitHostPort(u.env["PHANTOM_ENDPOINT_ADDR"])
	if r, _ := sdk.call(t, "https://orders.internal.example:"+port+"/prod/orders"); r.Status != http.StatusOK {
		t.Fatalf("aws-sdk-go-v2 by private DNS name: %s", r)
	}
	if _, err := sdk.try(u.env["PHANTOM_API_URL"]); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Fatalf("aws-sdk-go-v2 to the endpoint's address through the proxy: %v, want the proxy's TLS refusal", err)
	}

	t.Run("node credentials outside the node's network", func(t *testing.T) {
		// From the node itself they work (checked first: the use from elsewhere below is
		// an exfiltration finding whose response revokes the role's sessions).
		if r := u.signedGo(t, u.goClient(t, nil), firstCreds, u.env["PHANTOM_API_URL"], nil); r.Status != http.StatusOK {
			t.Fatalf("node credentials from the node: %s", r)
		}
		// 127.0.0.2 is inside the security group, but it is not the node's address.
		c := u.goClient(t, nil)
		c.Transport.(*http.Transport).DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext
		r := u.signedGo(t, c, firstCreds, u.env["PHANTOM_API_URL"], nil)
		if r.Status != http.StatusForbidden || r.Type != "AccessDeniedException" {
			t.Fatalf("node credentials from 127.0.0.2: %s", r)
		}
		if ev := u.eventFor(t, r); ev.ErrorCode != "AccessDenied" || ev.SourceIPAddress != "127.0.0.2" {
			t.Fatalf("audit event: %+v", ev)
		}
	})

	t.Run("egress refusals", func(t *testing.T) {
		_, epPort, _ := net.SplitHostPort(u.env["PHANTOM_ENDPOINT_ADDR"])
		imds := strings.TrimSuffix(strings.TrimPrefix(u.env["PHANTOM_IMDS_ENDPOINT"], "http://"), "/")
		_, imdsPort, _ := net.SplitHostPort(imds)
		for _, tc := range []struct{ name, target, code string }{
			{"host not in the rules", "https://example.com/", "DestinationNotAllowed"},
			{"allowed address on another port", "https://127.0.0.1:" + u.env["PHANTOM_GATEWAY_ADDR"][strings.LastIndex(u.env["PHANTOM_GATEWAY_ADDR"], ":")+1:] + "/", "PortNotAllowed"},
			{"the agent's address", "https://" + imds + "/", "AddressNotAllowed"},
			{"the metadata address", "https://169.254.169.254/", "AddressNotAllowed"},
			{"loopback in decimal", "https://2130706433:" + imdsPort + "/", "AddressNotAllowed"},
			{"loopback in hex", "https://0x7f.1:" + imdsPort + "/", "AddressNotAllowed"},
			{"loopback, IPv4-mapped IPv6", "https://[::ffff:127.0.0.1]:" + imdsPort + "/", "AddressNotAllowed"},
			{"a private address", "https://10.0.1.15:" + epPort + "/", "AddressNotAllowed"},
			// A name no rule names is refused before any lookup; names that a rule covers and
			// that resolve to a guarded address (and DNS answers that change between check
			// and connect) are internal/egress's tests, which control the resolver.
			{"a name for loopback", "https://localhost:" + epPort + "/", "DestinationNotAllowed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now().Truncate(time.Millisecond)
				out, _ := exec.Command("curl", "-sS", "--max-time", "10", "--cacert", u.env["AWS_CA_BUNDLE"], "-x", u.env["PHANTOM_EGRESS_PROXY"],
					"-o", "/dev/null", "-w", "%{http_code} %{http_connect}", tc.target).Output()
				if strings.HasPrefix(string(out), "200") {
					t.Fatalf("%s reached through the egress proxy", tc.target)
				}
				// curl may respell the host (it reads 2130706433 as 127.0.0.1 itself); the
				// proxy's event is the newest egress refusal either way.
				got := u.awaitEvent(t, tc.name, func(e *audit.Event) bool {
					return e.EventSource == "egress.phantom.amazonaws.com" && e.ErrorCode != "" && !e.EventTime.Before(start)
				})
				if got.ErrorCode != tc.code {
					t.Fatalf("egress event for %s: %+v", tc.target, got)
				}
			})
		}
	})

	// Past the first credentials' expiry: the agent has refreshed them.
	if d := time.Until(firstCreds.Expires.Add(time.Second)); d > 0 {
		time.Sleep(d)
	}
	later, laterCreds := sdk.call(t, u.env["PHANTOM_NODE_API_URL"])
	if later.Status != http.StatusOK || laterCreds.AccessKeyID == firstCreds.AccessKeyID {
		t.Fatalf("aws-sdk-go-v2 after the first credentials expired: %s (key %s, first %s)", later, laterCreds.AccessKeyID, firstCreds.AccessKeyID)
	}
	// The expired first credentials themselves are refused.
	if r := u.signedGo(t, u.goClient(t, nil), firstCreds, u.env["PHANTOM_API_URL"], nil); r.Status != http.StatusForbidden || r.Type != "ExpiredTokenException" {
		t.Fatalf("expired node credentials: %s", r)
	}
	py := <-pyDone
	if py.err != nil {
		t.Fatalf("boto3 Service A over the container endpoint: %v", py.err)
	}
	calls := py.calls
	if len(calls) != 2 || calls[0].Status != 200 || calls[1].Status != 200 || calls[0].Akid == calls[1].Akid || calls[1].Method != "container-role" {
		t.Fatalf("boto3 across the expiry (container credentials): %+v", calls)
	}
	for _, c := range calls {
		if !strings.Contains(c.Body, nodePrincipal) {
			t.Fatalf("boto3 call not made as the node: %+v", c)
		}
	}
}
