package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseValid parses every document of testdata/parse/valid: AWS documentation
// examples and one document using every operator.
func TestParseValid(t *testing.T) {
	files, _ := filepath.Glob("testdata/parse/valid/*.json")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(data); err != nil {
				t.Fatalf("Parse: %v", err)
			}
		})
	}
}

// TestParseInvalid asserts the exact finding each broken document of
// testdata/parse/invalid produces, with its JSON path and line (Access Analyzer reports
// grammar errors by location).
func TestParseInvalid(t *testing.T) {
	want := map[string]struct {
		code string
		path string
		line int
	}{
		"not_json":                   {"JSON_SYNTAX_ERROR", "", 2},
		"duplicate_effect":           {"DUPLICATE_KEY", "", 2},
		"bad_effect":                 {"INVALID_EFFECT", "Statement[0].Effect", 1},
		"missing_effect":             {"MISSING_EFFECT", "Statement[0]", 1},
		"missing_action":             {"MISSING_ACTION", "Statement[0]", 1},
		"action_and_notaction":       {"ACTION_AND_NOTACTION", "Statement[0].NotAction", 1},
		"unknown_element":            {"UNKNOWN_ELEMENT", "Statement[0].Conditions", 1},
		"unknown_top_element":        {"UNKNOWN_ELEMENT", "Statements", 1},
		"bad_version":                {"INVALID_VERSION", "Version", 1},
		"missing_statement":          {"MISSING_STATEMENT", "Statement", 1},
		"empty_statement":            {"EMPTY_ARRAY", "Statement", 1},
		"action_wrong_type":          {"INVALID_TYPE", "Statement[0].Action", 1},
		"bad_action":                 {"INVALID_ACTION", "Statement[0].Action", 1},
		"bad_resource":               {"INVALID_ARN", "Statement[0].Resource", 1},
		"unknown_operator":           {"UNKNOWN_OPERATOR", "Statement[0].Condition.StringEqualz", 1},
		"bad_cidr":                   {"INVALID_CONDITION_VALUE", "Statement[0].Condition.IpAddress.aws:SourceIp[1]", 1},
		"bad_number":                 {"INVALID_CONDITION_VALUE", "Statement[0].Condition.NumericLessThan.s3:max-keys", 1},
		"bad_date":                   {"INVALID_CONDITION_VALUE", "Statement[0].Condition.DateLessThan.aws:CurrentTime", 1},
		"bad_bool":                   {"INVALID_CONDITION_VALUE", "Statement[0].Condition.Bool.aws:SecureTransport", 1},
		"bad_base64":                 {"INVALID_CONDITION_VALUE", "Statement[0].Condition.BinaryEquals.k", 1},
		"variable_in_numeric":        {"INVALID_CONDITION_VALUE", "Statement[0].Condition.NumericEquals.k", 1},
		"unclosed_variable":          {"INVALID_POLICY_VARIABLE", "Statement[0].Resource", 1},
		"bad_principal_string":       {"INVALID_PRINCIPAL", "Statement[0].Principal", 1},
		"partial_wildcard_principal": {"INVALID_PRINCIPAL", "Statement[0].Principal.AWS", 1},
		"unknown_principal_type":     {"INVALID_PRINCIPAL", "Statement[0].Principal.User", 1},
		"principal_and_notprincipal": {"PRINCIPAL_AND_NOTPRINCIPAL", "Statement[0].NotPrincipal", 1},
		"duplicate_sid":              {"DUPLICATE_SID", "Statement[1].Sid", 1},
		"null_if_exists":             {"UNKNOWN_OPERATOR", "Statement[0].Condition.NullIfExists", 1},
		"empty_condition_values":     {"EMPTY_ARRAY", "Statement[0].Condition.StringEquals.k", 1},
		"null_condition_value":       {"INVALID_TYPE", "Statement[0].Condition.StringEquals.k", 1},
		"trailing_data":              {"JSON_SYNTAX_ERROR", "", 1},
		"not_object":                 {"INVALID_TYPE", "", 1},
		"bad_arn_condition":          {"INVALID_ARN", "Statement[0].Condition.ArnLike.aws:SourceArn", 1},
	}
	files, _ := filepath.Glob("testdata/parse/invalid/*.json")
	if len(files) != len(want) {
		t.Errorf("%d files in testdata/parse/invalid, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("no expectation for %s", f)
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(data)
			if p != nil || err == nil {
				t.Fatal("Parse accepted an invalid policy")
			}
			var pe *ParseError
			if !errors.As(err, &pe) || len(pe.Findings) == 0 {
				t.Fatalf("error %v is not a *ParseError with findings", err)
			}
			f := pe.Findings[0]
			if f.Code != w.code || f.Path != w.path || f.Line != w.line || f.Severity != SeverityError {
				t.Errorf("finding %+v, want code %s path %q line %d", f, w.code, w.path, w.line)
			}
			if f.Column < 1 {
				t.Errorf("finding has no column: %+v", f)
			}
		})
	}
}

// TestParseLocation checks the line and column point at the offending value.
func TestParseLocation(t *testing.T) {
	doc := "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": {\n    \"Effect\": \"Permit\",\n    \"Action\": \"*\", \"Resource\": \"*\"\n  }\n}"
	_, err := Parse([]byte(doc))
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	f := pe.Findings[0]
	if f.Code != "INVALID_EFFECT" || f.Line != 4 || f.Column != 15 || f.Path != "Statement.Effect" {
		t.Errorf("finding %+v, want INVALID_EFFECT at 4:15 Statement.Effect", f)
	}
	if !strings.Contains(err.Error(), "4:15") {
		t.Errorf("error text %q lacks the location", err)
	}
}

// TestParseReportsAllFindings: one document with several problems reports each.
func TestParseReportsAllFindings(t *testing.T) {
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Action":"x","Resource":"y"},{"Effect":"Allow","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"300.0.0.1"}}}]}`
	_, err := Parse([]byte(doc))
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	var codes []string
	for _, f := range pe.Findings {
		codes = append(codes, f.Code)
	}
	want := "INVALID_EFFECT INVALID_ACTION INVALID_ARN INVALID_CONDITION_VALUE MISSING_ACTION"
	if got := strings.Join(codes, " "); got != want {
		t.Errorf("codes %q, want %q", got, want)
	}
}

// TestParseManyFindings: findings are capped, with a last one counting the rest, and
// a document full of errors is still parsed quickly.
func TestParseManyFindings(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"Statement":{"Effect":"Allow","Resource":"*","Action":[`)
	for i := 0; i < 100000; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.WriteString("1")
	}
	b.WriteString("]}}")
	_, err := Parse([]byte(b.String()))
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	if len(pe.Findings) != maxFindings+1 {
		t.Fatalf("%d findings, want %d", len(pe.Findings), maxFindings+1)
	}
	if f := pe.Findings[99]; f.Line != 100 || f.Path != "Statement.Action[99]" {
		t.Errorf("finding 100 at line %d path %s", f.Line, f.Path)
	}
	if last := pe.Findings[maxFindings]; last.Code != "TOO_MANY_FINDINGS" || !strings.Contains(last.Message, "99900") {
		t.Errorf("last finding %+v", last)
	}
}

func TestParseGrammarDetails(t *testing.T) {
	cases := []struct {
		name string
		doc  string
		ok   bool
	}{
		{"Statement as object", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, true},
		{"no Version is accepted (2008 semantics)", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, true},
		{"Version must be a string", `{"Version":2012,"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, false},
		{"Sid must be a string", `{"Statement":{"Sid":1,"Effect":"Allow","Action":"*","Resource":"*"}}`, false},
		{"Effect is case-sensitive", `{"Statement":{"Effect":"DENY","Action":"*","Resource":"*"}}`, false},
		{"empty Action array", `{"Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}`, false},
		{"Action with empty name", `{"Statement":{"Effect":"Allow","Action":"s3:","Resource":"*"}}`, false},
		{"Action with bad service", `{"Statement":{"Effect":"Allow","Action":"s 3:Get","Resource":"*"}}`, false},
		{"Action wildcard service", `{"Statement":{"Effect":"Allow","Action":"s3*:Get*","Resource":"*"}}`, true},
		{"Resource and NotResource", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","NotResource":"*"}}`, false},
		{"Resource with five parts", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3::bucket"}}`, false},
		{"Resource not beginning with arn", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"urn:aws:s3:::b:c"}}`, false},
		{"Condition must be an object", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":[]}}`, false},
		{"operator body must be an object", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":"x"}}}`, false},
		{"nested array value", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"k":[["a"]]}}}}`, false},
		{"empty condition key", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"":"a"}}}}`, false},
		{"Principal AWS account id", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"*","Resource":"*"}}`, true},
		{"Principal AWS short account", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"1111"},"Action":"*","Resource":"*"}}`, false},
		{"Principal empty object", `{"Statement":{"Effect":"Allow","Principal":{},"Action":"*","Resource":"*"}}`, false},
		{"Principal group ARN", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:group/devs"},"Action":"*","Resource":"*"}}`, false},
		{"Service principal wildcard", `{"Statement":{"Effect":"Allow","Principal":{"Service":"*"},"Action":"*","Resource":"*"}}`, false},
		{"Principal non-IAM ARN", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:s3:::bucket/x/y"},"Action":"*","Resource":"*"}}`, false},
		{"variable default needs quotes", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b/${aws:username, none}"}}`, false},
		{"empty variable", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b/${}"}}`, false},
		{"2008 version: unclosed ${ is text", `{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b/${x"}}`, true},
		{"numeric NaN", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"NumericEquals":{"k":"NaN"}}}}`, false},
		{"numeric Inf", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"NumericEquals":{"k":"Inf"}}}}`, false},
		{"IPv6 CIDR", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"k":"2001:db8::/129"}}}}`, false},
		{"invalid UTF-8", "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\",\"Sid\":\"\xff\"}}", false},
		{"escaped strings", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Sid":"a\u00e9\ud83d\ude00\n"}}`, true},
		{"lone surrogate", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Sid":"\ud83d"}}`, false},
		{"deep nesting", strings.Repeat("[", 100) + strings.Repeat("]", 100), false},
		{"empty input", ``, false},
		{"many condition keys with a duplicate", `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{` + manyKeys(40) + `,"k7":"x"}}}}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if (err == nil) != tc.ok {
				t.Errorf("Parse error = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + itoa(i) + `":"v"`)
	}
	return b.String()
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var d []byte
	for ; i > 0; i /= 10 {
		d = append([]byte{byte('0' + i%10)}, d...)
	}
	return string(d)
}
