package gateway

import (
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/authzmsg"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// conditions returns the decoded message's condition keys of a denial.
func conditions(t *testing.T, e *env, body string) map[string][]string {
	t.Helper()
	_, enc := decodeError(t, body)
	_, m, err := e.msgs.Open(enc)
	if err != nil {
		t.Fatalf("open message: %v", err)
	}
	return messageConditions(m)
}

func messageConditions(m *authzmsg.Message) map[string][]string {
	out := map[string][]string{}
	for _, c := range m.Context.Conditions.Items {
		for _, v := range c.Values.Items {
			out[c.Key] = append(out[c.Key], v.Value)
		}
	}
	return out
}

func wantKeys(t *testing.T, got map[string][]string, want map[string]string, absent ...string) {
	t.Helper()
	for k, v := range want {
		if len(got[k]) != 1 || (v != "*" && got[k][0] != v) {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range absent {
		if _, ok := got[k]; ok {
			t.Errorf("%s = %q, want absent", k, got[k])
		}
	}
}

// The global condition keys of "AWS global condition context keys", as a denial's decoded
// message shows them: bob (no policies) through the endpoint, then a role session direct.
func TestConditionKeys(t *testing.T) {
	e := newEnv(t)
	k := e.keys["bob"]
	cert := endpointCert(t, e.ca, pki.KindEndpoint, testEndpoint)
	status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &k, cert: cert, endpointHdrs: viaEndpoint(testAPI, "10.0.1.15"),
		tamper: func(r *http.Request) { r.Header.Set("User-Agent", "test-agent/1.0") }})
	if status != 403 {
		t.Fatalf("%d %s", status, body)
	}
	now := e.clock.Now()
	bob := "arn:aws:iam::123456789012:user/bob"
	wantKeys(t, conditions(t, e, body), map[string]string{
		"aws:SourceIp": "10.0.1.15", "aws:SourceVpce": testEndpoint, "aws:SourceVpc": testVPC, "aws:SecureTransport": "true",
		"aws:CurrentTime": now.Format("2006-01-02T15:04:05Z"), "aws:EpochTime": "*", "aws:PrincipalArn": bob,
		"aws:PrincipalAccount": testAccount, "aws:PrincipalType": "User", "aws:userid": arn.UserID(bob), "aws:username": "bob",
		"aws:RequestedRegion": "us-east-1", "aws:UserAgent": "test-agent/1.0",
	}, "aws:TokenIssueTime", "aws:MultiFactorAuthPresent", "phantom:RiskLevel")

	s := e.session("app", "s1", time.Hour, identity.Tag{Key: "project", Value: "x"}, identity.Tag{Key: "service", Value: "override"})
	status, body, _ = e.send(t, testCall{method: "GET", path: "/prod/private/x", creds: &s, plain: true})
	if status != 403 {
		t.Fatalf("%d %s", status, body)
	}
	wantKeys(t, conditions(t, e, body), map[string]string{
		"aws:SourceIp": "127.0.0.1", "aws:SecureTransport": "false", "aws:PrincipalArn": appRoleARN, "aws:PrincipalType": "AssumedRole",
		"aws:userid": arn.RoleID(appRoleARN) + ":s1", "aws:PrincipalTag/project": "x", "aws:PrincipalTag/service": "override",
		"aws:TokenIssueTime": now.Format("2006-01-02T15:04:05Z"), "aws:MultiFactorAuthPresent": "false",
	}, "aws:SourceVpce", "aws:SourceVpc", "aws:username")
}

// phantom:RiskLevel comes from the risk source; alice's policy denies at high risk.
func TestRiskLevel(t *testing.T) {
	e := newEnv(t)
	k := e.keys["alice"]
	if status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &k}); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	e.hit(t)
	e.risk.m.Store(aliceARN, "high")
	status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/orders", creds: &k})
	if status != 403 || !strings.HasSuffix(mustMessage(t, body), "with an explicit deny") {
		t.Fatalf("%d %s", status, body)
	}
	wantKeys(t, conditions(t, e, body), map[string]string{"phantom:RiskLevel": "high"})
}

func mustMessage(t *testing.T, body string) string {
	t.Helper()
	m, _ := decodeError(t, body)
	return m
}

// A NONE route is open to anonymous callers but not past an explicit deny of the resource
// policy: /private/open is denied directly and served through the endpoint.
func TestNoneRouteExplicitDeny(t *testing.T) {
	e := newEnv(t)
	status, body, _ := e.send(t, testCall{method: "GET", path: "/prod/private/open", plain: true})
	if status != 403 || mustMessage(t, body) != "User: anonymous is not authorized to perform: execute-api:Invoke on resource: arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/prod/GET/private/open with an explicit deny" {
		t.Fatalf("%d %s", status, body)
	}
	if ev := e.oneEvent(t); ev.ErrorCode != "AccessDenied" || ev.AdditionalEventData["decision"] != "ExplicitDeny" {
		t.Errorf("event %+v", ev)
	}
	e.noHit(t)
	cert := endpointCert(t, e.ca, pki.KindEndpoint, testEndpoint)
	status, body, _ = e.send(t, testCall{method: "GET", path: "/prod/private/open", cert: cert, endpointHdrs: viaEndpoint(testAPI, "10.0.1.15")})
	if status != 200 {
		t.Fatalf("through the endpoint: %d %s", status, body)
	}
	e.hit(t)
	e.oneEvent(t)
}

// A presigned URL authorizes the call; the backend gets the query without the signature or
// the session token.
func TestPresigned(t *testing.T) {
	e := newEnv(t)
	s := e.session("app", "s1", time.Hour)
	r := newRequest(t, "GET", e.server.URL+"/prod/orders?keep=1", nil)
	r.Header.Set("X-Apigw-Api-Id", testAPI)
	q := r.URL.Query()
	q.Set("X-Amz-Expires", "300")
	r.URL.RawQuery = q.Encode()
	signed, hdr, err := v4.NewSigner().PresignHTTP(t.Context(), aws.Credentials(s), r, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "execute-api", "us-east-1", e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	pr := newRequest(t, "GET", signed, nil)
	pr.Header = hdr.Clone()
	status, body, _ := do(t, e.client(nil), pr)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	h := e.hit(t)
	v, err := url.ParseQuery(h.Query)
	if err != nil || v.Get("keep") != "1" || len(v) != 1 {
		t.Errorf("backend query %q: want only keep=1", h.Query)
	}
	e.oneEvent(t)
}

// The condition keys of a decision are all named in lower case, whatever the case of the
// tag keys and the condition keys' canonical names: decisions hand them to
// policy.Context.ResetLower, which does not check again (a name in another case would
// never be found, and a condition on it would not apply).
func TestDecisionKeysLowerCase(t *testing.T) {
	e := newEnv(t)
	spec := e.spec.Load()
	st, err := e.gw.stateFor(spec)
	if err != nil {
		t.Fatal(err)
	}
	role, ok := spec.RoleByARN(appRoleARN)
	if !ok {
		t.Fatal("no app role")
	}
	ep, ok := spec.Endpoint(testEndpoint)
	if !ok {
		t.Fatal("no endpoint")
	}
	now := time.Now()
	r := newRequest(t, "GET", "http://gateway/prod/orders", nil)
	r.Header.Set("User-Agent", "UA/1")
	cl := &call{r: r, spec: spec, st: st, now: now, ch: channel{endpoint: ep, sourceIP: "10.0.1.15", secure: true}}
	c := &caller{arn: "arn:aws:sts::" + testAccount + ":assumed-role/app/s1", account: testAccount, role: role, principalID: "AROAX:s1",
		issued: isoTime(now), risk: "High", claims: &identity.Claims{
			Tags:           []identity.Tag{{Key: "CostCenter", Value: "x"}, {Key: "Ünïcode", Value: "y"}, {Key: "team", Value: "z"}},
			SourceIdentity: "Alice", VPC: "vpc-1", PrivateIP: netip.MustParseAddr("10.0.0.1"), MFA: true, MFAAt: now,
		}}
	lower, canonical := newKeyBuilder(false), newKeyBuilder(true)
	e.gw.fillKeys(lower, cl, c)
	e.gw.fillKeys(canonical, cl, c)
	for k := range lower.m {
		if strings.ToLower(k) != k {
			t.Errorf("decision key %q is not in lower case", k)
		}
	}
	for k, v := range canonical.m {
		if got := lower.m[strings.ToLower(k)]; !slices.Equal(got, v) {
			t.Errorf("%s: decision has %q, want %q", k, got, v)
		}
	}
	if len(lower.m) != len(canonical.m) || len(lower.m) < 20 {
		t.Errorf("%d decision keys, %d canonical", len(lower.m), len(canonical.m))
	}
}
