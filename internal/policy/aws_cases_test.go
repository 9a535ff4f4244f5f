package policy

import (
	"errors"
	"strings"
	"testing"
)

// The rules of this file come from the known disagreements between the engine and AWS
// listed by the public conformance cases (../shared/conformance/iam/README.md, ids B1-B4,
// W6, W7, W11, U1, U2); each test names its id and the AWS document it follows.

// TestAccountPrincipalDelegates (B1): "When you specify an AWS account as the principal
// ... you delegate access to the account; ... the administrator of that account must
// grant the account's identities permission" ("AWS JSON policy elements: Principal",
// AWS account principals). Within one account the caller's identity-based policies must
// allow too, as benkehoe/permissions-boundary-test observed on AWS (key C1-BA-RA).
func TestAccountPrincipalDelegates(t *testing.T) {
	const alicePutOrders = `{"Version":"2012-10-17","Statement":[{"Sid":"Orders","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"s3:*","Resource":"*"}]}`
	put := Request{Principal: alice, Action: "s3:PutObject", Resource: bucket}
	runEvalRows(t, []evalRow{
		{name: "root ARN alone grants nothing in the account", doc: "B1: the account principal delegates to the account's identity policies",
			policies: []pol{{Resource, alicePutOrders}}, req: put,
			want: ImplicitDeny, reasonHas: "delegates to the account's identity-based policies"},
		{name: "account id alone grants nothing in the account", doc: "B1: the 12-digit account id is the account principal too",
			policies: []pol{{Resource, resourcePolicy(`{"AWS":"` + acctA + `"}`)}}, req: Request{Principal: session, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "delegates"},
		{name: "identity policy for another action does not help", doc: "B1: the identity policy must allow this request",
			policies: []pol{{Identity, allowGet}, {Resource, alicePutOrders}}, req: put,
			want: ImplicitDeny},
		{name: "identity policy allows", doc: "B1: with the identity-based allow the request is allowed; the delegation itself granted nothing",
			policies: []pol{{Identity, allowAllS3}, {Resource, alicePutOrders}}, req: put,
			want: Allow, matched: []Match{{0, "AllowS3"}}},
		{name: "boundary still caps the identity allow", doc: "B1 with benkehoe C1-PA-RA: boundary -, role policy Allow, resource policy Allow is denied",
			policies: []pol{{Identity, allowAllS3}, {Boundary, allowEC2}, {Resource, alicePutOrders}}, req: put,
			want: ImplicitDeny, reasonHas: "permissions boundary does not allow"},
		{name: "cross account: the account principal is the resource side's allow", doc: "Cross-account policy evaluation logic: the resource policy names the caller's account, the caller's identity policy allows",
			policies: []pol{{Identity, allowGet}, {Resource, resourcePolicy(`{"AWS":"` + acctA + `"}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket, ResourceAccount: acctB},
			want: Allow, matched: []Match{{0, "AllowGet"}, {1, "Bucket"}}},
		{name: "the same element naming the user grants", doc: "B1: a principal element naming the account and the user grants through the user ARN",
			policies: []pol{{Resource, resourcePolicy(`{"AWS":["` + acctA + `","` + alice + `"]}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{0, "Bucket"}}},
		{name: "a Deny naming the account denies its principals", doc: "AWS JSON policy elements: Principal — a Deny applies to every principal the element covers",
			policies: []pol{{Identity, allowAllS3}, {Resource, strings.Replace(alicePutOrders, `"Allow"`, `"Deny"`, 1)}}, req: put,
			want: ExplicitDeny, matched: []Match{{1, "Orders"}}},
	})
}

// TestStarPrincipalNotCapped (B2): a resource-based policy whose principal is "*" grants
// to each caller as itself, so an implicit deny in the caller's permissions boundary does
// not limit it, as for a user or role-session ARN ("Policy evaluation logic", same-account
// requests; observed on AWS by benkehoe/permissions-boundary-test, the "*" table, keys
// C2-RA and C2-BA-RA, with aws:PrincipalArn narrowing "*" to the role).
func TestStarPrincipalNotCapped(t *testing.T) {
	const roleOnly = `{"Version":"2012-10-17","Statement":[{"Sid":"C2","Effect":"Allow","Principal":"*","Action":"s3:PutObject","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:role/Reader"}}}]}`
	put := Request{Principal: session, Action: "s3:PutObject", Resource: bucket}
	runEvalRows(t, []evalRow{
		{name: "boundary does not cap a grant to *", doc: "B2: benkehoe C2-RA (boundary -, role policy -, resource policy Allow): Allow",
			policies: []pol{{Boundary, allowEC2}, {Resource, roleOnly}}, req: put,
			want: Allow, matched: []Match{{1, "C2"}}},
		{name: "session policy does not cap a grant to *", doc: "B2: \"*\" names the session itself, as a session ARN does, which a session policy does not limit (Session policies)",
			policies: []pol{{Session, allowEC2}, {Resource, roleOnly}}, req: put,
			want: Allow, matched: []Match{{1, "C2"}}},
		{name: "AWS * for a user", doc: "B2: iam-simulate 'resource policy allows *, from user': {\"AWS\": \"*\"} is everyone too",
			policies: []pol{{Boundary, allowEC2}, {Resource, resourcePolicy(`{"AWS":"*"}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{1, "Bucket"}}},
		{name: "the condition still narrows *", doc: "B2: the aws:PrincipalArn condition decides who \"*\" is",
			policies: []pol{{Boundary, allowEC2}, {Resource, roleOnly}}, req: Request{Principal: "arn:aws:sts::111122223333:assumed-role/Writer/s", Action: "s3:PutObject", Resource: bucket},
			want: ImplicitDeny},
		{name: "naming the role ARN is still capped", doc: "benkehoe R-RA (boundary -, role policy -, resource policy names the role): implicitDeny",
			policies: []pol{{Boundary, allowEC2}, {Resource, strings.Replace(roleOnly, `"Principal":"*"`, `"Principal":{"AWS":"`+roleArn+`"}`, 1)}}, req: put,
			want: ImplicitDeny, reasonHas: "permissions boundary does not allow"},
		{name: "cross account * still needs the identity side", doc: "Cross-account policy evaluation logic",
			policies: []pol{{Resource, resourcePolicy(`"*"`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket, ResourceAccount: acctB},
			want: ImplicitDeny, reasonHas: "identity-based policy does not allow"},
	})
}

// TestPrincipalArnOfRoleSession (B3): "For IAM roles, the request context returns the ARN
// of the role, not the ARN of the user that assumed the role" ("AWS global condition
// context keys", aws:PrincipalArn). Without the key in the context the engine derives it
// from the session ARN (benkehoe's "[aws:PrincipalArn derived]" cases).
func TestPrincipalArnOfRoleSession(t *testing.T) {
	cond := func(op, v string) string {
		return `{"Version":"2012-10-17","Statement":[{"Sid":"P","Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"` + op + `":{"aws:PrincipalArn":"` + v + `"}}}]}`
	}
	get := Request{Principal: session, Action: "s3:GetObject", Resource: bucket}
	runEvalRows(t, []evalRow{
		{name: "a session's aws:PrincipalArn is the role ARN", doc: "B3: aws:PrincipalArn of an assumed-role session is the role's ARN",
			policies: []pol{{Identity, cond("ArnEquals", "arn:aws:iam::111122223333:role/Reader")}}, req: get,
			want: Allow, matched: []Match{{0, "P"}}},
		{name: "not the session ARN", doc: "B3: aws:PrincipalArn is not the session ARN",
			policies: []pol{{Identity, cond("StringEquals", session)}}, req: get,
			want: ImplicitDeny},
		{name: "the context's value wins", doc: "B3: the gateway sets aws:PrincipalArn with the role's path; the engine uses it",
			policies: []pol{{Identity, cond("ArnLike", "arn:aws:iam::111122223333:role/app/Reader")}},
			req:      Request{Principal: session, Action: "s3:GetObject", Resource: bucket, Context: ctx("aws:PrincipalArn", roleArn)},
			want:     Allow},
		{name: "a user's aws:PrincipalArn is the user ARN", doc: "AWS global condition context keys: aws:PrincipalArn of an IAM user",
			policies: []pol{{Identity, cond("ArnEquals", alice)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: Allow},
		{name: "as a policy variable", doc: "B3 with IAM policy elements: Variables — ${aws:PrincipalArn} is the role ARN",
			policies: []pol{{Identity, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{"StringEquals":{"s3:prefix":"${aws:PrincipalArn}"}}}]}`}},
			req:      Request{Principal: session, Action: "s3:GetObject", Resource: bucket, Context: ctx("s3:prefix", "arn:aws:iam::111122223333:role/Reader")},
			want:     Allow},
	})
}

// TestSCPSparesAnonymous (B4): SCPs apply to the principals of the accounts they are
// attached to ("Policy evaluation logic": "SCPs apply to principals of the account where
// they're attached"), so an SCP neither denies nor limits an anonymous caller or a
// service principal (iam-simulate "anonymous ignores SCP explicit deny").
func TestSCPSparesAnonymous(t *testing.T) {
	publicRead := resourcePolicy(`"*"`)
	runEvalRows(t, []evalRow{
		{name: "SCP Deny does not apply to anonymous", doc: "B4: anonymous ignores SCP explicit deny",
			policies: []pol{{Resource, publicRead}, {SCP, denyGet}}, req: Request{Action: "s3:GetObject", Resource: bucket, ResourceAccount: acctA},
			want: Allow, matched: []Match{{0, "Bucket"}}},
		{name: "SCP that allows nothing does not limit anonymous", doc: "B4: SCPs do not apply to anonymous callers",
			policies: []pol{{Resource, publicRead}, {SCP, allowEC2}}, req: Request{Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{0, "Bucket"}}},
		{name: "SCP Deny applies to the account's principals", doc: "B4: the same SCP denies an IAM principal of the account",
			policies: []pol{{Resource, publicRead}, {SCP, denyGet}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ExplicitDeny, matched: []Match{{1, "DenyGet"}}},
		{name: "SCP Deny does not apply to a service principal", doc: "B4: a service principal is no principal of the account",
			policies: []pol{{Resource, `{"Version":"2012-10-17","Statement":[{"Sid":"T","Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`}, {SCP, `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`}},
			req:      Request{Principal: "lambda.amazonaws.com", Action: "sts:AssumeRole", Resource: roleArn},
			want:     Allow, matched: []Match{{0, "T"}}},
	})
}

// kindCase is one document a policy type does not allow: ParseKind and ValidateKind
// refuse it as a grammar error at its line, column and path, and a Set given it anyway
// (parsed without a type) denies everything.
type kindCase struct {
	name, doc string
	kind      Kind
	code      string
	line, col int
	path      string
}

func checkKindCases(t *testing.T, cases []kindCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKind([]byte(tc.doc), tc.kind)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseKind(%s) = %v, want a *ParseError", tc.kind, err)
			}
			f := pe.Findings[0]
			if f.Code != tc.code || f.Line != tc.line || f.Column != tc.col || f.Path != tc.path || f.Severity != SeverityError {
				t.Errorf("finding %v, want %d:%d %s at %s", f, tc.line, tc.col, tc.code, tc.path)
			}
			var verrs []Finding
			for _, v := range ValidateKind([]byte(tc.doc), tc.kind) {
				if v.Severity == SeverityError {
					verrs = append(verrs, v)
				}
			}
			if len(verrs) != 1 || verrs[0] != f {
				t.Errorf("ValidateKind errors %v, want exactly %v", verrs, f)
			}
			// Parse, knowing no type, accepts the document; a Set holding it fails closed,
			// whatever else would allow.
			p, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			set := NewSet(Entry{Identity, mustParse(t, allowEverthing)}, Entry{Resource, mustParse(t, resourcePolicy(`"*"`))}, Entry{tc.kind, p})
			d := set.Evaluate(&Request{Principal: alice, Action: "s3:GetObject", Resource: bucket})
			if d.Effect != ImplicitDeny || !strings.Contains(d.Reason, "fails closed: policy 2 is not valid as") {
				t.Errorf("set with the document: %v (%s), want a fail-closed ImplicitDeny", d.Effect, d.Reason)
			}
		})
	}
}

// TestEndpointPolicyWithoutPrincipal (W6): a VPC endpoint policy statement must name its
// principals ("Control access to VPC endpoints using endpoint policies": "Principal";
// AWS's default endpoint policy has "Principal": "*").
func TestEndpointPolicyWithoutPrincipal(t *testing.T) {
	checkKindCases(t, []kindCase{
		{name: "Allow without Principal", kind: Endpoint, code: "MISSING_PRINCIPAL", line: 3, col: 3, path: "Statement[1]",
			doc: "{\"Version\":\"2012-10-17\",\"Statement\":[\n {\"Sid\":\"EP\",\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"s3:GetObject\",\"Resource\":\"*\"},\n  {\"Effect\":\"Allow\",\"Action\":\"s3:*\",\"Resource\":\"*\"}]}"},
		{name: "Deny without Principal", kind: Endpoint, code: "MISSING_PRINCIPAL", line: 1, col: 37, path: "Statement",
			doc: `{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"s3:*","Resource":"*"}}`},
	})
}

// TestResourceStatementWithoutPrincipal (W7): "You must use the Principal element in
// resource-based policies" ("AWS JSON policy elements: Principal"); the engine used to
// apply such an Allow to nobody and such a Deny to everybody.
func TestResourceStatementWithoutPrincipal(t *testing.T) {
	checkKindCases(t, []kindCase{
		{name: "Allow without Principal", kind: Resource, code: "MISSING_PRINCIPAL", line: 1, col: 38, path: "Statement[0]",
			doc: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`},
		{name: "trust policy statement without Principal", kind: Resource, code: "MISSING_PRINCIPAL", line: 2, col: 3, path: "Statement[1]",
			doc: "{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"Service\":\"ec2.amazonaws.com\"},\"Action\":\"sts:AssumeRole\"},\n  {\"Effect\":\"Deny\",\"Action\":\"sts:AssumeRole\"}]}"},
	})
}

// TestIdentityPolicyWithPrincipal (W11): "You cannot use the Principal element in an
// identity-based policy" ("AWS JSON policy elements: Principal"); the engine used to
// ignore it. Boundaries, session policies and SCPs have the same shape.
func TestIdentityPolicyWithPrincipal(t *testing.T) {
	const doc = "{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\",\n  \"Principal\":{\"AWS\":\"444455556666\"},\"Action\":\"s3:GetObject\",\"Resource\":\"*\"}}"
	var cases []kindCase
	for _, k := range []Kind{Identity, Boundary, Session, SCP} {
		cases = append(cases, kindCase{name: string(k), kind: k, code: "UNSUPPORTED_PRINCIPAL", line: 2, col: 3, path: "Statement.Principal", doc: doc})
	}
	cases = append(cases, kindCase{name: "NotPrincipal", kind: Identity, code: "UNSUPPORTED_PRINCIPAL", line: 1, col: 55, path: "Statement[0].NotPrincipal",
		doc: `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":"444455556666"},"Action":"*","Resource":"*"}]}`})
	checkKindCases(t, cases)
	if _, err := ParseKind([]byte(doc), Resource); err != nil {
		t.Errorf("a resource-based policy may name a principal: %v", err)
	}
	if _, err := ParseKind([]byte(doc), "rcp"); err == nil || !strings.Contains(err.Error(), "unknown policy type") {
		t.Errorf("ParseKind with an unknown type: %v", err)
	}
}

// TestDisputedDecisions holds the engine's answers where the AWS documentation does not
// settle the decision (the conformance cases marked "disputed"). Two rules decide them:
//
//   - Evaluation: a negated operator is the complement of its positive operator, and
//     what an operator cannot compare does not match it: a request value not of its
//     type (U2), a multivalued key without ForAnyValue:/ForAllValues: (U1, the positive
//     answer recorded from AWS's SimulateCustomPolicy). See condition.eval.
//   - Loading: a document loads when AWS documents a meaning for each of its elements,
//     and gets that meaning; anything else is refused at load (fail closed), even where
//     IAM might store it. So Null with a set qualifier (meaning documented by IAM Access
//     Analyzer) and epoch values after the year 9999 (epoch seconds have no documented
//     range) load; non-numbers in Numeric operators, ARN values without six parts in ARN
//     operators, action names with spaces and "${}" are refused.
func TestDisputedDecisions(t *testing.T) {
	runCondCases(t, []condCase{
		{"U2 NotIpAddress, request value not an address", "ops: negated matching; U2: a value not of the type matches no policy value", "", `{"NotIpAddress":{"k":"10.0.0.0/8"}}`, ctx("k", "not-an-ip"), true},
		{"U2 IpAddress, request value not an address", "ops: IP address", "", `{"IpAddress":{"k":"10.0.0.0/8"}}`, ctx("k", "not-an-ip"), false},
		{"U2 NumericNotEquals, request value not a number", "ops: negated matching; U2", "", `{"NumericNotEquals":{"k":"10"}}`, ctx("k", "a"), true},
		{"U2 DateNotEquals, request value not a date", "ops: negated matching; U2", "", `{"DateNotEquals":{"k":"2023-12-25"}}`, ctx("k", "a"), true},
		{"U2 ArnNotLike, request value not an ARN", "ops: negated matching; U2", "", `{"ArnNotLike":{"k":"arn:aws:iam::123456789012:user/*"}}`, ctx("k", "arn:::bucket-name"), true},
		{"U1 StringEquals on a list", "multi: set operators required; U1 recorded on AWS", "", `{"StringEquals":{"aws:RequestedRegion":["us-east-1","us-west-2"]}}`, ctx("aws:RequestedRegion", list{"us-east-1", "us-west-2"}), false},
		{"U1 StringNotEquals on a list", "ops: negated matching is the complement; U1", "", `{"StringNotEquals":{"aws:RequestedRegion":"eu-west-1"}}`, ctx("aws:RequestedRegion", list{"us-east-1"}), true},
		{"W4 epoch after 9999 compares", "ops: Date — epoch (UNIX) time, no range documented", "", `{"DateLessThan":{"aws:EpochTime":"4086531743431"}}`, ctx("aws:EpochTime", "1467315743431"), true},
		{"W4 epoch after 9999, not less", "ops: Date — epoch (UNIX) time", "", `{"DateLessThan":{"aws:EpochTime":"1467315743431"}}`, ctx("aws:EpochTime", "4086531743431"), false},
		{"ForAllValues:Null is always true", "Access Analyzer: Null with qualifier — ForAllValues always returns true", "", `{"ForAllValues:Null":{"aws:TagKeys":"false"}}`, ctx(), true},
		{"ForAllValues:Null with the key", "Access Analyzer: Null with qualifier", "", `{"ForAllValues:Null":{"aws:TagKeys":"true"}}`, ctx("aws:TagKeys", list{"a"}), true},
		{"ForAnyValue:Null is always false", "Access Analyzer: Null with qualifier — ForAnyValue always returns false", "", `{"ForAnyValue:Null":{"aws:TagKeys":"true"}}`, ctx(), false},
		{"ForAnyValue:Null with the key", "Access Analyzer: Null with qualifier", "", `{"ForAnyValue:Null":{"aws:TagKeys":"false"}}`, ctx("aws:TagKeys", list{"a"}), false},
	})
	refused := []struct{ name, cond, code string }{
		{"non-number in NumericEquals", `{"NumericEquals":{"k":"a"}}`, "INVALID_CONDITION_VALUE"},
		{"non-number in NumericNotEquals", `{"NumericNotEquals":{"k":["a","b"]}}`, "INVALID_CONDITION_VALUE"},
		{"ARN without six parts in ArnLike", `{"ArnLike":{"k":"arn:::bucket-name"}}`, "INVALID_ARN"},
		{"empty variable", `{"StringEquals":{"k":"a${}b"}}`, "INVALID_POLICY_VARIABLE"},
		{"epoch beyond what a date holds", `{"DateLessThan":{"aws:EpochTime":"9223372036854775807"}}`, "INVALID_CONDITION_VALUE"},
	}
	for _, r := range refused {
		doc := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":` + r.cond + `}}`
		checkRefused(t, r.name, doc, r.code)
	}
	for _, a := range []string{"s3:GetBucket   ", "s3:   GetBucket"} {
		checkRefused(t, "action "+a, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"`+a+`","Resource":"*"}}`, "INVALID_ACTION")
	}
}

func checkRefused(t *testing.T, name, doc, code string) {
	t.Helper()
	_, err := Parse([]byte(doc))
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Findings[0].Code != code {
		t.Errorf("%s: Parse = %v, want %s", name, err, code)
	}
}
