package export_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// The goldens of this package are written by the code they test, so each export is also
// checked against its format's own definition: OCSF 1.1.0's Detection Finding (a schema
// written from the OCSF definitions, testdata/ocsf-1.1.0-detection_finding.schema.json)
// and ASFF as AWS's Security Hub API model defines AwsSecurityFinding (botocore's
// service model, turned into a JSON Schema here).

// variants are the findings every exporter must turn into a valid document: the golden
// one, archived, new, without an access key or API call, and with an IPv6 caller.
func variants(t *testing.T) map[string]detect.Finding {
	t.Helper()
	base := loadFinding(t)
	m := map[string]detect.Finding{"golden": base}
	f := loadFinding(t)
	f.Service.Archived = true
	m["archived"] = f
	f = loadFinding(t)
	f.Service.Count, f.UpdatedAt = 1, f.CreatedAt
	m["new"] = f
	f = loadFinding(t)
	f.Resource.AccessKeyDetails = nil
	f.Service.Action.AWSAPICallAction = nil
	m["no access key, no API call"] = f
	f = loadFinding(t)
	if c := f.Service.Action.AWSAPICallAction; c != nil && c.RemoteIPDetails != nil {
		c.RemoteIPDetails.IPAddressV4, c.RemoteIPDetails.IPAddressV6 = "", "2001:db8::7"
	}
	m["IPv6 caller"] = f
	for _, sev := range []float64{1, 5, 9.5} {
		f = loadFinding(t)
		f.Severity = sev
		m[fmt.Sprintf("severity %v", sev)] = f
	}
	return m
}

func compile(t *testing.T, url string, doc any) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile %s: %v", url, err)
	}
	return s
}

// instance marshals v and reads it back as the validator's JSON value.
func instance(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// goldenInstance reads a JSON file as the validator's JSON value.
func goldenInstance(t *testing.T, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return instance(t, json.RawMessage(b))
}

// broken returns a copy of a document (a JSON object) with one change made by edit.
func broken(t *testing.T, doc any, edit func(m map[string]any)) any {
	t.Helper()
	b, _ := json.Marshal(doc)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	return instance(t, m)
}

func TestOCSFMatchesSchema(t *testing.T) {
	const path = "testdata/ocsf-1.1.0-detection_finding.schema.json"
	s := compile(t, "file:///"+path, goldenInstance(t, path))
	if err := s.Validate(goldenInstance(t, "testdata/finding.ocsf.json")); err != nil {
		t.Errorf("testdata/finding.ocsf.json: %v", err)
	}
	for name, f := range variants(t) {
		if err := s.Validate(instance(t, export.OCSF(f))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The schema can fail: what OCSF 1.1.0 does not define is refused.
	golden := goldenInstance(t, "testdata/finding.ocsf.json")
	for name, edit := range map[string]func(map[string]any){
		"src_endpoint at the top (not a Detection Finding attribute)": func(m map[string]any) { m["src_endpoint"] = map[string]any{"ip": "203.0.113.7"} },
		"type_uid of another activity":                                func(m map[string]any) { m["type_uid"] = 200401 },
		"severity caption of another id":                              func(m map[string]any) { m["severity"] = "Low" },
		"finding_info without title":                                  func(m map[string]any) { delete(m["finding_info"].(map[string]any), "title") },
		"metadata of another OCSF version":                            func(m map[string]any) { m["metadata"].(map[string]any)["version"] = "1.3.0" },
		"camelCase attribute":                                         func(m map[string]any) { m["classUid"] = 2004 },
	} {
		if err := s.Validate(broken(t, golden, edit)); err == nil {
			t.Errorf("the schema accepts a document with %s", name)
		}
	}
}

// asffSchema turns the AwsSecurityFinding shape of Security Hub's service model (as
// botocore ships it) into a JSON Schema: structures admit only their members and require
// the required ones, strings keep their enums, lengths and patterns, lists and maps
// their element shapes.
func asffSchema(t *testing.T) any {
	t.Helper()
	py := testenv.Python(t, "botocore")
	out, err := exec.Command(py, "-c", `import json, sys
from botocore.loaders import Loader
m = Loader().load_service_model("securityhub", "service-2")
json.dump({"version": m["metadata"].get("apiVersion"), "shapes": m["shapes"]}, sys.stdout)`).Output()
	if err != nil {
		t.Fatalf("load Security Hub's service model from botocore: %v", err)
	}
	var model struct {
		Version string
		Shapes  map[string]struct {
			Type     string
			Members  map[string]struct{ Shape string }
			Required []string
			Member   struct{ Shape string }
			Value    struct{ Shape string }
			Enum     []string
			Min, Max *float64
			Pattern  string
		}
	}
	if err := json.Unmarshal(out, &model); err != nil {
		t.Fatal(err)
	}
	if _, ok := model.Shapes["AwsSecurityFinding"]; !ok {
		t.Fatal("Security Hub's service model has no AwsSecurityFinding shape")
	}
	ref := func(shape string) any { return map[string]any{"$ref": "#/$defs/" + shape} }
	defs := map[string]any{}
	var dropped []string // patterns Go's regexp cannot express (lookahead)
	for name, sh := range model.Shapes {
		d := map[string]any{}
		switch sh.Type {
		case "structure":
			props := map[string]any{}
			for m, s := range sh.Members {
				props[m] = ref(s.Shape)
			}
			d["type"], d["properties"], d["additionalProperties"] = "object", props, false
			if len(sh.Required) > 0 {
				d["required"] = sh.Required
			}
		case "list":
			d["type"], d["items"] = "array", ref(sh.Member.Shape)
			if sh.Max != nil {
				d["maxItems"] = *sh.Max
			}
		case "map":
			d["type"], d["additionalProperties"] = "object", ref(sh.Value.Shape)
		case "string":
			d["type"] = "string"
			if len(sh.Enum) > 0 {
				d["enum"] = sh.Enum
			}
			if sh.Min != nil {
				d["minLength"] = *sh.Min
			}
			if sh.Max != nil {
				d["maxLength"] = *sh.Max
			}
			if sh.Pattern != "" {
				if p, ok := re2(sh.Pattern); ok {
					d["pattern"] = p
				} else {
					dropped = append(dropped, name)
				}
			}
		case "integer", "long":
			d["type"] = "integer"
		case "double", "float":
			d["type"] = "number"
		case "boolean":
			d["type"] = "boolean"
		case "timestamp":
			d["type"] = []string{"string", "number"}
		}
		defs[name] = d
	}
	t.Logf("Security Hub API %s, %d shapes; patterns not checked (lookahead, which RE2 lacks): %v", model.Version, len(model.Shapes), dropped)
	return map[string]any{"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/AwsSecurityFinding", "$defs": defs}
}

var uEscape = regexp.MustCompile(`\\u([0-9A-Fa-f]{4})`)

// re2 rewrites an ECMA-262 pattern of the model for Go's regexp (\uXXXX is \x{XXXX});
// ok is false for one RE2 cannot express.
func re2(p string) (string, bool) {
	p = uEscape.ReplaceAllString(p, `\x{$1}`)
	_, err := regexp.Compile(p)
	return p, err == nil
}

func TestASFFMatchesSecurityHubModel(t *testing.T) {
	s := compile(t, "file:///securityhub-AwsSecurityFinding.json", instance(t, asffSchema(t)))
	if err := s.Validate(goldenInstance(t, "testdata/finding.asff.json")); err != nil {
		t.Errorf("testdata/finding.asff.json: %v", err)
	}
	for name, f := range variants(t) {
		if err := s.Validate(instance(t, export.ASFF(f))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	golden := goldenInstance(t, "testdata/finding.asff.json")
	for name, edit := range map[string]func(map[string]any){
		"no ProductArn":       func(m map[string]any) { delete(m, "ProductArn") },
		"a misspelled field":  func(m map[string]any) { m["GeneratorID"] = m["GeneratorId"] },
		"an unknown label":    func(m map[string]any) { m["Severity"].(map[string]any)["Label"] = "SEVERE" },
		"a number for a text": func(m map[string]any) { m["AwsAccountId"] = 123456789012 },
	} {
		if err := s.Validate(broken(t, golden, edit)); err == nil {
			t.Errorf("the schema accepts a document with %s", name)
		}
	}
}
