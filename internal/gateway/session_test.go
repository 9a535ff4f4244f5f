package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/handoff"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// A session policy caps the role's permissions ("Session policies", IAM User Guide): the
// role may invoke everything, the session only GET /orders.
func TestSessionPolicyCaps(t *testing.T) {
	e := newEnv(t)
	c, token, err := e.svc.NewSession(identity.Claims{
		Principal: "arn:aws:sts::123456789012:assumed-role/app/narrow", Role: appRoleARN, SessionName: "narrow",
		Policy: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/*/GET/orders"}]}`,
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: token}
	if status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &s}); status != 200 {
		t.Fatalf("inside the session policy: %d %s", status, body)
	}
	e.hit(t)
	status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/admin/x", creds: &s})
	if status != 403 || strings.Contains(mustMessage(t, body), "explicit") {
		t.Fatalf("outside the session policy: %d %s", status, body)
	}
	// An unrestricted session of the same role is not capped by the other's cached set.
	wide := e.session("app", "wide", time.Hour)
	if status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/admin/x", creds: &wide}); status != 200 {
		t.Fatalf("unrestricted session: %d %s", status, body)
	}
	e.hit(t)
}

// A GetSessionToken session is the user's: its claims carry the user ARN as principal and
// role; the user's policies apply and the event has a sessionContext without an issuer.
func TestUserSession(t *testing.T) {
	e := newEnv(t)
	c, token, err := e.svc.NewSession(identity.Claims{Principal: aliceARN, Role: aliceARN, SessionName: "alice", MFA: true}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: token}
	status, body, hdr := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &s})
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	a := verifyHit(t, e, e.hit(t), hdr.Get("X-Amzn-Requestid"))
	if a.Principal != aliceARN || a.Role != "" {
		t.Errorf("assertion %+v", a)
	}
	ev := e.oneEvent(t)
	if ui := ev.UserIdentity; ui.Type != "IAMUser" || ui.SessionContext == nil || ui.SessionContext.SessionIssuer != nil || ui.SessionContext.Attributes["mfaAuthenticated"] != "true" {
		t.Errorf("userIdentity %+v", ui)
	}
	// Its condition keys: a user, with the session's issue time and MFA.
	status, body, _ = e.send(t, testCall{method: "GET", path: "/prod/private/x", creds: &s})
	if status != 403 {
		t.Fatalf("%d %s", status, body)
	}
	wantKeys(t, conditions(t, e, body), map[string]string{"aws:PrincipalType": "User", "aws:username": "alice", "aws:MultiFactorAuthPresent": "true", "aws:PrincipalArn": aliceARN})
}

// The gateway's TLS: HTTP/2 negotiated, TLS 1.2 minimum, client certificates requested
// but not required (a direct caller without one is served).
func TestTLSConfig(t *testing.T) {
	e := newEnv(t)
	cfg := e.gw.TLSConfig(nil)
	if cfg.MinVersion != 0x0303 || cfg.ClientAuth.String() != "RequestClientCert" || cfg.NextProtos[0] != "h2" {
		t.Fatalf("%+v", cfg)
	}
	k := e.keys["alice"]
	r := newRequest(t, "GET", e.server.URL+"/prod/orders", nil)
	r.Header.Set("X-Apigw-Api-Id", testAPI)
	e.sign(r, k, nil)
	resp, err := e.client(nil).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("status %d over HTTP/%d", resp.StatusCode, resp.ProtoMajor)
	}
	e.hit(t)
}

// examples/demo.yaml as the lead ships it: the orders API is reachable only through the
// endpoint (its resource policy), for alice and for Service A's role; /health is open
// through the endpoint and closed to direct callers. Alice may only read: the resource
// policy's Allow for the account principal delegates to her identity policies (B1 of the
// IAM conformance cases; "AWS JSON policy elements: Principal", AWS account principals),
// so it does not let her create orders.
func TestDemoSpec(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "demo.yaml"))
	if err != nil {
		t.Skipf("no demo spec: %v", err)
	}
	spec, err := config.Parse("demo.yaml", data)
	if err != nil {
		t.Fatalf("demo spec: %v", err)
	}
	backend := &countingTransport{}
	e := newEnv(t, func(c *Config) { c.Transport = backend })
	e.spec.Store(spec)
	ctx := context.Background()
	ak, err := e.svc.CreateAccessKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	alice := aws.Credentials{AccessKeyID: ak.ID, SecretAccessKey: ak.Secret}
	app := e.session("app", "i-0abc", time.Hour)
	ep := spec.Endpoints[0]
	cert := endpointCert(t, e.ca, pki.KindEndpoint, ep.ID)
	via := map[string]string{handoff.HeaderSourceIP: "10.0.1.15", handoff.HeaderAPIID: spec.APIs[0].ID}
	tests := []struct {
		name string
		c    testCall
		want int
	}{
		{"alice GET /orders through the endpoint", testCall{method: "GET", path: "/prod/orders", creds: &alice, cert: cert, endpointHdrs: via}, 200},
		{"alice GET /orders direct", testCall{method: "GET", path: "/prod/orders", creds: &alice, plain: true}, 403},
		{"app POST /orders through the endpoint", testCall{method: "POST", path: "/prod/orders", body: []byte("{}"), creds: &app, cert: cert, endpointHdrs: via}, 200},
		{"alice POST /orders through the endpoint", testCall{method: "POST", path: "/prod/orders", body: []byte("{}"), creds: &alice, cert: cert, endpointHdrs: via}, 403},
		{"/health through the endpoint", testCall{method: "GET", path: "/prod/health", cert: cert, endpointHdrs: via}, 200},
		{"/health direct", testCall{method: "GET", path: "/prod/health", plain: true}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := backend.calls.Load()
			status, body, _ := e.send(t, tt.c)
			if status != tt.want {
				t.Fatalf("%d %s", status, body)
			}
			ev := e.oneEvent(t)
			reached := backend.calls.Load() - before
			if tt.want == 200 {
				if reached != 1 {
					t.Errorf("the backend got %d requests, want 1", reached)
				}
				return
			}
			if reached != 0 {
				t.Errorf("a denied call reached the backend")
			}
			if ev.ErrorCode != "AccessDenied" {
				t.Errorf("denial recorded as %q", ev.ErrorCode)
			}
		})
	}
}

// countingTransport answers every backend request with 200 in-process and counts them.
type countingTransport struct{ calls atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	return inProcess{}.RoundTrip(r)
}

// A node's session (issued through the agent) is marked as such in the event, with where it
// was issued, so detection can compare it with where it is used.
func TestNodeSessionBinding(t *testing.T) {
	e := newEnv(t)
	c, token, err := e.svc.NewSession(identity.Claims{
		Principal: "arn:aws:sts::123456789012:assumed-role/app/i-1", Role: appRoleARN, SessionName: "i-1",
		Node: "service-a-1", VPC: testVPC, PrivateIP: netip.MustParseAddr("10.0.1.15"), Endpoint: testEndpoint,
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: token}
	status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/private/x", creds: &s})
	if status != 403 {
		t.Fatalf("%d %s", status, body)
	}
	wantKeys(t, conditions(t, e, body), map[string]string{"aws:EC2InstanceSourceVPC": testVPC, "aws:EC2InstanceSourcePrivateIPv4": "10.0.1.15"})
	ev := e.oneEvent(t)
	b, _ := ev.AdditionalEventData["sessionBinding"].(map[string]any)
	if ev.UserIdentity.SessionContext.EC2RoleDelivery != "2.0" || b["node"] != "service-a-1" || b["vpc"] != testVPC || b["vpcEndpointId"] != testEndpoint || b["privateIp"] != "10.0.1.15" {
		t.Errorf("event %+v binding %v", ev.UserIdentity.SessionContext, b)
	}
}

// An HTTPS backend: the gateway speaks TLS to it with the transport it is given.
func TestHTTPSBackend(t *testing.T) {
	e := newEnv(t)
	tlsBackend := httptest.NewTLSServer(http.HandlerFunc(e.serveBackend))
	t.Cleanup(tlsBackend.Close)
	raw, err := os.ReadFile(filepath.Join("testdata", "spec.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := config.Parse("testdata/spec.yaml", bytes.ReplaceAll(raw, []byte("BACKEND_URL"), []byte(tlsBackend.URL)))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(Config{Spec: func() *config.Spec { return spec }, Credentials: e.svc, Auditor: e.audit, AssertionKey: e.gw.signer.ed,
		Transport: tlsBackend.Client().Transport, Logger: quiet, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "https://gateway/prod/orders/7", nil)
	r.Header.Set("X-Apigw-Api-Id", testAPI)
	e.sign(r, e.keys["alice"], nil)
	w := httptest.NewRecorder()
	gw.ServeHTTP(w, r)
	if w.Code != 200 || w.Body.String() != "backend:GET /svc/orders/7" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	verifyHit(t, e, e.hit(t), w.Header().Get("X-Amzn-Requestid"))
	e.oneEvent(t)
}

// A session's token is opened once and then found in identity's cache: its next call is
// still refused once it expires, and once its role's sessions are revoked.
func TestCachedSessionToken(t *testing.T) {
	e := newEnv(t)
	call := func(s *aws.Credentials) (int, string) {
		t.Helper()
		status, _, hdr := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: s})
		return status, hdr.Get("X-Amzn-Errortype")
	}
	allowed := func(s *aws.Credentials) {
		t.Helper()
		for range 2 {
			if status, errType := call(s); status != 200 {
				t.Fatalf("before: %d %s", status, errType)
			}
			e.hit(t)
		}
	}

	expiring := e.session("app", "s1", 15*time.Minute)
	allowed(&expiring)
	e.clock.Advance(15 * time.Minute)
	if status, errType := call(&expiring); status != 403 || errType != "ExpiredTokenException" {
		t.Fatalf("cached session at its expiry: %d %s, want 403 ExpiredTokenException", status, errType)
	}
	e.noHit(t)

	revoked := e.session("app", "s2", time.Hour)
	allowed(&revoked)
	e.clock.Advance(time.Second)
	if _, err := e.svc.RevokeSessions(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	if status, errType := call(&revoked); status != 403 || errType != "AccessDeniedException" {
		t.Fatalf("cached session after its role's sessions were revoked: %d %s, want 403 AccessDeniedException", status, errType)
	}
	e.noHit(t)
}

// A session's event facts (creationDate, mfaAuthenticated, principalId) are made once per
// session and never lent to another: calls of two sessions, interleaved, each carry their
// own.
func TestSessionFactsPerSession(t *testing.T) {
	e := newEnv(t)
	first := e.session("app", "first", time.Hour)
	firstIssued := e.clock.Now().UTC().Format("2006-01-02T15:04:05Z")
	e.clock.Advance(time.Minute)
	second := e.session("app", "second", time.Hour)
	secondIssued := e.clock.Now().UTC().Format("2006-01-02T15:04:05Z")
	rid := arn.RoleID(appRoleARN)
	for range 2 {
		for _, s := range []struct {
			creds           *aws.Credentials
			issued, session string
		}{{&first, firstIssued, "first"}, {&second, secondIssued, "second"}} {
			if status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: s.creds}); status != 200 {
				t.Fatalf("%s: %d %s", s.session, status, body)
			}
			e.hit(t)
			ui := e.oneEvent(t).UserIdentity
			if ui.PrincipalID != rid+":"+s.session || ui.SessionContext == nil ||
				ui.SessionContext.Attributes["creationDate"] != s.issued || ui.SessionContext.Attributes["mfaAuthenticated"] != "false" {
				t.Fatalf("%s: userIdentity %+v %+v", s.session, ui, ui.SessionContext)
			}
		}
	}
}
