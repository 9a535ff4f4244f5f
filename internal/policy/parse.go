package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Parse parses, checks the grammar of, and compiles one IAM policy document. Any
// grammar problem rejects the whole document with a *ParseError listing every located
// finding: the engine fails closed rather than guess what a malformed policy meant.
// Parse does not know where the policy is attached; ParseKind also checks what its
// type requires.
func Parse(data []byte) (*Policy, error) { return ParseKind(data, "") }

// ParseKind is Parse for a policy of a known type. It also refuses, as grammar errors
// located like the others, what IAM refuses for that type ("IAM JSON policy elements:
// Principal", "...: Resource"): a Principal or NotPrincipal in an identity policy,
// permissions boundary, session policy or SCP; a statement without one in a
// resource-based or VPC endpoint policy; a statement without Resource or NotResource
// outside resource-based policies. An empty kind checks only the grammar.
func ParseKind(data []byte, kind Kind) (*Policy, error) {
	if kind != "" && !kind.valid() {
		return nil, fmt.Errorf("parse policy: unknown policy type %q", kind)
	}
	p, findings := parseDocument(data, kind)
	if len(findings) > 0 {
		return nil, &ParseError{Findings: findings}
	}
	return p, nil
}

// parseDocument returns the compiled policy (nil when there are findings) and the
// grammar findings, all of SeverityError, including the rules of kind when it is one.
// Validate builds on it.
func parseDocument(data []byte, kind Kind) (*Policy, []Finding) {
	ps := &parser{data: data}
	if kind.valid() {
		ps.kind = kind
	}
	root, jerr := parseJSON(data)
	if jerr != nil {
		code := "JSON_SYNTAX_ERROR"
		if strings.HasPrefix(jerr.msg, "duplicate key") {
			code = "DUPLICATE_KEY"
		}
		ps.errAt(jerr.off, code, jerr.msg, "")
		return nil, ps.findings
	}
	pol := ps.document(root)
	if ps.dropped > 0 {
		ps.findings = append(ps.findings, Finding{Severity: SeverityError, Code: "TOO_MANY_FINDINGS",
			Message: strconv.Itoa(ps.dropped) + " more findings not reported"})
	}
	if len(ps.findings) > 0 {
		return nil, ps.findings
	}
	return pol, nil
}

type parser struct {
	data      []byte
	kind      Kind // where the policy is attached; "" when unknown
	findings  []Finding
	dropped   int
	vars      bool  // policy variables are enabled (Version 2012-10-17)
	lineStart []int // byte offsets where lines begin, built on the first finding
}

// maxFindings bounds the findings of one document: a hostile document with a
// hundred thousand bad values must not cost a hundred thousand located findings.
const maxFindings = 100

func (ps *parser) errAt(off int, code, msg, path string) {
	if len(ps.findings) >= maxFindings {
		ps.dropped++
		return
	}
	line, col := ps.lineCol(off)
	ps.findings = append(ps.findings, Finding{Severity: SeverityError, Code: code, Message: msg, Path: path, Line: line, Column: col})
}

// lineCol locates off with a line index (binary search) so many findings stay cheap.
func (ps *parser) lineCol(off int) (int, int) {
	if ps.lineStart == nil {
		ps.lineStart = []int{0}
		for i, c := range ps.data {
			if c == '\n' {
				ps.lineStart = append(ps.lineStart, i+1)
			}
		}
	}
	off = min(max(off, 0), len(ps.data))
	i, _ := slices.BinarySearch(ps.lineStart, off+1)
	start := ps.lineStart[i-1]
	return i, utf8.RuneCount(ps.data[start:off]) + 1
}

func quote(s string) string { return strconv.Quote(s) }

// pathKey appends a member name to a JSON path.
func pathKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func pathIndex(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func (ps *parser) wrongType(n *jnode, path, want string) {
	ps.errAt(n.off, "INVALID_TYPE", path+" must be "+want+", not "+n.kind.String(), path)
}

// stringList accepts a string or a non-empty array of strings (how IAM writes Action,
// Resource and principal values). single reports the scalar form.
func (ps *parser) stringList(n *jnode, path string) (vals []string, offs []int, paths []string, single bool, ok bool) {
	switch n.kind {
	case jString:
		return []string{n.str}, []int{n.off}, []string{path}, true, true
	case jArray:
		if len(n.items) == 0 {
			ps.errAt(n.off, "EMPTY_ARRAY", path+" must not be an empty array", path)
			return nil, nil, nil, false, false
		}
		ok = true
		for i, it := range n.items {
			ip := pathIndex(path, i)
			if it.kind != jString {
				ps.wrongType(it, ip, "a string")
				ok = false
				continue
			}
			vals = append(vals, it.str)
			offs = append(offs, it.off)
			paths = append(paths, ip)
		}
		return vals, offs, paths, false, ok
	}
	ps.wrongType(n, path, "a string or an array of strings")
	return nil, nil, nil, false, false
}

func (ps *parser) document(root *jnode) *Policy {
	if root.kind != jObject {
		ps.wrongType(root, "", "a JSON object")
		return nil
	}
	pol := &Policy{}
	var stmtNode *jnode
	for _, m := range root.members {
		switch m.key {
		case "Version":
			if m.val.kind != jString {
				ps.wrongType(m.val, "Version", "a string")
				continue
			}
			if m.val.str != version2012 && m.val.str != version2008 {
				ps.errAt(m.val.off, "INVALID_VERSION", "Version must be \"2012-10-17\" or \"2008-10-17\", not "+quote(m.val.str), "Version")
				continue
			}
			pol.version, pol.hasVersion = m.val.str, true
		case "Id":
			if m.val.kind != jString {
				ps.wrongType(m.val, "Id", "a string")
				continue
			}
			pol.id, pol.hasID = m.val.str, true
		case "Statement":
			stmtNode = m.val
		default:
			ps.errAt(m.keyOff, "UNKNOWN_ELEMENT", "unknown policy element "+quote(m.key), m.key)
		}
	}
	// "IAM JSON policy elements: Version": without a Version element the 2008-10-17
	// language applies, which has no policy variables.
	ps.vars = pol.hasVersion && pol.version == version2012
	if stmtNode == nil {
		ps.errAt(root.off, "MISSING_STATEMENT", "policy has no Statement element", "Statement")
		return nil
	}
	switch stmtNode.kind {
	case jObject:
		if s := ps.statement(stmtNode, "Statement", 0); s != nil {
			pol.stmts = append(pol.stmts, s)
		}
	case jArray:
		if len(stmtNode.items) == 0 {
			ps.errAt(stmtNode.off, "EMPTY_ARRAY", "Statement must not be an empty array", "Statement")
		}
		for i, it := range stmtNode.items {
			if s := ps.statement(it, pathIndex("Statement", i), i); s != nil {
				pol.stmts = append(pol.stmts, s)
			}
		}
	default:
		ps.wrongType(stmtNode, "Statement", "an object or an array of objects")
	}
	// Statement ids must be unique in a policy ("IAM JSON policy elements: Sid"), and
	// Decision.Matched names statements by Sid.
	seen := map[string]bool{}
	for _, s := range pol.stmts {
		if !s.hasSid || s.sid == "" {
			continue
		}
		if seen[s.sid] {
			ps.errAt(stmtNodeOff(stmtNode, s.index), "DUPLICATE_SID", "duplicate statement id "+quote(s.sid), pathIndex("Statement", s.index)+".Sid")
		}
		seen[s.sid] = true
	}
	return pol
}

func stmtNodeOff(n *jnode, i int) int {
	if n.kind == jArray && i < len(n.items) {
		return n.items[i].off
	}
	return n.off
}

func (ps *parser) statement(n *jnode, path string, index int) *statement {
	if n.kind != jObject {
		ps.wrongType(n, path, "an object")
		return nil
	}
	s := &statement{index: index}
	before := len(ps.findings)
	var hasEffect, hasAction bool
	principalKeyOff := n.off
	for _, m := range n.members {
		mp := pathKey(path, m.key)
		v := m.val
		switch m.key {
		case "Sid":
			if v.kind != jString {
				ps.wrongType(v, mp, "a string")
				continue
			}
			s.sid, s.hasSid = v.str, true
		case "Effect":
			hasEffect = true
			if v.kind != jString {
				ps.wrongType(v, mp, "a string")
				continue
			}
			switch v.str {
			case "Allow":
			case "Deny":
				s.deny = true
			default:
				ps.errAt(v.off, "INVALID_EFFECT", "Effect must be \"Allow\" or \"Deny\", not "+quote(v.str), mp)
			}
		case "Principal", "NotPrincipal":
			if s.hasPrincipal {
				ps.errAt(m.keyOff, "PRINCIPAL_AND_NOTPRINCIPAL", "a statement cannot have both Principal and NotPrincipal", mp)
				continue
			}
			s.hasPrincipal, s.notPrincipal = true, m.key == "NotPrincipal"
			principalKeyOff = m.keyOff
			ps.principal(v, mp, &s.principal)
		case "Action", "NotAction":
			if hasAction {
				ps.errAt(m.keyOff, "ACTION_AND_NOTACTION", "a statement cannot have both Action and NotAction", mp)
				continue
			}
			hasAction, s.notAction = true, m.key == "NotAction"
			vals, offs, paths, _, ok := ps.stringList(v, mp)
			if !ok {
				continue
			}
			for i, a := range vals {
				ap, msg := compileAction(a)
				if msg != "" {
					ps.errAt(offs[i], "INVALID_ACTION", msg, paths[i])
					continue
				}
				s.actions = append(s.actions, ap)
			}
		case "Resource", "NotResource":
			if s.hasResource {
				ps.errAt(m.keyOff, "RESOURCE_AND_NOTRESOURCE", "a statement cannot have both Resource and NotResource", mp)
				continue
			}
			s.hasResource, s.notResource = true, m.key == "NotResource"
			vals, offs, paths, _, ok := ps.stringList(v, mp)
			if !ok {
				continue
			}
			for i, r := range vals {
				ap, ok, verr := compileARN(r, ps.vars)
				if verr != "" {
					ps.errAt(offs[i], "INVALID_POLICY_VARIABLE", string(verr), paths[i])
					continue
				}
				if !ok {
					ps.errAt(offs[i], "INVALID_ARN", "resource "+quote(r)+" must be \"*\" or an ARN (arn:partition:service:region:account:resource)", paths[i])
					continue
				}
				s.resources = append(s.resources, ap)
				s.resourcesRaw = append(s.resourcesRaw, r)
			}
		case "Condition":
			s.conds = ps.conditions(v, mp)
		default:
			ps.errAt(m.keyOff, "UNKNOWN_ELEMENT", "unknown statement element "+quote(m.key), mp)
		}
	}
	if !hasEffect {
		ps.errAt(n.off, "MISSING_EFFECT", "statement has no Effect", path)
	}
	if !hasAction {
		ps.errAt(n.off, "MISSING_ACTION", "statement has neither Action nor NotAction", path)
	}
	malformed := len(ps.findings) > before
	// What the policy's type does not allow rejects the document too, but a statement
	// that is otherwise well-formed stays for the document-wide checks (duplicate Sids).
	for _, f := range s.kindFindings(ps.kind, path) {
		off := n.off
		if f.Code == "UNSUPPORTED_PRINCIPAL" {
			off = principalKeyOff
		}
		ps.errAt(off, f.Code, f.Message, f.Path)
	}
	if malformed {
		return nil
	}
	return s
}

// compileAction checks and compiles one action: "*" or "service:Action", where the
// action name may hold wildcards. Actions are case-insensitive ("IAM JSON policy
// elements: Action"), so patterns are lowercased here and requests at evaluation.
func compileAction(a string) (actionPat, string) {
	if a == "*" {
		p, _ := compilePattern(a, true, false, true)
		return actionPat{raw: a, pat: p}, ""
	}
	svc, name, ok := strings.Cut(a, ":")
	if !ok || svc == "" || name == "" {
		return actionPat{}, "action " + quote(a) + " must be \"*\" or \"service:Action\""
	}
	for i := 0; i < len(svc); i++ {
		c := svc[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '*' || c == '?') {
			return actionPat{}, "action " + quote(a) + " has an invalid service prefix"
		}
	}
	// The grammar has no white space in an action ("IAM JSON policy grammar"), and no
	// document says whether IAM refuses "s3: GetObject" or keeps an action that never
	// matches (disputed M2): refused, fail closed, rather than a NotAction that quietly
	// covers every action.
	if strings.ContainsAny(name, ": \t\n") {
		return actionPat{}, "action " + quote(a) + " has an invalid action name"
	}
	p, _ := compilePattern(a, true, false, true)
	ap := actionPat{raw: a, pat: p}
	if !strings.ContainsAny(svc, "*?") {
		ap.service = string(appendLowerASCII(nil, svc))
	}
	return ap, ""
}

func (ps *parser) principal(n *jnode, path string, p *principals) {
	switch n.kind {
	case jString:
		// The only string form is "*" ("AWS JSON policy elements: Principal").
		if n.str != "*" {
			ps.errAt(n.off, "INVALID_PRINCIPAL", "Principal as a string must be \"*\"; name principals with {\"AWS\": ...}, {\"Service\": ...} etc.", path)
			return
		}
		p.star = true
		return
	case jObject:
	default:
		ps.wrongType(n, path, "\"*\" or an object")
		return
	}
	if len(n.members) == 0 {
		ps.errAt(n.off, "INVALID_PRINCIPAL", "Principal must name at least one principal", path)
		return
	}
	for _, m := range n.members {
		mp := pathKey(path, m.key)
		switch m.key {
		case "AWS", "CanonicalUser", "Federated", "Service":
		default:
			ps.errAt(m.keyOff, "INVALID_PRINCIPAL", "unknown principal type "+quote(m.key)+" (want AWS, Service, Federated or CanonicalUser)", mp)
			continue
		}
		vals, offs, paths, _, ok := ps.stringList(m.val, mp)
		if !ok {
			continue
		}
		for i, v := range vals {
			var msg string
			switch m.key {
			case "AWS":
				msg = p.addAWS(v)
			case "Service":
				// A service principal is one service's name; "*" is not a service.
				if v == "" || strings.ContainsAny(v, "*? ") {
					msg = "service principal " + quote(v) + " is not a service name"
				} else {
					p.services = append(p.services, v)
				}
			case "Federated":
				if v == "" || strings.ContainsAny(v, "*?") {
					msg = "federated principal " + quote(v) + " is not a provider name"
				} else {
					p.federated = append(p.federated, v)
				}
			case "CanonicalUser":
				if v == "" || strings.ContainsAny(v, "*?") {
					msg = "canonical user " + quote(v) + " is not a canonical user id"
				} else {
					p.canonical = append(p.canonical, v)
				}
			}
			if msg != "" {
				ps.errAt(offs[i], "INVALID_PRINCIPAL", msg, paths[i])
			}
		}
		p.groups = append(p.groups, principalGroup{typ: m.key, values: vals})
	}
}

// conditionValues accepts a scalar (string, number or boolean: AWS writes
// "aws:SecureTransport": false and "s3:max-keys": 10) or a non-empty array of them.
func (ps *parser) conditionValues(n *jnode, path string) ([]string, []int, []string, bool, bool) {
	scalar := func(it *jnode) bool { return it.kind == jString || it.kind == jNumber || it.kind == jBool }
	if scalar(n) {
		return []string{n.str}, []int{n.off}, []string{path}, true, true
	}
	if n.kind != jArray {
		ps.wrongType(n, path, "a string, number, boolean or an array of them")
		return nil, nil, nil, false, false
	}
	if len(n.items) == 0 {
		ps.errAt(n.off, "EMPTY_ARRAY", path+" must not be an empty array", path)
		return nil, nil, nil, false, false
	}
	var vals []string
	var offs []int
	var paths []string
	ok := true
	for i, it := range n.items {
		ip := pathIndex(path, i)
		if !scalar(it) {
			ps.wrongType(it, ip, "a string, number or boolean")
			ok = false
			continue
		}
		vals = append(vals, it.str)
		offs = append(offs, it.off)
		paths = append(paths, ip)
	}
	return vals, offs, paths, false, ok
}

func (ps *parser) conditions(n *jnode, path string) []*condition {
	if n.kind != jObject {
		ps.wrongType(n, path, "an object")
		return nil
	}
	var out []*condition
	for _, om := range n.members {
		op := pathKey(path, om.key)
		spec, ok := parseOperator(om.key)
		if !ok {
			ps.errAt(om.keyOff, "UNKNOWN_OPERATOR", "unknown condition operator "+quote(om.key), op)
			continue
		}
		if om.val.kind != jObject {
			ps.wrongType(om.val, op, "an object of condition keys")
			continue
		}
		for _, km := range om.val.members {
			kp := pathKey(op, km.key)
			if strings.TrimSpace(km.key) == "" {
				ps.errAt(km.keyOff, "INVALID_CONDITION_KEY", "condition key must not be empty", kp)
				continue
			}
			vals, offs, paths, _, ok := ps.conditionValues(km.val, kp)
			if !ok {
				continue
			}
			c := &condition{op: om.key, key: km.key, lkey: strings.ToLower(km.key), spec: spec}
			// Policy variables only in string and ARN operators ("You can use policy
			// variables ... with string and ARN operators").
			vars := ps.vars && (spec.fam == famString || spec.fam == famStringIgnoreCase || spec.fam == famStringLike || spec.fam == famArn)
			for i, raw := range vals {
				cv, code, msg := compileValue(spec.fam, raw, vars)
				if code != "" {
					ps.errAt(offs[i], code, msg, paths[i])
					continue
				}
				c.values = append(c.values, cv)
			}
			out = append(out, c)
		}
	}
	return out
}

// kindFindings lists what kind does not allow in the statement (unlocated; the parser
// locates them). Identity-based policies, and boundaries, session policies and SCPs,
// which have their shape, apply to whoever they are attached to and cannot name a
// principal; resource-based and VPC endpoint policies must name one; every statement
// outside a resource-based policy needs Resource or NotResource (a role trust policy, a
// resource-based policy, has none). "IAM JSON policy elements: Principal" and
// "...: Resource"; "Control access to VPC endpoints using endpoint policies".
func (s *statement) kindFindings(kind Kind, path string) []Finding {
	var out []Finding
	add := func(code, msg, at string) {
		out = append(out, Finding{Severity: SeverityError, Code: code, Message: msg, Path: at})
	}
	switch kind {
	case Identity, Boundary, Session, SCP:
		if s.hasPrincipal {
			key := "Principal"
			if s.notPrincipal {
				key = "NotPrincipal"
			}
			add("UNSUPPORTED_PRINCIPAL", article(string(kind))+" policy cannot have "+key+": it applies to the principal it is attached to; remove it", pathKey(path, key))
		}
	case Resource, Endpoint:
		if !s.hasPrincipal {
			add("MISSING_PRINCIPAL", article(string(kind))+" policy statement needs Principal or NotPrincipal (use \"*\" for everyone, then narrow it with conditions)", path)
		}
	}
	if kind != "" && kind != Resource && !s.hasResource {
		add("MISSING_RESOURCE", "statement has neither Resource nor NotResource, which every statement outside a resource-based policy needs", path)
	}
	return out
}

// kindProblem reports the first thing kind does not allow in p, if any.
func (p *Policy) kindProblem(kind Kind) (Finding, bool) {
	for _, s := range p.stmts {
		path := pathIndex("Statement", s.index)
		if fs := s.kindFindings(kind, path); len(fs) > 0 {
			return fs[0], true
		}
	}
	return Finding{}, false
}
