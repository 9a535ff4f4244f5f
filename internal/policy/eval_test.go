package policy

import (
	"slices"
	"strings"
	"testing"
)

const (
	acctA   = "111122223333"
	acctB   = "444455556666"
	alice   = "arn:aws:iam::111122223333:user/alice"
	roleArn = "arn:aws:iam::111122223333:role/app/Reader"
	session = "arn:aws:sts::111122223333:assumed-role/Reader/sess-1"
	bucket  = "arn:aws:s3:::amzn-s3-demo-bucket/key"
)

// Policy documents the evaluation table combines.
const (
	allowGet       = `{"Version":"2012-10-17","Statement":[{"Sid":"AllowGet","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`
	allowAllS3     = `{"Version":"2012-10-17","Statement":[{"Sid":"AllowS3","Effect":"Allow","Action":"s3:*","Resource":"*"}]}`
	allowEC2       = `{"Version":"2012-10-17","Statement":[{"Sid":"AllowEC2","Effect":"Allow","Action":"ec2:*","Resource":"*"}]}`
	denyGet        = `{"Version":"2012-10-17","Statement":[{"Sid":"DenyGet","Effect":"Deny","Action":"s3:GetObject","Resource":"*"}]}`
	allowEverthing = `{"Version":"2012-10-17","Statement":[{"Sid":"FullAWSAccess","Effect":"Allow","Action":"*","Resource":"*"}]}`
	denyNotS3      = `{"Version":"2012-10-17","Statement":[{"Sid":"DenyOutsideS3","Effect":"Deny","NotAction":"s3:*","Resource":"*"}]}`
)

func resourcePolicy(principal string) string {
	return `{"Version":"2012-10-17","Statement":[{"Sid":"Bucket","Effect":"Allow","Principal":` + principal + `,"Action":"s3:GetObject","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*"}]}`
}

type pol struct {
	kind Kind
	doc  string
}

// evalRow is one evaluation: the policies, the request, and the decision AWS documents.
type evalRow struct {
	name      string
	doc       string // the AWS page and rule the row follows
	policies  []pol
	req       Request
	want      Effect
	matched   []Match
	reasonHas string
}

func runEvalRows(t *testing.T, rows []evalRow) {
	t.Helper()
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			var entries []Entry
			for _, p := range tc.policies {
				entries = append(entries, Entry{p.kind, mustParse(t, p.doc)})
			}
			d := NewSet(entries...).Evaluate(&tc.req)
			if d.Effect != tc.want {
				t.Fatalf("got %v (%q), want %v — %s", d.Effect, d.Reason, tc.want, tc.doc)
			}
			if tc.matched != nil && !slices.Equal(d.Matched, tc.matched) {
				t.Errorf("matched %v, want %v", d.Matched, tc.matched)
			}
			if tc.want != Allow && tc.matched == nil && len(d.Matched) != 0 {
				t.Errorf("implicit deny names statements %v", d.Matched)
			}
			if tc.reasonHas != "" && !strings.Contains(d.Reason, tc.reasonHas) {
				t.Errorf("reason %q does not say %q", d.Reason, tc.reasonHas)
			}
		})
	}
}

func TestEvaluationLogic(t *testing.T) {
	runEvalRows(t, []evalRow{
		{name: "default deny", doc: "Policy evaluation logic: by default all requests are implicitly denied",
			policies: []pol{{Identity, allowEC2}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "no identity-based or resource-based policy allows"},
		{name: "identity allow", doc: "Policy evaluation logic: an explicit allow in an identity-based policy allows",
			policies: []pol{{Identity, allowGet}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{0, "AllowGet"}}},
		{name: "actions are case-insensitive", doc: "IAM JSON policy elements: Action — action names are not case-sensitive",
			policies: []pol{{Identity, allowGet}}, req: Request{Principal: alice, Action: "S3:getobject", Resource: bucket},
			want: Allow, matched: []Match{{0, "AllowGet"}}},
		{name: "explicit deny overrides allow", doc: "Policy evaluation logic: an explicit deny in any policy overrides any allow",
			policies: []pol{{Identity, allowAllS3}, {Identity, denyGet}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ExplicitDeny, matched: []Match{{1, "DenyGet"}}},
		{name: "explicit deny in resource policy", doc: "Policy evaluation logic: deny evaluation covers all policy types, resource-based included",
			policies: []pol{{Identity, allowAllS3}, {Resource, `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     ExplicitDeny, matched: []Match{{1, "0"}}},
		{name: "explicit deny in SCP", doc: "Policy evaluation logic: an explicit deny in an SCP applies to the account's principals",
			policies: []pol{{Identity, allowAllS3}, {SCP, allowEverthing}, {SCP, denyGet}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ExplicitDeny, matched: []Match{{2, "DenyGet"}}},
		{name: "explicit deny in boundary", doc: "Policy evaluation logic: explicit deny in a permissions boundary",
			policies: []pol{{Identity, allowAllS3}, {Boundary, denyGet}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ExplicitDeny, matched: []Match{{1, "DenyGet"}}},
		{name: "explicit deny in session policy", doc: "Policy evaluation logic: explicit deny in a session policy",
			policies: []pol{{Identity, allowAllS3}, {Session, denyGet}}, req: Request{Principal: session, Action: "s3:GetObject", Resource: bucket},
			want: ExplicitDeny, matched: []Match{{1, "DenyGet"}}},
		{name: "explicit deny in endpoint policy", doc: "Control access to VPC endpoints using endpoint policies: a Deny in the endpoint policy denies",
			policies: []pol{{Identity, allowAllS3}, {Endpoint, `{"Statement":[{"Sid":"NoGet","Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     ExplicitDeny, matched: []Match{{1, "NoGet"}}},
		{name: "all denying statements are named", doc: "Policy evaluation logic: explicit deny; the decision lists each denying statement",
			policies: []pol{{Identity, denyGet}, {Identity, allowAllS3}, {SCP, denyNotS3}, {SCP, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"D2","Effect":"Deny","Action":"s3:Get*","Resource":"*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     ExplicitDeny, matched: []Match{{0, "DenyGet"}, {3, "D2"}}},
		{name: "NotAction deny applies to other services", doc: "IAM JSON policy elements: NotAction — Deny with NotAction denies everything not listed",
			policies: []pol{{Identity, allowEverthing}, {Identity, denyNotS3}}, req: Request{Principal: alice, Action: "ec2:RunInstances", Resource: "*"},
			want: ExplicitDeny, matched: []Match{{1, "DenyOutsideS3"}}},
		{name: "NotAction deny skips listed service", doc: "IAM JSON policy elements: NotAction",
			policies: []pol{{Identity, allowEverthing}, {Identity, denyNotS3}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{0, "FullAWSAccess"}}},
		{name: "SCP must allow", doc: "Policy evaluation logic: if an SCP applies and does not allow, the request is implicitly denied",
			policies: []pol{{Identity, allowAllS3}, {SCP, allowEC2}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "SCP does not allow"},
		{name: "SCP allows and identity allows", doc: "Policy evaluation logic: SCP allow plus identity allow",
			policies: []pol{{SCP, allowEverthing}, {Identity, allowGet}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{0, "FullAWSAccess"}, {1, "AllowGet"}}},
		{name: "SCP alone grants nothing", doc: "Policy evaluation logic: SCPs do not grant permissions",
			policies: []pol{{SCP, allowEverthing}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "no identity-based or resource-based policy allows"},
		{name: "SCP limits resource-policy access too", doc: "Policy evaluation logic: SCPs apply before resource-based policies",
			policies: []pol{{SCP, allowEC2}, {Resource, resourcePolicy(`{"AWS":"` + alice + `"}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "SCP does not allow"},
		{name: "same account: resource policy alone allows", doc: "Policy evaluation logic: within an account, an allow in either the identity-based or the resource-based policy allows",
			policies: []pol{{Resource, resourcePolicy(`{"AWS":"` + alice + `"}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{0, "Bucket"}}},
		{name: "cross account: identity only is denied", doc: "Cross-account policy evaluation logic: both the identity-based policy and the resource-based policy must allow",
			policies: []pol{{Identity, allowGet}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket, ResourceAccount: acctB},
			want: ImplicitDeny, reasonHas: "resource-based policy does not allow"},
		{name: "cross account: resource only is denied", doc: "Cross-account policy evaluation logic: the requester's account must also allow via identity policy",
			policies: []pol{{Resource, resourcePolicy(`{"AWS":"` + acctA + `"}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket, ResourceAccount: acctB},
			want: ImplicitDeny, reasonHas: "identity-based policy does not allow"},
		{name: "cross account: neither", doc: "Cross-account policy evaluation logic",
			policies: []pol{{Identity, allowEC2}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket, ResourceAccount: acctB},
			want: ImplicitDeny, reasonHas: "no identity-based or resource-based policy allows"},
		{name: "cross account: both allow", doc: "Cross-account policy evaluation logic: allowed when both allow",
			policies: []pol{{Identity, allowGet}, {Resource, resourcePolicy(`{"AWS":"arn:aws:iam::` + acctA + `:root"}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket, ResourceAccount: acctB},
			want: Allow, matched: []Match{{0, "AllowGet"}, {1, "Bucket"}}},
		{name: "cross account: boundary caps identity side", doc: "Cross-account policy evaluation logic: the requesting principal's boundary still applies",
			policies: []pol{{Identity, allowGet}, {Boundary, allowEC2}, {Resource, resourcePolicy(`{"AWS":"` + alice + `"}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket, ResourceAccount: acctB},
			want: ImplicitDeny, reasonHas: "permissions boundary does not allow"},
		{name: "resource account equal to principal account is same account", doc: "Cross-account policy evaluation logic applies only when accounts differ",
			policies: []pol{{Identity, allowGet}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket, ResourceAccount: acctA},
			want: Allow, matched: []Match{{0, "AllowGet"}}},
		{name: "boundary caps identity", doc: "Permissions boundaries for IAM entities: effective permissions are the intersection of identity policy and boundary",
			policies: []pol{{Identity, allowAllS3}, {Boundary, allowEC2}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "permissions boundary does not allow"},
		{name: "boundary alone grants nothing", doc: "Permissions boundaries: a boundary does not grant permissions on its own",
			policies: []pol{{Boundary, allowAllS3}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "no identity-based or resource-based policy allows"},
		{name: "boundary and identity allow", doc: "Permissions boundaries: intersection allows",
			policies: []pol{{Identity, allowGet}, {Boundary, allowAllS3}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{0, "AllowGet"}, {1, "AllowS3"}}},
		{name: "session policy caps identity", doc: "Policy evaluation logic: session policies limit the role's identity-based permissions",
			policies: []pol{{Identity, allowAllS3}, {Session, allowEC2}}, req: Request{Principal: session, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "session policy does not allow"},
		{name: "session policy and identity allow", doc: "Session policies: effective permissions are the intersection",
			policies: []pol{{Identity, allowGet}, {Session, allowAllS3}}, req: Request{Principal: session, Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{0, "AllowGet"}, {1, "AllowS3"}}},
		{name: "resource policy naming the user ARN is not capped by boundary", doc: "Policy evaluation logic: an implicit deny in a permissions boundary does not limit a resource-based policy that names the IAM user ARN (same account)",
			policies: []pol{{Boundary, allowEC2}, {Resource, resourcePolicy(`{"AWS":"` + alice + `"}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{1, "Bucket"}}},
		{name: "resource policy naming the session ARN is not capped by session policy", doc: "Session policies: a resource-based policy that names the role session ARN is not limited by the session policy",
			policies: []pol{{Session, allowEC2}, {Boundary, allowEC2}, {Resource, resourcePolicy(`{"AWS":"` + session + `"}`)}}, req: Request{Principal: session, Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{2, "Bucket"}}},
		{name: "resource policy naming the role ARN is capped by session policy", doc: "Session policies: a resource-based policy that names the role ARN is limited by the session policy",
			policies: []pol{{Session, allowEC2}, {Resource, resourcePolicy(`{"AWS":"` + roleArn + `"}`)}}, req: Request{Principal: session, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "session policy does not allow"},
		{name: "resource policy naming the role ARN is capped by boundary", doc: "Policy evaluation logic: a resource-based policy that names the role ARN is limited by the permissions boundary",
			policies: []pol{{Boundary, allowEC2}, {Resource, resourcePolicy(`{"AWS":"` + roleArn + `"}`)}}, req: Request{Principal: session, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "permissions boundary does not allow"},
		{name: "resource policy naming the account: identity allow capped by boundary", doc: "Policy evaluation logic: naming the account delegates to the account's policies, whose boundary applies",
			policies: []pol{{Identity, allowGet}, {Boundary, allowEC2}, {Resource, resourcePolicy(`{"AWS":"` + acctA + `"}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "permissions boundary does not allow"},
		{name: "direct-ARN exception does not cross accounts", doc: "Cross-account policy evaluation logic: the requester side still needs an identity allow",
			policies: []pol{{Resource, resourcePolicy(`{"AWS":"` + alice + `"}`)}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket, ResourceAccount: acctB},
			want: ImplicitDeny, reasonHas: "identity-based policy does not allow"},
		{name: "NotPrincipal Deny without boundary spares the listed principal", doc: "AWS JSON policy elements: NotPrincipal — Deny applies to everyone except the listed principals",
			policies: []pol{{Identity, allowGet}, {Resource, `{"Version":"2012-10-17","Statement":[{"Sid":"OnlyAlice","Effect":"Deny","NotPrincipal":{"AWS":"` + alice + `"},"Action":"s3:*","Resource":"*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     Allow, matched: []Match{{0, "AllowGet"}}},
		{name: "NotPrincipal Deny always denies a principal with a boundary", doc: "Permissions boundaries for IAM entities: a NotPrincipal Deny in a resource-based policy always denies a principal that has a permissions boundary, whatever NotPrincipal lists",
			policies: []pol{{Identity, allowGet}, {Boundary, allowAllS3}, {Resource, `{"Version":"2012-10-17","Statement":[{"Sid":"OnlyAlice","Effect":"Deny","NotPrincipal":{"AWS":"` + alice + `"},"Action":"s3:*","Resource":"*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     ExplicitDeny, matched: []Match{{2, "OnlyAlice"}}},
		{name: "endpoint policy must allow", doc: "Control access to VPC endpoints using endpoint policies: the endpoint policy does not grant, it must also allow",
			policies: []pol{{Identity, allowAllS3}, {Endpoint, `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:PutObject","Resource":"*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     ImplicitDeny, reasonHas: "VPC endpoint policy does not allow"},
		{name: "endpoint policy allows", doc: "Control access to VPC endpoints using endpoint policies",
			policies: []pol{{Identity, allowGet}, {Endpoint, `{"Statement":[{"Sid":"EP","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::amzn-s3-demo-bucket/*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     Allow, matched: []Match{{0, "AllowGet"}, {1, "EP"}}},
		{name: "endpoint policy names other principal", doc: "Control access to VPC endpoints using endpoint policies: Principal limits who may use the endpoint",
			policies: []pol{{Identity, allowGet}, {Endpoint, `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"` + acctB + `"},"Action":"*","Resource":"*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     ImplicitDeny, reasonHas: "VPC endpoint policy does not allow"},
		{name: "endpoint policy alone grants nothing", doc: "Control access to VPC endpoints using endpoint policies: endpoint policies do not grant",
			policies: []pol{{Endpoint, `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     ImplicitDeny, reasonHas: "no identity-based or resource-based policy allows"},
		{name: "identity Allow without Resource fails closed", doc: "IAM JSON policy elements: Resource — required in identity-based policies; a set holding one denies everything",
			policies: []pol{{Identity, allowAllS3}, {Identity, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     ImplicitDeny, reasonHas: "policy 1 is not valid as an identity policy: statement has neither Resource nor NotResource"},
		{name: "trust policy without Resource", doc: "Roles terms and concepts: a role trust policy is a resource-based policy without Resource",
			policies: []pol{{Resource, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`}},
			req:      Request{Principal: "ec2.amazonaws.com", Action: "sts:AssumeRole", Resource: roleArn},
			want:     Allow, matched: []Match{{0, "0"}}},
		{name: "service principal allowed by trust policy with a resource account", doc: "Roles terms and concepts: a service assumes a role through the role's trust policy alone",
			policies: []pol{{Resource, `{"Version":"2012-10-17","Statement":[{"Sid":"T","Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`}},
			req:      Request{Principal: "lambda.amazonaws.com", Action: "sts:AssumeRole", Resource: roleArn, ResourceAccount: acctA},
			want:     Allow, matched: []Match{{0, "T"}}},
		{name: "service principal is not granted by identity policies", doc: "Policy evaluation logic: identity-based policies attach to IAM identities, which a service principal is not",
			policies: []pol{{Identity, allowEverthing}}, req: Request{Principal: "lambda.amazonaws.com", Action: "sts:AssumeRole", Resource: roleArn},
			want: ImplicitDeny, reasonHas: "service principal"},
		{name: "anonymous allowed only by public resource policy", doc: "Policy evaluation logic: anonymous requests need a resource-based policy with Principal \"*\"",
			policies: []pol{{Identity, allowEverthing}, {Resource, resourcePolicy(`"*"`)}}, req: Request{Action: "s3:GetObject", Resource: bucket},
			want: Allow, matched: []Match{{1, "Bucket"}}},
		{name: "anonymous denied without resource policy", doc: "Policy evaluation logic: no identity for anonymous requests",
			policies: []pol{{Identity, allowEverthing}}, req: Request{Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "anonymous"},
		{name: "unknown kind fails closed", doc: "fail closed: a policy whose type the engine does not know is never ignored",
			policies: []pol{{Identity, allowGet}, {Kind("rcp"), allowGet}}, req: Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: `fails closed: policy 1 has unknown type "rcp"`},
		{name: "unknown kind fails closed for anonymous callers too", doc: "fail closed: an unknown policy type is not an SCP, which anonymous callers would escape",
			policies: []pol{{Resource, resourcePolicy(`"*"`)}, {Kind("rcp"), allowGet}}, req: Request{Action: "s3:GetObject", Resource: bucket},
			want: ImplicitDeny, reasonHas: "unknown type"},
		{name: "resource wildcard is case-sensitive", doc: "IAM JSON policy elements: Resource — resource ARNs are case-sensitive",
			policies: []pol{{Identity, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::AMZN-S3-DEMO-BUCKET/*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     ImplicitDeny},
		{name: "NotResource", doc: "IAM JSON policy elements: NotResource — allow every resource except those listed",
			policies: []pol{{Identity, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","NotResource":"arn:aws:s3:::amzn-s3-demo-bucket/*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     ImplicitDeny},
		{name: "NotResource other resource", doc: "IAM JSON policy elements: NotResource",
			policies: []pol{{Identity, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","NotResource":"arn:aws:s3:::amzn-s3-demo-bucket/*"}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: "arn:aws:s3:::other/key"},
			want:     Allow, matched: []Match{{0, "0"}}},
		{name: "condition in deny with absent key does not deny", doc: "Condition operators: a positive operator with the key absent is false, so the Deny does not apply",
			policies: []pol{{Identity, allowGet}, {Identity, `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"aws:ViaAWSService":"false"}}}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     Allow, matched: []Match{{0, "AllowGet"}}},
		{name: "deny unless from network", doc: "Condition operators: NotIpAddress example — Deny when the source is outside the listed ranges",
			policies: []pol{{Identity, allowGet}, {Identity, `{"Version":"2012-10-17","Statement":[{"Sid":"Net","Effect":"Deny","Action":"*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","2001:db8::/32"]}}}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket, Context: ctx("aws:SourceIp", "198.51.100.4")},
			want:     ExplicitDeny, matched: []Match{{1, "Net"}}},
		{name: "aws:PrincipalArn falls back to the request", doc: "AWS global condition context keys: aws:PrincipalArn is always present for signed requests",
			policies: []pol{{Identity, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/*"},"StringEquals":{"aws:PrincipalAccount":"111122223333","aws:ResourceAccount":"111122223333"}}}]}`}},
			req:      Request{Principal: alice, Action: "s3:GetObject", Resource: bucket},
			want:     Allow, matched: []Match{{0, "0"}}},
	})
}

// TestEvaluateNil checks the defensive paths fail closed.
func TestEvaluateNil(t *testing.T) {
	var s *Set
	if d := s.Evaluate(&Request{}); d.Effect != ImplicitDeny {
		t.Errorf("nil set: %v", d.Effect)
	}
	if d := NewSet().Evaluate(nil); d.Effect != ImplicitDeny {
		t.Errorf("nil request: %v", d.Effect)
	}
	if d := NewSet().Evaluate(&Request{Principal: alice, Action: "s3:GetObject", Resource: bucket}); d.Effect != ImplicitDeny {
		t.Errorf("empty set: %v", d.Effect)
	}
}
