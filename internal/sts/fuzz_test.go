package sts

import (
	"net/http"
	"net/http/httptest"
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
		"Action=AssumeRoleWithWebIdentity&WebIdentityToken=a.b.c&ProviderId=graph.facebook.com&PolicyArns.member.1.arn=x",
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

// FuzzHandler: any form body alice signs gets an STS XML answer (a result or an
// ErrorResponse with a 4xx), never a panic or an InternalFailure.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp&RoleSessionName=s1",
		"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fchained&RoleSessionName=s1&Tags.member.1.Key=team&Tags.member.1.Value=payments&TransitiveTagKeys.member.1=team&SourceIdentity=x1",
		"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fexternal%2Fpartner&RoleSessionName=s1&ExternalId=partner-7f3a&DurationSeconds=7200",
		"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp&RoleSessionName=s1&Policy=%7B%7D&PolicyArns.member.1.arn=arn%3Aaws%3Aiam%3A%3A123456789012%3Apolicy%2FReadOnly",
		"Action=GetSessionToken&Version=2011-06-15&DurationSeconds=900",
		"Action=GetCallerIdentity&Version=2011-06-15",
		"Action=Nope",
		// Unsigned: the web identity token is the credential (no verifier here: refused).
		"Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp&RoleSessionName=s1&WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.e30.c2ln&DurationSeconds=900",
		"Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp&RoleSessionName=s1&WebIdentityToken=abcd&ProviderId=www.amazon.com&PolicyArns.member.1.arn=x",
	} {
		f.Add(s)
	}
	e := newEnv(f)
	alice := e.users["alice"]
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "https://sts.us-east-1.amazonaws.com/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		signBody(t, alice, r, body)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			if !strings.Contains(rec.Body.String(), "<ResponseMetadata><RequestId>") {
				t.Fatalf("200 without metadata: %s", rec.Body)
			}
			return
		}
		er := parseError(t, rec.Body.Bytes())
		if rec.Code >= 500 || er.Code == "" || er.Message == "" {
			t.Fatalf("%d %+v for %q", rec.Code, er, body)
		}
	})
}
