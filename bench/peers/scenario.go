// Package peers compares Phantom's IAM policy engine with two well-known policy engines,
// Cedar (cedar-go) and Rego (OPA), on the same policies and the same requests. It is its own
// module so the product never depends on them.
//
// A scenario is written once, in a small neutral model (statements with exact actions,
// wildcard resources and a few condition operators), and translated into an IAM policy
// document, a Cedar policy set and a Rego module. The model stays inside what all three
// languages express with the same meaning, so the test can demand identical decisions.
package peers

import (
	"fmt"
	"strings"
)

// Op is a condition operator the three languages share.
type Op string

const (
	StringEquals    Op = "StringEquals"
	StringNotEquals Op = "StringNotEquals"
	StringLike      Op = "StringLike"
	IPAddress       Op = "IpAddress"
	NotIPAddress    Op = "NotIpAddress"
	Bool            Op = "Bool"
)

// Cond is one operator on one context key with OR-ed values.
type Cond struct {
	Op     Op
	Key    string // IAM spelling, e.g. "aws:SourceIp"
	Values []string
}

// Stmt is one IAM statement in the neutral model.
type Stmt struct {
	Sid       string
	Deny      bool
	Actions   []string // exact action names: Cedar has no action wildcards
	Resources []string // '*' wildcards only
	Conds     []Cond   // AND-ed
}

// Request is one authorization request and the decision IAM's evaluation logic gives it.
type Request struct {
	Name     string
	Action   string
	Resource string
	Context  map[string]string // single-valued keys, IAM spelling
	Want     string            // Allow, ExplicitDeny or ImplicitDeny
}

// Scenario is a policy and the requests evaluated against it.
type Scenario struct {
	Name       string
	Principal  string
	Statements []Stmt
	Requests   []Request
}

const (
	account   = "123456789012"
	principal = "arn:aws:iam::" + account + ":role/app"
	vpce      = "vpce-1a2b3c4d"
)

// Realistic is an application role as teams write them: 20 statements, most with
// conditions, guardrail denies on transport, network path and destructive actions.
func Realistic() Scenario {
	inVPCE := Cond{StringEquals, "aws:SourceVpce", []string{vpce}}
	corpNet := []string{"10.0.0.0/8", "2001:db8::/32"}
	stmts := []Stmt{
		{Sid: "S3ReadAppData", Actions: []string{"s3:GetObject", "s3:ListBucket"},
			Resources: []string{"arn:aws:s3:::app-data", "arn:aws:s3:::app-data/*"}, Conds: []Cond{inVPCE}},
		{Sid: "S3WriteUploads", Actions: []string{"s3:PutObject"},
			Resources: []string{"arn:aws:s3:::app-data/uploads/*"},
			Conds:     []Cond{inVPCE, {StringEquals, "s3:x-amz-server-side-encryption", []string{"aws:kms"}}}},
		{Sid: "OrdersTable", Actions: []string{"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"},
			Resources: []string{"arn:aws:dynamodb:us-east-1:" + account + ":table/orders", "arn:aws:dynamodb:us-east-1:" + account + ":table/orders/index/*"},
			Conds:     []Cond{{IPAddress, "aws:SourceIp", corpNet}}},
		{Sid: "KMSViaS3", Actions: []string{"kms:Decrypt", "kms:GenerateDataKey"},
			Resources: []string{"arn:aws:kms:us-east-1:" + account + ":key/*"},
			Conds:     []Cond{{StringEquals, "kms:ViaService", []string{"s3.us-east-1.amazonaws.com", "dynamodb.us-east-1.amazonaws.com"}}}},
		{Sid: "Queues", Actions: []string{"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"},
			Resources: []string{"arn:aws:sqs:us-east-1:" + account + ":orders-*"}},
		{Sid: "Topics", Actions: []string{"sns:Publish"},
			Resources: []string{"arn:aws:sns:us-east-1:" + account + ":order-events"}},
		{Sid: "Logs", Actions: []string{"logs:CreateLogStream", "logs:PutLogEvents"},
			Resources: []string{"arn:aws:logs:us-east-1:" + account + ":log-group:/app/*"}},
		{Sid: "Tracing", Actions: []string{"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, Resources: []string{"*"}},
		{Sid: "TeamSecrets", Actions: []string{"secretsmanager:GetSecretValue"},
			Resources: []string{"arn:aws:secretsmanager:us-east-1:" + account + ":secret:app/*"},
			Conds:     []Cond{{StringEquals, "aws:PrincipalTag/team", []string{"payments"}}}},
		{Sid: "Parameters", Actions: []string{"ssm:GetParameter", "ssm:GetParameters"},
			Resources: []string{"arn:aws:ssm:us-east-1:" + account + ":parameter/app/*"}},
		{Sid: "InvokeOrdersRead", Actions: []string{"execute-api:Invoke"},
			Resources: []string{"arn:aws:execute-api:us-east-1:" + account + ":a1b2c3/prod/GET/orders/*"},
			Conds:     []Cond{inVPCE}},
		{Sid: "InvokeOrdersWrite", Actions: []string{"execute-api:Invoke"},
			Resources: []string{"arn:aws:execute-api:us-east-1:" + account + ":a1b2c3/prod/POST/orders"},
			Conds:     []Cond{inVPCE, {Bool, "aws:SecureTransport", []string{"true"}}}},
		{Sid: "TagSessions", Actions: []string{"sts:TagSession"}, Resources: []string{"*"}},
		{Sid: "Metrics", Actions: []string{"cloudwatch:PutMetricData"}, Resources: []string{"*"},
			Conds: []Cond{{StringLike, "cloudwatch:namespace", []string{"App/*"}}}},
		{Sid: "PullImages", Actions: []string{"ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"},
			Resources: []string{"*"}},
		{Sid: "DenyInsecureTransport", Deny: true, Actions: []string{"s3:GetObject", "s3:PutObject", "execute-api:Invoke"},
			Resources: []string{"*"}, Conds: []Cond{{Bool, "aws:SecureTransport", []string{"false"}}}},
		{Sid: "DenyWritesOutsideVPCE", Deny: true, Actions: []string{"s3:PutObject", "dynamodb:PutItem"},
			Resources: []string{"*"}, Conds: []Cond{{StringNotEquals, "aws:SourceVpce", []string{vpce}}}},
		{Sid: "DenyInvokeOutsideCorpNet", Deny: true, Actions: []string{"execute-api:Invoke"},
			Resources: []string{"*"}, Conds: []Cond{{NotIPAddress, "aws:SourceIp", corpNet}}},
		{Sid: "DenyDestructive", Deny: true, Actions: []string{"s3:DeleteBucket", "s3:DeleteObject", "dynamodb:DeleteTable"},
			Resources: []string{"*"}},
		{Sid: "DenyIAMChanges", Deny: true, Actions: []string{"iam:CreateUser", "iam:AttachRolePolicy", "iam:PutRolePolicy", "iam:CreateAccessKey"},
			Resources: []string{"*"}},
	}
	base := func(extra ...string) map[string]string {
		c := map[string]string{
			"aws:SourceIp":          "10.1.2.3",
			"aws:SourceVpce":        vpce,
			"aws:SecureTransport":   "true",
			"aws:PrincipalTag/team": "payments",
		}
		for i := 0; i+1 < len(extra); i += 2 {
			c[extra[i]] = extra[i+1]
		}
		return c
	}
	invoke := "arn:aws:execute-api:us-east-1:" + account + ":a1b2c3/prod/"
	reqs := []Request{
		{"s3-read", "s3:GetObject", "arn:aws:s3:::app-data/reports/q1.csv", base(), "Allow"},
		{"s3-write-other-vpce", "s3:PutObject", "arn:aws:s3:::app-data/uploads/x", base("aws:SourceVpce", "vpce-99999999", "s3:x-amz-server-side-encryption", "aws:kms"), "ExplicitDeny"},
		{"invoke-get", "execute-api:Invoke", invoke + "GET/orders/42", base(), "Allow"},
		{"invoke-internet", "execute-api:Invoke", invoke + "GET/orders/42", base("aws:SourceIp", "203.0.113.9"), "ExplicitDeny"},
		{"invoke-ipv6", "execute-api:Invoke", invoke + "POST/orders", base("aws:SourceIp", "2001:db8::1"), "Allow"},
		{"dynamo-outside-net", "dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:" + account + ":table/orders", base("aws:SourceIp", "192.168.1.1"), "ImplicitDeny"},
		{"secret-wrong-team", "secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:" + account + ":secret:app/db", base("aws:PrincipalTag/team", "growth"), "ImplicitDeny"},
		{"metrics", "cloudwatch:PutMetricData", "*", base("cloudwatch:namespace", "App/orders"), "Allow"},
		{"unlisted-action", "ec2:RunInstances", "arn:aws:ec2:us-east-1:" + account + ":instance/*", base(), "ImplicitDeny"},
		{"delete-bucket", "s3:DeleteBucket", "arn:aws:s3:::app-data", base(), "ExplicitDeny"},
	}
	return Scenario{Name: "realistic-20", Principal: principal, Statements: stmts, Requests: reqs}
}

// Generated is a policy of n statements, one exact action each, every tenth a Deny, each
// with a tag and a network condition; its requests hit statements at the start, middle and
// end, a deny, and no statement at all.
func Generated(n int) Scenario {
	stmts := make([]Stmt, n)
	for i := range stmts {
		stmts[i] = Stmt{
			Sid:       fmt.Sprintf("S%d", i),
			Deny:      i%10 == 5,
			Actions:   []string{genAction(i)},
			Resources: []string{fmt.Sprintf("arn:aws:svc%d:us-east-1:%s:res/%d/*", i%20, account, i)},
			Conds: []Cond{
				{StringEquals, "aws:PrincipalTag/team", []string{fmt.Sprintf("team%d", i%5)}},
				{IPAddress, "aws:SourceIp", []string{fmt.Sprintf("10.%d.0.0/16", i%250)}},
			},
		}
	}
	hit := func(name string, i int, want string) Request {
		return Request{name, genAction(i), fmt.Sprintf("arn:aws:svc%d:us-east-1:%s:res/%d/item", i%20, account, i),
			map[string]string{"aws:PrincipalTag/team": fmt.Sprintf("team%d", i%5), "aws:SourceIp": fmt.Sprintf("10.%d.7.9", i%250)}, want}
	}
	reqs := []Request{
		hit("first", 0, "Allow"),
		hit("middle", n/2+1, "Allow"),
		hit("last", n-1, "Allow"),
		hit("deny", 5, "ExplicitDeny"),
	}
	miss := hit("wrong-network", n-1, "ImplicitDeny")
	miss.Context["aws:SourceIp"] = "192.0.2.1"
	reqs = append(reqs, miss, Request{"no-statement", "svc0:Unknown", "arn:aws:svc0:us-east-1:" + account + ":res/0/item", map[string]string{"aws:SourceIp": "10.0.0.1"}, "ImplicitDeny"})
	return Scenario{Name: fmt.Sprintf("generated-%d", n), Principal: principal, Statements: stmts, Requests: reqs}
}

func genAction(i int) string { return fmt.Sprintf("svc%d:Action%d", i%20, i) }

// IAM renders the scenario as an IAM identity policy document.
func (s Scenario) IAM() []byte {
	var b strings.Builder
	b.WriteString(`{"Version":"2012-10-17","Statement":[`)
	for i, st := range s.Statements {
		if i > 0 {
			b.WriteByte(',')
		}
		effect := "Allow"
		if st.Deny {
			effect = "Deny"
		}
		fmt.Fprintf(&b, `{"Sid":%q,"Effect":%q,"Action":%s,"Resource":%s`, st.Sid, effect, jsonList(st.Actions), jsonList(st.Resources))
		if len(st.Conds) > 0 {
			ops := map[Op][]Cond{}
			var order []Op
			for _, c := range st.Conds {
				if _, ok := ops[c.Op]; !ok {
					order = append(order, c.Op)
				}
				ops[c.Op] = append(ops[c.Op], c)
			}
			b.WriteString(`,"Condition":{`)
			for j, op := range order {
				if j > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `%q:{`, op)
				for k, c := range ops[op] {
					if k > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, `%q:%s`, c.Key, jsonList(c.Values))
				}
				b.WriteByte('}')
			}
			b.WriteByte('}')
		}
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func jsonList(vs []string) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ",") + "]"
}

// ctxKey is the spelling the Cedar and Rego translations use for a context key: IAM key
// names are case-insensitive, so both sides use the lower-cased name.
func ctxKey(k string) string { return strings.ToLower(k) }

// Cedar renders the scenario as a Cedar policy set. The resource ARN travels in the
// context ("arn") because Cedar patterns apply to strings, not to entity ids; IP values
// travel as Cedar ipaddr values. A missing key never satisfies a positive operator and
// always satisfies a negated one, as in IAM.
func (s Scenario) Cedar() string {
	var b strings.Builder
	for _, st := range s.Statements {
		effect := "permit"
		if st.Deny {
			effect = "forbid"
		}
		acts := make([]string, len(st.Actions))
		for i, a := range st.Actions {
			acts[i] = fmt.Sprintf("Action::%q", a)
		}
		fmt.Fprintf(&b, "@id(%q)\n%s (principal, action in [%s], resource)\nwhen { ", st.Sid, effect, strings.Join(acts, ", "))
		var res []string
		for _, r := range st.Resources {
			if r == "*" {
				res = nil
				break
			}
			res = append(res, fmt.Sprintf("context.arn like %q", r))
		}
		clauses := []string{"true"}
		if len(res) > 0 {
			clauses = append(clauses, "("+strings.Join(res, " || ")+")")
		}
		for _, c := range st.Conds {
			clauses = append(clauses, cedarCond(c))
		}
		b.WriteString(strings.Join(clauses, " && "))
		b.WriteString(" };\n")
	}
	return b.String()
}

func cedarCond(c Cond) string {
	k := ctxKey(c.Key)
	has := fmt.Sprintf("context has %q", k)
	ref := fmt.Sprintf("context[%q]", k)
	var alts []string
	for _, v := range c.Values {
		switch c.Op {
		case StringEquals, StringNotEquals, Bool:
			alts = append(alts, fmt.Sprintf("%s == %q", ref, v))
		case StringLike:
			alts = append(alts, fmt.Sprintf("%s like %q", ref, v))
		case IPAddress, NotIPAddress:
			alts = append(alts, fmt.Sprintf("%s.isInRange(ip(%q))", ref, v))
		}
	}
	any := "(" + strings.Join(alts, " || ") + ")"
	switch c.Op {
	case StringNotEquals, NotIPAddress:
		return fmt.Sprintf("(!(%s) || !%s)", has, any)
	default:
		return fmt.Sprintf("(%s && %s)", has, any)
	}
}

// Rego renders the scenario as a Rego module in package phantom.bench whose decision rule
// is "ExplicitDeny", "Allow" or "ImplicitDeny". Each (statement, action) pair is its own
// rule starting with an equality on input.action, so OPA's rule index narrows the rules
// to evaluate by action as Phantom's index does.
func (s Scenario) Rego() string {
	var b strings.Builder
	b.WriteString("package phantom.bench\n\nimport rego.v1\n")
	b.WriteString(regoHelpers)
	b.WriteString("\ndefault decision := \"ImplicitDeny\"\n\ndecision := \"ExplicitDeny\" if deny\n\ndecision := \"Allow\" if {\n\tnot deny\n\tallow\n}\n\n")
	for _, st := range s.Statements {
		head := "allow"
		if st.Deny {
			head = "deny"
		}
		for _, a := range st.Actions {
			fmt.Fprintf(&b, "%s if {\n\tinput.action == %q\n", head, a)
			var res []string
			for _, r := range st.Resources {
				if r == "*" {
					res = nil
					break
				}
				res = append(res, fmt.Sprintf("%q", r))
			}
			if len(res) > 0 {
				fmt.Fprintf(&b, "\tsome p in [%s]\n\tglob.match(p, null, input.resource)\n", strings.Join(res, ", "))
			}
			for j, c := range st.Conds {
				fmt.Fprintf(&b, "\t%s\n", regoCond(c, j))
			}
			b.WriteString("}\n\n")
		}
	}
	return b.String()
}

// regoCond renders one condition; n keeps the iteration variables of several
// conditions in one rule apart.
func regoCond(c Cond, n int) string {
	ref := fmt.Sprintf("input.context[%q]", ctxKey(c.Key))
	vals := jsonList(c.Values)
	switch c.Op {
	case StringEquals, Bool:
		return fmt.Sprintf("%s in %s", ref, vals)
	case StringNotEquals:
		return fmt.Sprintf("not %s in %s", ref, vals)
	case StringLike:
		return fmt.Sprintf("some pat%d in %s; glob.match(pat%d, null, %s)", n, vals, n, ref)
	case IPAddress:
		return fmt.Sprintf("some cidr%d in %s; net.cidr_contains(cidr%d, %s)", n, vals, n, ref)
	case NotIPAddress:
		return fmt.Sprintf("not in_any_cidr(%s, %s)", vals, ref)
	}
	panic("unknown operator " + string(c.Op))
}

// regoHelpers holds the functions the generated conditions call.
const regoHelpers = `
in_any_cidr(cidrs, addr) if {
	some cidr in cidrs
	net.cidr_contains(cidr, addr)
}
`
