package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Each file of testdata/validate holds one policy with one problem (Smokescreen style:
// one broken config per file, its exact finding asserted). Findings are written
// "line:col SEVERITY CODE path"; messages are checked to be non-empty and to name the
// problem in the CLI tests.
func TestValidateTestdata(t *testing.T) {
	tests := []struct {
		file string
		kind Kind
		want []string
		why  string
	}{
		{"clean.json", Identity, nil, "least-privilege read with a variable and an IPv4/IPv6 condition"},
		{"invalid_json.json", "", []string{"4:50 ERROR JSON_SYNTAX_ERROR "}, "missing comma between members"},
		{"duplicate_key.json", "", []string{"7:5 ERROR DUPLICATE_KEY "}, "a second Effect would silently win in encoding/json"},
		{"unknown_element.json", "", []string{"6:5 ERROR INVALID_POLICY_ELEMENT Statement.Resources"}, "\"Resources\" is not an element"},
		{"unknown_element.json", Identity, []string{"3:16 ERROR MISSING_RESOURCE Statement", "6:5 ERROR INVALID_POLICY_ELEMENT Statement.Resources"}, "misspelt Resource leaves none"},
		{"wrong_type.json", "", []string{"5:32 ERROR DATA_TYPE_MISMATCH Statement.Action[1]"}, "an action must be a string"},
		{"invalid_effect.json", "", []string{"4:15 ERROR INVALID_EFFECT Statement.Effect"}, "Effect is case-sensitive"},
		{"missing_effect.json", "", []string{"4:5 ERROR MISSING_EFFECT Statement[0]"}, "Effect is required"},
		{"missing_action.json", "", []string{"5:5 ERROR MISSING_ACTION Statement[1]"}, "Action or NotAction is required"},
		{"missing_resource_identity.json", "", nil, "Parse accepts it: a role trust policy has no Resource"},
		{"missing_resource_identity.json", Identity, []string{"3:16 ERROR MISSING_RESOURCE Statement"}, "identity policies need Resource"},
		{"invalid_arn_resource.json", "", []string{"6:44 ERROR INVALID_ARN_RESOURCE Statement.Resource[1]"}, "a bucket key is not an ARN"},
		{"invalid_action.json", "", []string{"5:15 ERROR INVALID_ACTION Statement.Action"}, "service:Action with a colon"},
		{"invalid_condition_operator.json", "", []string{"7:19 ERROR INVALID_CONDITION_OPERATOR Statement.Condition.StringEqual"}, "StringEqual is not an operator"},
		{"invalid_cidr.json", "", []string{"9:68 ERROR INVALID_CONDITION_VALUE Statement[1].Condition.IpAddress.aws:SourceIp[1]"}, "300 is not an octet"},
		{"invalid_date.json", "", []string{"7:55 ERROR INVALID_CONDITION_VALUE Statement.Condition.DateLessThan.aws:CurrentTime"}, "dates are ISO 8601 or epoch"},
		{"invalid_number.json", "", []string{"7:60 ERROR INVALID_CONDITION_VALUE Statement.Condition.NumericLessThanEquals.s3:max-keys"}, "not a number"},
		{"invalid_bool.json", "", []string{"7:58 ERROR INVALID_CONDITION_VALUE Statement.Condition.Bool.aws:MultiFactorAuthPresent"}, "Bool takes true or false"},
		{"invalid_base64.json", "", []string{"7:60 ERROR INVALID_CONDITION_VALUE Statement.Condition.BinaryEquals.dynamodb:LeadingKeys"}, "BinaryEquals takes base64"},
		{"invalid_version.json", "", []string{"2:14 ERROR INVALID_VERSION Version"}, "only two versions exist"},
		{"unsupported_principal_identity.json", "", nil, "kind unknown: Parse accepts Principal"},
		{"unsupported_principal_identity.json", Identity, []string{"5:5 ERROR UNSUPPORTED_PRINCIPAL Statement.Principal"}, "identity policies name no principal"},
		{"unsupported_principal_identity.json", Boundary, []string{"5:5 ERROR UNSUPPORTED_PRINCIPAL Statement.Principal"}, "nor do boundaries"},
		{"unsupported_principal_identity.json", Resource, nil, "resource policies must"},
		{"missing_principal_resource.json", Resource, []string{"3:16 ERROR MISSING_PRINCIPAL Statement"}, "resource policies need a principal"},
		{"missing_principal_resource.json", Endpoint, []string{"3:16 ERROR MISSING_PRINCIPAL Statement"}, "so do VPC endpoint policies"},
		{"missing_principal_resource.json", Identity, nil, "identity policies do not"},
		{"invalid_policy_variable.json", "", []string{"6:17 ERROR INVALID_POLICY_VARIABLE Statement.Resource"}, "${ without }"},
		{"action_and_notaction.json", "", []string{"6:5 ERROR UNSUPPORTED_ELEMENT_COMBINATION Statement.NotAction"}, "Action and NotAction exclude each other"},
		{"duplicate_sid.json", "", []string{"5:5 ERROR UNIQUE_SIDS_REQUIRED Statement[1].Sid"}, "Sids are unique in a policy"},
		{"allow_with_not_action.json", Identity, []string{"5:5 SECURITY_WARNING ALLOW_WITH_NOT_ACTION Statement.NotAction"}, "NotAction docs warn about Allow"},
		{"allow_with_not_resource.json", Identity, []string{"6:5 SECURITY_WARNING ALLOW_WITH_NOT_RESOURCE Statement.NotResource"}, "NotResource docs warn about Allow"},
		{"public_principal.json", Resource, []string{"5:18 SECURITY_WARNING PUBLIC_ACCESS_WITHOUT_CONDITION Statement.Principal"}, "{\"AWS\": \"*\"} is everyone"},
		{"public_principal_with_condition.json", Resource, nil, "a condition narrows \"*\""},
		{"if_exists_negated.json", Identity, []string{"7:19 SECURITY_WARNING IF_EXISTS_WITH_NEGATED_OPERATOR Statement.Condition.StringNotEqualsIfExists"}, "negated operators match absent keys anyway"},
		{"pass_role_star.json", Identity, []string{"6:17 SECURITY_WARNING PASS_ROLE_WITH_STAR_IN_RESOURCE Statement.Resource"}, "PassRole on any role"},
		{"pass_role_star_action.json", Identity, []string{"5:15 SECURITY_WARNING PASS_ROLE_WITH_STAR_IN_ACTION_AND_RESOURCE Statement.Action"}, "iam:Pass* includes PassRole"},
		{"for_all_values_allow.json", Identity, []string{"7:49 SECURITY_WARNING FOR_ALL_VALUES_WITH_ALLOW Statement.Condition.ForAllValues:StringEquals.aws:TagKeys"}, "ForAllValues is true without the key"},
		{"for_all_values_allow_null.json", Identity, nil, "the documented Null companion makes it safe"},
		{"admin.json", Identity, []string{"3:46 SECURITY_WARNING ALLOW_ALL_ACTIONS_ON_ALL_RESOURCES Statement.Action"}, "AdministratorAccess"},
		{"insecure_transport.json", Identity, []string{"7:51 SECURITY_WARNING ALLOW_WITH_INSECURE_TRANSPORT Statement.Condition.Bool.aws:SecureTransport"}, "allowing only plain-text requests"},
		{"missing_version.json", Identity, []string{"1:1 WARNING MISSING_VERSION Version"}, "2008 language applies"},
		{"variable_old_version.json", Identity, []string{"2:14 WARNING OBSOLETE_VERSION Version", "3:74 WARNING VARIABLE_UNSUPPORTED_IN_VERSION Statement.Resource"}, "${aws:username} is literal under 2008-10-17"},
		{"allow_with_not_principal.json", Resource, []string{"5:5 SECURITY_WARNING ALLOW_WITH_NOT_PRINCIPAL Statement.NotPrincipal"}, "NotPrincipal with Allow"},
		{"deny_with_not_principal.json", Resource, []string{"5:5 WARNING DENY_WITH_NOT_PRINCIPAL Statement.NotPrincipal"}, "NotPrincipal with Deny"},
		{"deny_with_not_principal.json", Identity, []string{"5:5 ERROR UNSUPPORTED_PRINCIPAL Statement.NotPrincipal", "5:5 WARNING DENY_WITH_NOT_PRINCIPAL Statement.NotPrincipal"}, "and not in an identity policy"},
		{"wildcard_without_like.json", Identity, []string{"7:61 WARNING WILDCARD_WITHOUT_LIKE_OPERATOR Statement.Condition.StringEquals.aws:PrincipalTag/team"}, "StringEquals is literal"},
		{"redundant_action.json", Identity, []string{"5:27 SUGGESTION REDUNDANT_ACTION Statement.Action[1]"}, "s3:Get* covers s3:GetObject"},
		{"type_mismatch.json", Identity, []string{"7:39 WARNING TYPE_MISMATCH Statement.Condition.StringNotEquals.aws:SourceIp"}, "a CIDR compared as a string never matches: this Deny denies every address"},
		{"set_operator_single_valued.json", Identity, []string{"7:51 WARNING SET_OPERATOR_WITH_SINGLE_VALUED_KEY Statement.Condition.ForAnyValue:StringNotEquals.aws:RequestedRegion"}, "aws:RequestedRegion is single-valued"},
		{"single_value_multivalued.json", Identity, []string{"7:36 WARNING SINGLE_VALUE_OPERATOR_WITH_MULTIVALUED_KEY Statement.Condition.StringEquals.aws:TagKeys"}, "aws:TagKeys is multivalued"},
		{"admin.json", SCP, nil, "AWS's default FullAWSAccess SCP: an SCP only caps, it grants nothing"},
		{"pass_role_star.json", Boundary, nil, "a boundary only caps what identity policies grant"},
		{"default_endpoint_policy.json", Endpoint, []string{"1:1 WARNING MISSING_VERSION Version"}, "AWS's default VPC endpoint policy (it has no Version) caps nothing and grants nothing"},
		{"default_endpoint_policy.json", Resource, []string{"1:1 WARNING MISSING_VERSION Version", "5:20 SECURITY_WARNING PUBLIC_ACCESS_WITHOUT_CONDITION Statement[0].Principal", "6:17 SECURITY_WARNING ALLOW_ALL_ACTIONS_ON_ALL_RESOURCES Statement[0].Action"}, "as a resource policy the same text grants everyone everything"},
		{"invalid_principal_key.json", Resource, []string{"5:19 ERROR INVALID_PRINCIPAL_KEY Statement.Principal.Group"}, "a role trust policy (no Resource); groups are not principals"},
		{"invalid_principal_format.json", Resource, []string{"5:18 ERROR INVALID_PRINCIPAL_FORMAT Statement.Principal"}, "a string principal must be \"*\""},
		{"github_oidc.json", Resource, nil, "AWS's GitHub OIDC trust policy example: aud and sub both checked"},
		{"github_oidc_without_sub.json", Resource, []string{"5:32 SECURITY_WARNING MISSING_SUBJECT_CONDITION Statement.Principal.Federated"}, "any repository could assume the role"},
		{"oidc_without_aud.json", Resource, []string{"5:32 SECURITY_WARNING MISSING_AUDIENCE_CONDITION Statement.Principal.Federated"}, "any Google client could assume the role"},
		{"variable_in_principal.json", Resource, []string{"5:26 WARNING VARIABLE_UNSUPPORTED_IN_ELEMENT Statement.Principal.AWS"}, "Principal takes no variables"},
		{"empty_condition.json", Identity, []string{"7:18 SUGGESTION EMPTY_OBJECT_CONDITION Statement.Condition"}, "an empty Condition does nothing"},
		{"null_with_qualifier.json", Identity, []string{"6:21 SECURITY_WARNING NULL_WITH_QUALIFIER Statement[0].Condition.ForAllValues:Null", "10:21 WARNING NULL_WITH_QUALIFIER Statement[1].Condition.ForAnyValue:Null"}, "IAM accepts Null with a set qualifier, but it is always true (ForAllValues) or always false (ForAnyValue)"},
	}
	used := map[string]bool{}
	for _, tt := range tests {
		used[tt.file] = true
		t.Run(strings.TrimSuffix(tt.file, ".json")+"/"+string(tt.kind), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/validate", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range ValidateKind(data, tt.kind) {
				if f.Message == "" {
					t.Errorf("%s has no message", f.Code)
				}
				got = append(got, findingLine(f))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("%s (%s)\ngot:\n  %s\nwant:\n  %s", tt.file, tt.why, strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
	// Every file is asserted somewhere.
	files, _ := filepath.Glob("testdata/validate/*.json")
	for _, f := range files {
		if !used[filepath.Base(f)] {
			t.Errorf("%s has no expected findings in this table", f)
		}
	}
}

func findingLine(f Finding) string {
	return strings.TrimSpace(strings.Join([]string{
		strconv.Itoa(f.Line) + ":" + strconv.Itoa(f.Column), string(f.Severity), f.Code, f.Path}, " ")) + tailSpace(f.Path)
}

// tailSpace keeps the trailing separator of findings without a path, so the table
// shows them as "4:50 ERROR JSON_SYNTAX_ERROR ".
func tailSpace(path string) string {
	if path == "" {
		return " "
	}
	return ""
}

// checkAgreement asserts the contract between ValidateKind and ParseKind for every
// kind (and for none: Validate and Parse): ParseKind accepts a document exactly when
// ValidateKind reports no ERROR, and rejects it with the same errors.
func checkAgreement(t *testing.T, data []byte) {
	t.Helper()
	for _, k := range []Kind{"", Identity, Resource, Boundary, Session, SCP, Endpoint} {
		_, perr := ParseKind(data, k)
		var errs []Finding
		for _, f := range ValidateKind(data, k) {
			if f.Severity == SeverityError {
				errs = append(errs, f)
			}
			if f.Line < 0 || f.Column < 0 || f.Line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("finding %v located outside the document", f)
			}
		}
		switch {
		case perr == nil && len(errs) > 0:
			t.Fatalf("ParseKind(%q) accepts %q but ValidateKind reports %v", k, data, errs)
		case perr != nil && len(errs) == 0:
			t.Fatalf("ParseKind(%q) rejects %q (%v) but ValidateKind reports no error", k, data, perr)
		case perr != nil:
			var pe *ParseError
			if !errors.As(perr, &pe) || len(pe.Findings) != len(errs) {
				t.Fatalf("ParseKind(%q) reports %v, ValidateKind %v", k, perr, errs)
			}
		}
	}
}

func TestValidateAgreesWithParse(t *testing.T) {
	var docs [][]byte
	for _, dir := range []string{"testdata/validate", "testdata/parse/valid", "testdata/parse/invalid"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, data)
		}
	}
	if len(docs) < 40 {
		t.Fatalf("only %d documents found", len(docs))
	}
	docs = append(docs, []byte(``), []byte(`[]`), []byte(`{}`), []byte(`{"Statement":[]}`), []byte("\xff"),
		[]byte(`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Null":{"k":"maybe"}}}}`))
	for _, d := range docs {
		checkAgreement(t, d)
	}
}

func TestValidateKindErrorsOnlyAdd(t *testing.T) {
	// ValidateKind may add kind errors but never drops an error Validate reports (its
	// warnings may differ: limiting kinds grant nothing, so grant warnings go).
	files, _ := filepath.Glob("testdata/validate/*.json")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		base := Validate(data)
		for _, k := range []Kind{Identity, Resource, Boundary, Session, SCP, Endpoint} {
			got := ValidateKind(data, k)
			for _, b := range base {
				if b.Severity != SeverityError {
					continue
				}
				found := false
				for _, g := range got {
					if g == b {
						found = true
					}
				}
				if !found {
					t.Errorf("%s: ValidateKind(%s) lost %v", f, k, b)
				}
			}
		}
	}
}

func TestValidateManyFindingsBounded(t *testing.T) {
	// A hostile document with thousands of warnings stays bounded and says so.
	var b strings.Builder
	b.WriteString(`{"Version":"2012-10-17","Statement":[`)
	for i := 0; i < 1000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"Effect":"Allow","NotAction":"iam:*","NotResource":"arn:aws:s3:::x"}`)
	}
	b.WriteString(`]}`)
	fs := Validate([]byte(b.String()))
	if len(fs) != 2*maxFindings+1 {
		t.Fatalf("got %d findings, want %d", len(fs), 2*maxFindings+1)
	}
	if last := fs[len(fs)-1]; last.Code != "TOO_MANY_FINDINGS" || !strings.HasPrefix(last.Message, "1800 more") {
		t.Fatalf("last finding %v", last)
	}
}
