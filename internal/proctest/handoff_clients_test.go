package proctest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// TestHandoffRealClients: clients Phantom did not write call through `phantom endpoint
// --handoff fd|tunnel` and `phantom gateway --handoff-endpoint`, each a process of its
// own: curl's own SigV4 signer (--aws-sigv4) and the AWS CLI (apigatewaymanagementapi,
// whose calls are signed for execute-api and sent under the stage's URL), each making an
// allowed call and a denied one. The allowed calls pass the resource policy that requires
// aws:SourceVpce, and the gateway's chain records every call with the endpoint and the
// caller's address as the handoff delivered them. Through tunnels, a TLS 1.3 client's
// bytes after its ClientHello cross raw, outside the tunnel's TLS, and a TLS 1.2 client's
// (curl --tls-max 1.2) inside it.
func TestHandoffRealClients(t *testing.T) {
	curl := testenv.LookPath(t, "curl")
	awsCLI := testenv.LookPath(t, "aws")
	for _, mode := range []string{"fd", "tunnel"} {
		t.Run(mode, func(t *testing.T) {
			c, user := handoffCluster(t, mode)
			ca := filepath.Join(c.cfg.Dir, "data", "sts", "ca.pem")
			orders := c.EndpointURL(0)
			stage := strings.TrimSuffix(orders, "/orders")

			if got := curlSigV4(t, curl, ca, user, orders); got != "200" {
				t.Errorf("curl --aws-sigv4, allowed: %s", got)
			}
			if got := curlSigV4(t, curl, ca, user, orders, "--tls-max", "1.2"); got != "200" {
				t.Errorf("curl --aws-sigv4 over TLS 1.2, allowed: %s", got)
			}
			forged := user
			forged.SecretAccessKey = strings.Repeat("x", 40)
			if got := curlSigV4(t, curl, ca, forged, orders); got != "403" {
				t.Errorf("curl --aws-sigv4 with a wrong secret: %s, want 403", got)
			}
			out, errOut, err := runAWS(awsCLI, ca, user, "apigatewaymanagementapi", "get-connection", "--connection-id", "abc123=", "--endpoint-url", stage)
			if err != nil {
				t.Errorf("aws apigatewaymanagementapi get-connection, allowed: %v\n%s%s", err, out, errOut)
			}
			// DELETE is not in the user's policy: the gateway denies it.
			_, errOut, err = runAWS(awsCLI, ca, user, "apigatewaymanagementapi", "delete-connection", "--connection-id", "abc123=", "--endpoint-url", stage)
			if err == nil || !strings.Contains(errOut, "(AccessDeniedException)") {
				t.Errorf("aws apigatewaymanagementapi delete-connection: %v, want AccessDeniedException\n%s", err, errOut)
			}

			if mode == "tunnel" {
				// Every caller here but curl --tls-max 1.2 offers TLS 1.3 with a key share
				// Go's server has: its bytes after its ClientHello cross raw; the TLS 1.2
				// caller's cross inside the tunnel.
				log := c.Gateway(0).Log()
				n, raw := strings.Count(log, "handoff tunnel delivered a caller"), strings.Count(log, "raw=true")
				if inside := strings.Count(log, "raw=false"); n < 5 || inside != 1 || raw != n-1 {
					t.Errorf("%d callers delivered through tunnels, %d raw and %d inside, want one inside:\n%s", n, raw, inside, log)
				}
			}
			c.Close()                  // the chains are complete
			want := map[string]string{ // client and call -> errorCode
				"curl GET /prod/orders":                  "",
				"curl GET /prod/orders forged":           "SignatureDoesNotMatch",
				"aws-cli GET /prod/@connections/{id}":    "",
				"aws-cli DELETE /prod/@connections/{id}": "AccessDenied",
			}
			seen := map[string]string{}
			err = audit.ReadChain(c.AuditDir(), "gateway-1", 0, func(e audit.Entry) error {
				ev, err := e.Decode()
				if err != nil || ev.EventName != "Invoke" {
					return err
				}
				client := ""
				switch {
				case strings.HasPrefix(ev.UserAgent, "curl/"):
					client = "curl"
				case strings.HasPrefix(ev.UserAgent, "aws-cli/"):
					client = "aws-cli"
				default:
					return nil
				}
				if ev.VPCEndpointID != EndpointID(0) || ev.SourceIPAddress != "127.0.0.1" {
					t.Errorf("%s call recorded with endpoint %q and address %q, want %s and 127.0.0.1", client, ev.VPCEndpointID, ev.SourceIPAddress, EndpointID(0))
				}
				key := fmt.Sprintf("%s %s", client, callOf(ev))
				if client == "curl" && ev.ErrorCode != "" {
					key += " forged"
				}
				seen[key] = ev.ErrorCode
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for k, code := range want {
				if got, ok := seen[k]; !ok || got != code {
					t.Errorf("%s: recorded %v with errorCode %q, want %q (recorded: %v)", k, ok, got, code, seen)
				}
			}
		})
	}
}

// callOf is an Invoke event's method and path as the gateway records them, a
// connection's id shown as {id}.
func callOf(ev *audit.Event) string {
	method, _ := ev.RequestParameters["httpMethod"].(string)
	path, _ := ev.RequestParameters["path"].(string)
	if i := strings.Index(path, "/@connections/"); i >= 0 {
		path = path[:i] + "/@connections/{id}"
	}
	return method + " " + path
}

// curlSigV4 has curl sign a GET of url for execute-api with creds and returns the status;
// extra are more of curl's options.
func curlSigV4(t *testing.T, curl, ca string, creds aws.Credentials, url string, extra ...string) string {
	t.Helper()
	args := append([]string{"-sS", "--noproxy", "*", "--max-time", "10", "--cacert", ca, "-o", os.DevNull, "-w", "%{http_code}",
		"--aws-sigv4", "aws:amz:" + Region + ":execute-api", "--user", creds.AccessKeyID + ":" + creds.SecretAccessKey}, extra...)
	out, err := exec.Command(curl, append(args, url)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, out)
	}
	return string(out)
}

// runAWS runs the AWS CLI with creds, the perimeter's CA bundle and region, and nothing
// else from the environment's AWS settings.
func runAWS(awsCLI, ca string, creds aws.Credentials, args ...string) (string, string, error) {
	cmd := exec.Command(awsCLI, append(args, "--output", "json")...)
	cmd.Env = testenv.AWSEnv(ca, Region, creds)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}
