package policy

import (
	"slices"
	"strconv"
	"strings"
)

// Validation in the manner of IAM Access Analyzer's policy validation ("IAM Access
// Analyzer policy validation check reference"): grammar errors that make a policy
// unusable, security warnings for access broader than it looks, warnings for policies
// that probably do not do what their author meant, and suggestions.
//
// Grammar errors come from the engine's own parser (parseDocument), so Validate and
// Parse cannot disagree: a document has an ERROR finding from ValidateKind exactly when
// ParseKind rejects it for that kind (and from Validate exactly when Parse rejects it).

// Validate checks one policy document whose kind is unknown: it reports the grammar
// errors Parse reports, plus warnings and suggestions. It never panics.
func Validate(data []byte) []Finding { return ValidateKind(data, "") }

// ValidateKind is Validate for a policy of a known kind (Identity, Resource, Boundary,
// Session, SCP or Endpoint); an empty or unknown kind checks only what holds for all.
func ValidateKind(data []byte, kind Kind) []Finding {
	_, grammar := parseDocument(data, kind)
	v := &validator{ps: parser{data: data}, kind: kind}
	for _, f := range grammar {
		f.Code = analyzerCode(f)
		v.out = append(v.out, f)
	}
	// Warnings need the JSON tree; a document that is not JSON has only its syntax error.
	if root, jerr := parseJSON(data); jerr == nil && root.kind == jObject {
		v.document(root)
	}
	if v.dropped > 0 {
		v.out = append(v.out, Finding{Severity: SeverityWarning, Code: "TOO_MANY_FINDINGS",
			Message: strconv.Itoa(v.dropped) + " more warnings and suggestions not reported"})
	}
	// Report in document order; findings without a location last.
	slices.SortStableFunc(v.out, func(a, b Finding) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	return v.out
}

// analyzerCode renames the engine's grammar codes to Access Analyzer's issue codes
// where Access Analyzer has one for the same problem ("IAM Access Analyzer policy
// validation check reference"); the others keep the engine's name.
func analyzerCode(f Finding) string {
	switch f.Code {
	case "INVALID_TYPE":
		return "DATA_TYPE_MISMATCH"
	case "UNKNOWN_ELEMENT":
		return "INVALID_POLICY_ELEMENT"
	case "UNKNOWN_OPERATOR":
		return "INVALID_CONDITION_OPERATOR"
	case "ACTION_AND_NOTACTION", "RESOURCE_AND_NOTRESOURCE", "PRINCIPAL_AND_NOTPRINCIPAL":
		return "UNSUPPORTED_ELEMENT_COMBINATION"
	case "DUPLICATE_SID":
		return "UNIQUE_SIDS_REQUIRED"
	case "INVALID_ARN":
		if isResourcePath(f.Path) {
			return "INVALID_ARN_RESOURCE"
		}
	case "INVALID_PRINCIPAL":
		if strings.HasPrefix(f.Message, "unknown principal type") {
			return "INVALID_PRINCIPAL_KEY"
		}
		return "INVALID_PRINCIPAL_FORMAT"
	}
	return f.Code
}

func isResourcePath(path string) bool {
	last := path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		last = path[i+1:]
	}
	if i := strings.IndexByte(last, '['); i >= 0 {
		last = last[:i]
	}
	return last == "Resource" || last == "NotResource"
}

type validator struct {
	ps      parser // for its line index only
	kind    Kind
	vars    bool // Version 2012-10-17: policy variables are live
	out     []Finding
	dropped int
}

func (v *validator) add(sev Severity, code string, off int, path, msg string) {
	// Grammar errors are already bounded by the parser; bound ours the same way.
	if len(v.out) >= 2*maxFindings {
		v.dropped++
		return
	}
	line, col := v.ps.lineCol(off)
	v.out = append(v.out, Finding{Severity: sev, Code: code, Message: msg, Path: path, Line: line, Column: col})
}

func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an " + word
	}
	return "a " + word
}

func member(n *jnode, key string) (jmember, bool) {
	for _, m := range n.members {
		if m.key == key {
			return m, true
		}
	}
	return jmember{}, false
}

// strings returns the string values of a string-or-array node (others are grammar
// errors already reported by the parser) with their paths.
func stringNodes(n *jnode, path string) ([]*jnode, []string) {
	switch n.kind {
	case jString:
		return []*jnode{n}, []string{path}
	case jArray:
		var ns []*jnode
		var ps []string
		for i, it := range n.items {
			if it.kind == jString {
				ns = append(ns, it)
				ps = append(ps, pathIndex(path, i))
			}
		}
		return ns, ps
	}
	return nil, nil
}

// scalarNodes is stringNodes for condition values, which may also be numbers and booleans.
func scalarNodes(n *jnode, path string) ([]*jnode, []string) {
	scalar := func(k jsonKind) bool { return k == jString || k == jNumber || k == jBool }
	if scalar(n.kind) {
		return []*jnode{n}, []string{path}
	}
	var ns []*jnode
	var ps []string
	if n.kind == jArray {
		for i, it := range n.items {
			if scalar(it.kind) {
				ns = append(ns, it)
				ps = append(ps, pathIndex(path, i))
			}
		}
	}
	return ns, ps
}

func (v *validator) document(root *jnode) {
	ver, hasVer := member(root, "Version")
	switch {
	case !hasVer:
		// "IAM JSON policy elements: Version": without it the 2008-10-17 language
		// applies, and policy variables are plain text.
		v.add(SeverityWarning, "MISSING_VERSION", root.off, "Version",
			"policy has no Version: the 2008-10-17 language applies and policy variables are not replaced; add \"Version\": \"2012-10-17\"")
	case ver.val.kind == jString && ver.val.str == version2008:
		v.add(SeverityWarning, "OBSOLETE_VERSION", ver.val.off, "Version",
			"Version 2008-10-17 has no policy variables; use \"2012-10-17\"")
	}
	v.vars = hasVer && ver.val.kind == jString && ver.val.str == version2012
	st, ok := member(root, "Statement")
	if !ok {
		return
	}
	switch st.val.kind {
	case jObject:
		v.statement(st.val, "Statement", 0)
	case jArray:
		for i, it := range st.val.items {
			if it.kind == jObject {
				v.statement(it, pathIndex("Statement", i), i)
			}
		}
	}
}

// stmtInfo is what the checks need to know about one statement.
type stmtInfo struct {
	n         *jnode
	path      string
	allow     bool // Effect is "Allow"
	deny      bool // Effect is "Deny"
	action    *jmember
	resource  *jmember
	principal *jmember
	condition *jmember
}

func (v *validator) statement(n *jnode, path string, index int) {
	s := stmtInfo{n: n, path: path}
	for i := range n.members {
		m := &n.members[i]
		switch m.key {
		case "Effect":
			s.allow = m.val.kind == jString && m.val.str == "Allow"
			s.deny = m.val.kind == jString && m.val.str == "Deny"
		case "Action", "NotAction":
			if s.action == nil {
				s.action = m
			}
		case "Resource", "NotResource":
			if s.resource == nil {
				s.resource = m
			}
		case "Principal", "NotPrincipal":
			if s.principal == nil {
				s.principal = m
			}
		case "Condition":
			s.condition = m
		}
	}
	v.actionRules(&s)
	v.resourceRules(&s)
	v.principalRules(&s)
	v.conditionRules(&s)
	v.webIdentityRules(&s)
}

// webIdentityRules: a role trust policy that lets an OIDC provider's users assume the
// role must say which audience (client) and, for shared issuers, which subject may do
// so. "Create a role for OpenID Connect federation" requires the "<provider>:aud" key,
// and "Configuring a role for GitHub OIDC identity provider" the
// "token.actions.githubusercontent.com:sub" key: without it any repository on GitHub
// can assume the role.
func (v *validator) webIdentityRules(s *stmtInfo) {
	if !s.allow || s.principal == nil || s.principal.key != "Principal" || s.principal.val.kind != jObject || s.action == nil || s.action.key != "Action" {
		return
	}
	fed, ok := member(s.principal.val, "Federated")
	if !ok {
		return
	}
	web := false
	anames, _ := stringNodes(s.action.val, "")
	for _, a := range anames {
		web = web || globMatchFold(a.str, "sts:AssumeRoleWithWebIdentity")
	}
	if !web {
		return
	}
	hasKey := func(name string) bool {
		if s.condition == nil || s.condition.val.kind != jObject {
			return false
		}
		for _, om := range s.condition.val.members {
			// Only a positive test restricts: Null and negated operators let others in.
			if spec, ok := parseOperator(om.key); !ok || spec.neg || spec.fam == famNull || om.val.kind != jObject {
				continue
			}
			for _, km := range om.val.members {
				if strings.EqualFold(km.key, name) {
					return true
				}
			}
		}
		return false
	}
	providers, paths := stringNodes(fed.val, pathKey(pathKey(s.path, "Principal"), "Federated"))
	for i, p := range providers {
		// The provider is an OIDC provider ARN ("arn:aws:iam::123456789012:oidc-provider/
		// token.actions.githubusercontent.com") or a well-known name (accounts.google.com).
		host := p.str
		if _, after, ok := strings.Cut(host, ":oidc-provider/"); ok {
			host = after
		} else if strings.HasPrefix(host, "arn:") {
			continue // a SAML provider: SAML trust uses SAML:aud, which AWS sets itself
		}
		if !hasKey(host + ":aud") {
			v.add(SeveritySecurityWarning, "MISSING_AUDIENCE_CONDITION", p.off, paths[i],
				"any application registered with "+host+" can assume this role; add a condition on "+host+":aud")
		}
		if strings.EqualFold(host, "token.actions.githubusercontent.com") && !hasKey(host+":sub") {
			v.add(SeveritySecurityWarning, "MISSING_SUBJECT_CONDITION", p.off, paths[i],
				"any GitHub repository's workflow can assume this role; add a condition on token.actions.githubusercontent.com:sub naming your repository")
		}
	}
}

// grants reports whether an Allow in this kind of policy grants access. Permissions
// boundaries, session policies, SCPs and VPC endpoint policies only cap what other
// policies grant ("Policy evaluation logic"), so their Allow of "*" on "*" (AWS's
// default FullAWSAccess SCP and default endpoint policy) is normal, not a warning.
func (v *validator) grants() bool {
	switch v.kind {
	case Boundary, Session, SCP, Endpoint:
		return false
	}
	return true
}

// globMatchFold reports whether an IAM action pattern (with '*' and '?') matches name,
// ignoring ASCII case as IAM does for actions.
func globMatchFold(pattern, name string) bool {
	p, s := strings.ToLower(pattern), strings.ToLower(name)
	px, sx := 0, 0
	star, mark := -1, 0
	for sx < len(s) {
		switch {
		case px < len(p) && (p[px] == '?' || p[px] == s[sx]):
			px++
			sx++
		case px < len(p) && p[px] == '*':
			star, mark = px, sx
			px++
		case star >= 0:
			px = star + 1
			mark++
			sx = mark
		default:
			return false
		}
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// covers reports whether every action a matches is matched by b. A pattern a with
// wildcards of its own is covered only by a trailing-"*" prefix of it, so "s3:?et*" is
// not taken as covered by "s3:*et*" merely because '?' matches the '*' character.
func covers(b, a string) bool {
	if !strings.ContainsAny(a, "*?") {
		return globMatchFold(b, a)
	}
	prefix, ok := strings.CutSuffix(b, "*")
	return ok && !strings.ContainsAny(prefix, "*?") && len(a) >= len(prefix) && strings.EqualFold(a[:len(prefix)], prefix)
}

func hasResourceStar(s *stmtInfo) (*jnode, string, bool) {
	if s.resource == nil || s.resource.key != "Resource" {
		return nil, "", false
	}
	ns, ps := stringNodes(s.resource.val, pathKey(s.path, s.resource.key))
	for i, n := range ns {
		if n.str == "*" {
			return n, ps[i], true
		}
	}
	return nil, "", false
}

func (v *validator) actionRules(s *stmtInfo) {
	if s.action == nil {
		return
	}
	apath := pathKey(s.path, s.action.key)
	if s.allow && s.action.key == "NotAction" {
		// "IAM JSON policy elements: NotAction": an Allow with NotAction allows every
		// action not listed, including actions of services added later.
		v.add(SeveritySecurityWarning, "ALLOW_WITH_NOT_ACTION", s.action.keyOff, apath,
			"Allow with NotAction allows every action not listed, including those of services added later; list the allowed actions instead")
	}
	ns, ps := stringNodes(s.action.val, apath)
	// Redundant actions: listed twice, or covered by a wildcard of the same statement.
	for i, a := range ns {
		for j, b := range ns {
			if i == j || !strings.Contains(a.str, ":") && a.str != "*" {
				continue
			}
			if strings.EqualFold(a.str, b.str) && j < i || !strings.EqualFold(a.str, b.str) && covers(b.str, a.str) {
				v.add(SeveritySuggestion, "REDUNDANT_ACTION", a.off, ps[i],
					"action "+quote(a.str)+" is already covered by "+quote(b.str)+" in the same statement")
				break
			}
		}
	}
	if !s.allow || s.action.key != "Action" {
		return
	}
	allStar := false
	for _, a := range ns {
		if a.str == "*" {
			allStar = true
		}
	}
	if !v.grants() {
		return
	}
	if rn, rp, ok := hasResourceStar(s); ok {
		if allStar && s.condition == nil {
			// "Security best practices in IAM": grant least privilege; "*" on "*" is
			// AdministratorAccess.
			v.add(SeveritySecurityWarning, "ALLOW_ALL_ACTIONS_ON_ALL_RESOURCES", s.action.val.off, apath,
				"Allow of every action on every resource without a condition grants full administrator access")
		}
		// "Granting a user permissions to pass a role to an AWS service": iam:PassRole
		// on "*" lets the holder hand any role, however privileged, to a service.
		for i, a := range ns {
			switch {
			case allStar && s.condition == nil:
				// Reported above as full access, which includes passing any role.
			case strings.EqualFold(a.str, "iam:PassRole"):
				v.add(SeveritySecurityWarning, "PASS_ROLE_WITH_STAR_IN_RESOURCE", rn.off, rp,
					"iam:PassRole with Resource \"*\" lets the caller pass any role to a service; name the roles that may be passed")
			case strings.ContainsAny(a.str, "*?") && globMatchFold(a.str, "iam:PassRole"):
				v.add(SeveritySecurityWarning, "PASS_ROLE_WITH_STAR_IN_ACTION_AND_RESOURCE", a.off, ps[i],
					"action "+quote(a.str)+" includes iam:PassRole and Resource is \"*\": the caller may pass any role to a service; name the roles that may be passed")
			default:
				continue
			}
			break
		}
	}
}

func (v *validator) resourceRules(s *stmtInfo) {
	if s.resource == nil {
		return
	}
	rpath := pathKey(s.path, s.resource.key)
	if s.allow && s.resource.key == "NotResource" {
		// "IAM JSON policy elements: NotResource": an Allow with NotResource allows the
		// actions on every resource not listed, including ones created later.
		v.add(SeveritySecurityWarning, "ALLOW_WITH_NOT_RESOURCE", s.resource.keyOff, rpath,
			"Allow with NotResource allows the actions on every resource not listed, including resources created later; list the allowed resources instead")
	}
	ns, ps := stringNodes(s.resource.val, rpath)
	for i, n := range ns {
		v.variableVersion(n, ps[i])
	}
}

// variableVersion warns about ${...} under a Version without policy variables, where
// it is matched as literal text ("IAM policy elements: Variables and tags": "you must
// include the Version element and set it to 2012-10-17").
func (v *validator) variableVersion(n *jnode, path string) {
	if !v.vars && n.kind == jString && strings.Contains(n.str, "${") {
		v.add(SeverityWarning, "VARIABLE_UNSUPPORTED_IN_VERSION", n.off, path,
			quote(n.str)+" holds a policy variable, but without \"Version\": \"2012-10-17\" it is matched as literal text")
	}
}

// variableElement warns about ${...} where IAM replaces no variables (in a Principal;
// an action with one is already a grammar error, its name holding a ':'): "You can use
// policy variables in the Resource element and in string comparisons in the Condition
// element" ("IAM policy elements: Variables and tags"); elsewhere it is literal text.
func (v *validator) variableElement(n *jnode, path, element string) {
	if strings.Contains(n.str, "${") {
		v.add(SeverityWarning, "VARIABLE_UNSUPPORTED_IN_ELEMENT", n.off, path,
			quote(n.str)+" holds a policy variable, but "+element+" does not support variables: it is matched as literal text")
	}
}

func isStarPrincipal(n *jnode) bool {
	switch n.kind {
	case jString:
		return n.str == "*"
	case jObject:
		if m, ok := member(n, "AWS"); ok {
			vals, _ := stringNodes(m.val, "")
			for _, x := range vals {
				if x.str == "*" {
					return true
				}
			}
		}
	}
	return false
}

func (v *validator) principalRules(s *stmtInfo) {
	if s.principal == nil {
		return
	}
	ppath := pathKey(s.path, s.principal.key)
	if s.principal.val.kind == jObject {
		for _, m := range s.principal.val.members {
			ns, ps := stringNodes(m.val, pathKey(ppath, m.key))
			for i, n := range ns {
				v.variableElement(n, ps[i], s.principal.key)
			}
		}
	}
	switch {
	case s.principal.key == "NotPrincipal" && s.allow:
		// "AWS JSON policy elements: NotPrincipal": "we strongly recommend that you do
		// not use NotPrincipal with Allow": it allows everyone not listed, anonymous
		// callers included.
		v.add(SeveritySecurityWarning, "ALLOW_WITH_NOT_PRINCIPAL", s.principal.keyOff, ppath,
			"Allow with NotPrincipal allows every principal not listed, anonymous callers included")
	case s.principal.key == "NotPrincipal" && s.deny:
		// Same page: a Deny with NotPrincipal also denies principals with a permissions
		// boundary, and AWS recommends aws:PrincipalArn conditions instead.
		v.add(SeverityWarning, "DENY_WITH_NOT_PRINCIPAL", s.principal.keyOff, ppath,
			"Deny with NotPrincipal is hard to get right (it also denies roles with a permissions boundary); use Principal \"*\" with an ArnNotEquals condition on aws:PrincipalArn")
	case s.allow && s.condition == nil && v.grants() && isStarPrincipal(s.principal.val):
		// "AWS JSON policy elements: Principal": "*" is everyone, anonymous callers
		// included; AWS advises narrowing it with conditions.
		v.add(SeveritySecurityWarning, "PUBLIC_ACCESS_WITHOUT_CONDITION", s.principal.val.off, ppath,
			"Allow to Principal \"*\" without a condition allows everyone, anonymous callers included; add conditions (aws:PrincipalOrgID, aws:SourceVpce, aws:SourceIp ...)")
	}
}

func (v *validator) conditionRules(s *stmtInfo) {
	if s.condition == nil {
		return
	}
	cpath := pathKey(s.path, "Condition")
	c := s.condition.val
	if c.kind != jObject {
		return
	}
	if len(c.members) == 0 {
		v.add(SeveritySuggestion, "EMPTY_OBJECT_CONDITION", c.off, cpath, "Condition is empty; remove it")
	}
	for _, om := range c.members {
		opath := pathKey(cpath, om.key)
		spec, ok := parseOperator(om.key)
		if !ok || om.val.kind != jObject {
			continue // grammar errors, reported by the parser
		}
		if len(om.val.members) == 0 {
			v.add(SeveritySuggestion, "EMPTY_OBJECT_CONDITION", om.val.off, opath, "condition operator "+quote(om.key)+" has no keys; remove it")
		}
		if spec.fam == famNull && spec.qual != qualNone {
			// "Null with qualifier" (IAM Access Analyzer): ForAllValues:Null always
			// returns true and ForAnyValue:Null always false, whatever the request holds.
			sev, always := SeverityWarning, "false"
			if spec.qual == qualForAll {
				always = "true"
				if s.allow {
					sev = SeveritySecurityWarning
				}
			}
			v.add(sev, "NULL_WITH_QUALIFIER", om.keyOff, opath,
				quote(om.key)+" is always "+always+" and does not test its keys; use \"Null\" without a qualifier")
		}
		if spec.neg && spec.ifExists {
			// "IAM JSON policy elements: Condition operators": a negated operator is
			// already true when the key is absent, so IfExists changes nothing and
			// suggests a protection that is not there.
			sev := SeverityWarning
			if s.allow {
				sev = SeveritySecurityWarning
			}
			v.add(sev, "IF_EXISTS_WITH_NEGATED_OPERATOR", om.keyOff, opath,
				quote(om.key)+" matches whenever the key is absent, with or without IfExists; the condition does not require the key")
		}
		for _, km := range om.val.members {
			kpath := pathKey(opath, km.key)
			vals, vpaths := scalarNodes(km.val, kpath)
			if spec.qual == qualForAll && spec.fam != famNull && s.allow && !v.nullFalse(c, km.key) {
				// "Single-valued vs. multivalued context keys": ForAllValues is true when
				// the key is absent or empty, so an Allow with it alone allows requests
				// without the key; pair it with "Null": {key: "false"}.
				v.add(SeveritySecurityWarning, "FOR_ALL_VALUES_WITH_ALLOW", km.keyOff, kpath,
					"ForAllValues with Allow also matches requests without "+km.key+" (or with none of its values); add \"Null\": {\""+km.key+"\": \"false\"}")
			}
			if s.allow && spec.fam == famBool && !spec.neg && strings.EqualFold(km.key, "aws:SecureTransport") {
				for i, x := range vals {
					if strings.EqualFold(x.str, "false") {
						// "aws:SecureTransport": the documented use is a Deny when false;
						// an Allow when false grants access to plain-text requests only.
						v.add(SeveritySecurityWarning, "ALLOW_WITH_INSECURE_TRANSPORT", x.off, vpaths[i],
							"Allow when aws:SecureTransport is false allows requests sent without TLS; deny them instead")
					}
				}
			}
			v.keyType(spec, om.key, km, kpath)
			for i, x := range vals {
				if x.kind != jString {
					continue
				}
				if spec.fam == famString || spec.fam == famStringIgnoreCase || spec.fam == famStringLike || spec.fam == famArn {
					v.variableVersion(x, vpaths[i])
				}
				if (spec.fam == famString || spec.fam == famStringIgnoreCase) && strings.ContainsAny(x.str, "*?") {
					// "Condition operators": only the Like operators expand wildcards.
					v.add(SeverityWarning, "WILDCARD_WITHOUT_LIKE_OPERATOR", x.off, vpaths[i],
						quote(x.str)+" holds a wildcard, but "+om.key+" compares literally; use StringLike or StringNotLike")
				}
			}
		}
	}
}

// nullFalse reports whether the statement's Condition also requires key to be present
// ("Null": {key: "false"}), the documented companion of ForAllValues in an Allow.
func (v *validator) nullFalse(c *jnode, key string) bool {
	m, ok := member(c, "Null")
	if !ok || m.val.kind != jObject {
		return false
	}
	for _, km := range m.val.members {
		if !strings.EqualFold(km.key, key) {
			continue
		}
		vals, _ := scalarNodes(km.val, "")
		return len(vals) == 1 && strings.EqualFold(vals[0].str, "false")
	}
	return false
}

// keyKind is the value type of a global condition key.
type keyKind uint8

const (
	keyString keyKind = iota
	keyARN
	keyBool
	keyDate
	keyEpoch // a date that numeric operators may also compare (seconds)
	keyNumber
	keyIP
)

type keyInfo struct {
	kind  keyKind
	multi bool // multivalued: compared with ForAllValues/ForAnyValue
}

// globalKey types the global condition keys of "AWS global condition context keys"
// that Phantom's gateway sets; other keys (service keys, tags) are not checked.
func globalKey(lkey string) (keyInfo, bool) {
	switch lkey {
	case "aws:currenttime", "aws:tokenissuetime":
		return keyInfo{kind: keyDate}, true
	case "aws:epochtime":
		return keyInfo{kind: keyEpoch}, true
	case "aws:multifactorauthage":
		return keyInfo{kind: keyNumber}, true
	case "aws:multifactorauthpresent", "aws:securetransport", "aws:viaawsservice", "aws:principalisawsservice":
		return keyInfo{kind: keyBool}, true
	case "aws:sourceip", "aws:vpcsourceip":
		return keyInfo{kind: keyIP}, true
	case "aws:principalarn", "aws:sourcearn":
		return keyInfo{kind: keyARN}, true
	case "aws:tagkeys", "aws:principalservicenameslist", "aws:calledvia", "aws:principalorgpaths":
		return keyInfo{kind: keyString, multi: true}, true
	case "aws:sourcevpce", "aws:sourcevpc", "aws:principalaccount", "aws:principalorgid", "aws:requestedregion",
		"aws:username", "aws:userid", "aws:useragent", "aws:referer", "aws:sourceaccount", "aws:resourceaccount",
		"aws:principaltype", "aws:principalservicename", "aws:federatedprovider":
		return keyInfo{kind: keyString}, true
	}
	return keyInfo{}, false
}

func (k keyKind) String() string {
	switch k {
	case keyARN:
		return "an ARN"
	case keyBool:
		return "a boolean"
	case keyDate, keyEpoch:
		return "a date"
	case keyNumber:
		return "a number"
	case keyIP:
		return "an IP address"
	}
	return "a string"
}

// fits reports whether an operator family compares values of this key's type
// ("IAM JSON policy elements: Condition operators"; each global key's "Value type").
// Null tests presence and fits every key; string operators also fit ARN keys, which AWS
// documents as "ARN, String".
func (k keyKind) fits(fam opFamily) bool {
	if fam == famNull {
		return true
	}
	switch k {
	case keyARN:
		return fam == famArn || fam == famString || fam == famStringIgnoreCase || fam == famStringLike
	case keyBool:
		return fam == famBool
	case keyDate:
		return fam == famDate
	case keyEpoch:
		return fam == famDate || fam == famNumeric
	case keyNumber:
		return fam == famNumeric
	case keyIP:
		return fam == famIP
	}
	return fam == famString || fam == famStringIgnoreCase || fam == famStringLike
}

// keyType warns when an operator does not compare the type of a known global key (a
// StringEquals on aws:SourceIp never matches a CIDR block), and when a set operator is
// used with a single-valued key or a plain operator with a multivalued one ("Single-
// valued vs. multivalued context keys").
func (v *validator) keyType(spec opSpec, op string, km jmember, kpath string) {
	info, ok := globalKey(strings.ToLower(km.key))
	if !ok {
		return
	}
	if !info.kind.fits(spec.fam) {
		v.add(SeverityWarning, "TYPE_MISMATCH", km.keyOff, kpath,
			km.key+" is "+info.kind.String()+", which "+op+" does not compare; the condition will not work as written")
	}
	if spec.fam == famNull {
		return
	}
	switch {
	case spec.qual != qualNone && !info.multi:
		v.add(SeverityWarning, "SET_OPERATOR_WITH_SINGLE_VALUED_KEY", km.keyOff, kpath,
			km.key+" is single-valued: "+op+" treats it as a set of values; drop the qualifier")
	case spec.qual == qualNone && info.multi:
		// An operator without a set qualifier does not match a multivalued key (see
		// condition.eval), so a negated one always does.
		never := "never matches it"
		if spec.neg {
			never = "always holds for it"
		}
		v.add(SeverityWarning, "SINGLE_VALUE_OPERATOR_WITH_MULTIVALUED_KEY", km.keyOff, kpath,
			km.key+" is multivalued: without ForAnyValue: or ForAllValues:, "+op+" "+never)
	}
}
