package simulate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestAWSDocExamples runs cases taken from AWS documentation examples; each row's
// "source" names the document and the example its expected decision comes from.
func TestAWSDocExamples(t *testing.T) {
	data, err := os.ReadFile("testdata/aws_docs.json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Name   string          `json:"name"`
		Source string          `json:"source"`
		Case   json.RawMessage `json:"case"`
		Want   Result          `json:"want"`
	}
	if err := json.Unmarshal(data, &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 15 {
		t.Fatalf("only %d rows", len(rows))
	}
	for _, row := range rows {
		t.Run(row.Name, func(t *testing.T) {
			if row.Source == "" {
				t.Fatal("row does not say which AWS document it comes from")
			}
			cases, err := Load(row.Case)
			if err != nil {
				t.Fatal(err)
			}
			got := Run(cases)
			if len(got) != 1 {
				t.Fatalf("got %d results", len(got))
			}
			if got[0].Reason == "" {
				t.Error("result has no reason")
			}
			got[0].Reason = ""
			if !reflect.DeepEqual(got[0], row.Want) {
				t.Errorf("%s\ngot  %+v\nwant %+v", row.Source, got[0], row.Want)
			}
		})
	}
}

const allowDoc = `{"Version":"2012-10-17","Statement":{"Sid":"Read","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}}`

func TestLoadForms(t *testing.T) {
	one := `{"policies":[{"type":"identity","document":` + allowDoc + `}],"request":{"principal":"arn:aws:iam::123456789012:user/a","action":"s3:GetObject","resource":"arn:aws:s3:::b/k"}}`
	deny := strings.Replace(one, "s3:GetObject\",\"resource", "s3:PutObject\",\"resource", 1)
	// The document may also be a JSON string holding the policy, as the AWS CLI takes it.
	str, _ := json.Marshal(allowDoc)
	asString := strings.Replace(one, allowDoc, string(str), 1)
	tests := []struct {
		name, in string
		want     []string
	}{
		{"single case", one, []string{"Allow"}},
		{"array", "[" + one + "," + deny + "]", []string{"Allow", "ImplicitDeny"}},
		{"document as a string", asString, []string{"Allow"}},
		{"no policies", `{"policies":[],"request":{"action":"s3:GetObject","resource":"*"}}`, []string{"ImplicitDeny"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cases, err := Load([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range Run(cases) {
				got = append(got, r.Decision)
				if r.Matched == nil {
					t.Error("Matched is nil; the CLI prints [] for no match")
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestContextValues(t *testing.T) {
	doc := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":{
		"NumericLessThan":{"s3:max-keys":10},"Bool":{"aws:SecureTransport":true},
		"ForAnyValue:StringEquals":{"aws:TagKeys":["b"]},"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}}}`
	mk := func(ctx string) string {
		return `{"policies":[{"type":"identity","document":` + doc + `}],"request":{"principal":"arn:aws:iam::123456789012:user/a","action":"s3:GetObject","resource":"arn:aws:s3:::b/k","context":` + ctx + `}}`
	}
	tests := []struct{ name, ctx, want string }{
		{"number, bool, array, IPv6", `{"s3:max-keys":5,"aws:SecureTransport":true,"aws:TagKeys":["a","b"],"aws:SourceIp":"2001:db8::1"}`, "Allow"},
		{"number too big", `{"s3:max-keys":50,"aws:SecureTransport":true,"aws:TagKeys":["a","b"],"aws:SourceIp":"2001:db8::1"}`, "ImplicitDeny"},
		{"empty multivalued key", `{"s3:max-keys":5,"aws:SecureTransport":true,"aws:TagKeys":[],"aws:SourceIp":"2001:db8::1"}`, "ImplicitDeny"},
		{"names are case-insensitive", `{"S3:Max-Keys":"5","AWS:securetransport":"true","aws:tagkeys":["b"],"aws:sourceip":"2001:db8::1"}`, "Allow"},
		// An array is a multivalued key even of one value: only ForAnyValue: matches it,
		// NumericLessThan without a qualifier does not (as SimulateCustomPolicy answers
		// for list-typed context entries).
		{"a list of one value is multivalued", `{"s3:max-keys":[5],"aws:SecureTransport":true,"aws:TagKeys":["b"],"aws:SourceIp":"2001:db8::1"}`, "ImplicitDeny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cases, err := Load([]byte(mk(tt.ctx)))
			if err != nil {
				t.Fatal(err)
			}
			if got := Run(cases)[0].Decision; got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// A policy that does not parse is reported at its line and column in the case file,
// not in the document (the same document text may appear in several cases).
func TestLoadParseErrorLocation(t *testing.T) {
	ok := "{\"policies\": [{\"type\": \"identity\", \"document\": " + allowDoc + "}],\n \"request\": {\"action\": \"s3:GetObject\", \"resource\": \"*\"}}"
	bad := "{\"policies\": [\n  {\"type\": \"identity\", \"document\": " + allowDoc + "},\n  {\"type\": \"boundary\", \"document\": {\"Version\": \"2012-10-17\",\n    \"Statement\": {\"Effect\": \"Permit\", \"Action\": \"s3:GetObject\", \"Resource\": \"*\"}}}],\n \"request\": {\"action\": \"s3:GetObject\", \"resource\": \"*\"}}"
	in := "[\n" + ok + ",\n" + ok + ",\n" + bad + "\n]"
	off := strings.Index(in, `"Permit"`)
	line := 1 + strings.Count(in[:off], "\n")
	col := off - strings.LastIndex(in[:off], "\n")
	want := fmt.Sprintf(`case 2: policy 1 (boundary): line %d, column %d: INVALID_EFFECT Effect must be "Allow" or "Deny", not "Permit" (Statement.Effect)`, line, col)
	_, err := Load([]byte(in))
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	if line != 9 || col != 29 {
		t.Fatalf("the test input moved: Permit at %d:%d", line, col)
	}
	// A document given as a string is located within the string's text.
	str, _ := json.Marshal(`{"Statement":{"Effect":"Permit","Action":"s3:GetObject","Resource":"*"}}`)
	_, err = Load([]byte(`{"policies":[{"type":"identity","document":` + string(str) + `}],"request":{"action":"s3:GetObject","resource":"*"}}`))
	if want := `case 0: policy 0 (identity): line 1, column 24 of the document: INVALID_EFFECT`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v, want prefix %s", err, want)
	}
}

func TestLoadErrors(t *testing.T) {
	ok := `{"policies":[{"type":"identity","document":` + allowDoc + `}],"request":{"action":"s3:GetObject","resource":"*"}}`
	tests := []struct {
		name, in string
		index    int
		msg      string
	}{
		{"empty input", "  ", -1, "input is empty"},
		{"bad JSON", "[" + ok + ",\n{]", -1, "invalid JSON at line 2, column 2"},
		{"empty array", "[]", -1, "empty array"},
		{"unknown field in a case", "[" + ok + `,{"policies":[],"request":{"action":"s3:GetObject","resource":"*"},"comment":"x"}]`, 1, `unknown field "comment"`},
		{"unknown field in a request", `{"policies":[],"request":{"action":"s3:GetObject","resource":"*","resourceAcount":"1"}}`, 0, `unknown field "resourceAcount"`},
		{"unknown policy type", `{"policies":[{"type":"group","document":` + allowDoc + `}],"request":{"action":"s3:GetObject","resource":"*"}}`, 0, `policy 0: unknown policy type "group"`},
		{"missing policy type", `{"policies":[{"document":` + allowDoc + `}],"request":{"action":"s3:GetObject","resource":"*"}}`, 0, `policy 0: missing "type"`},
		{"missing document", `{"policies":[{"type":"identity"}],"request":{"action":"s3:GetObject","resource":"*"}}`, 0, `policy 0: missing "document"`},
		{"missing action", `{"policies":[],"request":{"resource":"*"}}`, 0, `request: missing "action"`},
		{"wildcard action", `{"policies":[],"request":{"action":"s3:Get*","resource":"*"}}`, 0, `request: action "s3:Get*" is not "service:Action"`},
		{"missing resource", `{"policies":[],"request":{"action":"s3:GetObject"}}`, 0, `request: missing "resource"`},
		{"missing policies", `{"request":{"action":"s3:GetObject","resource":"*"}}`, 0, `missing "policies"`},
		{"object context value", `{"policies":[],"request":{"action":"s3:GetObject","resource":"*","context":{"k":{"a":1}}}}`, 0, `context key "k": value must be`},
		{"one key spelt twice", `{"policies":[],"request":{"action":"s3:GetObject","resource":"*","context":{"aws:SourceIp":"192.0.2.1","AWS:SOURCEIP":"198.51.100.1"}}}`, 0, `context keys "AWS:SOURCEIP" and "aws:SourceIp" are the same key`},
		{"identity policy with a Principal", `{"policies":[{"type":"identity","document":{"Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}}}],"request":{"action":"s3:GetObject","resource":"*"}}`, 0, `policy 0 (identity): line 1, column 75: UNSUPPORTED_PRINCIPAL`},
		{"null in context array", `{"policies":[],"request":{"action":"s3:GetObject","resource":"*","context":{"k":["a",null]}}}`, 0, `context key "k": value [1] must be`},
		{"wrong type", `{"policies":"identity","request":{"action":"s3:GetObject","resource":"*"}}`, 0, `cannot unmarshal string`},
		{"trailing data", `{"policies":[],"request":{"action":"s3:GetObject","resource":"*"}} {}`, 0, `unexpected data after the case`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]byte(tt.in))
			var ce *CaseError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *CaseError", err)
			}
			if ce.Index != tt.index || !strings.Contains(ce.Msg, tt.msg) {
				t.Fatalf("got index %d %q, want index %d containing %q", ce.Index, ce.Msg, tt.index, tt.msg)
			}
		})
	}
}
