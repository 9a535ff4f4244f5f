package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/handoff"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

const (
	aliceARN   = "arn:aws:iam::123456789012:user/alice"
	appRoleARN = "arn:aws:iam::123456789012:role/app"
)

// call describes one test request: who signs it (nil: unsigned), which connection it takes
// (direct TLS, direct plain HTTP, or through the endpoint with its certificate and headers).
type testCall struct {
	method, path string
	body         []byte
	creds        *aws.Credentials
	cert         *tls.Certificate  // presented client certificate
	endpointHdrs map[string]string // set after signing, as the endpoint does
	signedHdrs   map[string]string // set before signing
	plain        bool              // direct plain-HTTP connection
	tamper       func(r *http.Request)
}

func (e *env) send(t testing.TB, c testCall) (int, string, http.Header) {
	t.Helper()
	base := e.server.URL
	if c.plain {
		base = e.plain.URL
	}
	r := newRequest(t, c.method, base+c.path, c.body)
	if c.endpointHdrs == nil && c.signedHdrs == nil {
		// A direct caller names the API with API Gateway's own header (the spec has two).
		r.Header.Set("X-Apigw-Api-Id", testAPI)
	}
	for k, v := range c.signedHdrs {
		r.Header.Set(k, v)
	}
	if c.creds != nil {
		e.sign(r, *c.creds, c.body)
	}
	for k, v := range c.endpointHdrs {
		r.Header.Set(k, v)
	}
	if c.tamper != nil {
		c.tamper(r)
	}
	return do(t, e.client(c.cert), r)
}

// viaEndpoint returns the headers the endpoint sets for a caller at ip.
func viaEndpoint(api, ip string) map[string]string {
	return map[string]string{handoff.HeaderAPIID: api, handoff.HeaderSourceIP: ip, handoff.HeaderTLSVersion: "TLSv1.3", handoff.HeaderTLSCipher: "TLS_AES_128_GCM_SHA256"}
}

// TestDenials: every refusal is answered in API Gateway's shape, records exactly one audit
// event with the refusal's errorCode, and never reaches the backend.
func TestDenials(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares the env and returns the call.
		setup     func(t *testing.T, e *env) testCall
		status    int
		errType   string // x-amzn-ErrorType
		msgPrefix string
		code      string // audit errorCode
		check     func(t *testing.T, e *env, msg, enc string, ev map[string]any)
	}{
		{
			// API Gateway answers an unsigned call to an IAM route like an unknown one.
			name:   "no signature",
			setup:  func(t *testing.T, e *env) testCall { return testCall{method: "GET", path: "/prod/orders"} },
			status: 403, errType: "MissingAuthenticationTokenException", msgPrefix: "Missing Authentication Token", code: "MissingAuthenticationToken",
		},
		{
			name: "bad signature shows the canonical request",
			setup: func(t *testing.T, e *env) testCall {
				bad := e.keys["alice"]
				bad.SecretAccessKey = strings.Repeat("x", 40)
				return testCall{method: "GET", path: "/prod/orders", creds: &bad}
			},
			status: 403, errType: "InvalidSignatureException", msgPrefix: "The request signature we calculated does not match", code: "SignatureDoesNotMatch",
			check: func(t *testing.T, e *env, msg, _ string, ev map[string]any) {
				if !strings.Contains(msg, "The Canonical String for this request should have been\n'GET\n/prod/orders") ||
					!strings.Contains(msg, "The String-to-Sign should have been\n'AWS4-HMAC-SHA256") {
					t.Errorf("message lacks the canonical request and string to sign: %q", msg)
				}
				if ui := ev["userIdentity"].(map[string]any); ui["accessKeyId"] != e.keys["alice"].AccessKeyID {
					t.Errorf("userIdentity %v: want the claimed access key id", ui)
				}
			},
		},
		{
			name: "expired session",
			setup: func(t *testing.T, e *env) testCall {
				s := e.session("app", "s1", 15*time.Minute)
				e.clock.Advance(16 * time.Minute)
				return testCall{method: "GET", path: "/prod/orders", creds: &s}
			},
			status: 403, errType: "ExpiredTokenException", msgPrefix: "The security token included in the request is expired", code: "ExpiredToken",
		},
		{
			// "Revoking IAM role temporary security credentials": the token is genuine, the
			// call is denied.
			name: "revoked session",
			setup: func(t *testing.T, e *env) testCall {
				s := e.session("app", "s1", time.Hour)
				e.clock.Advance(time.Second)
				if _, err := e.svc.RevokeSessions(context.Background(), "app"); err != nil {
					t.Fatal(err)
				}
				return testCall{method: "GET", path: "/prod/orders", creds: &s}
			},
			status: 403, errType: "AccessDeniedException", code: "AccessDenied",
		},
		{
			name: "inactive key",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				if err := e.svc.UpdateAccessKeyStatus(context.Background(), k.AccessKeyID, identity.StatusInactive); err != nil {
					t.Fatal(err)
				}
				return testCall{method: "GET", path: "/prod/orders", creds: &k}
			},
			status: 403, errType: "UnrecognizedClientException", msgPrefix: "The security token included in the request is invalid.", code: "InvalidClientTokenId",
		},
		{
			name: "session of a role the spec no longer has",
			setup: func(t *testing.T, e *env) testCall {
				s := e.session("ghost", "s1", time.Hour)
				return testCall{method: "GET", path: "/prod/orders", creds: &s}
			},
			status: 403, errType: "AccessDeniedException", code: "AccessDenied",
		},
		{
			name: "access key of a user the spec does not have",
			setup: func(t *testing.T, e *env) testCall {
				k, err := e.svc.CreateAccessKey(context.Background(), "carol")
				if err != nil {
					t.Fatal(err)
				}
				return testCall{method: "GET", path: "/prod/orders", creds: &aws.Credentials{AccessKeyID: k.ID, SecretAccessKey: k.Secret}}
			},
			status: 403, errType: "UnrecognizedClientException", msgPrefix: "The security token included in the request is invalid.", code: "InvalidClientTokenId",
		},
		{
			name: "tampered session token",
			setup: func(t *testing.T, e *env) testCall {
				s := e.session("app", "s1", time.Hour)
				s.SessionToken = s.SessionToken[:len(s.SessionToken)-4] + "AAAA"
				return testCall{method: "GET", path: "/prod/orders", creds: &s}
			},
			status: 403, errType: "UnrecognizedClientException", msgPrefix: "The security token included in the request is invalid.", code: "InvalidClientTokenId",
		},
		{
			// The resource policy denies /private/* unless aws:SourceVpce is the endpoint:
			// alice's identity policy allows it, the direct connection has no SourceVpce.
			name: "resource policy requires the endpoint on a direct connection",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/private/data", creds: &k}
			},
			status: 403, errType: "AccessDeniedException",
			msgPrefix: "User: " + aliceARN + " is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/private/data with an explicit deny",
			code:      "AccessDenied",
			check: func(t *testing.T, e *env, _, enc string, _ map[string]any) {
				_, m, err := e.msgs.Open(enc)
				if err != nil {
					t.Fatalf("encoded authorization message does not open: %v", err)
				}
				if !m.ExplicitDeny || m.Allowed || len(m.MatchedStatements.Items) != 1 || m.MatchedStatements.Items[0].StatementID != "PrivateOnlyThroughTheEndpoint" {
					t.Errorf("decoded message %+v: want the resource policy's explicit deny", m)
				}
				if m.Context.Principal.ARN != aliceARN || m.Context.Action != "execute-api:Invoke" {
					t.Errorf("decoded context %+v", m.Context)
				}
			},
		},
		{
			// Forged endpoint and forwarding headers on a direct connection carry no weight:
			// aws:SourceVpce stays absent, aws:SourceIp is the TCP peer.
			name: "forged X-Phantom headers on a direct connection",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				c := testCall{method: "GET", path: "/prod/private/data", creds: &k, tamper: func(r *http.Request) {
					r.Header.Set("X-Apigw-Api-Id", testAPI)
					for h, v := range viaEndpoint(testAPI, "10.0.1.15") {
						r.Header.Set(h, v)
					}
					r.Header.Set("X-Phantom-Source-Vpce", testEndpoint)
					r.Header.Set("X-Forwarded-For", "10.0.1.15")
					r.Header.Set("Forwarded", "for=10.0.1.15")
				}}
				return c
			},
			status: 403, errType: "AccessDeniedException", code: "AccessDenied",
			check: func(t *testing.T, e *env, msg, _ string, ev map[string]any) {
				if !strings.HasSuffix(msg, "with an explicit deny") {
					t.Errorf("message %q", msg)
				}
				if ev["sourceIPAddress"] != "127.0.0.1" || ev["vpcEndpointId"] != nil {
					t.Errorf("event took the forged headers: sourceIPAddress %v vpcEndpointId %v", ev["sourceIPAddress"], ev["vpcEndpointId"])
				}
			},
		},
		{
			name: "client certificate from another CA",
			setup: func(t *testing.T, e *env) testCall {
				other, err := pki.New(pki.Config{Dir: t.TempDir(), Account: testAccount})
				if err != nil {
					t.Fatal(err)
				}
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/orders", creds: &k, cert: endpointCert(t, other, pki.KindEndpoint, testEndpoint), endpointHdrs: viaEndpoint(testAPI, "10.0.1.15")}
			},
			status: 403, errType: "ForbiddenException", msgPrefix: "Forbidden", code: "InvalidClientCertificate",
			check: func(t *testing.T, e *env, _, _ string, ev map[string]any) {
				if ev["vpcEndpointId"] != nil || ev["sourceIPAddress"] != "127.0.0.1" {
					t.Errorf("a refused certificate must not name the endpoint: %v %v", ev["vpcEndpointId"], ev["sourceIPAddress"])
				}
			},
		},
		{
			name: "endpoint certificate naming an endpoint the spec lacks",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/orders", creds: &k, cert: endpointCert(t, e.ca, pki.KindEndpoint, "vpce-0fffffffffffffff0"), endpointHdrs: viaEndpoint(testAPI, "10.0.1.15")}
			},
			status: 403, errType: "ForbiddenException", code: "InvalidClientCertificate",
		},
		{
			name: "perimeter certificate that is not an endpoint's",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/orders", creds: &k, cert: endpointCert(t, e.ca, pki.KindNode, "service-a-1"), endpointHdrs: viaEndpoint(testAPI, "10.0.1.15")}
			},
			status: 403, errType: "ForbiddenException", code: "InvalidClientCertificate",
		},
		{
			name: "endpoint that does not list the API",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/x", creds: &k, cert: endpointCert(t, e.ca, pki.KindEndpoint, testEndpoint), endpointHdrs: viaEndpoint(otherAPI, "10.0.1.15")}
			},
			status: 403, errType: "ForbiddenException", msgPrefix: "Forbidden", code: "Forbidden",
			check: func(t *testing.T, e *env, _, _ string, ev map[string]any) {
				if ev["vpcEndpointId"] != testEndpoint {
					t.Errorf("vpcEndpointId %v", ev["vpcEndpointId"])
				}
			},
		},
		{
			name: "role the endpoint policy denies",
			setup: func(t *testing.T, e *env) testCall {
				s := e.session("blocked", "s1", time.Hour)
				return testCall{method: "GET", path: "/prod/orders", creds: &s, cert: endpointCert(t, e.ca, pki.KindEndpoint, testEndpoint), endpointHdrs: viaEndpoint(testAPI, "10.0.1.15")}
			},
			status: 403, errType: "AccessDeniedException",
			msgPrefix: "User: arn:aws:sts::123456789012:assumed-role/blocked/s1 is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/orders with an explicit deny",
			code:      "AccessDenied",
			check: func(t *testing.T, e *env, _, enc string, ev map[string]any) {
				_, m, err := e.msgs.Open(enc)
				if err != nil || len(m.MatchedStatements.Items) != 1 || m.MatchedStatements.Items[0].StatementID != "NotTheBlockedRole" ||
					!strings.Contains(m.MatchedStatements.Items[0].Policy, "endpoint policy") {
					t.Errorf("decoded %+v %v: want the endpoint policy's NotTheBlockedRole", m, err)
				}
				if ev["sourceIPAddress"] != "10.0.1.15" || ev["vpcEndpointId"] != testEndpoint {
					t.Errorf("event %v %v", ev["sourceIPAddress"], ev["vpcEndpointId"])
				}
			},
		},
		{
			name: "path the identity policy denies",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/admin/secrets", creds: &k}
			},
			status: 403, errType: "AccessDeniedException", msgPrefix: "User: " + aliceARN + " is not authorized", code: "AccessDenied",
		},
		{
			// RFC 3986 §5.2.4: the path is authorized as what it reaches.
			name: "dot segments reach the denied path and are denied",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/orders/../admin/secrets", creds: &k}
			},
			status: 403, errType: "AccessDeniedException",
			msgPrefix: "User: " + aliceARN + " is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/admin/secrets with an explicit deny",
			code:      "AccessDenied",
		},
		{
			name: "doubled slashes and literal dot segments are normalized too",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/orders/..//admin/./secrets", creds: &k}
			},
			status: 403, errType: "AccessDeniedException", code: "AccessDenied",
			msgPrefix: "User: " + aliceARN + " is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/admin/secrets",
		},
		{
			// A dot segment spelled with escapes means ".." to a backend that decodes
			// before it normalizes and a name to one that does not: refused, not guessed.
			name: "encoded dot segments are refused",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/orders/%2e%2E/admin/secrets", creds: &k}
			},
			status: 400, errType: "BadRequestException", code: "BadRequest", msgPrefix: "Invalid request path",
		},
		{
			name: "no policy allows (implicit deny)",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["bob"]
				return testCall{method: "GET", path: "/prod/orders", creds: &k}
			},
			status: 403, errType: "AccessDeniedException", code: "AccessDenied",
			check: func(t *testing.T, e *env, msg, _ string, _ map[string]any) {
				if strings.Contains(msg, "explicit") {
					t.Errorf("implicit deny said explicit: %q", msg)
				}
			},
		},
		{
			name: "unsigned call over plain HTTP to an IAM route",
			setup: func(t *testing.T, e *env) testCall {
				return testCall{method: "GET", path: "/prod/private/x", plain: true}
			},
			// /private is AWS_IAM: unsigned is Missing Authentication Token first.
			status: 403, errType: "MissingAuthenticationTokenException", code: "MissingAuthenticationToken",
		},
		{
			name: "unknown route",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/nope", creds: &k}
			},
			status: 403, errType: "MissingAuthenticationTokenException", msgPrefix: "Missing Authentication Token", code: "MissingAuthenticationToken",
		},
		{
			name: "unknown stage",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/dev/orders", creds: &k}
			},
			status: 403, errType: "MissingAuthenticationTokenException", code: "MissingAuthenticationToken",
		},
		{
			name: "method the route does not have",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "DELETE", path: "/prod/orders", creds: &k}
			},
			status: 403, errType: "MissingAuthenticationTokenException", code: "MissingAuthenticationToken",
		},
		{
			name: "path above the stage root",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/", creds: &k}
			},
			status: 403, errType: "MissingAuthenticationTokenException", code: "MissingAuthenticationToken",
		},
		{
			name: "encoded slash in a segment",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/orders%2F..%2Fadmin", creds: &k}
			},
			status: 400, errType: "BadRequestException", msgPrefix: "Invalid request path", code: "BadRequest",
		},
		{
			name: "no API can be selected",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/orders", creds: &k, signedHdrs: map[string]string{"X-Amz-Meta": "x"}}
			},
			status: 403, errType: "ForbiddenException", msgPrefix: "Forbidden", code: "Forbidden",
		},
		{
			name: "x-apigw-api-id naming no API",
			setup: func(t *testing.T, e *env) testCall {
				k := e.keys["alice"]
				return testCall{method: "GET", path: "/prod/orders", creds: &k, signedHdrs: map[string]string{"X-Apigw-Api-Id": "zzzzzzzzzz"}}
			},
			status: 403, errType: "ForbiddenException", code: "Forbidden",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			c := tt.setup(t, e)
			status, body, hdr := e.send(t, c)
			if status != tt.status {
				t.Fatalf("status %d, want %d; body %s", status, tt.status, body)
			}
			if got := hdr.Get("X-Amzn-Errortype"); got != tt.errType {
				t.Errorf("x-amzn-ErrorType %q, want %q", got, tt.errType)
			}
			if hdr.Get("Content-Type") != "application/json" || hdr.Get("X-Amzn-Requestid") == "" {
				t.Errorf("headers %v: want application/json and x-amzn-RequestId", hdr)
			}
			msg, enc := decodeError(t, body)
			if !strings.HasPrefix(msg, tt.msgPrefix) {
				t.Errorf("message %q, want prefix %q", msg, tt.msgPrefix)
			}
			ev := e.oneEvent(t)
			if ev.ErrorCode != tt.code {
				t.Errorf("audit errorCode %q, want %q", ev.ErrorCode, tt.code)
			}
			if ev.RequestID != hdr.Get("X-Amzn-Requestid") || ev.EventSource != "execute-api.amazonaws.com" || ev.EventName != "Invoke" ||
				ev.EventCategory != "Data" || ev.ManagementEvent || ev.RecipientAccountID != testAccount || ev.AWSRegion != "us-east-1" {
				t.Errorf("event envelope %+v", ev)
			}
			if s, _ := ev.ResponseElements["status"].(float64); int(s) != tt.status {
				t.Errorf("responseElements %v, want status %d", ev.ResponseElements, tt.status)
			}
			e.noHit(t)
			if tt.check != nil {
				b, _ := json.Marshal(ev)
				var m map[string]any
				json.Unmarshal(b, &m)
				tt.check(t, e, msg, enc, m)
			}
		})
	}
}
