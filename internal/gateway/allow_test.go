package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/handoff"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// verifyHit checks what the backend got: the gateway's assertion, verifiable with the API's key,
// the caller's address as the gateway knows it (X-Forwarded-For, one value, the
// assertion's sourceIp), and none of the client's X-Phantom, forwarding, override or
// credential headers.
func verifyHit(t *testing.T, e *env, h backendHit, requestID string) *Assertion {
	t.Helper()
	for name := range h.Header {
		switch {
		case name == hdrIdentity || name == hdrRequestID || name == "X-Forwarded-For":
		case hasPrefix(name, "X-Phantom-"), hasPrefix(name, "X-Forwarded-"), name == "Forwarded", name == "Authorization", name == "X-Amz-Security-Token",
			overrideHeaders[name]:
			t.Errorf("backend received %s: %q", name, h.Header[name])
		}
	}
	if len(h.Header[hdrIdentity]) != 1 || h.Header.Get(hdrRequestID) != requestID {
		t.Fatalf("backend headers %v: want one assertion and request id %s", h.Header, requestID)
	}
	a, err := verifyWith(h.Header.Get(hdrIdentity), e.assertionKeys(t, testAPI), testAPI, e.clock.Now())
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	if a.RequestID != requestID || a.Issuer != AssertionIssuer {
		t.Errorf("assertion %+v", a)
	}
	if xff := h.Header.Values("X-Forwarded-For"); len(xff) != 1 || xff[0] != a.SourceIP {
		t.Errorf("X-Forwarded-For %q, want the caller's address %q alone", xff, a.SourceIP)
	}
	return a
}

func TestAllowUserKeyDirect(t *testing.T) {
	e := newEnv(t)
	k := e.keys["alice"]
	status, body, hdr := e.send(t, testCall{method: "GET", path: "/prod/orders/42?a=%20x&b=2", creds: &k})
	if status != 200 || body != "backend:GET /svc/orders/42" {
		t.Fatalf("%d %q", status, body)
	}
	h := e.hit(t)
	if h.Path != "/svc/orders/42" || h.Query != "a=%20x&b=2" {
		t.Errorf("backend got %s?%s", h.Path, h.Query)
	}
	a := verifyHit(t, e, h, hdr.Get("X-Amzn-Requestid"))
	if a.Subject != aliceARN || a.Principal != aliceARN || a.Account != testAccount || a.AccessKeyID != k.AccessKeyID ||
		a.VPCEndpoint != "" || a.SourceIP != "127.0.0.1" || a.Method != "GET" || a.Path != "/svc/orders/42" || a.Query != "a=%20x&b=2" || a.Role != "" ||
		a.ID != a.RequestID || a.PayloadHash != emptyHash {
		t.Errorf("assertion %+v", a)
	}
	ev := e.oneEvent(t)
	ui := ev.UserIdentity
	if ev.ErrorCode != "" || ui.Type != "IAMUser" || ui.ARN != aliceARN || ui.UserName != "alice" || ui.AccessKeyID != k.AccessKeyID || !strings.HasPrefix(ui.PrincipalID, "AIDA") {
		t.Errorf("event %+v", ev)
	}
	want := map[string]any{"apiId": testAPI, "stage": "prod", "httpMethod": "GET", "path": "/prod/orders/42", "resource": "/orders/{id}"}
	for k, v := range want {
		if ev.RequestParameters[k] != v {
			t.Errorf("requestParameters[%s] = %v, want %v", k, ev.RequestParameters[k], v)
		}
	}
	if ev.AdditionalEventData["decision"] != "Allow" || ev.TLSDetails == nil || ev.TLSDetails.TLSVersion == "" || ev.SourceIPAddress != "127.0.0.1" || !ev.ReadOnly {
		t.Errorf("event %+v tls %+v", ev, ev.TLSDetails)
	}
}

// A direct caller's forged endpoint and forwarding headers are signed (so SigV4 still
// verifies with them) yet ignored for the decision and never reach the backend.
func TestAllowDirectStripsForgedHeaders(t *testing.T) {
	e := newEnv(t)
	k := e.keys["alice"]
	status, body, hdr := e.send(t, testCall{method: "POST", path: "/prod/orders", body: []byte(`{"item":1}`), creds: &k, signedHdrs: map[string]string{
		"X-Apigw-Api-Id": testAPI, handoff.HeaderSourceIP: "10.0.1.15", handoff.HeaderAPIID: testAPI, hdrIdentity: "forged", "X-Phantom-Vpce": testEndpoint,
		"X-Forwarded-For": "10.0.1.15", "Forwarded": "for=10.0.1.15",
	}})
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	h := e.hit(t)
	if h.Body != `{"item":1}` || h.Method != "POST" {
		t.Errorf("backend got %s body %q", h.Method, h.Body)
	}
	a := verifyHit(t, e, h, hdr.Get("X-Amzn-Requestid"))
	if a.SourceIP != "127.0.0.1" || a.VPCEndpoint != "" {
		t.Errorf("assertion took forged headers: %+v", a)
	}
	if ev := e.oneEvent(t); ev.SourceIPAddress != "127.0.0.1" || ev.VPCEndpointID != "" || ev.ReadOnly {
		t.Errorf("event %+v", ev)
	}
}

func TestAllowRoleSessionThroughEndpoint(t *testing.T) {
	e := newEnv(t)
	s := e.session("app", "s1", time.Hour, identity.Tag{Key: "project", Value: "x"})
	cert := endpointCert(t, e.ca, pki.KindEndpoint, testEndpoint)
	// /private/* is denied by the resource policy unless it came through the endpoint.
	status, body, hdr := e.send(t, testCall{method: "PUT", path: "/prod/private/a%20b/c", body: []byte("data"), creds: &s, cert: cert,
		endpointHdrs: viaEndpoint(testAPI, "10.0.1.15")})
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	h := e.hit(t)
	if h.Path != "/svc/private/a b/c" || h.Body != "data" {
		t.Errorf("backend got %s %q", h.Path, h.Body)
	}
	a := verifyHit(t, e, h, hdr.Get("X-Amzn-Requestid"))
	session := "arn:aws:sts::123456789012:assumed-role/app/s1"
	if a.Subject != session || a.Role != appRoleARN || a.SessionName != "s1" || a.VPCEndpoint != testEndpoint || a.SourceIP != "10.0.1.15" || a.AccessKeyID != s.AccessKeyID {
		t.Errorf("assertion %+v", a)
	}
	ev := e.oneEvent(t)
	ui := ev.UserIdentity
	if ui.Type != "AssumedRole" || ui.ARN != session || ui.SessionContext == nil || ui.SessionContext.SessionIssuer == nil ||
		ui.SessionContext.SessionIssuer.ARN != appRoleARN || ui.SessionContext.Attributes["mfaAuthenticated"] != "false" ||
		ui.SessionContext.Attributes["creationDate"] == "" {
		t.Errorf("userIdentity %+v", ui)
	}
	if ev.VPCEndpointID != testEndpoint || ev.SourceIPAddress != "10.0.1.15" || ev.TLSDetails == nil ||
		ev.TLSDetails.TLSVersion != "TLSv1.3" || ev.TLSDetails.CipherSuite != "TLS_AES_128_GCM_SHA256" {
		t.Errorf("event %+v tls %+v", ev, ev.TLSDetails)
	}
	if ev.RequestParameters["resource"] != "/private/{proxy+}" {
		t.Errorf("requestParameters %v", ev.RequestParameters)
	}
}

// The endpoint names the API with X-Phantom-Api-Id; without it, the endpoint's only API.
func TestAllowEndpointSelectsItsOnlyAPI(t *testing.T) {
	e := newEnv(t)
	k := e.keys["alice"]
	cert := endpointCert(t, e.ca, pki.KindEndpoint, testEndpoint)
	status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &k, cert: cert, endpointHdrs: map[string]string{handoff.HeaderSourceIP: "10.0.1.16"}})
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	e.hit(t)
	if ev := e.oneEvent(t); ev.SourceIPAddress != "10.0.1.16" || ev.VPCEndpointID != testEndpoint {
		t.Errorf("event %+v", ev)
	}
}

// The Host's first label names the API ({apiid}.execute-api.{region}.amazonaws.com).
func TestAllowHostSelectsAPI(t *testing.T) {
	e := newEnv(t)
	k := e.keys["alice"]
	status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/x", creds: &k, signedHdrs: map[string]string{}, tamper: nil,
		endpointHdrs: nil})
	if status != 403 {
		t.Fatalf("without a host naming the API: %d %s", status, body)
	}
	e.audit.take()
	r := newRequest(t, "GET", e.server.URL+"/prod/x", nil)
	r.Host = otherAPI + ".execute-api.us-east-1.amazonaws.com"
	e.sign(r, k, nil)
	status, body, _ = do(t, e.client(nil), r)
	if status != 200 || body != "backend:GET /x" {
		t.Fatalf("%d %s", status, body)
	}
	if ev := e.oneEvent(t); ev.RequestParameters["apiId"] != otherAPI || ev.TLSDetails.ClientProvidedHostHeader != r.Host {
		t.Errorf("event %+v", ev)
	}
}

func TestAllowNoneRouteUnsigned(t *testing.T) {
	e := newEnv(t)
	status, body, hdr := e.send(t, testCall{method: "GET", path: "/prod/health", plain: true})
	if status != 200 || body != "backend:GET /svc/health" {
		t.Fatalf("%d %s", status, body)
	}
	a := verifyHit(t, e, e.hit(t), hdr.Get("X-Amzn-Requestid"))
	if a.Subject != "" || a.Principal != "" {
		t.Errorf("anonymous assertion names a principal: %+v", a)
	}
	ev := e.oneEvent(t)
	if ev.ErrorCode != "" || ev.UserIdentity.ARN != "" || ev.AdditionalEventData["authorization"] != "NONE" || ev.TLSDetails != nil {
		t.Errorf("event %+v", ev)
	}
}

// A backend slower than its timeout is 504 in API Gateway's shape; the request was audited
// once, as allowed, before the backend was called.
func TestBackendTimeout(t *testing.T) {
	e := newEnv(t)
	s := e.session("app", "s1", time.Hour)
	status, body, hdr := e.send(t, testCall{method: "GET", path: "/prod/slow", creds: &s})
	if status != http.StatusGatewayTimeout || hdr.Get("X-Amzn-Errortype") != "InternalServerErrorException" {
		t.Fatalf("%d %s %v", status, body, hdr)
	}
	if msg, _ := decodeError(t, body); msg != "Endpoint request timed out" {
		t.Errorf("message %q", msg)
	}
	if ev := e.oneEvent(t); ev.ErrorCode != "" || ev.AdditionalEventData["decision"] != "Allow" {
		t.Errorf("event %+v", ev)
	}
}

func TestBackendDown(t *testing.T) {
	e := newEnv(t)
	e.backend.Close()
	k := e.keys["alice"]
	status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &k})
	if status != http.StatusBadGateway {
		t.Fatalf("%d %s", status, body)
	}
	e.oneEvent(t)
}

// Fail closed: an event that cannot be recorded means no backend call and a 500.
func TestAuditFailureFailsClosed(t *testing.T) {
	e := newEnv(t)
	e.audit.fail.Store(true)
	k := e.keys["alice"]
	status, body, hdr := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &k})
	if status != 500 || hdr.Get("X-Amzn-Errortype") != "InternalServerErrorException" {
		t.Fatalf("%d %s", status, body)
	}
	e.noHit(t)
	status, _, _ = e.send(t, testCall{method: "GET", path: "/prod/nope", creds: &k})
	if status != 500 {
		t.Fatalf("a refusal that cannot be audited: %d, want 500", status)
	}
}

func TestJWKS(t *testing.T) {
	e := newEnv(t)
	resp, err := e.client(nil).Get(e.server.URL + JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || string(b) != string(e.gw.JWKS()) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if !strings.Contains(string(b), `"kty":"OKP","crv":"Ed25519"`) {
		t.Errorf("JWKS %s", b)
	}
	if len(e.audit.take()) != 0 {
		t.Error("the JWKS is not an API call and is not audited")
	}
}

// A reloaded spec applies to the next request: removing alice's route stops her calls.
func TestSpecReload(t *testing.T) {
	e := newEnv(t)
	k := e.keys["alice"]
	if status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &k}); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	e.hit(t)
	next, err := config.Parse("testdata/spec.yaml", bytes.Replace(e.yaml, []byte("stages: [prod, beta]"), []byte("stages: [beta]"), 1))
	if err != nil {
		t.Fatal(err)
	}
	e.spec.Store(next)
	e.audit.take()
	if status, _, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &k}); status != 403 {
		t.Fatalf("after the reload removed stage prod: %d", status)
	}
}

type ctxCheckingAudit struct{ err error }

func (a *ctxCheckingAudit) Record(ctx context.Context, _ *audit.Event) error {
	a.err = ctx.Err()
	if ctx.Done() != nil {
		a.err = errors.New("the record's context can be done")
	}
	if _, ok := ctx.Deadline(); ok {
		a.err = errors.New("the record's context has a deadline")
	}
	if ctx.Value(ctxMark{}) != "request" {
		a.err = errors.New("the record's context lost the request's values")
	}
	return a.err
}

type ctxMark struct{}

// A caller that hangs up before its request is decided is still recorded: the audit record
// does not inherit the request's cancellation.
func TestAuditSurvivesCallerHangup(t *testing.T) {
	a := &ctxCheckingAudit{}
	e := newEnv(t, func(c *Config) { c.Auditor = a })
	ctx, cancel := context.WithTimeout(context.WithValue(t.Context(), ctxMark{}, "request"), time.Hour)
	cancel()
	r := httptest.NewRequest("GET", "http://gateway/prod/orders", nil).WithContext(ctx)
	r.Header.Set("X-Apigw-Api-Id", testAPI)
	w := httptest.NewRecorder()
	e.gw.ServeHTTP(w, r)
	if a.err != nil || w.Code != 403 {
		t.Fatalf("record saw %v; status %d", a.err, w.Code)
	}
}

// emptyHash is the SHA-256 of an empty body, the payload hash of a signed GET.
const emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// A user's groups' policies are the user's (IAM User Guide, "Policy evaluation logic"):
// dana has none of her own, reads orders through the readers group's managed policy and
// is refused order 7 by the group's inline Deny, which the explanation names.
func TestGroupPoliciesDecide(t *testing.T) {
	e := newEnv(t)
	k := e.keys["dana"]
	if status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders/42", creds: &k}); status != 200 {
		t.Fatalf("dana GET /orders/42 through her group's policy: %d %s", status, body)
	}
	e.hit(t)
	e.audit.take()
	status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders/7", creds: &k})
	msg, _ := decodeError(t, body)
	if status != 403 || !strings.HasSuffix(msg, "with an explicit deny") {
		t.Fatalf("dana GET /orders/7 against her group's Deny: %d %s", status, body)
	}
	e.noHit(t)
	if ev := e.oneEvent(t); ev.ErrorCode != "AccessDenied" {
		t.Errorf("event %+v", ev)
	}
	spec := e.spec.Load()
	dana, _ := spec.User("dana")
	var names []string
	for _, ip := range dana.IdentityPolicies() {
		names = append(names, ip.Name())
	}
	if want := "group readers inline policy not-order-7,arn:aws:iam::123456789012:policy/OrdersRead"; strings.Join(names, ",") != want {
		t.Errorf("dana's identity policies %v, want %s", names, want)
	}
}

// The route timeout's timers are kept across calls: a timer that was stopped before it
// fired never cuts a later call short, and a later slow call still times out, whatever
// came before it; a call the backend answers in time is not cut at its timeout's end.
func TestBackendTimeoutTimersReused(t *testing.T) {
	e := newEnv(t)
	s := e.session("app", "s1", time.Hour)
	for i := range 3 {
		for range 3 {
			if status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &s}); status != 200 {
				t.Fatalf("round %d: a fast call: %d %s", i, status, body)
			}
			e.hit(t)
		}
		start := time.Now()
		status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/slow", creds: &s})
		if status != http.StatusGatewayTimeout {
			t.Fatalf("round %d: the slow backend: %d %s", i, status, body)
		}
		if took := time.Since(start); took < 100*time.Millisecond || took > 1900*time.Millisecond {
			t.Fatalf("round %d: the slow call took %s, want its 100ms timeout", i, took)
		}
		e.audit.take()
	}
	// A timer that fired is not reused: a fast call after a timed-out one is whole.
	status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &s})
	if status != 200 || body != "backend:GET /svc/orders" {
		t.Fatalf("after the timeouts: %d %q", status, body)
	}
}
