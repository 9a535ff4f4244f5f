package policy

import (
	"encoding/base64"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Condition operators, from "IAM JSON policy elements: Condition operators".

type opFamily uint8

const (
	famString opFamily = iota
	famStringIgnoreCase
	famStringLike
	famNumeric
	famDate
	famBool
	famBinary
	famIP
	famArn
	famNull
)

type cmpKind uint8

const (
	cmpEq cmpKind = iota
	cmpLt
	cmpLe
	cmpGt
	cmpGe
)

type qualifier uint8

const (
	qualNone qualifier = iota
	qualForAll
	qualForAny
)

// baseOperator maps an operator name without qualifier or IfExists to its family,
// comparison and negation. ArnEquals and ArnLike are the same test: AWS documents both
// as part-wise matching with wildcards.
func baseOperator(name string) (fam opFamily, cmp cmpKind, neg, ok bool) {
	switch name {
	case "StringEquals":
		return famString, cmpEq, false, true
	case "StringNotEquals":
		return famString, cmpEq, true, true
	case "StringEqualsIgnoreCase":
		return famStringIgnoreCase, cmpEq, false, true
	case "StringNotEqualsIgnoreCase":
		return famStringIgnoreCase, cmpEq, true, true
	case "StringLike":
		return famStringLike, cmpEq, false, true
	case "StringNotLike":
		return famStringLike, cmpEq, true, true
	case "NumericEquals":
		return famNumeric, cmpEq, false, true
	case "NumericNotEquals":
		return famNumeric, cmpEq, true, true
	case "NumericLessThan":
		return famNumeric, cmpLt, false, true
	case "NumericLessThanEquals":
		return famNumeric, cmpLe, false, true
	case "NumericGreaterThan":
		return famNumeric, cmpGt, false, true
	case "NumericGreaterThanEquals":
		return famNumeric, cmpGe, false, true
	case "DateEquals":
		return famDate, cmpEq, false, true
	case "DateNotEquals":
		return famDate, cmpEq, true, true
	case "DateLessThan":
		return famDate, cmpLt, false, true
	case "DateLessThanEquals":
		return famDate, cmpLe, false, true
	case "DateGreaterThan":
		return famDate, cmpGt, false, true
	case "DateGreaterThanEquals":
		return famDate, cmpGe, false, true
	case "Bool":
		return famBool, cmpEq, false, true
	case "BinaryEquals":
		return famBinary, cmpEq, false, true
	case "IpAddress":
		return famIP, cmpEq, false, true
	case "NotIpAddress":
		return famIP, cmpEq, true, true
	case "ArnEquals", "ArnLike":
		return famArn, cmpEq, false, true
	case "ArnNotEquals", "ArnNotLike":
		return famArn, cmpEq, true, true
	case "Null":
		return famNull, cmpEq, false, true
	}
	return 0, 0, false, false
}

type opSpec struct {
	fam      opFamily
	cmp      cmpKind
	neg      bool
	ifExists bool
	qual     qualifier
}

// parseOperator splits "ForAllValues:StringLikeIfExists" into its parts. Null takes no
// IfExists ("NullIfExists" is no operator). It takes a qualifier: IAM accepts
// ForAllValues:Null and ForAnyValue:Null and IAM Access Analyzer documents what they do
// ("Null with qualifier": with ForAllValues the condition always returns true, with
// ForAnyValue always false), so the engine gives them that meaning (see eval).
func parseOperator(name string) (opSpec, bool) {
	var s opSpec
	base := name
	if b, ok := strings.CutPrefix(base, "ForAllValues:"); ok {
		s.qual, base = qualForAll, b
	} else if b, ok := strings.CutPrefix(base, "ForAnyValue:"); ok {
		s.qual, base = qualForAny, b
	}
	if b, ok := strings.CutSuffix(base, "IfExists"); ok {
		s.ifExists, base = true, b
	}
	var ok bool
	s.fam, s.cmp, s.neg, ok = baseOperator(base)
	if !ok || (s.fam == famNull && s.ifExists) {
		return opSpec{}, false
	}
	return s, true
}

type numVal struct {
	i     int64
	f     float64
	isInt bool
}

func parseNumber(s string) (numVal, bool) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return numVal{i: i, f: float64(i), isInt: true}, true
	}
	// Only plain decimal notation: ParseFloat also accepts "Inf", "NaN" and hex.
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E') {
			return numVal{}, false
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return numVal{}, false
	}
	return numVal{f: f}, true
}

func compareNum(a, b numVal) int {
	if a.isInt && b.isInt {
		switch {
		case a.i < b.i:
			return -1
		case a.i > b.i:
			return 1
		}
		return 0
	}
	switch {
	case a.f < b.f:
		return -1
	case a.f > b.f:
		return 1
	}
	return 0
}

// parseDate accepts what AWS's date operators accept: ISO 8601 date-times (with or
// without seconds, fractions and zone; no zone means UTC), plain dates, and POSIX epoch
// seconds ("Date condition operators" compare against aws:CurrentTime and aws:EpochTime).
// The docs set no range on epoch values, so none is set here beyond what time.Time holds
// (an epoch of 1467315743431, milliseconds by mistake, is a date in the year 48467: it
// compares as such, on both sides of a condition alike).
func parseDate(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	digits := true
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			if !(i == 0 && s[i] == '-') {
				digits = false
				break
			}
		}
	}
	if digits {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < -maxEpoch || n > maxEpoch {
			return time.Time{}, false
		}
		return time.Unix(n, 0).UTC(), true
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if len(s) < 10 || s[4] != '-' && !(len(s) >= 8 && s[8] == 'T') {
		return time.Time{}, false
	}
	for _, layout := range [...]string{
		"2006-01-02T15:04:05Z0700",
		"2006-01-02T15:04:05.999999999Z0700",
		"2006-01-02T15:04:05",
		"2006-01-02T15:04:05.999999999",
		"2006-01-02T15:04Z07:00",
		"2006-01-02T15:04Z0700",
		"2006-01-02T15:04",
		"2006-01-02",
		"20060102T150405Z",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// maxEpoch bounds epoch seconds well inside what time.Time represents (about 146
// billion years either way), so conversion cannot overflow.
const maxEpoch = 1 << 62

func compareTime(a, b time.Time) int { return a.Compare(b) }

// parseIPValue parses a policy's IpAddress value: a CIDR block or a bare address, which
// stands for itself (/32 or /128). IPv4 and IPv6 are both accepted ("IP address
// condition operators").
func parseIPValue(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		if p.Addr().Is4In6() {
			a := p.Addr().Unmap()
			if p.Bits() < 96 {
				return netip.Prefix{}, false
			}
			p = netip.PrefixFrom(a, p.Bits()-96)
		}
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

type cvalue struct {
	raw    string
	pat    pattern    // String* families
	arn    arnPattern // Arn* family
	arnPat bool       // Arn value with variables that is not ARN-shaped: matched as a whole-string glob
	num    numVal
	tm     time.Time
	prefix netip.Prefix
	b      bool
	bin    string
}

type condition struct {
	op     string // as written
	key    string // as written
	lkey   string // lowercased for lookup
	spec   opSpec
	values []cvalue
}

// compileValue parses one condition value for the operator's family; msg is non-empty
// when the value is not valid for it. Policy variables are allowed in String and Arn
// operators only (under Version 2012-10-17).
//
// A value the documentation gives no meaning for its operator is refused, fail closed,
// even where IAM may store it (the disputed M1 cases): "Numeric condition operators ...
// compare a key to an integer or decimal value", and ARN operators check "each of the
// six colon-delimited components", so "ten" in NumericLessThan or "arn:::bucket" in
// ArnLike has none. A refused policy is a loud load error; accepted, the first would
// silently never match and turn a Deny guard off. Values with a documented meaning load
// (epoch seconds of any size; Null with a set qualifier, in parseOperator).
func compileValue(fam opFamily, raw string, vars bool) (cvalue, string, string) {
	v := cvalue{raw: raw}
	switch fam {
	case famString, famStringIgnoreCase:
		p, verr := compilePattern(raw, false, vars, false)
		if verr != "" {
			return v, "INVALID_POLICY_VARIABLE", string(verr)
		}
		v.pat = p
	case famStringLike:
		p, verr := compilePattern(raw, true, vars, false)
		if verr != "" {
			return v, "INVALID_POLICY_VARIABLE", string(verr)
		}
		v.pat = p
	case famArn:
		a, ok, verr := compileARN(raw, vars)
		if verr != "" {
			return v, "INVALID_POLICY_VARIABLE", string(verr)
		}
		if !ok {
			p, _ := compilePattern(raw, true, vars, false)
			if !p.hasVars {
				return v, "INVALID_ARN", "ARN condition value " + quote(raw) + " is not an ARN"
			}
			v.pat, v.arnPat = p, true
		}
		v.arn = a
	case famNumeric:
		n, ok := parseNumber(raw)
		if !ok {
			return v, "INVALID_CONDITION_VALUE", "numeric condition value " + quote(raw) + " is not a number"
		}
		v.num = n
	case famDate:
		t, ok := parseDate(raw)
		if !ok {
			return v, "INVALID_CONDITION_VALUE", "date condition value " + quote(raw) + " is neither an ISO 8601 date nor epoch seconds"
		}
		v.tm = t
	case famBool, famNull:
		switch strings.ToLower(raw) {
		case "true":
			v.b = true
		case "false":
		default:
			return v, "INVALID_CONDITION_VALUE", "condition value " + quote(raw) + " must be true or false"
		}
	case famBinary:
		b, err := base64.StdEncoding.DecodeString(raw)
		if err != nil {
			return v, "INVALID_CONDITION_VALUE", "BinaryEquals value " + quote(raw) + " is not base64"
		}
		v.bin = string(b)
	case famIP:
		p, ok := parseIPValue(raw)
		if !ok {
			return v, "INVALID_CONDITION_VALUE", "IP condition value " + quote(raw) + " is not an IPv4 or IPv6 address or CIDR block"
		}
		v.prefix = p
	}
	return v, "", ""
}

// matchOne is the positive test of one request value against one policy value for
// the untyped families (typed ones are handled in anyPolicyValue).
func (c *condition) matchOne(rv string, pv *cvalue, r *evalState) bool {
	switch c.spec.fam {
	case famString, famStringLike:
		return pv.pat.match(rv, r, foldNone)
	case famStringIgnoreCase:
		return pv.pat.match(rv, r, foldUnicode)
	case famArn:
		if pv.arnPat {
			return pv.pat.match(rv, r, foldNone)
		}
		return pv.arn.match(rv, r)
	case famBool:
		switch {
		case strings.EqualFold(rv, "true"):
			return pv.b
		case strings.EqualFold(rv, "false"):
			return !pv.b
		}
		return false
	case famBinary:
		b, err := base64.StdEncoding.DecodeString(rv)
		return err == nil && string(b) == pv.bin
	}
	return false
}

func cmpResult(k cmpKind, c int) bool {
	switch k {
	case cmpEq:
		return c == 0
	case cmpLt:
		return c < 0
	case cmpLe:
		return c <= 0
	case cmpGt:
		return c > 0
	case cmpGe:
		return c >= 0
	}
	return false
}

// anyPolicyValue reports whether rv matches any of the condition's values: several
// values under one key are ORed ("If a single condition operator includes multiple
// values for a context key, those values are evaluated using a logical OR").
func (c *condition) anyPolicyValue(rv string, r *evalState) bool {
	// Typed families parse the request value once, not once per policy value; a value
	// that does not parse matches nothing.
	switch c.spec.fam {
	case famIP:
		a, err := netip.ParseAddr(rv)
		if err != nil {
			return false
		}
		a = a.Unmap().WithZone("")
		for i := range c.values {
			if c.values[i].prefix.Contains(a) {
				return true
			}
		}
		return false
	case famNumeric:
		n, ok := parseNumber(rv)
		if !ok {
			return false
		}
		for i := range c.values {
			if cmpResult(c.spec.cmp, compareNum(n, c.values[i].num)) {
				return true
			}
		}
		return false
	case famDate:
		t, ok := parseDate(rv)
		if !ok {
			return false
		}
		for i := range c.values {
			if cmpResult(c.spec.cmp, compareTime(t, c.values[i].tm)) {
				return true
			}
		}
		return false
	}
	for i := range c.values {
		if c.matchOne(rv, &c.values[i], r) {
			return true
		}
	}
	return false
}

// eval evaluates the condition for the request, following "IAM JSON policy elements:
// Condition operators" and "Single-valued vs. multivalued context keys":
//
//   - Null tests presence: true matches an absent key, false a present one. With a set
//     qualifier, which IAM accepts, IAM Access Analyzer documents that ForAllValues:Null
//     always returns true and ForAnyValue:Null always false ("Null with qualifier").
//   - An absent key (or an empty multivalued key) makes a positive operator false and a
//     negated operator true; …IfExists makes it true; ForAllValues is true when the key
//     is absent or empty, ForAnyValue false.
//   - ForAnyValue: at least one request value passes; ForAllValues: every request value
//     passes.
//   - A negated operator is the complement of its positive operator: true exactly when
//     the positive operator is false for the same key ("Negated matching"; "StringNotEquals
//     ... returns true if the value matches none"). One rule settles what the docs leave
//     open, where values cannot be compared:
//     · A request value that is not of the operator's type (not an address for
//     NotIpAddress, not a number for NumericNotEquals, not an ARN for ArnNotLike)
//     matches no policy value, so the negated operator holds (U2). The source of the
//     disputed cases expects the opposite; no AWS answer is recorded either way, and
//     this reading keeps the common guardrail "Deny unless NotIpAddress ..." denying
//     rather than silently not applying.
//     · An operator without ForAnyValue:/ForAllValues: compares one value, so it
//     cannot match a multivalued key ("Multivalued context keys require a condition
//     set operator"): the positive operator is false even when a value would match,
//     as AWS's SimulateCustomPolicy answered for list-typed context entries
//     (conformance politest 11-context-stringlist, U1), and the negated one true.
func (c *condition) eval(r *evalState) bool {
	vals, ok := r.lookup(c.lkey)
	present := ok && len(vals) > 0
	if c.spec.fam == famNull {
		switch c.spec.qual {
		case qualForAll:
			return true
		case qualForAny:
			return false
		}
		for i := range c.values {
			if c.values[i].b != present {
				return true
			}
		}
		return false
	}
	if !present {
		if c.spec.ifExists {
			return true
		}
		switch c.spec.qual {
		case qualForAll:
			return true
		case qualForAny:
			return false
		}
		return c.spec.neg
	}
	switch c.spec.qual {
	case qualForAll:
		for _, v := range vals {
			if c.anyPolicyValue(v, r) == c.spec.neg {
				return false
			}
		}
		return true
	case qualForAny:
		for _, v := range vals {
			if c.anyPolicyValue(v, r) != c.spec.neg {
				return true
			}
		}
		return false
	}
	if r.ctx.multivalued(c.lkey, vals) {
		return c.spec.neg
	}
	return c.anyPolicyValue(vals[0], r) != c.spec.neg
}
