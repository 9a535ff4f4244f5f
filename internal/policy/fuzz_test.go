package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// seedCorpus adds every policy document under testdata (valid and broken) to f.
func seedCorpus(f *testing.F) {
	for _, dir := range []string{"testdata/parse/valid", "testdata/parse/invalid"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`))
	f.Add([]byte(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b/${aws:username, 'x'}${*}${?}${$}"}}`))
}

// FuzzParse: the parser never panics; a document it refuses yields no policy; a document
// it accepts decides a request the same way as its own printed form, every decision
// names statements that exist, and an explicit deny of everything beside it always wins
// (IAM policy evaluation logic: an explicit deny in any policy overrides any allow), or,
// when the policy's kind does not allow the document, the set fails closed.
func FuzzParse(f *testing.F) {
	seedCorpus(f)
	denyAll, err := Parse([]byte(`{"Version":"2012-10-17","Statement":{"Sid":"DenyAll","Effect":"Deny","Principal":"*","Action":"*","Resource":"*"}}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy with an error")
			}
			return
		}
		printed, err := p.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(printed)
		if err != nil {
			t.Fatalf("the printed policy does not parse: %v\n%s", err, printed)
		}
		req := &Request{Principal: alice, Action: "s3:GetObject", Resource: bucket,
			Context: ctx("aws:username", "alice", "aws:SourceIp", "10.0.0.1", "aws:TagKeys", []string{"a", "b"})}
		for _, k := range []Kind{Identity, Resource} {
			d := NewSet(Entry{k, p}).Evaluate(req)
			if d2 := NewSet(Entry{k, again}).Evaluate(req); d.Effect != d2.Effect {
				t.Fatalf("%s policy: %v, but %v once printed and parsed again:\n%s", k, d.Effect, d2.Effect, printed)
			}
			if d.Effect != ImplicitDeny && len(d.Matched) == 0 {
				t.Fatalf("%s policy: %v names no deciding statement", k, d.Effect)
			}
			for _, m := range d.Matched {
				if m.Policy != 0 {
					t.Fatalf("%s policy: matched %+v of a policy the set does not hold", k, m)
				}
			}
			// A document its kind does not allow (ParseKind refuses it) makes the set fail
			// closed instead: it denies everything too.
			_, misfit := ParseKind(data, k)
			d = NewSet(Entry{k, p}, Entry{Resource, denyAll}).Evaluate(req)
			switch {
			case misfit == nil && d.Effect != ExplicitDeny:
				t.Fatalf("%s policy beside a resource policy denying everything: %v", k, d.Effect)
			case misfit != nil && (d.Effect != ImplicitDeny || !strings.Contains(d.Reason, "fails closed")):
				t.Fatalf("%s policy its kind does not allow (%v): %v (%s), want a fail-closed deny", k, misfit, d.Effect, d.Reason)
			}
		}
	})
}

// FuzzRoundTrip: parse -> print -> parse -> print is stable for every accepted document.
func FuzzRoundTrip(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		out1, err := p.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		p2, err := Parse(out1)
		if err != nil {
			t.Fatalf("printed policy does not parse: %v\n%s", err, out1)
		}
		out2, _ := p2.MarshalJSON()
		if !bytes.Equal(out1, out2) {
			t.Fatalf("print not stable:\n%s\n%s", out1, out2)
		}
		if p.Statements() != p2.Statements() {
			t.Fatalf("statement count changed: %d -> %d", p.Statements(), p2.Statements())
		}
	})
}

// FuzzEvaluate: any request against any accepted policy evaluates without panicking,
// and for an identity policy the indexed decision equals a scan of every statement.
func FuzzEvaluate(f *testing.F) {
	role, err := os.ReadFile("testdata/bench_role.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(role, "s3:GetObject", "arn:aws:s3:::data-bucket/home/alice/x", "arn:aws:sts::111122223333:assumed-role/A/alice", "10.0.0.1")
	f.Add(role, "ec2:DescribeVpcs", "*", "", "2001:db8::1")
	f.Add([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Get*","s3:*Object"],"Resource":"arn:aws:s3:::b/${aws:username}"}]}`),
		"S3:GETOBJECT", "arn:aws:s3:::b/alice", "arn:aws:iam::111122223333:user/alice", "x")
	f.Fuzz(func(t *testing.T, doc []byte, action, resource, principal, value string) {
		p, err := Parse(doc)
		if err != nil {
			return
		}
		req := &Request{Principal: principal, Action: action, Resource: resource,
			Context: ctx("aws:username", value, "aws:SourceIp", value, "aws:SecureTransport", value, "aws:TagKeys", []string{value, "env"})}
		for _, k := range []Kind{Resource, Endpoint, SCP} {
			NewSet(Entry{Identity, p}, Entry{k, p}).Evaluate(req)
		}
		set := NewSet(Entry{Identity, p})
		got, want := set.Evaluate(req), scanDecision(set, req)
		if got.Effect != want.Effect || !slices.Equal(got.Matched, want.Matched) {
			t.Fatalf("indexed %v %v, scan %v %v", got.Effect, got.Matched, want.Effect, want.Matched)
		}
	})
}
