package endpoint

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/gateway"
	"github.com/phantom-perimeter/phantom/internal/keys"
)

// TestWithRealGateway runs the data path of DESIGN's picture in process: an AWS SDK
// signed call -> endpoint (TLS, security group) -> mTLS -> internal/gateway (SigV4, IAM,
// resource policy on aws:SourceVpce and aws:SourceIp) -> backend. The same call sent to the
// gateway directly is denied by the resource policy, and the gateway's audit record and
// identity assertion name the endpoint and the caller's address, which it can only have
// learned from the endpoint's authenticated channel.
// perimeter is an endpoint in front of the real gateway in front of a backend.
type perimeter struct {
	pki     *testPKI
	backend *httptest.Server
	gw      *gateway.Gateway
	gwSrv   *httptest.Server
	gwAudit *memAuditor
	ep      *harness
}

const e2eKeyID, e2eSecret = "AKIAENDPOINTE2ETEST1", "e2e/secret/key/EXAMPLEKEYEXAMPLEKEY00"

func newPerimeter(t testing.TB, backend http.HandlerFunc) *perimeter {
	t.Helper()
	pm := &perimeter{pki: newTestPKI(t), gwAudit: &memAuditor{}}
	p := pm.pki
	pm.backend = httptest.NewServer(backend)
	t.Cleanup(pm.backend.Close)
	raw, err := os.ReadFile("testdata/perimeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := config.Parse("testdata/perimeter.yaml", bytes.ReplaceAll(raw, []byte("BACKEND_URL"), []byte(pm.backend.URL)))
	if err != nil {
		t.Fatal(err)
	}
	mk := make([]byte, 32)
	rand.Read(mk)
	akey, err := keys.DeriveEd25519(mk, keys.Assertion)
	if err != nil {
		t.Fatal(err)
	}
	pm.gw, err = gateway.New(gateway.Config{
		Name: "gateway",
		Spec: func() *config.Spec { return spec },
		Credentials: staticCreds{e2eKeyID: {AccessKeyID: e2eKeyID, SecretAccessKey: e2eSecret,
			Principal: "arn:aws:iam::123456789012:user/alice"}},
		Verifier:     p.ca.Verifier(),
		Auditor:      pm.gwAudit,
		AssertionKey: akey,
		Logger:       quietSlog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	pm.gwSrv = httptest.NewUnstartedServer(pm.gw)
	pm.gwSrv.TLS = pm.gw.TLSConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.gwCert, nil })
	// httptest adds its own certificate when Certificates is empty, and Go prefers it to
	// GetCertificate for a client that sends no SNI (an IP address).
	pm.gwSrv.TLS.Certificates = []tls.Certificate{*p.gwCert}
	pm.gwSrv.Config.ErrorLog = quietLog()
	pm.gwSrv.StartTLS()
	t.Cleanup(pm.gwSrv.Close)
	registerLocal(t, pm.gwSrv.Listener.Addr().String(), pm.handOver)
	pm.ep = newHarness(t, p, harnessOpts{spec: defaultSpecOpts(), specValue: spec, gateways: []string{pm.gwSrv.Listener.Addr().String()}})
	return pm
}

// handOver hands a request to the real gateway in memory, as internal/perimeter wires it.
func (pm *perimeter) handOver(w http.ResponseWriter, r *http.Request, h Handover) {
	pm.gw.ServeHandover(w, r, &gateway.Handover{Endpoint: h.Endpoint, SourceIP: h.SourceIP, APIID: h.APIID, TLSVersion: h.TLSVersion, CipherSuite: h.CipherSuite})
}

// signedOrders is a POST /prod/orders signed by aws-sdk-go-v2 for the API's host.
func signedOrders(t testing.TB, base string) *http.Request {
	t.Helper()
	body := `{"item":"book"}`
	req, _ := http.NewRequest("POST", base+"/prod/orders?x=1", bytes.NewReader([]byte(body)))
	req.Host = ordersHost
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: e2eKeyID, SecretAccessKey: e2eSecret},
		req, hex.EncodeToString(sum[:]), "execute-api", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestWithRealGateway(t *testing.T) {
	type hit struct{ assertion string }
	hits := make(chan hit, 8)
	pm := newPerimeter(t, func(w http.ResponseWriter, r *http.Request) {
		hits <- hit{r.Header.Get("X-Phantom-Identity")}
		io.WriteString(w, `{"orders":[]}`)
	})
	p, h, gw, gwSrv, gwAudit := pm.pki, pm.ep, pm.gw, pm.gwSrv, pm.gwAudit
	signed := func(base string) *http.Request { return signedOrders(t, base) }

	// Through the endpoint: allowed.
	resp, err := h.client(false).Do(signed(h.url("")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != `{"orders":[]}` {
		t.Fatalf("through the endpoint: %d %s; endpoint events %s; gateway events %s", resp.StatusCode, b, h.aud.describe(), gwAudit.describe())
	}
	got := <-hits
	key, err := gw.BackendKey(apiOrders) // the orders API's assertion key (HS256, the default)
	if err != nil {
		t.Fatal(err)
	}
	v, err := gateway.NewAssertionVerifier(gateway.AssertionVerifierConfig{Key: key, Audience: apiOrders})
	if err != nil {
		t.Fatal(err)
	}
	a, err := v.Verify(got.assertion)
	if err != nil {
		t.Fatalf("assertion: %v", err)
	}
	if a.VPCEndpoint != testVPCE || a.SourceIP != "127.0.0.1" || a.Principal != "arn:aws:iam::123456789012:user/alice" {
		t.Errorf("assertion = %+v", a)
	}
	ev := lastEvent(gwAudit)
	if ev == nil || ev.VPCEndpointID != testVPCE || ev.SourceIPAddress != "127.0.0.1" || ev.ErrorCode != "" ||
		ev.TLSDetails == nil || ev.TLSDetails.TLSVersion != "TLSv1.3" || ev.TLSDetails.ClientProvidedHostHeader != ordersHost {
		t.Errorf("gateway event = %+v", ev)
	}

	// Directly to the gateway, with a forged source header: denied by the resource policy.
	direct := signed(gwSrv.URL)
	direct.Header.Set("X-Phantom-Source-Ip", "127.0.0.1")
	direct.Header.Set("X-Phantom-Api-Id", apiOrders)
	dc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
	resp, err = dc.Do(direct)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("direct call: %d %s", resp.StatusCode, b)
	}
	if ev := lastEvent(gwAudit); ev == nil || ev.VPCEndpointID != "" || ev.ErrorCode == "" {
		t.Errorf("direct call event = %+v", ev)
	}
	select {
	case <-hits:
		t.Error("the direct call reached the backend")
	default:
	}
}

func lastEvent(a *memAuditor) *audit.Event {
	evs := a.events()
	if len(evs) == 0 {
		return nil
	}
	return evs[len(evs)-1]
}
