// Package sigma loads Sigma detection rules (https://sigmahq.io) written for AWS
// CloudTrail (logsource product aws, service cloudtrail) and matches them against
// CloudTrail events. Rule files are parsed with github.com/bradleyjkemp/sigma-go (the
// rule format and the condition grammar); the matching is Phantom's: every value and
// modifier is compiled once at load time, fields resolve onto audit.Event's nested
// CloudTrail shape without building a map per event, and rules are indexed by the
// eventName their condition requires, so an event is only tried against the few rules
// that can match it. It does not own findings: the detector turns a match into one.
package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	sigmago "github.com/bradleyjkemp/sigma-go"
	"go.yaml.in/yaml/v3"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// maxRuleBytes bounds one rule file: Sigma rules are a few KB.
const maxRuleBytes = 1 << 20

// Rule is one loaded Sigma rule: its metadata, for the finding and the attribution the
// rule's licence asks for (SigmaHQ's rules: Detection Rule License 1.1, name the author
// and the source wherever a match is shown), and its compiled condition.
type Rule struct {
	ID          string
	Title       string
	Description string
	Author      string
	Level       string // informational, low, medium, high, critical
	Status      string
	Tags        []string
	References  []string
	// File is the rule's path relative to the loaded directory.
	File string
	// License and Source are the rule's own license field, else what a LICENSE file
	// in the rule's directory or above names (SigmaHQ's: DRL 1.1, its repository).
	License string
	Source  string

	cond  expr
	names []string // lower-case eventNames the condition requires; nil: any
}

// Tactics are the ATT&CK tactics of the rule's attack.* tags, in the rule's order, in
// finding-type spelling (attack.credential-access -> CredentialAccess).
func (r *Rule) Tactics() []string {
	var out []string
	for _, t := range r.Tags {
		name, ok := strings.CutPrefix(strings.ToLower(t), "attack.")
		if !ok || !attackTactics[name] {
			continue
		}
		var b strings.Builder
		for _, w := range strings.Split(name, "-") {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
		if s := b.String(); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// attackTactics are the ATT&CK enterprise tactics as Sigma tags spell them, with v18's
// Stealth and Defense Impairment (which replaced Defense Evasion).
var attackTactics = map[string]bool{
	"reconnaissance": true, "resource-development": true, "initial-access": true, "execution": true,
	"persistence": true, "privilege-escalation": true, "defense-evasion": true, "stealth": true,
	"defense-impairment": true, "credential-access": true, "discovery": true, "lateral-movement": true,
	"collection": true, "command-and-control": true, "exfiltration": true, "impact": true,
}

// Severity maps the rule's level onto GuardDuty's scale (low < 4 <= medium < 7 <= high).
func (r *Rule) Severity() float64 {
	switch strings.ToLower(r.Level) {
	case "informational":
		return 1.0
	case "low":
		return 2.0
	case "high":
		return 8.0
	case "critical":
		return 8.9
	}
	return 5.0 // medium, and rules without a level
}

// Matches reports whether the event satisfies the rule's condition.
func (r *Rule) Matches(ev *audit.Event) bool {
	return r.cond.eval(&event{ev: ev})
}

// Problem is a rule file that did not load, and why.
type Problem struct {
	File   string // relative to the loaded directory
	Title  string // the rule's title when it parsed that far
	Reason string
	// OtherLogSource is set when the rule is for another log source than AWS
	// CloudTrail: not an error, only not this detector's.
	OtherLogSource bool
}

func (p Problem) String() string {
	name := p.File
	if p.Title != "" {
		name += " (" + p.Title + ")"
	}
	return name + ": " + p.Reason
}

// Set is an immutable, indexed set of loaded rules: safe for concurrent use, swapped
// whole on reload.
type Set struct {
	Dir      string
	Rules    []*Rule
	Problems []Problem
	byName   map[string][]*Rule // lower-case eventName -> rules requiring it
	anyName  []*Rule            // rules whose condition names no eventName
}

// Load reads every *.yml and *.yaml file under dir (hidden directories skipped). A rule that cannot be loaded is
// listed in Problems with the reason and the others load; the error is only for a
// directory that cannot be read.
func Load(dir string) (*Set, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("sigma rules: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("sigma rules: %s is not a directory", dir)
	}
	var files []string
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && p != dir && strings.HasPrefix(e.Name(), ".") {
			return fs.SkipDir // .git, .github: a checkout's machinery, not rules
		}
		if e.Type().IsRegular() && (strings.HasSuffix(e.Name(), ".yml") || strings.HasSuffix(e.Name(), ".yaml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sigma rules in %s: %w", dir, err)
	}
	slices.Sort(files)
	var rules []*Rule
	var problems []Problem
	licenses := map[string][2]string{} // directory -> license, source
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		data, err := readRule(f)
		if err != nil {
			problems = append(problems, Problem{File: rel, Reason: err.Error()})
			continue
		}
		r, err := Parse(data)
		if err != nil {
			p := Problem{File: rel, Reason: err.Error()}
			var pe *parseError
			if errors.As(err, &pe) {
				p.Title, p.OtherLogSource = pe.title, pe.otherSource
				p.Reason = pe.reason
			}
			problems = append(problems, p)
			continue
		}
		r.File = rel
		if r.License == "" || r.Source == "" {
			l := licenseOf(filepath.Dir(f), licenses)
			if r.License == "" {
				r.License = l[0]
			}
			if r.Source == "" {
				r.Source = l[1]
			}
		}
		rules = append(rules, r)
	}
	return NewSet(dir, rules, problems), nil
}

// NewSet indexes rules (already parsed) by the eventNames their conditions require.
func NewSet(dir string, rules []*Rule, problems []Problem) *Set {
	s := &Set{Dir: dir, Rules: rules, Problems: problems, byName: map[string][]*Rule{}}
	for _, r := range rules {
		if r.names == nil {
			s.anyName = append(s.anyName, r)
			continue
		}
		for _, n := range r.names {
			s.byName[n] = append(s.byName[n], r)
		}
	}
	return s
}

// Unloaded lists the rules that did not load and why, and counts those skipped for
// being for another log source (not errors: only not this detector's).
func (s *Set) Unloaded() (problems []Problem, otherSources int) {
	for _, p := range s.Problems {
		if p.OtherLogSource {
			otherSources++
			continue
		}
		problems = append(problems, p)
	}
	return problems, otherSources
}

func readRule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRuleBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRuleBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxRuleBytes)
	}
	return data, nil
}

// licenseOf finds the LICENSE file nearest above dir (cached per directory) and reads
// what it names: the Detection Rule License, SigmaHQ's repository.
func licenseOf(dir string, cache map[string][2]string) [2]string {
	if l, ok := cache[dir]; ok {
		return l
	}
	var l [2]string
	for _, name := range []string{"LICENSE", "LICENSE.md", "LICENSE.txt", "LICENSE.Detection.Rules.md"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		if bytes.Contains(data, []byte("Detection Rule License")) {
			l[0] = "DRL-1.1"
			if bytes.Contains(data, []byte("DRL) 1.0")) || bytes.Contains(data, []byte("DRL 1.0")) {
				l[0] = "DRL-1.0"
			}
		}
		if bytes.Contains(data, []byte("github.com/SigmaHQ")) {
			l[1] = "https://github.com/SigmaHQ/sigma"
		}
		break
	}
	if l == ([2]string{}) {
		if parent := filepath.Dir(dir); parent != dir {
			l = licenseOf(parent, cache)
		}
	}
	cache[dir] = l
	return l
}

// parseError is a rule that parsed far enough to have a title.
type parseError struct {
	title, reason string
	otherSource   bool
}

func (e *parseError) Error() string { return e.reason }

// Parse compiles one rule file. A file that is not a single Sigma rule for AWS
// CloudTrail, or that uses what this matcher does not support, is an error saying so.
func Parse(data []byte) (*Rule, error) {
	// One document only: multi-document files are Sigma 1's rule collections (action:
	// global / repeat), which sigma-go reads as their first document alone.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	var second yaml.Node
	if err := dec.Decode(&second); err == nil {
		return nil, errors.New("multi-document rule collections are not supported: split the file into one rule each")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a Sigma rule: the document is not a mapping")
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		switch top.Content[i].Value {
		case "correlation":
			return nil, errors.New("correlation rules are not supported (single-event rules only)")
		case "filter":
			return nil, errors.New("Sigma filters (meta-rules) are not supported")
		}
	}
	sr, err := parseRule(data)
	if err != nil {
		return nil, fmt.Errorf("not a Sigma rule: %w", err)
	}
	fail := func(format string, a ...any) error {
		return &parseError{title: sr.Title, reason: fmt.Sprintf(format, a...)}
	}
	if sr.Title == "" {
		return nil, errors.New("not a Sigma rule: no title")
	}
	ls := sr.Logsource
	if !strings.EqualFold(ls.Product, "aws") || !strings.EqualFold(ls.Service, "cloudtrail") || ls.Category != "" {
		return nil, &parseError{title: sr.Title, otherSource: true,
			reason: fmt.Sprintf("logsource is product %q, service %q, category %q: not AWS CloudTrail", ls.Product, ls.Service, ls.Category)}
	}
	if len(sr.Detection.Conditions) == 0 {
		return nil, fail("detection has no condition")
	}
	r := &Rule{ID: sr.ID, Title: sr.Title, Description: strings.TrimSpace(sr.Description), Author: sr.Author,
		Level: sr.Level, Status: sr.Status, Tags: sr.Tags, References: sr.References}
	if l, ok := sr.AdditionalFields["license"].(string); ok {
		r.License = l
	}
	c := compiler{searches: sr.Detection.Searches, compiled: map[string]*search{}}
	var conds []expr
	for _, cond := range sr.Detection.Conditions {
		if cond.Aggregation != nil {
			return nil, fail("aggregations (| count() ...) are not supported: Sigma 2 moved them to correlation rules")
		}
		e, err := c.expr(cond.Search)
		if err != nil {
			return nil, fail("%v", err)
		}
		conds = append(conds, e)
	}
	if len(conds) == 1 {
		r.cond = conds[0]
	} else {
		r.cond = orExpr(conds) // several conditions: any one matching is a match
	}
	names, ok := r.cond.names()
	if ok {
		slices.Sort(names)
		r.names = slices.Compact(names)
	}
	return r, nil
}

// parseRule is sigma-go's parser, which panics on some malformed input (a nil node in
// a search): a panic is a malformed rule, not a crash.
func parseRule(data []byte) (r sigmago.Rule, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed rule (%v)", p)
		}
	}()
	return sigmago.ParseRule(data)
}

// compiler turns sigma-go's parsed searches and condition into matchers.
type compiler struct {
	searches map[string]sigmago.Search
	compiled map[string]*search
}

func (c *compiler) search(name string) (*search, error) {
	if s, ok := c.compiled[name]; ok {
		return s, nil
	}
	s, ok := c.searches[name]
	if !ok {
		return nil, fmt.Errorf("condition names %q, which the detection does not define", name)
	}
	cs, err := compileSearch(name, s)
	if err != nil {
		return nil, err
	}
	c.compiled[name] = cs
	return cs, nil
}

// matching lists the searches a "1 of"/"all of" pattern covers; "them" is every search
// except those starting with an underscore (Sigma specification, condition).
func (c *compiler) matching(pattern string) ([]expr, error) {
	var names []string
	for name := range c.searches {
		if pattern == "" {
			if !strings.HasPrefix(name, "_") {
				names = append(names, name)
			}
			continue
		}
		if ok, err := path.Match(pattern, name); err != nil {
			return nil, fmt.Errorf("bad pattern %q: %w", pattern, err)
		} else if ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("pattern %q matches no search", pattern)
	}
	slices.Sort(names)
	var out []expr
	for _, n := range names {
		s, err := c.search(n)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// exprs compiles the members of a conjunction or disjunction.
func (c *compiler) exprs(xs []sigmago.SearchExpr) ([]expr, error) {
	out := make([]expr, 0, len(xs))
	for _, x := range xs {
		ce, err := c.expr(x)
		if err != nil {
			return nil, err
		}
		out = append(out, ce)
	}
	return out, nil
}

func (c *compiler) expr(e sigmago.SearchExpr) (expr, error) {
	switch e := e.(type) {
	case sigmago.And:
		xs, err := c.exprs(e)
		return andExpr(xs), err
	case sigmago.Or:
		xs, err := c.exprs(e)
		return orExpr(xs), err
	case sigmago.Not:
		ce, err := c.expr(e.Expr)
		if err != nil {
			return nil, err
		}
		return notExpr{ce}, nil
	case sigmago.SearchIdentifier:
		return c.search(e.Name)
	case sigmago.OneOfIdentifier:
		return c.search(e.Ident.Name)
	case sigmago.AllOfIdentifier:
		return c.search(e.Ident.Name)
	case sigmago.OneOfPattern:
		xs, err := c.matching(e.Pattern)
		return orExpr(xs), err
	case sigmago.AllOfPattern:
		xs, err := c.matching(e.Pattern)
		return andExpr(xs), err
	case sigmago.OneOfThem:
		xs, err := c.matching("")
		return orExpr(xs), err
	case sigmago.AllOfThem:
		xs, err := c.matching("")
		return andExpr(xs), err
	}
	return nil, fmt.Errorf("condition element %T is not supported", e)
}

// Match calls fn with every rule the event satisfies: the rules indexed under its
// eventName, then those whose condition names none.
func (s *Set) Match(ev *audit.Event, fn func(*Rule)) {
	new(Matcher).Match(s, ev, fn)
}

// Matcher is Set.Match with its scratch space kept from one event to the next: an
// event being matched escapes to the heap (the conditions are interfaces), and a
// detector matching every event of a trail would allocate it for each. Not for
// concurrent use.
type Matcher struct{ e event }

// Match is Set.Match.
func (m *Matcher) Match(s *Set, ev *audit.Event, fn func(*Rule)) {
	if s == nil || len(s.Rules) == 0 {
		return
	}
	m.e = event{ev: ev}
	defer func() { m.e = event{} }() // keep no event alive past the call
	e := &m.e
	var rs []*Rule
	var buf [96]byte
	if n := len(ev.EventName); n <= len(buf) {
		rs = s.byName[string(lower(buf[:n], ev.EventName))] // no copy for a map key
	} else {
		rs = s.byName[strings.ToLower(ev.EventName)]
	}
	for _, r := range rs {
		if r.cond.eval(e) {
			fn(r)
		}
	}
	for _, r := range s.anyName {
		if r.cond.eval(e) {
			fn(r)
		}
	}
}

// lower writes s lower-cased (ASCII) into b, len(b) == len(s).
func lower(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return b
}
