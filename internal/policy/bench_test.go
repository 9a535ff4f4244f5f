package policy

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// benchRequest is a typical gateway request: a role session reading its own prefix
// with the global condition keys the gateway fills in.
func benchRequest() *Request {
	return &Request{
		Principal: "arn:aws:sts::111122223333:assumed-role/Analyst/alice",
		Action:    "s3:GetObject",
		Resource:  "arn:aws:s3:::data-bucket/home/alice/report.csv",
		Context: NewContext(map[string][]string{
			"aws:SourceIp":          {"10.1.2.3"},
			"aws:SecureTransport":   {"true"},
			"aws:ViaAWSService":     {"false"},
			"aws:RequestedRegion":   {"us-east-1"},
			"aws:username":          {"alice"},
			"aws:PrincipalTag/team": {"analytics"},
			"aws:CurrentTime":       {"2026-11-29T01:00:00Z"},
		}),
	}
}

func benchRole(b *testing.B) *Set {
	data, err := os.ReadFile("testdata/bench_role.json")
	if err != nil {
		b.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		b.Fatal(err)
	}
	return NewSet(Entry{Identity, p})
}

// BenchmarkRealisticRole: a 20-statement role with conditions on most statements.
func BenchmarkRealisticRole(b *testing.B) {
	set := benchRole(b)
	req := benchRequest()
	if d := set.Evaluate(req); d.Effect != Allow || d.Matched[0].Statement != "ReadOwnPrefix" {
		b.Fatalf("unexpected decision %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		set.Evaluate(req)
	}
}

// BenchmarkRealisticRoleDeny: the same role, a request its deny statements stop.
func BenchmarkRealisticRoleDeny(b *testing.B) {
	set := benchRole(b)
	req := benchRequest()
	req.Context.Set("aws:SourceIp", "198.51.100.7")
	if d := set.Evaluate(req); d.Effect != ExplicitDeny {
		b.Fatalf("unexpected decision %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		set.Evaluate(req)
	}
}

// syntheticPolicy builds n statements over 50 services, each with a resource pattern
// and a condition, plus the deny guardrails real accounts carry. The request's action
// is named by exactly one statement, as in a large account with many narrow grants.
func syntheticPolicy(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"Version":"2012-10-17","Statement":[`)
	b.WriteString(`{"Sid":"DenyInsecure","Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}`)
	b.WriteString(`,{"Sid":"DenyOutside","Effect":"Deny","NotAction":"iam:*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]}}}`)
	for i := 2; i < n; i++ {
		svc := fmt.Sprintf("svc%d", i%50)
		fmt.Fprintf(&b, `,{"Sid":"S%d","Effect":"Allow","Action":["%s:Action%d","%s:Read%d"],"Resource":"arn:aws:%s:us-east-1:111122223333:thing/%d/*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"t%d"}}}`,
			i, svc, i, svc, i, svc, i, i%7)
		if i%100 == 0 {
			// One wildcard grant per 100 statements, spread over the services (a
			// service's wildcard statements are checked one by one).
			fmt.Fprintf(&b, `,{"Sid":"W%d","Effect":"Allow","Action":"svc%d:Describe*","Resource":"*"}`, i, (i/100)%50)
		}
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkStatements(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		p, err := Parse(syntheticPolicy(n))
		if err != nil {
			b.Fatal(err)
		}
		set := NewSet(Entry{Identity, p})
		target := n / 2
		if target < 2 {
			target = 2
		}
		svc := fmt.Sprintf("svc%d", target%50)
		req := &Request{
			Principal: "arn:aws:sts::111122223333:assumed-role/App/i-0abc",
			Action:    fmt.Sprintf("%s:Action%d", svc, target),
			Resource:  fmt.Sprintf("arn:aws:%s:us-east-1:111122223333:thing/%d/x", svc, target),
			Context: NewContext(map[string][]string{"aws:SecureTransport": {"true"}, "aws:SourceIp": {"10.9.8.7"},
				"aws:PrincipalTag/team": {fmt.Sprintf("t%d", target%7)}}),
		}
		if d := set.Evaluate(req); d.Effect != Allow {
			b.Fatalf("n=%d: %+v", n, d)
		}
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				set.Evaluate(req)
			}
		})
		// Baseline in the same run: the same decision by scanning every statement,
		// which is what the action index avoids.
		b.Run(fmt.Sprintf("scan/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				linearScan(set, req)
			}
		})
	}
}

// linearScan evaluates every statement of the set (no index): the baseline the index
// is measured against.
func linearScan(s *Set, req *Request) bool {
	st := evalState{req: req, ctx: req.Context}
	st.pi = newPrincipalInfo(req.Principal, req.PrincipalAccount)
	st.resParts, st.resIsARN = arnParts(req.Resource)
	allowed := false
	for i := range s.stmts {
		c := &s.stmts[i]
		if ok, _ := st.matches(c, true); ok {
			if c.deny {
				return false
			}
			allowed = true
		}
	}
	return allowed
}

func BenchmarkParseRealisticRole(b *testing.B) {
	data, err := os.ReadFile("testdata/bench_role.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
