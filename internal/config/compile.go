package config

import (
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/phantom-perimeter/phantom/internal/policy"
)

// compile parses a policy of the given kind with the policy engine, so that a spec that
// loads holds only policies the gateway can evaluate, compiled once. src is the compact
// JSON of a YAML document or the JSON string as written. Each grammar finding (what the
// kind forbids or requires included) is reported at the YAML line of the element its
// JSON path names; for a JSON string, at the finding's line inside a block scalar, or at
// the string.
func (d *decoder) compile(n, yamlDoc *yaml.Node, path string, src []byte, kind policy.Kind) (*policy.Policy, bool) {
	p, err := policy.ParseKind(src, kind)
	if err == nil {
		return p, true
	}
	var perr *policy.ParseError
	if !errors.As(err, &perr) || len(perr.Findings) == 0 {
		d.problem(n, path, "the policy does not parse: "+err.Error(), "fix the policy document")
		return nil, false
	}
	findings := perr.Findings
	var errs []policy.Finding
	for _, f := range findings {
		if f.Severity == policy.SeverityError {
			errs = append(errs, f)
		}
	}
	if len(errs) > 0 {
		findings = errs
	}
	for _, f := range findings {
		at, where := locate(n, yamlDoc, path, f.Path)
		if yamlDoc == nil {
			at = d.inString(n, f.Line, f.Column)
		}
		d.problem(at, where, fmt.Sprintf("%s (%s)", f.Message, f.Code), "correct this element of the policy (IAM JSON policy grammar)")
	}
	return nil, false
}
