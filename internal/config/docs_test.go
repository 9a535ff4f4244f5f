package config

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// specDoc is the reference of the spec file. Each field of the schema is one row of a
// table there whose first cell is the field's path in backticks:
//
//	| `apis[].routes[].authorization` | `AWS_IAM` or `NONE` | `AWS_IAM` | ... |
//
// Paths are dotted from the root; [] stands for an element of a list and .<name> for
// an entry of a mapping whose keys the author chooses (apis[].backends.<name>.url).
// Policy documents are leaves: their grammar has its own section.
const specDoc = "../../docs/spec.md"

// schemaField is one property of the schema, at its documented path.
type schemaField struct {
	path string
	// mention are texts the field's row must contain in backticks: its default and the
	// values of an enum, so the reference cannot keep a default or a value the schema
	// changed.
	mention []string
}

// schemaFields walks the JSON schema's property tree: properties, items (a list adds
// []), additionalProperties holding objects (a mapping adds .<name>), $ref into $defs
// and the alternatives of oneOf/anyOf/allOf, which add their properties at the same path.
func schemaFields(t *testing.T) []schemaField {
	t.Helper()
	data, err := os.ReadFile("schema/phantom.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	defs, _ := root["$defs"].(map[string]any)
	resolve := func(n map[string]any) (map[string]any, string) {
		ref, _ := n["$ref"].(string)
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		if !ok {
			return n, ""
		}
		d, _ := defs[name].(map[string]any)
		return d, name
	}
	fields := map[string]*schemaField{}
	var walk func(n map[string]any, path string)
	walk = func(n map[string]any, path string) {
		if n == nil {
			return
		}
		n, def := resolve(n)
		if def == "policyDocument" {
			return
		}
		for _, k := range []string{"oneOf", "anyOf", "allOf"} {
			alts, _ := n[k].([]any)
			for _, a := range alts {
				am, _ := a.(map[string]any)
				walk(am, path)
			}
		}
		if items, ok := n["items"].(map[string]any); ok {
			walk(items, path+"[]")
		}
		if ap, ok := n["additionalProperties"].(map[string]any); ok {
			if inner, _ := resolve(ap); inner["properties"] != nil {
				walk(ap, path+".<name>")
			}
		}
		props, _ := n["properties"].(map[string]any)
		for name, p := range props {
			pm, _ := p.(map[string]any)
			fp := name
			if path != "" {
				fp = path + "." + name
			}
			f := fields[fp]
			if f == nil {
				f = &schemaField{path: fp}
				fields[fp] = f
			}
			target, _ := resolve(pm)
			for _, src := range []map[string]any{pm, target} {
				if v, ok := src["default"]; ok {
					f.mention = append(f.mention, mentions(v)...)
					break
				}
			}
			if c, ok := target["const"]; ok {
				f.mention = append(f.mention, fmt.Sprint(c))
			}
			for _, v := range enumOf(target) {
				f.mention = append(f.mention, fmt.Sprint(v))
			}
			walk(pm, fp)
		}
	}
	walk(root, "")
	out := make([]schemaField, 0, len(fields))
	for _, f := range fields {
		slices.Sort(f.mention)
		f.mention = slices.Compact(f.mention)
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// mentions spells a default as the reference writes it: a whole number in digits
// (10485760, not 1.048576e+07), a list as each of its values.
func mentions(v any) []string {
	switch v := v.(type) {
	case float64:
		return []string{strconv.FormatFloat(v, 'f', -1, 64)}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, mentions(e)...)
		}
		return out
	}
	return []string{fmt.Sprint(v)}
}

// enumOf returns an enum's values, looking into a list's items (actions: [...]).
func enumOf(n map[string]any) []any {
	if e, ok := n["enum"].([]any); ok {
		return e
	}
	if items, ok := n["items"].(map[string]any); ok {
		e, _ := items["enum"].([]any)
		return e
	}
	return nil
}

// docRowRe matches a reference row: a table row whose first cell is one path in
// backticks. Spec fields start lower-case; the rows of other tables (policy elements,
// condition keys) do not match.
var docRowRe = regexp.MustCompile("^\\| `([a-z][A-Za-z.\\[\\]<>]*)` \\|")

// TestSpecDocCoversSchema keeps docs/spec.md in step with the schema: every field has a
// row naming its default and enum values, and every row names a field the schema has.
func TestSpecDocCoversSchema(t *testing.T) {
	doc, err := os.ReadFile(specDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for line := range strings.SplitSeq(string(doc), "\n") {
		if m := docRowRe.FindStringSubmatch(line); m != nil {
			if _, dup := rows[m[1]]; dup {
				t.Errorf("docs/spec.md documents `%s` twice", m[1])
			}
			rows[m[1]] = line
		}
	}
	fields := schemaFields(t)
	if len(fields) < 50 {
		t.Fatalf("the schema walk found only %d fields; the walker is broken", len(fields))
	}
	known := map[string]bool{}
	for _, f := range fields {
		known[f.path] = true
		row, ok := rows[f.path]
		if !ok {
			t.Errorf("docs/spec.md has no row for `%s`: add | `%s` | type | default | what it does |", f.path, f.path)
			continue
		}
		for _, m := range f.mention {
			if !strings.Contains(row, "`"+m+"`") {
				t.Errorf("docs/spec.md's row for `%s` does not mention `%s` (its default or one of its values)", f.path, m)
			}
		}
	}
	for p := range rows {
		if !known[p] {
			t.Errorf("docs/spec.md documents `%s`, which the schema does not have", p)
		}
	}
}

// TestSpecDocFieldWalk pins the walker on paths the reference must use, so a change in
// how the walk spells paths cannot make the test above vacuous.
func TestSpecDocFieldWalk(t *testing.T) {
	have := map[string]bool{}
	for _, f := range schemaFields(t) {
		have[f.path] = true
	}
	for _, p := range []string{
		"version", "gateway.clockSkew", "detection.responses[].actions",
		"apis[].routes[].authorization", "apis[].backends.<name>.url", "endpoints[].ingress[].cidrs",
		"egress[].allow[].api", "egress[].allow[].cidr", "users[].policies[].document", "roles[].trustPolicy",
	} {
		if !have[p] {
			t.Errorf("the schema walk does not produce %s", p)
		}
	}
	if have["apis[].resourcePolicy.Statement"] {
		t.Error("the walk descends into policy documents")
	}
}
