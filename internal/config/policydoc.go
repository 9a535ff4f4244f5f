package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/phantom-perimeter/phantom/internal/policy"
)

// policyKind says where a policy is attached, which decides what its statements must and
// must not hold: IAM rejects Principal in identity policies and requires it in trust,
// resource and endpoint policies ("IAM JSON policy elements: Principal"); the policy
// engine checks that (policy.ParseKind) with the rest of the grammar.
type policyKind int

const (
	identityPolicy policyKind = iota
	trustPolicy
	resourcePolicy
	endpointPolicy
)

// engineKind is the policy engine's type for the attachment: a role trust policy is a
// resource-based policy (of the role).
func (k policyKind) engineKind() policy.Kind {
	return [...]policy.Kind{policy.Identity, policy.Resource, policy.Resource, policy.Endpoint}[k]
}

// policy converts a policy document (a YAML mapping, or a string holding JSON) to JSON
// and compiles it as the kind of attachment requires. Problems
// are reported at the YAML line of the offending element when the document is YAML, or
// of the document with the element's JSON path when it is a JSON string.
func (d *decoder) policy(n *yaml.Node, path string, kind policyKind, name string) *Policy {
	if n == nil {
		return nil
	}
	var doc []byte
	// src is what the policy engine parses: the compact JSON of a YAML document, or the
	// JSON string as written, so that the engine's line numbers are lines of that text.
	var src []byte
	yamlDoc := n
	switch {
	case n.Kind == yaml.MappingNode:
		var b bytes.Buffer
		if !d.toJSON(&b, n, path) {
			return nil
		}
		doc = b.Bytes()
		src = doc
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		yamlDoc = nil
		var v any
		if err := json.Unmarshal([]byte(n.Value), &v); err != nil {
			at, msg := d.jsonErr(n, err)
			d.problem(at, path, "the policy is not valid JSON: "+msg, "fix the JSON, or write the policy as YAML")
			return nil
		}
		var b bytes.Buffer
		if err := json.Compact(&b, []byte(n.Value)); err != nil {
			d.problem(n, path, "the policy is not valid JSON: "+err.Error(), "fix the JSON, or write the policy as YAML")
			return nil
		}
		doc = b.Bytes()
		src = []byte(n.Value)
	default:
		d.problem(n, path, "must be a policy document, not "+describe(n), `write a mapping with Version: "2012-10-17" and Statement, or a JSON string`)
		return nil
	}
	p := &Policy{Name: name, Document: doc, Line: n.Line, Column: n.Column}
	if kind != identityPolicy {
		d.principals = append(d.principals, principalPolicy{n, yamlDoc, path, doc})
	}
	compiled, ok := d.compile(n, yamlDoc, path, src, kind.engineKind())
	if !ok {
		return nil
	}
	p.Compiled = compiled
	return p
}

// policySize applies an IAM size quota. AWS counts characters without whitespace; the
// compact JSON has none outside strings.
func (d *decoder) policySize(p *Policy, n *yaml.Node, path string, limit int, what string) {
	if p == nil {
		return
	}
	if c := policyChars(p.Document); c > limit {
		d.problem(n, path, fmt.Sprintf("%s of %d characters is over AWS's limit of %d", what, c, limit),
			"split it or move statements to a managed policy")
	}
}

func policyChars(doc []byte) int {
	return len(bytes.Runes(doc)) - bytes.Count(doc, []byte(" ")) - bytes.Count(doc, []byte("\t"))
}

// jsonErr locates a JSON syntax error inside a YAML string. In a block scalar (| or >)
// line k of the JSON is a line of the file, so the problem can point at it.
func (d *decoder) jsonErr(n *yaml.Node, err error) (*yaml.Node, string) {
	se, ok := err.(*json.SyntaxError)
	if !ok {
		return n, err.Error()
	}
	off := min(int(se.Offset), len(n.Value))
	line := strings.Count(n.Value[:off], "\n") + 1
	// Offset counts the offending byte itself.
	col := off - strings.LastIndexByte(n.Value[:off], '\n') - 1
	return d.inString(n, line, col), fmt.Sprintf("%s (line %d of the JSON)", se.Error(), line)
}

// inString returns the file position of line and column (1-based) of a string node's
// text. In a literal block scalar (|) each line of the text is a line of the file,
// indented by the block's indentation; in any other string the line breaks are not the
// file's, so the string's own position is the best there is.
func (d *decoder) inString(n *yaml.Node, line, col int) *yaml.Node {
	if line < 1 || n.Style&yaml.LiteralStyle == 0 {
		return n
	}
	at := *n
	at.Line, at.Column = n.Line+line, 0
	if indent := d.blockIndent(n.Line); indent >= 0 && col > 0 {
		at.Column = indent + col
	}
	return &at
}

// blockIndent is the indentation of the first non-blank line after line header (the
// line holding |), which YAML makes the indentation of the whole block; -1 if unknown.
func (d *decoder) blockIndent(header int) int {
	lines := bytes.Split(d.data, []byte("\n"))
	for i := header; i < len(lines); i++ { // lines[header] is file line header+1
		l := bytes.TrimRight(lines[i], "\r")
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		return len(l) - len(bytes.TrimLeft(l, " "))
	}
	return -1
}

// toJSON writes a YAML node as JSON. Scalars keep their YAML type (numbers and booleans
// are valid condition values in IAM), except that a YAML date such as an unquoted
// Version: 2012-10-17 stays the string it was written as.
func (d *decoder) toJSON(b *bytes.Buffer, n *yaml.Node, path string) bool {
	n = resolve(n)
	if !d.visit(n) {
		return false
	}
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		seen := map[string]*yaml.Node{}
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
				d.problem(k, path, "a policy key must be a plain name", "write Key: value")
				ok = false
				continue
			}
			if first, dup := seen[k.Value]; dup {
				d.problem(k, joinPath(path, k.Value), fmt.Sprintf("duplicate key (first set at line %d)", first.Line), "keep one of them")
				ok = false
				continue
			}
			seen[k.Value] = k
			if b.Bytes()[b.Len()-1] != '{' {
				b.WriteByte(',')
			}
			writeJSONString(b, k.Value)
			b.WriteByte(':')
			ok = d.toJSON(b, n.Content[i+1], joinPath(path, k.Value)) && ok
		}
		b.WriteByte('}')
		return ok
	case yaml.SequenceNode:
		b.WriteByte('[')
		ok := true
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			ok = d.toJSON(b, c, indexPath(path, i)) && ok
		}
		b.WriteByte(']')
		return ok
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			b.WriteString("null")
		case "!!bool":
			b.WriteString(strconv.FormatBool(strings.EqualFold(n.Value, "true")))
		case "!!int":
			var v int64
			if err := n.Decode(&v); err != nil {
				writeJSONString(b, n.Value)
			} else {
				b.WriteString(strconv.FormatInt(v, 10))
			}
		case "!!float":
			var v float64
			if err := n.Decode(&v); err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
				writeJSONString(b, n.Value)
			} else {
				b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
			}
		default:
			writeJSONString(b, n.Value)
		}
		return true
	}
	d.problem(n, path, "is not a value JSON can hold", "write a mapping, list or scalar")
	return false
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // a Go string always marshals
	b.Write(enc)
}

// locate finds the YAML node at a policy JSON path such as
// Statement[1].Condition.StringEquals.aws:PrincipalTag/team. Keys are matched against the
// document's own keys, longest first, so keys holding dots or slashes resolve. When the
// document was a JSON string, or the path does not resolve, it returns the document node;
// either way the spec path with the JSON path appended says where.
func locate(doc, yamlDoc *yaml.Node, path, jsonPath string) (*yaml.Node, string) {
	rest := strings.TrimPrefix(strings.TrimPrefix(jsonPath, "$"), ".")
	full := path
	switch {
	case rest == "":
	case strings.HasPrefix(rest, "["):
		full += rest
	default:
		full = joinPath(path, rest)
	}
	if yamlDoc == nil {
		return doc, full
	}
	cur := yamlDoc
	for rest != "" {
		cur = resolve(cur)
		if rest[0] == '[' {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return doc, full
			}
			i, err := strconv.Atoi(rest[1:end])
			switch {
			case err != nil || i < 0:
				return doc, full
			case cur.Kind == yaml.SequenceNode && i < len(cur.Content):
				cur = cur.Content[i]
			case cur.Kind != yaml.SequenceNode && i == 0:
				// A single value written without a list stands for element 0, as a
				// single statement object stands for Statement[0].
			default:
				return doc, full
			}
			rest = strings.TrimPrefix(rest[end+1:], ".")
			continue
		}
		if cur.Kind != yaml.MappingNode {
			return doc, full
		}
		var next *yaml.Node
		best := -1
		for i := 0; i+1 < len(cur.Content); i += 2 {
			k := cur.Content[i].Value
			if len(k) > best && (rest == k || strings.HasPrefix(rest, k+".") || strings.HasPrefix(rest, k+"[")) {
				next, best = cur.Content[i+1], len(k)
			}
		}
		if next == nil {
			return doc, full
		}
		cur = next
		rest = strings.TrimPrefix(rest[best:], ".")
	}
	return resolve(cur), full
}

type principalPolicy struct {
	n, yamlDoc *yaml.Node
	path       string
	doc        []byte
}

// checkPrincipalRefs resolves the principals that trust, resource and endpoint policies
// name in this account. IAM refuses a policy naming a user, role or OIDC provider that
// does not exist ("Invalid principal in policy"); so does the loader, which also catches
// a typo that would otherwise silently trust nobody.
func (d *decoder) checkPrincipalRefs(s *Spec) {
	known := map[string]bool{}
	var names []string
	for _, u := range s.Users {
		known[u.ARN] = true
		names = append(names, u.ARN)
	}
	for _, r := range s.Roles {
		known[r.ARN] = true
		names = append(names, r.ARN)
	}
	for _, p := range s.OIDCProviders {
		known[p.ARN] = true
		names = append(names, p.ARN)
	}
	prefix := "arn:aws:iam::" + s.Account + ":"
	for _, pp := range d.principals {
		for _, ref := range principalARNs(pp.doc) {
			local := strings.HasPrefix(ref.arn, prefix+"user/") || strings.HasPrefix(ref.arn, prefix+"role/") ||
				strings.HasPrefix(ref.arn, prefix+"oidc-provider/")
			if !local || known[ref.arn] || strings.ContainsAny(ref.arn, "*?") {
				continue
			}
			at, where := locate(pp.n, pp.yamlDoc, pp.path, ref.path)
			fix := "define it in this spec or fix the ARN"
			// Suggest by name among principals of the same type: whole ARNs share a
			// long prefix, which would make any two look alike.
			typ, name, _ := strings.Cut(strings.TrimPrefix(ref.arn, prefix), "/")
			var same []string
			for _, k := range names {
				if rest, ok := strings.CutPrefix(k, prefix+typ+"/"); ok {
					same = append(same, rest)
				}
			}
			if sg := suggest(name, same); sg != "" {
				fix = fmt.Sprintf("did you mean %q?", prefix+typ+"/"+sg)
			}
			d.problem(at, where, fmt.Sprintf("principal %s does not exist in this perimeter", ref.arn), fix)
		}
	}
}

type principalRef struct{ arn, path string }

// principalARNs lists the AWS and Federated principals of a policy with their JSON
// paths. Malformed shapes are skipped: the policy grammar reports them.
func principalARNs(doc []byte) []principalRef {
	var v struct {
		Statement json.RawMessage
	}
	if json.Unmarshal(doc, &v) != nil {
		return nil
	}
	var stmts []json.RawMessage
	single := false
	if json.Unmarshal(v.Statement, &stmts) != nil {
		stmts, single = []json.RawMessage{v.Statement}, true
	}
	var out []principalRef
	for i, raw := range stmts {
		var st struct {
			Principal, NotPrincipal json.RawMessage
		}
		if json.Unmarshal(raw, &st) != nil {
			continue
		}
		base := "Statement[" + strconv.Itoa(i) + "]"
		if single {
			base = "Statement"
		}
		for key, p := range map[string]json.RawMessage{"Principal": st.Principal, "NotPrincipal": st.NotPrincipal} {
			var m map[string]json.RawMessage
			if json.Unmarshal(p, &m) != nil {
				continue
			}
			for _, typ := range []string{"AWS", "Federated"} {
				at := base + "." + key + "." + typ
				var one string
				if json.Unmarshal(m[typ], &one) == nil {
					out = append(out, principalRef{one, at})
					continue
				}
				var many []string
				if json.Unmarshal(m[typ], &many) == nil {
					for j, a := range many {
						out = append(out, principalRef{a, at + "[" + strconv.Itoa(j) + "]"})
					}
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b principalRef) int { return strings.Compare(a.path, b.path) })
	return out
}
