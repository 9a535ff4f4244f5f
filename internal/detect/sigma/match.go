package sigma

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"

	sigmago "github.com/bradleyjkemp/sigma-go"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// event is one event being matched, with the JSON texts of its whole objects made at
// most once (a rule matching "requestParameters|contains" searches the object's JSON,
// as a SIEM searching the raw record would).
type event struct {
	ev    *audit.Event
	whole [3]*string
}

// expr is a compiled condition.
type expr interface {
	eval(e *event) bool
	// names returns the lower-case eventNames an event must have to satisfy the
	// expression, ok false when it constrains none (the rule is tried on every event).
	names() (names []string, ok bool)
}

type andExpr []expr

func (x andExpr) eval(e *event) bool {
	for _, s := range x {
		if !s.eval(e) {
			return false
		}
	}
	return true
}

// names of a conjunction: any one constrained member's (the fewest).
func (x andExpr) names() ([]string, bool) {
	var best []string
	found := false
	for _, s := range x {
		if n, ok := s.names(); ok && (!found || len(n) < len(best)) {
			best, found = n, true
		}
	}
	return best, found
}

type orExpr []expr

func (x orExpr) eval(e *event) bool {
	for _, s := range x {
		if s.eval(e) {
			return true
		}
	}
	return false
}

// names of a disjunction: the union, when every member is constrained.
func (x orExpr) names() ([]string, bool) {
	var all []string
	for _, s := range x {
		n, ok := s.names()
		if !ok {
			return nil, false
		}
		all = append(all, n...)
	}
	return all, len(x) > 0
}

type notExpr struct{ x expr }

func (x notExpr) eval(e *event) bool      { return !x.x.eval(e) }
func (x notExpr) names() ([]string, bool) { return nil, false }

// search is one named search of the detection: any of its maps matching (a list of
// maps is an OR), a map matching when every field in it does.
type search struct {
	name   string
	groups [][]*fieldMatcher
}

func (s *search) eval(e *event) bool {
	for _, g := range s.groups {
		ok := true
		for _, f := range g {
			if !f.match(e) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (s *search) names() ([]string, bool) {
	var all []string
	for _, g := range s.groups {
		var found []string
		for _, f := range g {
			if n, ok := f.eventNames(); ok {
				found = n
				break
			}
		}
		if found == nil {
			return nil, false
		}
		all = append(all, found...)
	}
	return all, len(s.groups) > 0
}

func compileSearch(name string, s sigmago.Search) (*search, error) {
	if len(s.Keywords) > 0 {
		return nil, fmt.Errorf("search %s: keyword searches (values not tied to a field) are not supported", name)
	}
	if len(s.EventMatchers) == 0 {
		return nil, fmt.Errorf("search %s is empty", name)
	}
	cs := &search{name: name}
	for _, em := range s.EventMatchers {
		var g []*fieldMatcher
		for _, fm := range em {
			f, err := compileField(fm)
			if err != nil {
				return nil, fmt.Errorf("search %s: %w", name, err)
			}
			g = append(g, f)
		}
		if len(g) == 0 {
			return nil, fmt.Errorf("search %s has an empty map", name)
		}
		cs.groups = append(cs.groups, g)
	}
	return cs, nil
}

// Comparison kinds of a value.
const (
	opEq = iota
	opContains
	opPrefix
	opSuffix
	opRe
	opCIDR
	opGT
	opGTE
	opLT
	opLTE
	opNull
	opExists
)

// fieldMatcher is one "field|modifiers: values" line.
type fieldMatcher struct {
	field  string
	get    getter
	all    bool // |all: every value must match
	values []*valueMatcher
}

// valueMatcher is one value of a field, compiled.
type valueMatcher struct {
	op    int
	s     string // the literal for eq/contains/prefix/suffix
	cased bool
	re    *regexp.Regexp // |re, or a value with wildcards
	// need are literals every match of re contains (fold: in any case): a text
	// without one is rejected before the regular expression runs.
	need    []string
	fold    bool
	prefix  netip.Prefix
	num     float64
	exists  bool
	ref     *getter // |fieldref: compare with the values of field refName
	refName string
}

func (f *fieldMatcher) eventNames() ([]string, bool) {
	if f.field != "eventName" || f.all && len(f.values) > 1 {
		return nil, false
	}
	var out []string
	for _, v := range f.values {
		if v.op != opEq || v.re != nil || v.ref != nil {
			return nil, false
		}
		out = append(out, strings.ToLower(v.s))
	}
	return out, len(out) > 0
}

func (f *fieldMatcher) match(e *event) bool {
	if f.all {
		for _, v := range f.values {
			if !v.matchField(e, &f.get) {
				return false
			}
		}
		return true
	}
	for _, v := range f.values {
		if v.matchField(e, &f.get) {
			return true
		}
	}
	return false
}

func (v *valueMatcher) matchField(e *event, g *getter) bool {
	switch v.op {
	case opNull:
		return !g.each(e, func(any) bool { return true })
	case opExists:
		return g.each(e, func(any) bool { return true }) == v.exists
	}
	if v.ref != nil {
		return g.each(e, func(a any) bool {
			as := text(a)
			return v.ref.each(e, func(b any) bool { return v.compare(as, text(b)) })
		})
	}
	if g.str != nil { // the common case, without boxing the string
		s := g.str(e.ev)
		return s != "" && v.matchString(s)
	}
	return g.each(e, func(a any) bool { return v.matchValue(a) })
}

// matchString matches one string value.
func (v *valueMatcher) matchString(s string) bool {
	switch v.op {
	case opCIDR:
		addr, err := netip.ParseAddr(s)
		return err == nil && v.prefix.Contains(addr.Unmap())
	case opGT, opGTE, opLT, opLTE:
		n, err := strconv.ParseFloat(s, 64)
		return err == nil && v.compareNumber(n)
	}
	if v.re != nil {
		for _, n := range v.need {
			if v.fold && !indexFold(s, n) || !v.fold && !strings.Contains(s, n) {
				return false
			}
		}
		return v.re.MatchString(s)
	}
	return v.compare(s, v.s)
}

// matchValue matches one value of any JSON type.
func (v *valueMatcher) matchValue(a any) bool {
	if n, ok := a.(float64); ok {
		switch v.op {
		case opGT, opGTE, opLT, opLTE:
			return v.compareNumber(n)
		}
	}
	return v.matchString(text(a))
}

func (v *valueMatcher) compareNumber(n float64) bool {
	switch v.op {
	case opGT:
		return n > v.num
	case opGTE:
		return n >= v.num
	case opLT:
		return n < v.num
	}
	return n <= v.num
}

// withNeeds sets the literals every match of v.re must contain: the literal pieces of
// a top-level concatenation (".+:assumed-role/aws:.+" needs ":assumed-role/aws:").
func (v *valueMatcher) withNeeds() *valueMatcher {
	re, err := syntax.Parse(v.re.String(), syntax.Perl)
	if err != nil {
		return v
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat {
		return v
	}
	for _, sub := range re.Sub {
		if sub.Op == syntax.OpLiteral && len(sub.Rune) > 0 {
			v.need = append(v.need, string(sub.Rune))
			v.fold = v.fold || sub.Flags&syntax.FoldCase != 0
		}
	}
	return v
}

// compare applies an eq/contains/prefix/suffix to two strings, case-insensitively
// unless cased (Sigma: string matching is case-insensitive by default).
func (v *valueMatcher) compare(a, b string) bool {
	if v.cased {
		switch v.op {
		case opContains:
			return strings.Contains(a, b)
		case opPrefix:
			return strings.HasPrefix(a, b)
		case opSuffix:
			return strings.HasSuffix(a, b)
		}
		return a == b
	}
	switch v.op {
	case opContains:
		return indexFold(a, b)
	case opPrefix:
		return len(a) >= len(b) && strings.EqualFold(a[:len(b)], b)
	case opSuffix:
		return len(a) >= len(b) && strings.EqualFold(a[len(a)-len(b):], b)
	}
	return strings.EqualFold(a, b)
}

// indexFold reports whether needle occurs in hay, ignoring case: a scan for the first
// byte in either case, then a comparison. Non-ASCII text, whose case folding can change
// its length, is lower-cased whole instead.
func indexFold(hay, needle string) bool {
	n := len(needle)
	if n == 0 {
		return true
	}
	if !isASCII(hay) || !isASCII(needle) {
		return strings.Contains(strings.ToLower(hay), strings.ToLower(needle))
	}
	lo, up := needle[0], needle[0]
	if 'A' <= lo && lo <= 'Z' {
		lo += 'a' - 'A'
	} else if 'a' <= up && up <= 'z' {
		up -= 'a' - 'A'
	}
	for i := 0; i+n <= len(hay); i++ {
		if c := hay[i]; (c == lo || c == up) && strings.EqualFold(hay[i:i+n], needle) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// text is an event value as the rule's strings are compared with it: JSON's spelling.
func text(a any) string {
	switch a := a.(type) {
	case string:
		return a
	case bool:
		return strconv.FormatBool(a)
	case float64:
		return strconv.FormatFloat(a, 'f', -1, 64)
	case json.Number:
		return a.String()
	case nil:
		return ""
	}
	return jsonText(a)
}

func jsonText(a any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // a rule's "<" must find the record's "<"
	if err := enc.Encode(a); err != nil {
		return ""
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// compileField compiles one "field|modifiers: values" line of sigma-go's parse.
func compileField(fm sigmago.FieldMatcher) (*fieldMatcher, error) {
	g, err := fieldGetter(fm.Field)
	if err != nil {
		return nil, err
	}
	f := &fieldMatcher{field: fm.Field, get: g}
	op, cased, ref := opEq, false, false
	var reFlags string
	var encode func(string) []string
	sawComparator := false
	for _, m := range fm.Modifiers {
		set := func(o int) error {
			if sawComparator {
				return fmt.Errorf("field %s: two comparison modifiers", fm.Field)
			}
			sawComparator, op = true, o
			return nil
		}
		var err error
		switch m {
		case "contains":
			err = set(opContains)
		case "startswith":
			err = set(opPrefix)
		case "endswith":
			err = set(opSuffix)
		case "re":
			err = set(opRe)
		case "cidr":
			err = set(opCIDR)
		case "gt":
			err = set(opGT)
		case "gte":
			err = set(opGTE)
		case "lt":
			err = set(opLT)
		case "lte":
			err = set(opLTE)
		case "exists":
			err = set(opExists)
		case "all":
			f.all = true
		case "cased":
			cased = true
		case "fieldref":
			ref = true
		case "i", "m", "s":
			reFlags += m
		case "base64":
			encode = func(s string) []string { return []string{base64.StdEncoding.EncodeToString([]byte(s))} }
		case "base64offset":
			encode = base64Offsets
		default:
			return nil, fmt.Errorf("field %s: modifier %q is not supported", fm.Field, m)
		}
		if err != nil {
			return nil, err
		}
	}
	if reFlags != "" && op != opRe {
		return nil, fmt.Errorf("field %s: regular expression flags without |re", fm.Field)
	}
	if len(fm.Values) == 0 {
		return nil, fmt.Errorf("field %s has no value", fm.Field)
	}
	for _, raw := range fm.Values {
		vs, err := compileValue(fm.Field, raw, op, cased, ref, reFlags, encode)
		if err != nil {
			return nil, err
		}
		f.values = append(f.values, vs...)
	}
	return f, nil
}

func compileValue(field string, raw any, op int, cased, ref bool, reFlags string, encode func(string) []string) ([]*valueMatcher, error) {
	if raw == nil {
		if op != opEq || ref || encode != nil {
			return nil, fmt.Errorf("field %s: null with a modifier", field)
		}
		return []*valueMatcher{{op: opNull}}, nil
	}
	var s string
	switch r := raw.(type) {
	case string:
		s = r
	case int, int64, uint64, float64, bool:
		s = fmt.Sprint(r)
	default:
		return nil, fmt.Errorf("field %s: value %v is not a string, number or boolean", field, raw)
	}
	switch op {
	case opExists:
		b, ok := raw.(bool)
		if !ok {
			return nil, fmt.Errorf("field %s: |exists takes true or false", field)
		}
		return []*valueMatcher{{op: opExists, exists: b}}, nil
	case opRe:
		re, err := regexp.Compile(flagPrefix(reFlags) + s)
		if err != nil {
			return nil, fmt.Errorf("field %s: regular expression %q: %v", field, s, err)
		}
		return []*valueMatcher{(&valueMatcher{op: opRe, re: re}).withNeeds()}, nil
	case opCIDR:
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("field %s: %v", field, err)
		}
		return []*valueMatcher{{op: opCIDR, prefix: p.Masked()}}, nil
	case opGT, opGTE, opLT, opLTE:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("field %s: %q is not a number", field, s)
		}
		return []*valueMatcher{{op: op, num: n}}, nil
	}
	if ref {
		g, err := fieldGetter(s)
		if err != nil {
			return nil, fmt.Errorf("field %s|fieldref: %w", field, err)
		}
		return []*valueMatcher{{op: op, cased: cased, ref: &g, refName: s}}, nil
	}
	texts := []string{s}
	if encode != nil {
		texts = encode(s)
	}
	var out []*valueMatcher
	for _, t := range texts {
		out = append(out, literal(t, op, cased))
	}
	return out, nil
}

func flagPrefix(flags string) string {
	if flags == "" {
		return ""
	}
	return "(?" + flags + ")"
}

// literal compiles a Sigma string: "*" and "?" are wildcards, "\*", "\?" and "\\" their
// literal characters, any other backslash itself (Sigma specification, "Wildcards").
func literal(s string, op int, cased bool) *valueMatcher {
	var re strings.Builder
	var plain strings.Builder
	wild := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\'):
			i++
			plain.WriteByte(s[i])
			re.WriteString(regexp.QuoteMeta(s[i : i+1]))
		case c == '*':
			wild = true
			re.WriteString(".*")
		case c == '?':
			wild = true
			re.WriteString(".")
		default:
			plain.WriteByte(c)
			re.WriteString(regexp.QuoteMeta(s[i : i+1]))
		}
	}
	if !wild {
		return &valueMatcher{op: op, s: plain.String(), cased: cased}
	}
	pat := re.String()
	switch op {
	case opContains:
		pat = ".*" + pat + ".*"
	case opPrefix:
		pat += ".*"
	case opSuffix:
		pat = ".*" + pat
	}
	flags := "(?s)"
	if !cased {
		flags = "(?is)"
	}
	return (&valueMatcher{op: op, re: regexp.MustCompile(flags + "^" + pat + "$"), cased: cased}).withNeeds()
}

// base64Offsets is Sigma's base64offset: the three encodings of s at each offset in a
// longer base64 text, without the characters that depend on the neighbours.
func base64Offsets(s string) []string {
	start := [3]int{0, 2, 3}
	end := [3]int{0, -3, -2}
	var out []string
	for i := 0; i < 3; i++ {
		enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(" ", i) + s))
		e := len(enc)
		if k := end[(len(s)+i)%3]; k != 0 {
			e += k
		}
		if start[i] <= e {
			out = append(out, enc[start[i]:e])
		}
	}
	return out
}

// getter resolves a Sigma field name (CloudTrail's JSON path, dotted) on an event.
type getter struct {
	str   func(*audit.Event) string
	flag  func(*audit.Event) bool
	obj   func(*audit.Event) map[string]any
	attrs func(*audit.Event) map[string]string
	whole int      // 1..3: the object's JSON text is cached in event.whole[whole-1]
	rest  []string // the path inside obj
}

// each calls fn with every value at the field (list elements one by one; none when the
// field is absent or null) until fn returns true, and reports whether it did.
func (g *getter) each(e *event, fn func(any) bool) bool {
	switch {
	case g.str != nil:
		if s := g.str(e.ev); s != "" {
			return fn(s)
		}
		return false
	case g.flag != nil:
		return fn(g.flag(e.ev))
	case g.attrs != nil:
		if v, ok := g.attrs(e.ev)[g.rest[0]]; ok {
			return fn(v)
		}
		return false
	}
	m := g.obj(e.ev)
	if m == nil {
		return false
	}
	if len(g.rest) == 0 {
		p := &e.whole[g.whole-1]
		if *p == nil {
			s := jsonText(m)
			*p = &s
		}
		return fn(**p)
	}
	v, ok := m[g.rest[0]]
	if !ok {
		return false
	}
	return walk(v, g.rest[1:], fn)
}

// walk follows path through objects; lists are searched element by element.
func walk(v any, path []string, fn func(any) bool) bool {
	switch x := v.(type) {
	case nil:
		return false
	case []any:
		for _, el := range x {
			if walk(el, path, fn) {
				return true
			}
		}
		return false
	case map[string]any:
		if len(path) == 0 {
			return fn(x)
		}
		c, ok := x[path[0]]
		if !ok {
			return false
		}
		return walk(c, path[1:], fn)
	}
	if len(path) > 0 {
		return false
	}
	return fn(v)
}

var errField = errors.New("is not a CloudTrail record field Phantom reads")

// fieldGetter maps a field name onto audit.Event: CloudTrail's record contents
// ("CloudTrail record contents for management, data, and network activity events").
func fieldGetter(field string) (getter, error) {
	parts := strings.Split(field, ".")
	str := func(f func(*audit.Event) string) (getter, error) {
		if len(parts) != 1 {
			return getter{}, fmt.Errorf("field %s %w", field, errField)
		}
		return getter{str: f}, nil
	}
	flag := func(f func(*audit.Event) bool) (getter, error) {
		if len(parts) != 1 {
			return getter{}, fmt.Errorf("field %s %w", field, errField)
		}
		return getter{flag: f}, nil
	}
	obj := func(n int, f func(*audit.Event) map[string]any) (getter, error) {
		return getter{obj: f, whole: n, rest: parts[1:]}, nil
	}
	switch parts[0] {
	case "eventVersion":
		return str(func(e *audit.Event) string { return e.EventVersion })
	case "eventTime":
		return str(func(e *audit.Event) string {
			if e.EventTime.IsZero() {
				return ""
			}
			return e.EventTime.UTC().Format(time.RFC3339)
		})
	case "eventSource":
		return str(func(e *audit.Event) string { return e.EventSource })
	case "eventName":
		return str(func(e *audit.Event) string { return e.EventName })
	case "awsRegion":
		return str(func(e *audit.Event) string { return e.AWSRegion })
	case "sourceIPAddress":
		return str(func(e *audit.Event) string { return e.SourceIPAddress })
	case "userAgent":
		return str(func(e *audit.Event) string { return e.UserAgent })
	case "errorCode":
		return str(func(e *audit.Event) string { return e.ErrorCode })
	case "errorMessage":
		return str(func(e *audit.Event) string { return e.ErrorMessage })
	case "requestID":
		return str(func(e *audit.Event) string { return e.RequestID })
	case "eventID":
		return str(func(e *audit.Event) string { return e.EventID })
	case "eventType":
		return str(func(e *audit.Event) string { return e.EventType })
	case "recipientAccountId":
		return str(func(e *audit.Event) string { return e.RecipientAccountID })
	case "eventCategory":
		return str(func(e *audit.Event) string { return e.EventCategory })
	case "vpcEndpointId":
		return str(func(e *audit.Event) string { return e.VPCEndpointID })
	case "readOnly":
		return flag(func(e *audit.Event) bool { return e.ReadOnly })
	case "managementEvent":
		return flag(func(e *audit.Event) bool { return e.ManagementEvent })
	case "requestParameters":
		return obj(1, func(e *audit.Event) map[string]any { return e.RequestParameters })
	case "responseElements":
		return obj(2, func(e *audit.Event) map[string]any { return e.ResponseElements })
	case "additionalEventData":
		return obj(3, func(e *audit.Event) map[string]any { return e.AdditionalEventData })
	case "tlsDetails":
		return tlsGetter(field, parts)
	case "userIdentity":
		return identityGetter(field, parts)
	}
	return getter{}, fmt.Errorf("field %s %w", field, errField)
}

func tlsGetter(field string, parts []string) (getter, error) {
	if len(parts) == 2 {
		tls := func(f func(*audit.TLSDetails) string) (getter, error) {
			return getter{str: func(e *audit.Event) string {
				if e.TLSDetails == nil {
					return ""
				}
				return f(e.TLSDetails)
			}}, nil
		}
		switch parts[1] {
		case "tlsVersion":
			return tls(func(t *audit.TLSDetails) string { return t.TLSVersion })
		case "cipherSuite":
			return tls(func(t *audit.TLSDetails) string { return t.CipherSuite })
		case "clientProvidedHostHeader":
			return tls(func(t *audit.TLSDetails) string { return t.ClientProvidedHostHeader })
		}
	}
	return getter{}, fmt.Errorf("field %s %w", field, errField)
}

func identityGetter(field string, parts []string) (getter, error) {
	id := func(f func(*audit.UserIdentity) string) (getter, error) {
		return getter{str: func(e *audit.Event) string { return f(&e.UserIdentity) }}, nil
	}
	issuer := func(f func(*audit.SessionIssuer) string) (getter, error) {
		return getter{str: func(e *audit.Event) string {
			c := e.UserIdentity.SessionContext
			if c == nil || c.SessionIssuer == nil {
				return ""
			}
			return f(c.SessionIssuer)
		}}, nil
	}
	session := func(f func(*audit.SessionContext) string) (getter, error) {
		return getter{str: func(e *audit.Event) string {
			if c := e.UserIdentity.SessionContext; c != nil {
				return f(c)
			}
			return ""
		}}, nil
	}
	switch strings.Join(parts[1:], ".") {
	case "type":
		return id(func(u *audit.UserIdentity) string { return u.Type })
	case "principalId":
		return id(func(u *audit.UserIdentity) string { return u.PrincipalID })
	case "arn":
		return id(func(u *audit.UserIdentity) string { return u.ARN })
	case "accountId":
		return id(func(u *audit.UserIdentity) string { return u.AccountID })
	case "accessKeyId":
		return id(func(u *audit.UserIdentity) string { return u.AccessKeyID })
	case "userName":
		return id(func(u *audit.UserIdentity) string { return u.UserName })
	case "identityProvider":
		return id(func(u *audit.UserIdentity) string { return u.IdentityProvider })
	case "sessionContext.sourceIdentity":
		return session(func(c *audit.SessionContext) string { return c.SourceIdentity })
	case "sessionContext.ec2RoleDelivery":
		return session(func(c *audit.SessionContext) string { return c.EC2RoleDelivery })
	case "sessionContext.sessionIssuer.type":
		return issuer(func(s *audit.SessionIssuer) string { return s.Type })
	case "sessionContext.sessionIssuer.principalId":
		return issuer(func(s *audit.SessionIssuer) string { return s.PrincipalID })
	case "sessionContext.sessionIssuer.arn":
		return issuer(func(s *audit.SessionIssuer) string { return s.ARN })
	case "sessionContext.sessionIssuer.accountId":
		return issuer(func(s *audit.SessionIssuer) string { return s.AccountID })
	case "sessionContext.sessionIssuer.userName":
		return issuer(func(s *audit.SessionIssuer) string { return s.UserName })
	}
	if len(parts) == 4 && parts[1] == "sessionContext" && parts[2] == "attributes" {
		return getter{attrs: func(e *audit.Event) map[string]string {
			if c := e.UserIdentity.SessionContext; c != nil {
				return c.Attributes
			}
			return nil
		}, rest: parts[3:]}, nil
	}
	return getter{}, fmt.Errorf("field %s %w", field, errField)
}
