package gateway

import (
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

// TestOnlyEndpointCertificatesNameEndpoints: a perimeter certificate of another kind whose
// name is an endpoint's id (node and gateway names are DNS labels, and vpce-0123456789abcdef0
// is one) does not make its holder that endpoint: refused, audited without a
// vpcEndpointId, the backend never called. The same name on an endpoint certificate is
// the endpoint (the control: the refusal is about the kind, not the name).
func TestOnlyEndpointCertificatesNameEndpoints(t *testing.T) {
	for _, tc := range []struct {
		kind   pki.Kind
		status int
	}{
		{pki.KindNode, http.StatusForbidden},
		{pki.KindGateway, http.StatusForbidden},
		{pki.KindEndpoint, http.StatusOK},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			e := newEnv(t)
			k := e.keys["alice"]
			status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &k,
				cert: endpointCert(t, e.ca, tc.kind, testEndpoint), endpointHdrs: viaEndpoint(testAPI, "10.0.1.15")})
			if status != tc.status {
				t.Fatalf("a %s certificate named %s: status %d, want %d; body %s", tc.kind, testEndpoint, status, tc.status, body)
			}
			ev := e.oneEvent(t)
			if tc.kind == pki.KindEndpoint {
				if ev.VPCEndpointID != testEndpoint || ev.SourceIPAddress != "10.0.1.15" {
					t.Fatalf("endpoint call: vpcEndpointId %q sourceIPAddress %q", ev.VPCEndpointID, ev.SourceIPAddress)
				}
				e.hit(t)
				return
			}
			if ev.ErrorCode != "InvalidClientCertificate" || ev.VPCEndpointID != "" || ev.SourceIPAddress != "127.0.0.1" {
				t.Errorf("event: errorCode %q vpcEndpointId %q sourceIPAddress %q", ev.ErrorCode, ev.VPCEndpointID, ev.SourceIPAddress)
			}
			if r, _ := ev.AdditionalEventData["reason"].(string); !strings.Contains(r, "not an endpoint") {
				t.Errorf("reason %q does not name the kind", r)
			}
			e.noHit(t)
		})
	}
}

// TestEndpointCertificateExpiresMidConnection: the gateway checks the endpoint's
// certificate on every request, not only at the handshake, so a long-lived connection
// whose certificate expires is refused from that moment on (InvalidClientCertificate,
// audited with the reason) while the connection itself stays open.
func TestEndpointCertificateExpiresMidConnection(t *testing.T) {
	e := newEnv(t)
	cert, err := e.ca.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindEndpoint, Name: testEndpoint}, Client: true, Validity: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c := e.client(cert)
	k := e.keys["alice"]
	send := func() (status int, reused bool) {
		t.Helper()
		r := newRequest(t, "GET", e.server.URL+"/prod/orders", nil)
		r = r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }}))
		e.sign(r, k, nil)
		for h, v := range viaEndpoint(testAPI, "10.0.1.15") {
			r.Header.Set(h, v)
		}
		status, _, _ = do(t, c, r)
		return status, reused
	}

	if status, _ := send(); status != http.StatusOK {
		t.Fatalf("while the certificate is valid: status %d", status)
	}
	if ev := e.oneEvent(t); ev.VPCEndpointID != testEndpoint {
		t.Fatalf("vpcEndpointId %q", ev.VPCEndpointID)
	}
	e.hit(t)

	e.clock.Advance(59 * time.Second) // still inside the certificate's minute (and its backdate)
	if status, reused := send(); status != http.StatusOK || !reused {
		t.Fatalf("before expiry: status %d, connection reused %v", status, reused)
	}
	e.oneEvent(t)
	e.hit(t)

	e.clock.Advance(2 * time.Minute) // past NotAfter; the connection stays open
	for i := range 2 {
		status, reused := send()
		if !reused {
			t.Fatalf("request %d after expiry took a new connection: the test must exercise the long-lived one", i)
		}
		if status != http.StatusForbidden {
			t.Fatalf("request %d after expiry on the same connection: status %d, want 403", i, status)
		}
		ev := e.oneEvent(t)
		if r, _ := ev.AdditionalEventData["reason"].(string); ev.ErrorCode != "InvalidClientCertificate" || ev.VPCEndpointID != "" || !strings.Contains(r, "expired") {
			t.Fatalf("event after expiry: errorCode %q vpcEndpointId %q reason %q", ev.ErrorCode, ev.VPCEndpointID, r)
		}
		e.noHit(t)
	}
}
