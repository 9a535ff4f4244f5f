package policy

import (
	"strings"
	"testing"
)

// condCase is one row of the condition tables: a Condition block, a request context and
// whether the condition holds. doc names the AWS page (and example) the answer comes
// from; the pages are "IAM JSON policy elements: Condition operators" (ops),
// "Single-valued vs. multivalued context keys" (multi) and "IAM policy elements:
// Variables and tags" (vars).
type condCase struct {
	name    string
	doc     string
	version string // default 2012-10-17; "none" omits Version
	cond    string
	ctx     *Context
	want    bool
}

// evalCondition wraps cond in an Allow statement of an identity policy and reports
// whether the request is allowed, so the whole pipeline (parse, compile, index,
// evaluate) is exercised by every row.
func evalCondition(t *testing.T, tc condCase) bool {
	t.Helper()
	v := `"Version":"2012-10-17",`
	switch tc.version {
	case "none":
		v = ""
	case "":
	default:
		v = `"Version":"` + tc.version + `",`
	}
	doc := `{` + v + `"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":` + tc.cond + `}}`
	set := NewSet(Entry{Identity, mustParse(t, doc)})
	d := set.Evaluate(&Request{Principal: "arn:aws:iam::111122223333:user/alice", Action: "s3:GetObject",
		Resource: "arn:aws:s3:::bucket/key", Context: tc.ctx})
	if d.Effect == ExplicitDeny {
		t.Fatalf("unexpected explicit deny: %+v", d)
	}
	return d.Effect == Allow
}

func runCondCases(t *testing.T, cases []condCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.doc == "" {
				t.Fatal("row must cite the AWS documentation it follows")
			}
			if got := evalCondition(t, tc); got != tc.want {
				t.Errorf("condition %s with context %v: got %v, want %v (%s)", tc.cond, tc.ctx, got, tc.want, tc.doc)
			}
		})
	}
}

func TestStringOperators(t *testing.T) {
	runCondCases(t, []condCase{
		{"StringEquals match", "ops: StringEquals, exact case-sensitive matching", "", `{"StringEquals":{"aws:PrincipalTag/job-category":"iamuser-admin"}}`, ctx("aws:PrincipalTag/job-category", "iamuser-admin"), true},
		{"StringEquals is case-sensitive on values", "ops: StringEquals \"Exact matching, case sensitive\"", "", `{"StringEquals":{"aws:PrincipalTag/job-category":"iamuser-admin"}}`, ctx("aws:PrincipalTag/job-category", "IAMUser-Admin"), false},
		{"StringEquals key name is case-insensitive", "Condition element: condition key names are not case-sensitive", "", `{"StringEquals":{"AWS:PRINCIPALTAG/JOB-CATEGORY":"iamuser-admin"}}`, ctx("aws:principaltag/job-category", "iamuser-admin"), true},
		{"StringEquals absent key is false", "ops: Important — key not present, the values do not match and the condition is false", "", `{"StringEquals":{"aws:PrincipalTag/job-category":"iamuser-admin"}}`, ctx(), false},
		{"StringEquals several values are OR", "Condition element: several values for one key are evaluated with logical OR", "", `{"StringEquals":{"aws:PrincipalTag/dept":["a","b","c"]}}`, ctx("aws:PrincipalTag/dept", "b"), true},
		{"StringNotEquals value not listed", "ops: StringNotEquals negated matching", "", `{"StringNotEquals":{"aws:PrincipalTag/dept":["a","b"]}}`, ctx("aws:PrincipalTag/dept", "c"), true},
		{"StringNotEquals is NOR over values", "Condition element: negated operator with several values — true only if the value matches none (logical NOR)", "", `{"StringNotEquals":{"aws:PrincipalTag/dept":["a","b"]}}`, ctx("aws:PrincipalTag/dept", "b"), false},
		{"StringNotEquals absent key is true", "ops: Important — a negated operator with the key not present is true", "", `{"StringNotEquals":{"aws:PrincipalTag/dept":"a"}}`, ctx(), true},
		{"StringEqualsIgnoreCase", "ops: StringEqualsIgnoreCase ignores case", "", `{"StringEqualsIgnoreCase":{"aws:PrincipalTag/dept":"Finance"}}`, ctx("aws:PrincipalTag/dept", "FINANCE"), true},
		{"StringEqualsIgnoreCase non-ASCII", "ops: StringEqualsIgnoreCase ignores case (Unicode letters too)", "", `{"StringEqualsIgnoreCase":{"aws:PrincipalTag/dept":"École"}}`, ctx("aws:PrincipalTag/dept", "éCOLE"), true},
		{"StringNotEqualsIgnoreCase", "ops: StringNotEqualsIgnoreCase", "", `{"StringNotEqualsIgnoreCase":{"aws:PrincipalTag/dept":"Finance"}}`, ctx("aws:PrincipalTag/dept", "finance"), false},
		{"StringLike star", "ops: StringLike example s3:prefix home/${aws:username}/*-style wildcard", "", `{"StringLike":{"s3:prefix":["","home/","home/*"]}}`, ctx("s3:prefix", "home/alice/photos"), true},
		{"StringLike empty string value", "ops: StringLike example allows the empty prefix \"\"", "", `{"StringLike":{"s3:prefix":["","home/"]}}`, ctx("s3:prefix", ""), true},
		{"StringLike question mark is one character", "ops: StringLike supports ? single-character wildcard", "", `{"StringLike":{"s3:prefix":"a?c"}}`, ctx("s3:prefix", "abbc"), false},
		{"StringLike question mark matches one", "ops: StringLike ? single-character wildcard", "", `{"StringLike":{"s3:prefix":"a?c"}}`, ctx("s3:prefix", "abc"), true},
		{"StringLike case-sensitive", "ops: StringLike case-sensitive matching", "", `{"StringLike":{"s3:prefix":"Home/*"}}`, ctx("s3:prefix", "home/x"), false},
		{"StringNotLike", "ops: StringNotLike negated case-sensitive matching", "", `{"StringNotLike":{"s3:prefix":"home/*"}}`, ctx("s3:prefix", "tmp/x"), true},
		{"StringNotLike absent key is true", "ops: Important — StringNotLike with the key absent is true", "", `{"StringNotLike":{"s3:prefix":"home/*"}}`, ctx(), true},
		{"StringEquals no wildcard semantics", "ops: StringEquals is exact; * is literal", "", `{"StringEquals":{"s3:prefix":"home/*"}}`, ctx("s3:prefix", "home/x"), false},
		{"StringEqualsIfExists absent", "ops: ...IfExists — if the key is not present, the condition is true", "", `{"StringEqualsIfExists":{"ec2:InstanceType":["t1.*","t2.*"]}}`, ctx(), true},
		{"StringLikeIfExists present mismatch", "ops: ...IfExists example ec2:InstanceType t1.*/t2.*/m3.* — present key must match", "", `{"StringLikeIfExists":{"ec2:InstanceType":["t1.*","t2.*","m3.*"]}}`, ctx("ec2:InstanceType", "c5.large"), false},
		{"StringLikeIfExists present match", "ops: ...IfExists example", "", `{"StringLikeIfExists":{"ec2:InstanceType":["t1.*","t2.*","m3.*"]}}`, ctx("ec2:InstanceType", "t2.micro"), true},
		{"StringNotEqualsIfExists present", "ops: ...IfExists on a negated operator tests the value when present", "", `{"StringNotEqualsIfExists":{"aws:PrincipalTag/dept":"a"}}`, ctx("aws:PrincipalTag/dept", "a"), false},
		{"several keys are AND", "Condition element: several keys in one operator are evaluated with logical AND", "", `{"StringEquals":{"aws:PrincipalTag/dept":"a","aws:PrincipalTag/team":"x"}}`, ctx("aws:PrincipalTag/dept", "a", "aws:PrincipalTag/team", "y"), false},
		{"several operators are AND", "Condition element: several operators are evaluated with logical AND", "", `{"StringEquals":{"aws:PrincipalTag/dept":"a"},"StringLike":{"aws:PrincipalTag/team":"x*"}}`, ctx("aws:PrincipalTag/dept", "a", "aws:PrincipalTag/team", "xy"), true},
		{"number value compared as string", "ops: condition values may be written as JSON numbers; String operators compare text", "", `{"StringEquals":{"s3:max-keys":10}}`, ctx("s3:max-keys", "10"), true},
	})
}

func TestNumericOperators(t *testing.T) {
	runCondCases(t, []condCase{
		{"NumericLessThanEquals within", "ops: Numeric example s3:max-keys NumericLessThanEquals 10", "", `{"NumericLessThanEquals":{"s3:max-keys":"10"}}`, ctx("s3:max-keys", "10"), true},
		{"NumericLessThanEquals above", "ops: Numeric example s3:max-keys NumericLessThanEquals 10", "", `{"NumericLessThanEquals":{"s3:max-keys":"10"}}`, ctx("s3:max-keys", "11"), false},
		{"NumericLessThanEquals absent", "ops: Numeric example — key not present so the condition is false", "", `{"NumericLessThanEquals":{"s3:max-keys":"10"}}`, ctx(), false},
		{"NumericEquals decimal", "ops: Numeric operators compare integers or decimals", "", `{"NumericEquals":{"k":"1.50"}}`, ctx("k", "1.5"), true},
		{"NumericEquals JSON number", "ops: Numeric operators", "", `{"NumericEquals":{"k":7}}`, ctx("k", "7"), true},
		{"NumericNotEquals", "ops: NumericNotEquals negated matching", "", `{"NumericNotEquals":{"k":["1","2"]}}`, ctx("k", "3"), true},
		{"NumericNotEquals NOR", "ops: NumericNotEquals negated matching over several values", "", `{"NumericNotEquals":{"k":["1","2"]}}`, ctx("k", "2"), false},
		{"NumericNotEquals absent is true", "ops: Important — negated operator, key not present, true", "", `{"NumericNotEquals":{"k":"1"}}`, ctx(), true},
		{"NumericLessThan", "ops: NumericLessThan", "", `{"NumericLessThan":{"k":"10"}}`, ctx("k", "9.99"), true},
		{"NumericLessThan equal is false", "ops: NumericLessThan is strict", "", `{"NumericLessThan":{"k":"10"}}`, ctx("k", "10"), false},
		{"NumericGreaterThan", "ops: NumericGreaterThan", "", `{"NumericGreaterThan":{"k":"10"}}`, ctx("k", "11"), true},
		{"NumericGreaterThanEquals", "ops: NumericGreaterThanEquals", "", `{"NumericGreaterThanEquals":{"k":"-3"}}`, ctx("k", "-3"), true},
		{"NumericGreaterThanEquals below", "ops: NumericGreaterThanEquals", "", `{"NumericGreaterThanEquals":{"k":"-3"}}`, ctx("k", "-4"), false},
		{"Numeric large integers compare exactly", "ops: Numeric operators compare integers (beyond float64 precision: 2^53+1 is not 2^53)", "", `{"NumericEquals":{"k":"9007199254740993"}}`, ctx("k", "9007199254740992"), false},
		{"Numeric request value not a number", "ops: the value must be a number to match", "", `{"NumericEquals":{"k":"1"}}`, ctx("k", "one"), false},
		{"NumericLessThanIfExists absent", "ops: ...IfExists", "", `{"NumericLessThanIfExists":{"k":"1"}}`, ctx(), true},
	})
}

func TestDateOperators(t *testing.T) {
	runCondCases(t, []condCase{
		{"DateGreaterThan ISO", "ops: Date example aws:TokenIssueTime DateGreaterThan 2020-01-01T00:00:01Z", "", `{"DateGreaterThan":{"aws:TokenIssueTime":"2020-01-01T00:00:01Z"}}`, ctx("aws:TokenIssueTime", "2020-06-01T00:00:00Z"), true},
		{"DateGreaterThan earlier", "ops: Date example aws:TokenIssueTime", "", `{"DateGreaterThan":{"aws:TokenIssueTime":"2020-01-01T00:00:01Z"}}`, ctx("aws:TokenIssueTime", "2019-12-31T23:59:59Z"), false},
		{"DateLessThan epoch policy value", "ops: Date operators accept epoch (UNIX) time", "", `{"DateLessThan":{"aws:CurrentTime":"1577836800"}}`, ctx("aws:CurrentTime", "2019-12-31T23:59:59Z"), true},
		{"DateLessThan epoch request value", "ops: Date operators accept epoch time (aws:EpochTime)", "", `{"DateLessThan":{"aws:EpochTime":"2020-01-01T00:00:00Z"}}`, ctx("aws:EpochTime", "1577836799"), true},
		{"DateEquals across zones", "ops: DateEquals matches the same instant (ISO 8601 with offset)", "", `{"DateEquals":{"aws:CurrentTime":"2020-01-01T01:00:00+01:00"}}`, ctx("aws:CurrentTime", "2020-01-01T00:00:00Z"), true},
		{"DateEquals date only", "ops: ISO 8601 date", "", `{"DateEquals":{"aws:CurrentTime":"2020-01-01"}}`, ctx("aws:CurrentTime", "2020-01-01T00:00:00Z"), true},
		{"DateNotEquals", "ops: DateNotEquals", "", `{"DateNotEquals":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}`, ctx("aws:CurrentTime", "2020-01-01T00:00:00Z"), false},
		{"DateLessThanEquals equal", "ops: DateLessThanEquals", "", `{"DateLessThanEquals":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}`, ctx("aws:CurrentTime", "2020-01-01T00:00:00Z"), true},
		{"DateGreaterThanEquals", "ops: DateGreaterThanEquals", "", `{"DateGreaterThanEquals":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}`, ctx("aws:CurrentTime", "2019-01-01T00:00:00Z"), false},
		{"Date absent key", "ops: Important — key not present, false", "", `{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}`, ctx(), false},
		{"DateNotEquals absent key", "ops: Important — negated operator, key not present, true", "", `{"DateNotEquals":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}`, ctx(), true},
		{"DateLessThan request not a date", "ops: Date operators", "", `{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}`, ctx("aws:CurrentTime", "yesterday"), false},
	})
}

func TestBoolBinaryNullOperators(t *testing.T) {
	runCondCases(t, []condCase{
		{"Bool aws:SecureTransport true", "ops: Boolean example aws:SecureTransport \"true\"", "", `{"Bool":{"aws:SecureTransport":"true"}}`, ctx("aws:SecureTransport", "true"), true},
		{"Bool false request", "ops: Boolean example aws:SecureTransport", "", `{"Bool":{"aws:SecureTransport":"true"}}`, ctx("aws:SecureTransport", "false"), false},
		{"Bool JSON boolean", "ops: Boolean example (value written as JSON false)", "", `{"Bool":{"aws:SecureTransport":false}}`, ctx("aws:SecureTransport", "false"), true},
		{"Bool absent key is false", "ops: Boolean — key not present, condition false (use BoolIfExists or Null)", "", `{"Bool":{"aws:SecureTransport":"false"}}`, ctx(), false},
		{"BoolIfExists absent key", "ops: ...IfExists", "", `{"BoolIfExists":{"aws:MultiFactorAuthPresent":"true"}}`, ctx(), true},
		{"BoolIfExists present false", "ops: ...IfExists example aws:MultiFactorAuthPresent", "", `{"BoolIfExists":{"aws:MultiFactorAuthPresent":"true"}}`, ctx("aws:MultiFactorAuthPresent", "false"), false},
		{"BinaryEquals", "ops: Binary example key QmluYXJ5VmFsdWVJbkJhc2U2NA==", "", `{"BinaryEquals":{"key":"QmluYXJ5VmFsdWVJbkJhc2U2NA=="}}`, ctx("key", "QmluYXJ5VmFsdWVJbkJhc2U2NA=="), true},
		{"BinaryEquals different", "ops: Binary — byte-for-byte", "", `{"BinaryEquals":{"key":"QmluYXJ5VmFsdWVJbkJhc2U2NA=="}}`, ctx("key", "AAAA"), false},
		{"BinaryEqualsIfExists absent", "ops: ...IfExists", "", `{"BinaryEqualsIfExists":{"key":"AAAA"}}`, ctx(), true},
		{"Null true key absent", "ops: Null example aws:TokenIssueTime true — key absent (long-term credentials)", "", `{"Null":{"aws:TokenIssueTime":"true"}}`, ctx(), true},
		{"Null true key present", "ops: Null example — temporary credentials carry aws:TokenIssueTime", "", `{"Null":{"aws:TokenIssueTime":"true"}}`, ctx("aws:TokenIssueTime", "2020-01-01T00:00:00Z"), false},
		{"Null false key present", "ops: Null false — key exists and is not null", "", `{"Null":{"aws:TokenIssueTime":"false"}}`, ctx("aws:TokenIssueTime", "2020-01-01T00:00:00Z"), true},
		{"Null false key absent", "ops: Null false — key absent", "", `{"Null":{"aws:TokenIssueTime":"false"}}`, ctx(), false},
		{"Null true empty multivalued key", "multi: an empty multivalued key counts as absent (Null)", "", `{"Null":{"aws:TagKeys":"true"}}`, ctx("aws:TagKeys", []string{}), true},
	})
}

func TestIPOperators(t *testing.T) {
	runCondCases(t, []condCase{
		{"IpAddress IPv4 CIDR", "ops: IP address example 203.0.113.0/24", "", `{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}`, ctx("aws:SourceIp", "203.0.113.7"), true},
		{"IpAddress outside", "ops: IP address example 203.0.113.0/24", "", `{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}`, ctx("aws:SourceIp", "203.0.114.7"), false},
		{"IpAddress IPv6", "ops: IP address example mixing IPv4 and IPv6 2001:DB8:1234:5678::/64", "", `{"IpAddress":{"aws:SourceIp":["203.0.113.0/24","2001:DB8:1234:5678::/64"]}}`, ctx("aws:SourceIp", "2001:db8:1234:5678::1"), true},
		{"IpAddress IPv6 outside", "ops: IP address example with IPv6", "", `{"IpAddress":{"aws:SourceIp":["203.0.113.0/24","2001:DB8:1234:5678::/64"]}}`, ctx("aws:SourceIp", "2001:db8:1234:5679::1"), false},
		{"IpAddress bare address", "ops: IP address — a single address (implicit /32)", "", `{"IpAddress":{"aws:SourceIp":"203.0.113.1"}}`, ctx("aws:SourceIp", "203.0.113.1"), true},
		{"IpAddress bare IPv6 address", "ops: IP address — a single IPv6 address (implicit /128)", "", `{"IpAddress":{"aws:SourceIp":"2001:db8::1"}}`, ctx("aws:SourceIp", "2001:db8::2"), false},
		{"IpAddress IPv4-mapped request", "ops: IP address (an IPv4-mapped IPv6 source is its IPv4 address)", "", `{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("aws:SourceIp", "::ffff:10.1.2.3"), true},
		{"IpAddress absent", "ops: Important — key not present, false", "", `{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx(), false},
		{"IpAddress request not an address", "ops: IP address", "", `{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("aws:SourceIp", "10.0.0.0/8"), false},
		{"NotIpAddress outside", "ops: NotIpAddress example — deny outside 192.0.2.0/24 and 203.0.113.0/24", "", `{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]}}`, ctx("aws:SourceIp", "198.51.100.1"), true},
		{"NotIpAddress inside second", "ops: NotIpAddress (NOR over values)", "", `{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]}}`, ctx("aws:SourceIp", "203.0.113.9"), false},
		{"NotIpAddress absent is true", "ops: Important — negated operator with key absent is true", "", `{"NotIpAddress":{"aws:SourceIp":"192.0.2.0/24"}}`, ctx(), true},
		{"IpAddressIfExists absent", "ops: ...IfExists", "", `{"IpAddressIfExists":{"aws:SourceIp":"192.0.2.0/24"}}`, ctx(), true},
		{"NotIpAddress IPv6", "ops: NotIpAddress with IPv6", "", `{"NotIpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, ctx("aws:SourceIp", "2001:db8:ffff::1"), false},
	})
}

func TestARNOperators(t *testing.T) {
	runCondCases(t, []condCase{
		{"ArnEquals", "ops: ARN example aws:SourceArn arn:aws:sns:REGION:123456789012:TOPIC-ID", "", `{"ArnEquals":{"aws:SourceArn":"arn:aws:sns:us-east-1:123456789012:topic"}}`, ctx("aws:SourceArn", "arn:aws:sns:us-east-1:123456789012:topic"), true},
		{"ArnLike wildcard in region", "ops: ARN — each of the six components checked separately with * and ?", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:sns:*:123456789012:topic"}}`, ctx("aws:SourceArn", "arn:aws:sns:eu-west-1:123456789012:topic"), true},
		{"ArnLike wildcard does not cross colon", "ops: ARN — components checked separately: * in the account part cannot absorb a ':'", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:iam::*:role/x"}}`, ctx("aws:SourceArn", "arn:aws:iam::111122223333:444455556666:role/x"), false},
		{"ArnLike wildcards in account and resource", "ops: ARN — * in any component", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:iam::*:role/*"}}`, ctx("aws:SourceArn", "arn:aws:iam::111122223333:role/x"), true},
		{"ArnLike resource part keeps colons", "ops: ARN — the resource part may contain ':'", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:logs:*:123456789012:log-group:*"}}`, ctx("aws:SourceArn", "arn:aws:logs:us-east-1:123456789012:log-group:app:log-stream:x"), true},
		{"ArnEquals case-sensitive", "ops: ARN — case-sensitive matching", "", `{"ArnEquals":{"aws:SourceArn":"arn:aws:sns:us-east-1:123456789012:Topic"}}`, ctx("aws:SourceArn", "arn:aws:sns:us-east-1:123456789012:topic"), false},
		{"ArnNotEquals", "ops: ArnNotEquals", "", `{"ArnNotEquals":{"aws:SourceArn":"arn:aws:sns:us-east-1:123456789012:topic"}}`, ctx("aws:SourceArn", "arn:aws:sns:us-east-1:123456789012:other"), true},
		{"ArnNotLike match", "ops: ArnNotLike", "", `{"ArnNotLike":{"aws:SourceArn":"arn:aws:sns:*:*:topic"}}`, ctx("aws:SourceArn", "arn:aws:sns:us-east-1:123456789012:topic"), false},
		{"ArnNotLike absent is true", "ops: Important — ArnNotLike with key absent is true", "", `{"ArnNotLike":{"aws:SourceArn":"arn:aws:sns:*:*:topic"}}`, ctx(), true},
		{"ArnLike request not an ARN", "ops: ARN — a value that is not an ARN does not match", "", `{"ArnLike":{"aws:SourceArn":"arn:*:*:*:*:*"}}`, ctx("aws:SourceArn", "topic"), false},
		{"ArnLikeIfExists absent", "ops: ...IfExists", "", `{"ArnLikeIfExists":{"aws:SourceArn":"arn:aws:sns:*:*:topic"}}`, ctx(), true},
	})
}

func TestSetQualifiers(t *testing.T) {
	runCondCases(t, []condCase{
		{"ForAllValues subset", "multi: ForAllValues example aws:TagKeys [environment, cost-center] — request keys are a subset", "", `{"ForAllValues:StringEquals":{"aws:TagKeys":["environment","cost-center"]}}`, ctx("aws:TagKeys", []string{"environment"}), true},
		{"ForAllValues not subset", "multi: ForAllValues — every request value must match", "", `{"ForAllValues:StringEquals":{"aws:TagKeys":["environment","cost-center"]}}`, ctx("aws:TagKeys", []string{"environment", "owner"}), false},
		{"ForAllValues absent key is true", "multi: ForAllValues returns true when the key is not in the request", "", `{"ForAllValues:StringEquals":{"aws:TagKeys":["environment"]}}`, ctx(), true},
		{"ForAllValues empty set is true", "multi: ForAllValues returns true when the request has an empty set of values", "", `{"ForAllValues:StringEquals":{"aws:TagKeys":["environment"]}}`, ctx("aws:TagKeys", []string{}), true},
		{"ForAnyValue one matches", "multi: ForAnyValue example — at least one request value matches", "", `{"ForAnyValue:StringEquals":{"aws:TagKeys":["environment","cost-center"]}}`, ctx("aws:TagKeys", []string{"owner", "cost-center"}), true},
		{"ForAnyValue none matches", "multi: ForAnyValue", "", `{"ForAnyValue:StringEquals":{"aws:TagKeys":["environment"]}}`, ctx("aws:TagKeys", []string{"owner"}), false},
		{"ForAnyValue absent key is false", "multi: ForAnyValue returns false when the key is not in the request", "", `{"ForAnyValue:StringEquals":{"aws:TagKeys":["environment"]}}`, ctx(), false},
		{"ForAnyValue StringLike", "multi: ForAnyValue with StringLike", "", `{"ForAnyValue:StringLike":{"aws:TagKeys":"cost-*"}}`, ctx("aws:TagKeys", []string{"owner", "cost-center"}), true},
		{"ForAllValues StringNotEquals", "multi: ForAllValues with a negated operator — no request value may be listed", "", `{"ForAllValues:StringNotEquals":{"aws:TagKeys":["secret","internal"]}}`, ctx("aws:TagKeys", []string{"owner", "env"}), true},
		{"ForAllValues StringNotEquals one listed", "multi: ForAllValues with a negated operator", "", `{"ForAllValues:StringNotEquals":{"aws:TagKeys":["secret","internal"]}}`, ctx("aws:TagKeys", []string{"owner", "secret"}), false},
		{"ForAnyValue StringNotEquals", "multi: ForAnyValue with a negated operator — some request value is not listed", "", `{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["secret"]}}`, ctx("aws:TagKeys", []string{"secret", "owner"}), true},
		{"ForAnyValue StringNotEquals all listed", "multi: ForAnyValue with a negated operator", "", `{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["secret"]}}`, ctx("aws:TagKeys", []string{"secret"}), false},
		{"ForAllValues IfExists absent", "ops: ...IfExists with a set operator", "", `{"ForAllValues:StringEqualsIfExists":{"aws:TagKeys":["a"]}}`, ctx(), true},
		{"ForAnyValue IfExists absent", "ops: ...IfExists — absent key makes the condition true even with ForAnyValue", "", `{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":["a"]}}`, ctx(), true},
		{"ForAnyValue IpAddress", "multi: set operators apply to any operator family", "", `{"ForAnyValue:IpAddress":{"k":"10.0.0.0/8"}}`, ctx("k", []string{"192.0.2.1", "10.9.9.9"}), true},
		{"ForAllValues NumericLessThan", "multi: set operators apply to any operator family", "", `{"ForAllValues:NumericLessThan":{"k":"10"}}`, ctx("k", []string{"1", "12"}), false},
		// U1: "Multivalued context keys require a condition set operator"; without one the
		// operator compares a single value, so it cannot match a multivalued key, as AWS's
		// SimulateCustomPolicy answered for list-typed context entries; its negation holds.
		{"multivalued key without qualifier does not match", "multi: set operators are required; SimulateCustomPolicy: StringEquals on a list-typed key is implicitDeny", "", `{"StringEquals":{"aws:TagKeys":"owner"}}`, ctx("aws:TagKeys", []string{"env", "owner"}), false},
		{"multivalued key of one value without qualifier does not match", "multi: SimulateCustomPolicy: StringLike on a list of one matching value is implicitDeny", "", `{"StringLike":{"ec2:InstanceType":["t2.*","t3.*"]}}`, ctx("ec2:InstanceType", list{"t2.micro"}), false},
		{"the same value single-valued matches", "ops: StringLike", "", `{"StringLike":{"ec2:InstanceType":["t2.*","t3.*"]}}`, ctx("ec2:InstanceType", "t2.micro"), true},
		{"multivalued key without qualifier, negated", "ops: a negated operator is the complement of its positive operator", "", `{"StringNotEquals":{"aws:TagKeys":"owner"}}`, ctx("aws:TagKeys", []string{"env", "owner"}), true},
		{"multivalued key without qualifier, IfExists", "ops: ...IfExists processes a present key as written, which cannot match a multivalued key", "", `{"StringEqualsIfExists":{"aws:TagKeys":"owner"}}`, ctx("aws:TagKeys", list{"owner"}), false},
		{"ForAnyValue on a list of one", "multi: ForAnyValue", "", `{"ForAnyValue:StringEquals":{"aws:TagKeys":"owner"}}`, ctx("aws:TagKeys", list{"owner"}), true},
	})
}

func TestPolicyVariables(t *testing.T) {
	runCondCases(t, []condCase{
		{"variable in condition value", "vars: ${aws:username} in a StringLike value (s3:prefix home/${aws:username}/*)", "", `{"StringLike":{"s3:prefix":"home/${aws:username}/*"}}`, ctx("aws:username", "alice", "s3:prefix", "home/alice/docs"), true},
		{"variable mismatch", "vars: ${aws:username}", "", `{"StringLike":{"s3:prefix":"home/${aws:username}/*"}}`, ctx("aws:username", "alice", "s3:prefix", "home/bob/docs"), false},
		{"principal tag variable", "vars: ${aws:PrincipalTag/team} compared with a resource tag", "", `{"StringEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"}}`, ctx("aws:PrincipalTag/team", "blue", "aws:ResourceTag/team", "blue"), true},
		{"variable names are case-insensitive", "vars: policy variable names are case-insensitive (${aws:UserName})", "", `{"StringEquals":{"k":"${AWS:USERNAME}"}}`, ctx("aws:username", "alice", "k", "alice"), true},
		{"unresolved variable does not match", "vars: a variable with no value in the request makes the comparison not match", "", `{"StringEquals":{"k":"${aws:username}"}}`, ctx("k", ""), false},
		{"default value", "vars: default values ${aws:PrincipalTag/team, 'company-wide'}", "", `{"StringEquals":{"k":"${aws:PrincipalTag/team, 'company-wide'}"}}`, ctx("k", "company-wide"), true},
		{"default ignored when key present", "vars: default values apply only when the key is absent", "", `{"StringEquals":{"k":"${aws:PrincipalTag/team, 'company-wide'}"}}`, ctx("aws:PrincipalTag/team", "blue", "k", "company-wide"), false},
		{"special ${*} is a literal star", "vars: special characters ${*} — literal asterisk", "", `{"StringLike":{"k":"a${*}b"}}`, ctx("k", "axxb"), false},
		{"special ${*} matches a star", "vars: special characters ${*}", "", `{"StringLike":{"k":"a${*}b"}}`, ctx("k", "a*b"), true},
		{"special ${?} and ${$}", "vars: special characters ${?} and ${$}", "", `{"StringEquals":{"k":"${?}${$}"}}`, ctx("k", "?$"), true},
		{"resolved value is literal in StringLike", "vars: a value containing * substituted into StringLike does not become a wildcard", "", `{"StringLike":{"k":"${aws:username}"}}`, ctx("aws:username", "*", "k", "anything"), false},
		{"multivalued key is not a variable", "multi: multivalued context keys cannot be used as policy variables", "", `{"StringEquals":{"k":"${aws:TagKeys}"}}`, ctx("aws:TagKeys", []string{"a", "b"}, "k", "a"), false},
		{"2008 version: ${} is literal", "vars: Version 2008-10-17 has no policy variables; ${aws:username} is literal text", "2008-10-17", `{"StringEquals":{"k":"${aws:username}"}}`, ctx("aws:username", "alice", "k", "${aws:username}"), true},
		{"2008 version: variable not substituted", "vars: Version 2008-10-17 has no policy variables", "2008-10-17", `{"StringEquals":{"k":"${aws:username}"}}`, ctx("aws:username", "alice", "k", "alice"), false},
		{"no Version means 2008", "Version element: without a Version, variables are literal text", "none", `{"StringEquals":{"k":"${aws:username}"}}`, ctx("aws:username", "alice", "k", "alice"), false},
		{"variable in ArnLike", "vars: variables in ARN operators", "", `{"ArnLike":{"aws:SourceArn":"arn:aws:iam::*:user/${aws:username}"}}`, ctx("aws:username", "alice", "aws:SourceArn", "arn:aws:iam::111122223333:user/alice"), true},
		{"whole-ARN variable in ArnEquals", "vars: variables in ARN operators (aws:PrincipalArn)", "", `{"ArnEquals":{"aws:SourceArn":"${aws:PrincipalArn}"}}`, ctx("aws:SourceArn", "arn:aws:iam::111122223333:user/alice"), true},
		{"variable in StringNotEquals", "vars: negated operator with a variable", "", `{"StringNotEquals":{"aws:ResourceTag/owner":"${aws:username}"}}`, ctx("aws:username", "alice", "aws:ResourceTag/owner", "alice"), false},
	})
}

// TestVariablesInResource follows "IAM policy elements: Variables and tags": the
// resource arn:aws:s3:::bucket/home/${aws:username}/* gives each user their own prefix.
func TestVariablesInResource(t *testing.T) {
	pol := mustParse(t, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*",
	  "Resource":["arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}/*","arn:aws:s3:::shared/${aws:PrincipalTag/team, 'common'}/*"]}]}`)
	set := NewSet(Entry{Identity, pol})
	cases := []struct {
		name     string
		ctx      *Context
		resource string
		want     Effect
	}{
		{"own prefix", ctx("aws:username", "alice"), "arn:aws:s3:::amzn-s3-demo-bucket/home/alice/file", Allow},
		{"other user's prefix", ctx("aws:username", "alice"), "arn:aws:s3:::amzn-s3-demo-bucket/home/bob/file", ImplicitDeny},
		{"unresolved variable matches nothing", ctx(), "arn:aws:s3:::amzn-s3-demo-bucket/home//file", ImplicitDeny},
		{"username * is literal", ctx("aws:username", "*"), "arn:aws:s3:::amzn-s3-demo-bucket/home/bob/file", ImplicitDeny},
		{"default value in resource", ctx(), "arn:aws:s3:::shared/common/x", Allow},
		{"tag value in resource", ctx("aws:PrincipalTag/team", "red"), "arn:aws:s3:::shared/red/x", Allow},
		{"tag value overrides default", ctx("aws:PrincipalTag/team", "red"), "arn:aws:s3:::shared/common/x", ImplicitDeny},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := set.Evaluate(&Request{Principal: "arn:aws:iam::111122223333:user/alice", Action: "s3:GetObject", Resource: tc.resource, Context: tc.ctx})
			if d.Effect != tc.want {
				t.Errorf("got %v (%s), want %v", d.Effect, d.Reason, tc.want)
			}
		})
	}
}

func TestOperatorNames(t *testing.T) {
	ok := []string{"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "StringLike", "StringNotLike",
		"NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals", "NumericGreaterThan", "NumericGreaterThanEquals",
		"DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan", "DateGreaterThanEquals",
		"Bool", "BinaryEquals", "IpAddress", "NotIpAddress", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "Null"}
	for _, op := range ok {
		for _, name := range []string{op, op + "IfExists", "ForAllValues:" + op, "ForAnyValue:" + op + "IfExists"} {
			_, valid := parseOperator(name)
			// Null takes no IfExists; it takes a set operator ("Null with qualifier": IAM
			// accepts it, Access Analyzer documents what it does).
			want := !(op == "Null" && strings.HasSuffix(name, "IfExists"))
			if valid != want {
				t.Errorf("parseOperator(%q) valid = %v, want %v", name, valid, want)
			}
		}
	}
	for _, bad := range []string{"stringequals", "StringEqual", "ForAllValue:StringEquals", "ForAnyValues:StringLike", "StringEqualsIfExistsIfExists", "IfExists", "", "NullIfExists", "ForAllValues:NullIfExists"} {
		if _, valid := parseOperator(bad); valid {
			t.Errorf("parseOperator(%q) accepted an operator AWS does not have", bad)
		}
	}
	if !strings.HasPrefix("ForAllValues:StringLike", "ForAllValues:") {
		t.Fatal("unreachable")
	}
}

// TestVersion2008Resource: under Version 2008-10-17 (or no Version) "${aws:username}" in
// a resource is literal text ("IAM JSON policy elements: Version": policy variables need
// 2012-10-17), so it matches only a resource spelled that way.
func TestVersion2008Resource(t *testing.T) {
	for _, v := range []string{`"Version":"2008-10-17",`, ``} {
		p := mustParse(t, `{`+v+`"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/${aws:username}/*"}}`)
		set := NewSet(Entry{Identity, p})
		c := ctx("aws:username", "alice")
		if d := set.Evaluate(&Request{Principal: alice, Action: "s3:GetObject", Resource: "arn:aws:s3:::b/alice/x", Context: c}); d.Effect != ImplicitDeny {
			t.Errorf("%q: variable was substituted: %v", v, d.Effect)
		}
		if d := set.Evaluate(&Request{Principal: alice, Action: "s3:GetObject", Resource: "arn:aws:s3:::b/${aws:username}/x", Context: c}); d.Effect != Allow {
			t.Errorf("%q: literal text did not match: %v", v, d.Effect)
		}
	}
}
