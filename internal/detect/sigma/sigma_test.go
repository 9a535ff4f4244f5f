package sigma

import (
	"encoding/json"
	"io/fs"
	"math/bits"
	"path/filepath"
	"regexp/syntax"
	"strconv"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// rulesDir is SigmaHQ's CloudTrail rules in ../shared: test data, never copied into the
// repository.
func rulesDir(t *testing.T) string {
	t.Helper()
	return testenv.Shared(t, "datasets/sigma")
}

// TestSigmaHQRules: every one of SigmaHQ's 57 CloudTrail rules loads or is reported with
// its reason; for every loaded rule, an event built from the rule's own detection fires
// it (through the eventName index too), and the same event with one required field
// changed (a near miss) does not.
func TestSigmaHQRules(t *testing.T) {
	dir := rulesDir(t)
	set, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".yml") {
			files++
		}
		return nil
	})
	if files != 57 || len(set.Rules)+len(set.Problems) != files {
		t.Fatalf("%d rule files: %d loaded + %d reported", files, len(set.Rules), len(set.Problems))
	}
	for _, p := range set.Problems {
		if p.Reason == "" || p.File == "" || p.Title == "" {
			t.Errorf("problem without file, title or reason: %+v", p)
		}
		t.Logf("not loaded: %s", p)
	}
	// Measured: 56 load; aws_delete_saml_provider.yml tests a field "status" that
	// CloudTrail records do not have.
	if len(set.Rules) < 56 {
		t.Errorf("%d rules loaded, want 56", len(set.Rules))
	}
	for _, r := range set.Rules {
		t.Run(strings.TrimSuffix(filepath.Base(r.File), ".yml"), func(t *testing.T) {
			if r.ID == "" || r.Author == "" || r.License != "DRL-1.1" || r.Source != "https://github.com/SigmaHQ/sigma" {
				t.Errorf("attribution: id %q author %q license %q source %q", r.ID, r.Author, r.License, r.Source)
			}
			hit, miss, why := witnesses(t, r)
			if hit == nil {
				t.Fatalf("no event could be built from the detection: %s", why)
			}
			if !r.Matches(hit) {
				t.Errorf("the event built from the rule does not fire it: %s", show(hit))
			}
			if !fires(set, hit, r) {
				t.Errorf("the index does not reach the rule for %s", show(hit))
			}
			if miss == nil {
				t.Fatalf("no near miss: %s", why)
			}
			t.Logf("near miss: %s", why)
			if r.Matches(miss) || fires(set, miss, r) {
				t.Errorf("near miss (%s) fires it: %s", why, show(miss))
			}
		})
	}
}

func fires(s *Set, ev *audit.Event, r *Rule) bool {
	found := false
	s.Match(ev, func(m *Rule) {
		if m == r {
			found = true
		}
	})
	return found
}

func show(ev *audit.Event) string {
	b, _ := json.Marshal(ev)
	return string(b)
}

// searches lists the searches a condition refers to, once each.
func searches(x expr, out []*search) []*search {
	switch x := x.(type) {
	case andExpr:
		for _, s := range x {
			out = searches(s, out)
		}
	case orExpr:
		for _, s := range x {
			out = searches(s, out)
		}
	case notExpr:
		out = searches(x.x, out)
	case *search:
		for _, s := range out {
			if s == x {
				return out
			}
		}
		out = append(out, x)
	}
	return out
}

// truth evaluates the condition's boolean structure over given search results: the
// expected verdict, independent of the field matching under test.
func truth(x expr, v map[*search]bool) bool {
	switch x := x.(type) {
	case andExpr:
		for _, s := range x {
			if !truth(s, v) {
				return false
			}
		}
		return true
	case orExpr:
		for _, s := range x {
			if truth(s, v) {
				return true
			}
		}
		return false
	case notExpr:
		return !truth(x.x, v)
	case *search:
		return v[x]
	}
	panic("unknown expression")
}

// witnesses builds, from the rule's own searches, an event that satisfies the condition
// and a near miss: the same event with one field of a search the condition needs
// changed so that search cannot match, the other searches untouched.
func witnesses(t *testing.T, r *Rule) (hit, miss *audit.Event, why string) {
	t.Helper()
	ss := searches(r.cond, nil)
	n := len(ss)
	if n > 12 {
		return nil, nil, "too many searches to enumerate"
	}
	// Assignments with the fewest true searches first.
	order := make([]uint, 0, 1<<n)
	for k := 0; k <= n; k++ {
		for a := uint(0); a < 1<<n; a++ {
			if bits.OnesCount(a) == k {
				order = append(order, a)
			}
		}
	}
	for _, a := range order {
		v := map[*search]bool{}
		for i, s := range ss {
			v[s] = a&(1<<i) != 0
		}
		if !truth(r.cond, v) {
			continue
		}
		doc := baseDoc()
		ok := true
		for _, s := range ss {
			if v[s] && !satisfy(doc, s.groups[0]) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		hit = toEvent(t, doc)
		if !r.Matches(hit) {
			continue // a false search became true by accident: try the next assignment
		}
		// The near miss: break a field of a true search the condition needs, a field no
		// other search reads, in every group of that search.
		for _, s := range ss {
			if !v[s] {
				continue
			}
			v[s] = false
			needed := !truth(r.cond, v)
			v[s] = true
			if !needed {
				continue
			}
			for _, field := range commonFields(s) {
				md := clone(doc)
				newValue := breakField(md, s, field)
				if readElsewhere(ss, s, v, field, newValue) {
					continue
				}
				return hit, toEvent(t, md), "search " + s.name + ", field " + field + " changed"
			}
		}
		return hit, nil, "no field of a needed search could be changed alone"
	}
	return nil, nil, "no assignment of the searches could be built"
}

func baseDoc() map[string]any {
	return map[string]any{
		"eventVersion": "1.08", "eventTime": "2026-11-02T10:00:00Z", "awsRegion": "us-east-1",
		"eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity",
		"sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/linux#6.5.0 md/arch#x86_64 lang/python#3.11.9",
		"eventType": "AwsApiCall", "recipientAccountId": "123456789012", "eventID": "e-1", "requestID": "r-1",
		"userIdentity": map[string]any{"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/alice", "accountId": "123456789012",
			"accessKeyId": "AKIAEXAMPLE000000001", "principalId": "AIDAEXAMPLE", "userName": "alice"},
	}
}

func clone(doc map[string]any) map[string]any {
	b, _ := json.Marshal(doc)
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

func toEvent(t *testing.T, doc map[string]any) *audit.Event {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	ev := new(audit.Event)
	if err := json.Unmarshal(b, ev); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return ev
}

func set(doc map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	m := doc
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	if v == nil {
		delete(m, parts[len(parts)-1])
		return
	}
	m[parts[len(parts)-1]] = v
}

func get(doc map[string]any, path string) any {
	var v any = doc
	for _, p := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// satisfy writes into doc values that meet every field of group; false when a field
// cannot be met (values that contradict each other).
func satisfy(doc map[string]any, group []*fieldMatcher) bool {
	for _, f := range group {
		vals := f.values
		if !f.all {
			vals = vals[:1]
		}
		var needles []string
		for _, v := range vals {
			switch {
			case v.op == opNull || v.op == opExists && !v.exists:
				set(doc, f.field, nil)
				continue
			case v.op == opExists:
				needles = append(needles, "present")
				continue
			case v.ref != nil:
				other := get(doc, refPath(f, v))
				if other == nil {
					other = "shared-value"
					set(doc, refPath(f, v), other)
				}
				needles = append(needles, other.(string))
				continue
			}
			needles = append(needles, sample(v, f.get.obj != nil && len(f.get.rest) == 0))
		}
		if len(needles) == 0 {
			continue
		}
		if len(needles) > 1 && vals[0].op == opEq {
			return false // all of several exact values: contradictory
		}
		if f.get.obj != nil && len(f.get.rest) == 0 {
			// The whole object's JSON must contain the needles: as keys when they are
			// quoted, else as values.
			obj := map[string]any{}
			for i, s := range needles {
				if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' && !strings.Contains(s[1:len(s)-1], `"`) {
					obj[s[1:len(s)-1]] = "v"
				} else {
					obj["k"+strconv.Itoa(i)] = s
				}
			}
			set(doc, f.field, obj)
			continue
		}
		set(doc, f.field, strings.Join(needles, " "))
	}
	return true
}

func refPath(_ *fieldMatcher, v *valueMatcher) string { return v.refName }

// sample is a string the value matches; bare: the needle itself, not a text around it.
func sample(v *valueMatcher, bare bool) string {
	switch v.op {
	case opCIDR:
		return v.prefix.Addr().String()
	case opGT:
		return strconv.FormatFloat(v.num+1, 'f', -1, 64)
	case opLT:
		return strconv.FormatFloat(v.num-1, 'f', -1, 64)
	case opGTE, opLTE:
		return strconv.FormatFloat(v.num, 'f', -1, 64)
	}
	if v.re != nil {
		re, err := syntax.Parse(v.re.String(), syntax.Perl)
		if err != nil {
			return "unparsable"
		}
		s := gen(re.Simplify(), !bare)
		if s == "" {
			s = "x"
		}
		return s
	}
	switch {
	case bare:
		return v.s
	case v.op == opContains:
		return "pre " + v.s + " post"
	case v.op == opPrefix:
		return v.s + " post"
	case v.op == opSuffix:
		return "pre " + v.s
	}
	return v.s
}

// gen writes a string a regular expression matches; repetitions take their least
// count (one for *, so a bare wildcard yields a character) when fill is set.
func gen(re *syntax.Regexp, fill bool) string {
	var b strings.Builder
	var walk func(*syntax.Regexp)
	walk = func(re *syntax.Regexp) {
		switch re.Op {
		case syntax.OpLiteral:
			b.WriteString(string(re.Rune))
		case syntax.OpCharClass:
			if len(re.Rune) > 0 {
				b.WriteRune(re.Rune[0])
			}
		case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
			b.WriteByte('x')
		case syntax.OpCapture:
			walk(re.Sub[0])
		case syntax.OpConcat:
			for _, s := range re.Sub {
				walk(s)
			}
		case syntax.OpAlternate:
			walk(re.Sub[0])
		case syntax.OpPlus:
			walk(re.Sub[0])
		case syntax.OpStar:
			if fill {
				walk(re.Sub[0])
			}
		case syntax.OpRepeat:
			for i := 0; i < max(re.Min, 1); i++ {
				walk(re.Sub[0])
			}
		}
	}
	walk(re)
	return b.String()
}

// commonFields are the fields every group of s tests.
func commonFields(s *search) []string {
	var out []string
	for _, f := range s.groups[0] {
		everywhere := true
		for _, g := range s.groups[1:] {
			found := false
			for _, h := range g {
				found = found || h.field == f.field
			}
			everywhere = everywhere && found
		}
		if everywhere {
			out = append(out, f.field)
		}
	}
	return out
}

// readElsewhere reports whether changing field to newValue could change another
// search's result: it reads the field and is true, or could match the new value (only
// a false search comparing the field exactly with other values is safe).
func readElsewhere(ss []*search, s *search, truth map[*search]bool, field, newValue string) bool {
	for _, o := range ss {
		if o == s {
			continue
		}
		for _, g := range o.groups {
			for _, f := range g {
				if f.field != field && !strings.HasPrefix(f.field, field+".") && !strings.HasPrefix(field, f.field+".") {
					continue
				}
				if truth[o] || f.field != field || newValue == "" {
					return true
				}
				for _, v := range f.values {
					if v.op != opEq || v.re != nil || v.ref != nil || strings.EqualFold(v.s, newValue) {
						return true
					}
				}
			}
		}
	}
	return false
}

// breakField changes field so no group of s can match it: an exact value gets a
// suffix (Sigma compares exactly, so DeleteTrail does not match DeleteTrailX); a field
// that must be absent gets a value; anything else is removed (every other comparison
// needs a value).
func breakField(doc map[string]any, s *search, field string) string {
	exact, null := true, false
	var first string
	for _, g := range s.groups {
		for _, f := range g {
			if f.field != field {
				continue
			}
			for _, v := range f.values {
				switch {
				case v.op == opNull || v.op == opExists && !v.exists:
					null = true
				case v.op != opEq || v.re != nil || v.ref != nil:
					exact = false
				case first == "":
					first = v.s
				}
			}
		}
	}
	switch {
	case null:
		set(doc, field, "phantom-near-miss")
		return "phantom-near-miss"
	case exact && first != "":
		set(doc, field, first+"X")
		return first + "X"
	}
	set(doc, field, nil)
	return ""
}
