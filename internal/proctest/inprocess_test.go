package proctest

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
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
	// The gateway learns the new key from the store (notified, else at its next poll).
	waitFor(t, 10*time.Second, "the user's call through the in-process endpoint", func() bool { return c.Call(ctx, 0, user).Status == 200 })
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
	// Calls before the gateway knew the key are denied through the endpoint, so they name it.
	if err != nil || allowed != 1 || denied != 1 {
		t.Errorf("gateway chain: %d allowed calls naming %s, %d denied direct calls (want 1 and 1); %v", allowed, EndpointID(0), denied, err)
	}
}

// TestEndpointInEnrolledGatewayRefused: a gateway without the CA's issuing key (enrolled
// from a join token, least privilege) holds only its own certificate, so it cannot serve
// an endpoint's callers or write the endpoint's chain: `phantom gateway --endpoint` there
// refuses to start, saying why, rather than serve callers the gateway's certificate.
func TestEndpointInEnrolledGatewayRefused(t *testing.T) {
	postgresDSN(t)
	dsn, _ := storetest.PostgresSchema(t, "cluster_inprocess_lp")
	_, err := Start(t.Context(), Config{Bin: phantomBin(t), Dir: t.TempDir(), StoreURL: dsn,
		Gateways: 1, Endpoints: 1, InProcess: true, LeastPrivilege: true})
	if err == nil || !strings.Contains(err.Error(), "--endpoint needs the CA's issuing key") {
		t.Fatalf("an enrolled gateway with --endpoint: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
