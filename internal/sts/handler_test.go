package sts

import (
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

const (
	appARN     = "arn:aws:iam::123456789012:role/app"
	partnerARN = "arn:aws:iam::123456789012:role/external/partner"
	chainedARN = "arn:aws:iam::123456789012:role/chained"
	taggedARN  = "arn:aws:iam::123456789012:role/tagged"
)

func TestGetCallerIdentity(t *testing.T) {
	e := newEnv(t)
	code, body := e.call(t, e.users["alice"], form("GetCallerIdentity"))
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	var r struct {
		XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ GetCallerIdentityResponse"`
		Arn     string   `xml:"GetCallerIdentityResult>Arn"`
		UserID  string   `xml:"GetCallerIdentityResult>UserId"`
		Account string   `xml:"GetCallerIdentityResult>Account"`
		ReqID   string   `xml:"ResponseMetadata>RequestId"`
	}
	if err := xml.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if r.Arn != "arn:aws:iam::123456789012:user/alice" || r.Account != testAccount || !strings.HasPrefix(r.UserID, "AIDA") || len(r.UserID) != 21 || r.ReqID == "" {
		t.Fatalf("got %+v", r)
	}
	ev := e.audit.all()
	if len(ev) != 1 || ev[0].EventName != "GetCallerIdentity" || ev[0].UserIdentity.Type != "IAMUser" || ev[0].ErrorCode != "" || ev[0].EventSource != "sts.amazonaws.com" {
		t.Fatalf("audit: %+v", ev)
	}
}

func TestAssumeRoleThenCallerIdentity(t *testing.T) {
	e := newEnv(t)
	x := e.assume(t, e.users["alice"], "RoleArn", appARN, "RoleSessionName", "alice-laptop", "DurationSeconds", "900")
	if x.Result.AssumedRoleUser.Arn != "arn:aws:sts::123456789012:assumed-role/app/alice-laptop" ||
		!strings.HasPrefix(x.Result.AssumedRoleUser.AssumedRoleID, "AROA") || !strings.HasSuffix(x.Result.AssumedRoleUser.AssumedRoleID, ":alice-laptop") {
		t.Fatalf("assumed role user %+v", x.Result.AssumedRoleUser)
	}
	if x.Result.PackedPolicySize != nil || x.Result.SourceIdentity != "" {
		t.Errorf("optional members present without policy/tags/source identity: %+v", x.Result)
	}
	exp, err := time.Parse(time.RFC3339, x.Result.Credentials.Expiration)
	if err != nil || time.Until(exp) > 900*time.Second || time.Until(exp) < 890*time.Second {
		t.Errorf("expiration %q: %v", x.Result.Credentials.Expiration, err)
	}
	code, body := e.call(t, x.creds(), form("GetCallerIdentity"))
	if code != 200 || !strings.Contains(string(body), "<Arn>arn:aws:sts::123456789012:assumed-role/app/alice-laptop</Arn>") {
		t.Fatalf("%d %s", code, body)
	}
	noSecrets(t, e.audit.all(), x.Result.Credentials.SecretAccessKey, x.Result.Credentials.SessionToken, e.users["alice"].SecretAccessKey)
	ev := e.audit.all()[0]
	if ev.EventName != "AssumeRole" || ev.RequestParameters["roleArn"] != appARN || ev.ResponseElements["assumedRoleUser"] == nil {
		t.Fatalf("audit %+v", ev)
	}
}

func TestAssumeRoleOptions(t *testing.T) {
	e := newEnv(t)
	alice := e.users["alice"]

	// ExternalId satisfied, the role's 2h maximum.
	e.assume(t, alice, "RoleArn", partnerARN, "RoleSessionName", "p1", "ExternalId", "partner-7f3a", "DurationSeconds", "7200")

	// Session policy, policy ARNs, tags, transitive keys and source identity.
	x := e.assume(t, alice, "RoleArn", appARN, "RoleSessionName", "s1",
		"Policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"],"Resource":"*"}]}`,
		"PolicyArns.member.1.arn", "arn:aws:iam::123456789012:policy/ReadOnly",
		"Tags.member.1.Key", "team", "Tags.member.1.Value", "payments",
		"Tags.member.2.Key", "cost", "Tags.member.2.Value", "42",
		"TransitiveTagKeys.member.1", "team",
		"SourceIdentity", "alice@example.com")
	if x.Result.PackedPolicySize == nil || *x.Result.PackedPolicySize <= 0 || x.Result.SourceIdentity != "alice@example.com" {
		t.Fatalf("result %+v", x.Result)
	}
	spec := e.issuer.last()
	if spec.Role != appARN || len(spec.Tags) != 2 || len(spec.TransitiveTagKeys) != 1 || spec.Policy == "" || len(spec.PolicyARNs) != 1 {
		t.Fatalf("issued %+v", spec)
	}

	// Role chaining: the transitive tag team=payments satisfies the chained role's trust
	// condition on aws:PrincipalTag/team; the source identity carries over.
	y := e.assume(t, x.creds(), "RoleArn", chainedARN, "RoleSessionName", "s2")
	spec = e.issuer.last()
	if y.Result.SourceIdentity != "alice@example.com" || len(spec.Tags) != 1 || spec.Tags[0] != (Tag{"team", "payments"}) {
		t.Fatalf("chained: %+v / %+v", y.Result, spec)
	}

	// Tags allowed only when the trust policy allows sts:TagSession for them.
	e.assume(t, alice, "RoleArn", taggedARN, "RoleSessionName", "t1", "Tags.member.1.Key", "project", "Tags.member.1.Value", "orders")
}

func TestGetSessionToken(t *testing.T) {
	e := newEnv(t)
	code, body := e.call(t, e.users["bob"], form("GetSessionToken", "DurationSeconds", "3600"))
	if code != 200 || !strings.Contains(string(body), "<GetSessionTokenResult><Credentials><AccessKeyId>ASIA") {
		t.Fatalf("%d %s", code, body)
	}
	var r struct {
		C struct {
			AccessKeyID     string `xml:"AccessKeyId"`
			SecretAccessKey string
			SessionToken    string
		} `xml:"GetSessionTokenResult>Credentials"`
	}
	if err := xml.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	sess := aws.Credentials{AccessKeyID: r.C.AccessKeyID, SecretAccessKey: r.C.SecretAccessKey, SessionToken: r.C.SessionToken}
	code, body = e.call(t, sess, form("GetCallerIdentity"))
	if code != 200 || !strings.Contains(string(body), "<Arn>arn:aws:iam::123456789012:user/bob</Arn>") {
		t.Fatalf("%d %s", code, body)
	}
	// "GetSessionToken cannot be called with session credentials."
	code, body = e.call(t, sess, form("GetSessionToken"))
	if er := parseError(t, body); code != 403 || er.Code != "AccessDenied" {
		t.Fatalf("%d %s", code, body)
	}
}

// TestDenials: each refusal carries AWS's code, status and message.
func TestDenials(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol := e.users["alice"], e.users["bob"], e.users["carol"]
	// A session of app whose transitive tag satisfies the chained role's trust condition.
	app := e.assume(t, alice, "RoleArn", appARN, "RoleSessionName", "chain",
		"Tags.member.1.Key", "team", "Tags.member.1.Value", "payments", "TransitiveTagKeys.member.1", "team").creds()
	long := strings.Repeat("a", 65)
	tests := []struct {
		name       string
		creds      aws.Credentials
		form       []string
		action     string
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"untrusted principal: no trust statement names bob", bob, []string{"RoleArn", appARN, "RoleSessionName", "ss"}, "", 403, "AccessDenied",
			"User: arn:aws:iam::123456789012:user/bob is not authorized to perform: sts:AssumeRole on resource: " + appARN},
		{"trusted but no identity permission (carol)", carol, []string{"RoleArn", appARN, "RoleSessionName", "ss"}, "", 403, "AccessDenied",
			"User: arn:aws:iam::123456789012:user/carol is not authorized to perform: sts:AssumeRole on resource: " + appARN},
		{"unknown role: same message as a denied one", alice, []string{"RoleArn", "arn:aws:iam::123456789012:role/nope", "RoleSessionName", "ss"}, "", 403, "AccessDenied",
			"is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/nope"},
		{"wrong ExternalId fails the trust condition", alice, []string{"RoleArn", partnerARN, "RoleSessionName", "ss", "ExternalId", "guess-123"}, "", 403, "AccessDenied", "sts:AssumeRole"},
		{"missing ExternalId fails the trust condition", alice, []string{"RoleArn", partnerARN, "RoleSessionName", "ss"}, "", 403, "AccessDenied", "sts:AssumeRole"},
		{"ExternalId shorter than 2", alice, []string{"RoleArn", partnerARN, "RoleSessionName", "ss", "ExternalId", "x"}, "", 400, "ValidationError", "Member must have length greater than or equal to 2"},
		{"DurationSeconds over the role's MaxSessionDuration", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "DurationSeconds", "3601"}, "", 400, "ValidationError",
			"The requested DurationSeconds exceeds the MaxSessionDuration set for this role."},
		{"DurationSeconds under 900", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "DurationSeconds", "899"}, "", 400, "ValidationError",
			"1 validation error detected: Value '899' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"},
		{"role chaining capped at one hour", app, []string{"RoleArn", chainedARN, "RoleSessionName", "ss", "DurationSeconds", "7200"}, "", 400, "ValidationError",
			"The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."},
		{"chained session without the tag the trust policy requires", e.assume(t, alice, "RoleArn", appARN, "RoleSessionName", "untagged").creds(), []string{"RoleArn", chainedARN, "RoleSessionName", "ss"}, "", 403, "AccessDenied",
			"User: arn:aws:sts::123456789012:assumed-role/app/untagged is not authorized to perform: sts:AssumeRole on resource: " + chainedARN},
		{"a transitive tag cannot be overridden down the chain", app, []string{"RoleArn", chainedARN, "RoleSessionName", "ss", "Tags.member.1.Key", "TEAM", "Tags.member.1.Value", "x"}, "", 400, "InvalidParameterValue", "conflicts with a transitive tag"},
		{"RoleSessionName with a space", alice, []string{"RoleArn", appARN, "RoleSessionName", "bad name"}, "", 400, "ValidationError",
			`1 validation error detected: Value 'bad name' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*`},
		{"RoleSessionName too long", alice, []string{"RoleArn", appARN, "RoleSessionName", long}, "", 400, "ValidationError", "Member must have length less than or equal to 64"},
		{"RoleSessionName missing", alice, []string{"RoleArn", appARN}, "", 400, "ValidationError", "Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null"},
		{"malformed session policy JSON", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "Policy", `{"Version":`}, "", 400, "MalformedPolicyDocument", "The policy is not in the valid JSON format."},
		{"session policy with a bad effect", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "Policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}`}, "", 400, "MalformedPolicyDocument", "Syntax errors in policy."},
		{"session policy naming a principal", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "Policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}`}, "", 400, "MalformedPolicyDocument",
			"Syntax errors in policy. Statement[0].Principal: a session policy cannot have Principal"},
		{"session policy over 2048 characters", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "Policy", `{"Version":"2012-10-17","Statement":[{"Sid":"` + strings.Repeat("x", 2100) + `","Effect":"Allow","Action":"*","Resource":"*"}]}`}, "", 400, "ValidationError", "Member must have length less than or equal to 2048"},
		{"packed policy too large", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "Policy", `{"Version":"2012-10-17","Statement":[{"Sid":"` + strings.Repeat("x", 1900) + `","Effect":"Allow","Action":"*","Resource":"*"}]}`,
			"Tags.member.1.Key", "k", "Tags.member.1.Value", strings.Repeat("v", 200)}, "", 400, "PackedPolicyTooLarge", "Packed policy consumes"},
		{"unknown policy ARN", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "PolicyArns.member.1.arn", "arn:aws:iam::123456789012:policy/Nope"}, "", 400, "InvalidParameterValue", "does not exist"},
		{"transitive key not among the tags", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "Tags.member.1.Key", "a", "Tags.member.1.Value", "b", "TransitiveTagKeys.member.1", "c"}, "", 400, "InvalidParameterValue",
			"The specified transitive tag key must be included in the requested tags."},
		{"duplicate tag keys differing in case", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "Tags.member.1.Key", "a", "Tags.member.1.Value", "b", "Tags.member.2.Key", "A", "Tags.member.2.Value", "c"}, "", 400, "InvalidParameterValue", "Duplicate tag keys"},
		{"tag list with a gap", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "Tags.member.2.Key", "a", "Tags.member.2.Value", "b"}, "", 400, "ValidationError", "without gaps"},
		{"tag not allowed by the trust policy's sts:TagSession condition", alice, []string{"RoleArn", taggedARN, "RoleSessionName", "ss", "Tags.member.1.Key", "project", "Tags.member.1.Value", "other"}, "", 403, "AccessDenied",
			"is not authorized to perform: sts:TagSession on resource: " + taggedARN},
		{"source identity outside its pattern", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "SourceIdentity", "aws:me"}, "", 400, "ValidationError", "at 'sourceIdentity' failed to satisfy constraint"},
		{"MFA parameters are refused, not ignored", alice, []string{"RoleArn", appARN, "RoleSessionName", "ss", "SerialNumber", "arn:aws:iam::123456789012:mfa/alice", "TokenCode", "123456"}, "", 403, "AccessDenied", "MultiFactorAuthentication failed"},
		{"unknown action", alice, nil, "DeleteEverything", 400, "InvalidAction", "Could not find operation DeleteEverything for version 2011-06-15"},
		{"GetSessionToken duration over 36h", alice, []string{"DurationSeconds", "129601"}, "GetSessionToken", 400, "ValidationError", "Member must have value less than or equal to 129600"},
		{"unknown access key", aws.Credentials{AccessKeyID: "AKIAUNKNOWNUNKNOWN00", SecretAccessKey: "x"}, nil, "GetCallerIdentity", 403, "InvalidClientTokenId", "The security token included in the request is invalid."},
		{"unsigned request", aws.Credentials{}, nil, "GetCallerIdentity", 403, "MissingAuthenticationToken", "Request is missing Authentication Token"},
		{"wrong secret", aws.Credentials{AccessKeyID: alice.AccessKeyID, SecretAccessKey: "wrong"}, nil, "GetCallerIdentity", 403, "SignatureDoesNotMatch", "The request signature we calculated does not match"},
		{"wrong secret with a session token: the canonical request (with the token) goes to the caller, not the audit", aws.Credentials{AccessKeyID: app.AccessKeyID, SecretAccessKey: "wrong", SessionToken: app.SessionToken}, nil, "GetCallerIdentity", 403, "SignatureDoesNotMatch",
			"The Canonical String for this request should have been"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			action := tt.action
			if action == "" {
				action = "AssumeRole"
			}
			before := len(e.audit.all())
			code, body := e.call(t, tt.creds, form(action, tt.form...))
			er := parseError(t, body)
			if code != tt.wantStatus || er.Code != tt.wantCode || !strings.Contains(er.Message, tt.wantMsg) {
				t.Fatalf("got %d %s %q; want %d %s containing %q", code, er.Code, er.Message, tt.wantStatus, tt.wantCode, tt.wantMsg)
			}
			wantType := "Sender"
			if er.Type != wantType {
				t.Errorf("Type %q", er.Type)
			}
			ev := e.audit.all()
			if len(ev) != before+1 || ev[len(ev)-1].ErrorCode != tt.wantCode {
				t.Fatalf("want one audit event with errorCode %s, got %d new", tt.wantCode, len(ev)-before)
			}
		})
	}
	noSecrets(t, e.audit.all(), alice.SecretAccessKey, bob.SecretAccessKey, app.SecretAccessKey, app.SessionToken)
}

func TestProtocolErrors(t *testing.T) {
	e := newEnv(t)
	alice := e.users["alice"]
	// A GET with the parameters in the query string is the query protocol too.
	r := httptest.NewRequest(http.MethodGet, "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", nil)
	signGet(t, alice, r)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "user/alice") {
		t.Fatalf("GET: %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/xml" || rec.Header().Get("X-Amzn-Requestid") == "" {
		t.Fatalf("headers %v", rec.Header())
	}

	// A parameter given twice (query and body) is refused.
	for _, tt := range []struct{ name, url, wantCode string }{
		{"duplicate parameter", "https://sts.amazonaws.com/?Action=AssumeRole", "MalformedQueryString"},
		{"wrong version", "https://sts.amazonaws.com/?Version=2010-01-01", "MalformedQueryString"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := "Action=GetCallerIdentity&Version=2011-06-15"
			r := httptest.NewRequest(http.MethodPost, tt.url, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			signBody(t, alice, r, body)
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, r)
			if er := parseError(t, rec.Body.Bytes()); er.Code != tt.wantCode {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		})
	}
	code, body := e.call(t, alice, form("GetCallerIdentity", "Version", "2010-01-01"))
	if er := parseError(t, body); code != 400 || er.Code != "InvalidAction" {
		t.Fatalf("%d %s", code, body)
	}
}
