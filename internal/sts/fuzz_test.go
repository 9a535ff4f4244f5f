package sts

import (
	"strings"
	"testing"
)

// FuzzParams: the query/form parser never panics, and whatever it accepts is within its
// limits and yields list members (and AssumeRole validation) without panicking.
func FuzzParams(f *testing.F) {
	for _, s := range []string{
		"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp&RoleSessionName=s1",
		"Action=AssumeRole&Tags.member.1.Key=a&Tags.member.1.Value=b&TransitiveTagKeys.member.1=a&PolicyArns.member.1.arn=x",
		"Tags.member.2.Key=a&Tags.member.0.Value=&Tags=",
		"a=%zz&b", "=&&&=", "x=1;y=2", "%00=%ff", "Policy=%7B%22Version%22%3A", "DurationSeconds=99999999999999999999",
		strings.Repeat("k=v&", 600),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := params{}
		if err := parseParams(p, s); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if len(p) > maxParams {
			t.Fatalf("%d params", len(p))
		}
		for k, v := range p {
			if k == "" || len(v) > maxParamBytes {
				t.Fatalf("accepted %q=%d bytes", k, len(v))
			}
		}
		p.members("Tags", "Key", "Value")
		p.members("TransitiveTagKeys")
		a, e := parseAssume(p)
		if (a == nil) == (e == nil) {
			t.Fatalf("parseAssume: %v and %v", a, e)
		}
		if e != nil && (e.Code == "" || e.Status == 0) {
			t.Fatalf("error without code or status: %+v", e)
		}
	})
}
