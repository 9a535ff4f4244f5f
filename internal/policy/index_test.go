package policy

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestIndexMatchesScan: the action index is an optimisation only. For identity
// policies the indexed decision must equal a scan of every statement, over actions
// that hit exact names, prefixes ("s3:Get*", "s3:*"), general globs, NotAction and
// other services, in any letter case.
func TestIndexMatchesScan(t *testing.T) {
	docs := []string{
		`{"Version":"2012-10-17","Statement":[
		  {"Sid":"A","Effect":"Allow","Action":["s3:Get*","s3:GetObject","S3:LIST*"],"Resource":"*"},
		  {"Sid":"B","Effect":"Deny","Action":["s3:GetObjectAcl","s3:GetObj*","ec2:*Instances"],"Resource":"*"},
		  {"Sid":"C","Effect":"Allow","Action":["ec2:Describe*","ec2:RunInstances","s3:Put?bject"],"Resource":"*"},
		  {"Sid":"D","Effect":"Allow","NotAction":["iam:*","s3:*"],"Resource":"*"},
		  {"Sid":"E","Effect":"Deny","Action":"s3*:Delete*","Resource":"*"},
		  {"Sid":"F","Effect":"Allow","Action":["sqs:*","s3:DeleteObject"],"Resource":"*"},
		  {"Sid":"G","Effect":"Allow","Action":"iam:Get*","Resource":"*"},
		  {"Sid":"H","Effect":"Deny","Action":"iam:GetUser","Resource":"*"}]}`,
	}
	role, err := os.ReadFile("testdata/bench_role.json")
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, string(role), string(syntheticPolicy(300)))
	actions := []string{"s3:GetObject", "S3:getobject", "s3:GetObjectAcl", "s3:ListBucket", "s3:list", "s3:PutObject", "s3:Putobject",
		"s3:PutXbject", "s3:DeleteObject", "s3-outposts:DeleteThing", "ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeVpcs",
		"sqs:SendMessage", "iam:GetUser", "iam:GetRole", "iam:CreateUser", "kms:Decrypt", "dynamodb:GetItem", "s3:", "s3", "", "*",
		"svc7:Action157", "svc7:Read157", "svc0:DescribeAll", "svc3:describe", "svc9:Action9",
		"\u1e9e:x", "s3:GetObject\u1e9e", "\xff\xfe:\xff", strings.Repeat("S3:GetObject", 20), "s3:" + strings.Repeat("\u1e9e", 60), strings.Repeat("\u1e9e", 50) + ":x"}
	for di, doc := range docs {
		set := NewSet(Entry{Identity, mustParse(t, doc)})
		for _, a := range actions {
			req := benchRequest()
			req.Action = a
			req.Resource = "*"
			got := set.Evaluate(req)
			want := scanDecision(set, req)
			if got.Effect != want.Effect || !slices.Equal(got.Matched, want.Matched) {
				t.Errorf("doc %d action %q: indexed %v %v, scan %v %v", di, a, got.Effect, got.Matched, want.Effect, want.Matched)
			}
		}
	}
}

// scanDecision evaluates an identity-only set by checking every statement.
func scanDecision(s *Set, req *Request) Decision {
	st := evalState{req: req, ctx: req.Context}
	st.pi = newPrincipalInfo(req.Principal, req.PrincipalAccount)
	st.resParts, st.resIsARN = arnParts(req.Resource)
	var denies []Match
	var allow *setStmt
	for i := range s.stmts {
		c := &s.stmts[i]
		if ok, _ := st.matches(c, true); ok {
			if c.deny {
				denies = append(denies, c.single[0])
			} else if allow == nil {
				allow = c
			}
		}
	}
	switch {
	case len(denies) > 0:
		return Decision{Effect: ExplicitDeny, Matched: denies}
	case allow != nil:
		return Decision{Effect: Allow, Matched: allow.single}
	}
	return Decision{Effect: ImplicitDeny}
}

// TestDenyNamedOnce: a statement reachable through two index entries (s3:Get* and
// s3:GetObject) is reported once.
func TestDenyNamedOnce(t *testing.T) {
	p := mustParse(t, `{"Version":"2012-10-17","Statement":[{"Sid":"D","Effect":"Deny","Action":["s3:Get*","s3:GetObject","s3:*"],"Resource":"*"}]}`)
	d := NewSet(Entry{Identity, p}).Evaluate(&Request{Principal: alice, Action: "s3:GetObject", Resource: bucket})
	if d.Effect != ExplicitDeny || !slices.Equal(d.Matched, []Match{{0, "D"}}) {
		t.Errorf("got %v %v", d.Effect, d.Matched)
	}
}

// wildcardPolicy: n statements that all grant "literal*" actions in a few services,
// the shape that defeats an index keyed by exact action names.
func wildcardPolicy(n int) []byte {
	b := []byte(`{"Version":"2012-10-17","Statement":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"Sid":"P%d","Effect":"Allow","Action":["svc%d:Op%d*"],"Resource":"arn:aws:svc:us-east-1:111122223333:thing/%d/*"}`, i, i%5, i, i)
	}
	return append(b, "]}"...)
}

func BenchmarkWildcardStatements(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		set := NewSet(Entry{Identity, mustParse(b, string(wildcardPolicy(n)))})
		target := n / 2
		req := &Request{Principal: alice, Action: fmt.Sprintf("svc%d:Op%dRead", target%5, target),
			Resource: fmt.Sprintf("arn:aws:svc:us-east-1:111122223333:thing/%d/x", target)}
		if d := set.Evaluate(req); d.Effect != Allow {
			b.Fatalf("n=%d: %+v", n, d)
		}
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				set.Evaluate(req)
			}
		})
	}
}
