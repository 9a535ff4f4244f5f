package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestMarshalCanonical(t *testing.T) {
	in := `{"Id":"x","Statement":{"Condition":{"NumericLessThan":{"s3:max-keys":10},"Bool":{"aws:SecureTransport":true}},
	  "Resource":["arn:aws:s3:::b/*"],"Action":["s3:GetObject"],"Principal":{"Service":"s3.amazonaws.com","AWS":["111122223333","arn:aws:iam::111122223333:role/r"]},
	  "Effect":"Allow","Sid":"S"},"Version":"2012-10-17"}`
	want := `{"Version":"2012-10-17","Id":"x","Statement":[{"Sid":"S","Effect":"Allow","Principal":{"AWS":["111122223333","arn:aws:iam::111122223333:role/r"],"Service":"s3.amazonaws.com"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*","Condition":{"NumericLessThan":{"s3:max-keys":"10"},"Bool":{"aws:SecureTransport":"true"}}}]}`
	out, err := mustParse(t, in).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	// The Policy marshals through encoding/json too (it implements json.Marshaler).
	viaJSON, err := json.Marshal(mustParse(t, in))
	if err != nil || string(viaJSON) != want {
		t.Errorf("json.Marshal: %s %v", viaJSON, err)
	}
}

// TestRoundTripTestdata: every valid testdata policy prints, re-parses to the same
// print, and decides requests the same way before and after printing.
func TestRoundTripTestdata(t *testing.T) {
	files, _ := filepath.Glob("testdata/parse/valid/*.json")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, _ := os.ReadFile(f)
			p := mustParse(t, string(data))
			out, _ := p.MarshalJSON()
			p2 := mustParse(t, string(out))
			out2, _ := p2.MarshalJSON()
			if string(out) != string(out2) {
				t.Fatalf("unstable:\n%s\n%s", out, out2)
			}
			reqs := []*Request{
				{Principal: alice, Action: "s3:GetObject", Resource: "arn:aws:s3:::amzn-s3-demo-bucket/home/alice/x", Context: ctx("aws:username", "alice", "aws:SecureTransport", "true", "aws:SourceVpce", "vpce-1a2b3c4d")},
				{Principal: "arn:aws:sts::444455556666:assumed-role/x/y", Action: "s3:DeleteBucket", Resource: "arn:aws:s3:::amzn-s3-demo-bucket"},
				{Principal: alice, Action: "ec2:RunInstances", Resource: "*", Context: ctx("aws:TagKeys", []string{"env1"})},
			}
			for _, k := range []Kind{Identity, Resource} {
				for _, r := range reqs {
					d1 := NewSet(Entry{k, p}).Evaluate(r)
					d2 := NewSet(Entry{k, p2}).Evaluate(r)
					if d1.Effect != d2.Effect {
						t.Errorf("%s %v: %v before printing, %v after", k, r.Action, d1.Effect, d2.Effect)
					}
				}
			}
		})
	}
}
