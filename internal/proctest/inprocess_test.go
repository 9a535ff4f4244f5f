package proctest

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
)

// TestEndpointInGatewayProcess: `phantom gateway --endpoint` serves the endpoint in the
// gateway's process. A signed call through it is allowed (the resource policy requires
// aws:SourceVpce, so the gateway learned the endpoint from the in-memory handover); the
// same call straight to the gateway, with X-Phantom-* headers claiming the endpoint, is
// denied; the endpoint writes its own audit chain and the gateway's record of the allowed
// call names the endpoint.
func TestEndpointInGatewayProcess(t *testing.T) {
	c := startCluster(t, Config{Gateways: 1, Endpoints: 1, InProcess: true})
	ctx := t.Context()
	user, err := c.CreateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Call(ctx, 0, user); r.Status != 200 {
		t.Fatalf("through the in-process endpoint: %+v", r)
	}
	client, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	tr := client.Transport
	client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r.Header.Set("X-Phantom-Source-Ip", "127.0.0.1")
		r.Header.Set("X-Phantom-Api-Id", APIID)
		r.Header.Set("X-Phantom-Endpoint", EndpointID(0))
		return tr.RoundTrip(r)
	})
	if r := Get(ctx, client, "https://"+c.GatewayAddrs()[0]+"/prod/orders", user); r.Status != 403 {
		t.Errorf("straight to the gateway with endpoint headers: %+v", r)
	}
	c.Close() // the chains are complete
	chain := perimeter.EndpointChain("gateway-1", EndpointID(0))
	if _, err := os.Stat(filepath.Join(c.AuditDir(), chain)); err != nil {
		t.Errorf("the in-process endpoint's audit chain %s: %v", chain, err)
	}
	allowed, denied := 0, 0
	err = audit.ReadChain(c.AuditDir(), "gateway-1", 0, func(e audit.Entry) error {
		ev, err := e.Decode()
		if err != nil || ev.EventName != "Invoke" {
			return err
		}
		switch {
		case ev.ErrorCode == "" && ev.VPCEndpointID == EndpointID(0):
			allowed++
		case ev.ErrorCode != "" && ev.VPCEndpointID == "":
			denied++
		}
		return nil
	})
	if err != nil || allowed != 1 || denied != 1 {
		t.Errorf("gateway chain: %d allowed calls naming %s, %d denied direct calls (want 1 and 1); %v", allowed, EndpointID(0), denied, err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
