package policy

import "testing"

func TestSmoke(t *testing.T) {
	p := mustParse(t, `{"Version":"2012-10-17","Statement":[
	 {"Sid":"Read","Effect":"Allow","Action":["s3:Get*","s3:ListBucket"],"Resource":"arn:aws:s3:::bucket/${aws:username}/*",
	  "Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]},"Bool":{"aws:SecureTransport":true}}},
	 {"Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}]}`)
	set := NewSet(Entry{Identity, p})
	req := &Request{Principal: "arn:aws:iam::111122223333:user/alice", Action: "s3:GetObject", Resource: "arn:aws:s3:::bucket/alice/x",
		Context: ctx("aws:username", "alice", "aws:SourceIp", "10.1.2.3", "aws:securetransport", "true")}
	if d := set.Evaluate(req); d.Effect != Allow || len(d.Matched) != 1 || d.Matched[0].Statement != "Read" {
		t.Fatalf("got %+v", d)
	}
	req.Resource = "arn:aws:s3:::bucket/bob/x"
	if d := set.Evaluate(req); d.Effect != ImplicitDeny {
		t.Fatalf("got %+v", d)
	}
	req.Action = "s3:DeleteObject"
	if d := set.Evaluate(req); d.Effect != ExplicitDeny || d.Matched[0].Statement != "1" {
		t.Fatalf("got %+v", d)
	}
	out, _ := p.MarshalJSON()
	t.Logf("%s", out)
}
