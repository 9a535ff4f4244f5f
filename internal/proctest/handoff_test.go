package proctest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// TestEndpointHandoffProcesses: `phantom endpoint --handoff fd|tunnel` hands its callers'
// connections to `phantom gateway --handoff-endpoint`, which terminates TLS with the
// endpoint's certificate. A signed call through the endpoint is allowed (the resource
// policy requires aws:SourceVpce: the gateway learned the endpoint from the handoff
// channel) and the gateway's record names the endpoint and the caller's address; the
// gateway's part of the endpoint writes the chain GATEWAY-endpoint-VPCE, apart from the
// endpoint process's own.
func TestEndpointHandoffProcesses(t *testing.T) {
	for _, mode := range []string{"fd", "tunnel"} {
		t.Run(mode, func(t *testing.T) {
			c, _ := handoffCluster(t, mode)
			c.Close() // the chains are complete
			if _, err := os.Stat(filepath.Join(c.AuditDir(), perimeter.HandoffChain("gateway-1", EndpointID(0)))); err != nil {
				t.Errorf("the gateway's chain of the endpoint: %v", err)
			}
			allowed := 0
			err := audit.ReadChain(c.AuditDir(), "gateway-1", 0, func(e audit.Entry) error {
				ev, err := e.Decode()
				if err == nil && ev.EventName == "Invoke" && ev.ErrorCode == "" && ev.VPCEndpointID == EndpointID(0) && ev.SourceIPAddress == "127.0.0.1" {
					allowed++
				}
				return err
			})
			if err != nil || allowed != 1 {
				t.Errorf("gateway chain: %d allowed calls naming %s from 127.0.0.1 (want 1); %v", allowed, EndpointID(0), err)
			}
		})
	}
}

// handoffCluster starts a gateway and an endpoint process handing its connections off by
// mode ("fd" or "tunnel") and returns it with a user's key, once a call with it through
// the endpoint has succeeded.
func handoffCluster(t *testing.T, mode string) (*Cluster, aws.Credentials) {
	t.Helper()
	c := startCluster(t, Config{Gateways: 1, Endpoints: 1, Handoff: mode})
	ctx := t.Context()
	user, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the user's call through the endpoint", func() bool { return c.Call(ctx, 0, user).Status == 200 })
	return c, user
}

// TestHandoffInEnrolledGatewayRefused: an enrolled gateway holds only its own certificate,
// none naming the endpoint, so `phantom gateway --handoff-endpoint` refuses to start there,
// saying why, as --endpoint does.
func TestHandoffInEnrolledGatewayRefused(t *testing.T) {
	postgresDSN(t)
	dsn, _ := storetest.PostgresSchema(t, "cluster_handoff_lp")
	_, err := Start(t.Context(), Config{Bin: phantomBin(t), Dir: t.TempDir(), StoreURL: dsn,
		Gateways: 1, Endpoints: 1, Handoff: "fd", LeastPrivilege: true})
	if err == nil || !strings.Contains(err.Error(), "--handoff-endpoint needs the CA's issuing key") {
		t.Fatalf("an enrolled gateway with --handoff-endpoint: %v", err)
	}
}
