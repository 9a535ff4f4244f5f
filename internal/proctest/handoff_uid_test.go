package proctest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// nobody is the user and group the endpoint process runs as: another uid than the
// gateway's, with no supplementary groups.
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// TestHandoffPeerUID: `phantom endpoint --handoff fd` running as another user than
// `phantom gateway` (uid 65534 here, the gateway root), the handoff directory shared
// through its group as the gateway's --help says. Each side checks the other's uid with
// SO_PEERCRED, and each refuses on its own: a gateway whose --handoff-peer-uid does not
// name the endpoint's uid refuses the endpoint (its connections never reach the gateway),
// an endpoint without --handoff-peer-uid naming the gateway's uid refuses to hand its
// callers to it, and with both flags the call goes through with the endpoint and the
// caller's address in the gateway's chain. Every refusal leaves the caller's call failed
// and the endpoint's chain saying GatewayUnreachable.
func TestHandoffPeerUID(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Skipf(t, "running the endpoint process as another uid (%d) needs root; this runs as uid %d", nobody.Uid, os.Getuid())
	}
	bin := phantomBin(t)
	// The endpoint's user runs the binary and enters the cluster's directory.
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	gatewayUID := "0"
	endpointUID := "65534"
	for _, tc := range []struct {
		name              string
		gateway, endpoint []string // --handoff-peer-uid flags
		ok                bool
		gatewayLog        string // what the refusing side logs
		endpointLog       string
	}{
		{name: "gateway without the endpoint's uid", gateway: nil, endpoint: []string{"--handoff-peer-uid", gatewayUID},
			// Without the flag the socket is the gateway user's alone (0600): the
			// endpoint's user cannot even connect.
			endpointLog: "permission denied"},
		{name: "gateway naming another uid", gateway: []string{"--handoff-peer-uid", "4242"}, endpoint: []string{"--handoff-peer-uid", gatewayUID},
			gatewayLog: "runs as uid 65534, not one of [4242]"},
		{name: "endpoint without the gateway's uid", gateway: []string{"--handoff-peer-uid", endpointUID}, endpoint: nil,
			endpointLog: "runs as uid 0, not one of [65534]"},
		{name: "both", gateway: []string{"--handoff-peer-uid", endpointUID}, endpoint: []string{"--handoff-peer-uid", gatewayUID}, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "phantom-peeruid-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			c := startCluster(t, Config{Dir: dir, Gateways: 1, Endpoints: 1, Handoff: "fd", EndpointUser: nobody,
				Args: map[string][]string{"gateway": tc.gateway, "endpoint": tc.endpoint}})
			ctx := t.Context()
			user, err := c.CreateUserKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.ok {
				waitFor(t, 10*time.Second, "the user's call through the endpoint", func() bool { return c.Call(ctx, 0, user).Status == 200 })
			} else {
				for range 3 {
					if r := c.Call(ctx, 0, user); r.Err == nil {
						t.Fatalf("a call went through a refused handoff: %d", r.Status)
					}
				}
			}
			c.Close()
			if !strings.Contains(c.Gateway(0).Log(), tc.gatewayLog) || !strings.Contains(c.Endpoint(0).Log(), tc.endpointLog) {
				t.Errorf("logs: gateway should say %q, endpoint %q:\n--- gateway\n%s\n--- endpoint\n%s", tc.gatewayLog, tc.endpointLog,
					tailString(c.Gateway(0).Log(), 2000), tailString(c.Endpoint(0).Log(), 2000))
			}
			allowed, unreachable := 0, 0
			if err := audit.ReadChain(c.AuditDir(), "gateway-1", 0, func(e audit.Entry) error {
				ev, err := e.Decode()
				if err == nil && ev.EventName == "Invoke" && ev.ErrorCode == "" && ev.VPCEndpointID == EndpointID(0) && ev.SourceIPAddress == "127.0.0.1" {
					allowed++
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if err := audit.ReadChain(c.AuditDir(), "endpoint-1", 0, func(e audit.Entry) error {
				ev, err := e.Decode()
				if err == nil && ev.ErrorCode == "GatewayUnreachable" {
					unreachable++
				}
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if tc.ok && (allowed == 0 || unreachable != 0) {
				t.Errorf("accepted handoff: %d allowed calls in the gateway's chain naming the endpoint, %d GatewayUnreachable in the endpoint's", allowed, unreachable)
			}
			if !tc.ok && (allowed != 0 || unreachable == 0) {
				t.Errorf("refused handoff: %d allowed calls in the gateway's chain, %d GatewayUnreachable in the endpoint's", allowed, unreachable)
			}
		})
	}
}
