package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxVisits bounds the YAML nodes one load may walk. Aliases let a small file name a huge
// tree (the "billion laughs" attack); past this budget the load stops with a problem.
const maxVisits = 1 << 20

// maxProblems bounds the problems one load reports: past a hundred, more lines help
// nobody, and a generated file full of mistakes must not make validation slow.
const maxProblems = 100

// decoder walks the YAML node tree, collecting problems instead of stopping at the first.
type decoder struct {
	file     string
	data     []byte
	problems []Problem
	visits   int
	overrun  bool
	dropped  int
	// principals are the policies whose Principal elements name IAM users, roles and
	// OIDC providers; they are resolved once every section is decoded.
	principals []principalPolicy
}

func (d *decoder) problem(n *yaml.Node, path, msg, fix string) {
	if len(d.problems) >= maxProblems {
		d.dropped++
		return
	}
	p := Problem{File: d.file, Path: path, Msg: msg, Fix: fix}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	d.problems = append(d.problems, p)
}

// visit counts a node against the budget; false means stop walking.
func (d *decoder) visit(n *yaml.Node) bool {
	d.visits++
	if d.visits > maxVisits {
		if !d.overrun {
			d.overrun = true
			d.problem(n, "", fmt.Sprintf("the file expands to more than %d values (aliases repeat what they name)", maxVisits),
				"write the values out or use fewer aliases")
		}
		return false
	}
	return true
}

// resolve follows an alias to the value its anchor names, so that a shared policy written
// once with &name reads like the text it stands for.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// describe names a node's kind for messages: "a list", "a number".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "empty"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!timestamp":
			return "a date"
		case "!!str":
			return "a string"
		}
		return "a " + strings.TrimPrefix(n.ShortTag(), "!!")
	}
	return "an unsupported value"
}

// object is a YAML mapping whose keys have been checked against the names it may have.
type object struct {
	d    *decoder
	n    *yaml.Node
	path string
	ok   bool
	keys map[string]*yaml.Node
	vals map[string]*yaml.Node
	// near are known keys that an unknown key was reported as a likely typo of; a
	// missing-key problem for them would only repeat that report.
	near map[string]bool
}

// object checks that n is a mapping with only the known keys. An unknown key is an error
// rather than ignored: a misspelt "authorization" must not silently fall back to a default.
// A nil n (the section is absent) gives an empty object that reports nothing.
func (d *decoder) object(n *yaml.Node, path string, known ...string) *object {
	o := &object{d: d, path: path, keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}, near: map[string]bool{}}
	n = resolve(n)
	if n == nil || !d.visit(n) {
		return o
	}
	o.n = n
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
			d.problem(n, path, "is empty", "write its keys below it, indented, or remove it")
		} else {
			d.problem(n, path, "must be a mapping of keys to values, not "+describe(n), "write it as key: value lines")
		}
		return o
	}
	o.ok = true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.problem(k, path, "a key must be a plain name, not "+describe(k), "write name: value")
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.problem(k, path, "merge keys (<<) are not supported", "write the keys out, or use an alias for a whole value")
			continue
		}
		if prev, dup := o.keys[k.Value]; dup {
			d.problem(k, joinPath(path, k.Value), fmt.Sprintf("duplicate key (first set at line %d)", prev.Line), "keep one of them")
			continue
		}
		if !slices.Contains(known, k.Value) {
			if s := d.unknownKey(k, path, known); s != "" {
				o.near[s] = true
			}
			continue
		}
		o.keys[k.Value] = k
		o.vals[k.Value] = v
	}
	return o
}

// unknownKey reports a key that is not allowed here and returns the known key it is
// probably a typo of, if any.
func (d *decoder) unknownKey(k *yaml.Node, path string, known []string) string {
	msg := fmt.Sprintf("unknown key %q", k.Value)
	if s := suggest(k.Value, known); s != "" {
		d.problem(k, path, msg, fmt.Sprintf("did you mean %q?", s))
		return s
	}
	d.problem(k, path, msg, "remove it; the keys here are "+strings.Join(known, ", "))
	return ""
}

// has reports whether key was written.
func (o *object) has(key string) bool { _, ok := o.vals[key]; return ok }

// get returns the resolved value of key and its path, or nil when absent.
func (o *object) get(key string) (*yaml.Node, string) {
	v := resolve(o.vals[key])
	if v != nil && !o.d.visit(v) {
		return nil, ""
	}
	return v, joinPath(o.path, key)
}

// require reports key as missing, with an example of what to write.
func (o *object) require(key, example string) bool {
	if o.has(key) {
		return true
	}
	if o.ok && !o.near[key] {
		o.d.problem(o.n, o.path, fmt.Sprintf("missing required key %q", key), "add "+example)
	}
	return false
}

// str returns a string value, or "" with a problem when it is something else. Numbers
// and booleans are not strings: account: 012345678901 would lose its leading zero.
func (o *object) str(key string) (string, *yaml.Node, string) {
	n, path := o.get(key)
	if n == nil {
		return "", nil, path
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
			o.d.problem(n, path, "must be a string, not "+describe(n), fmt.Sprintf("quote it: %s: %q", key, n.Value))
		} else {
			o.d.problem(n, path, "must be a string, not "+describe(n), "write a single value")
		}
		return "", nil, path
	}
	return n.Value, n, path
}

// match returns a string value that must match re; what describes the format for people.
func (o *object) match(key string, re *regexp.Regexp, what string) (string, *yaml.Node, string) {
	s, n, path := o.str(key)
	if n == nil {
		return "", nil, path
	}
	if !re.MatchString(s) {
		o.d.problem(n, path, fmt.Sprintf("%q is not %s", s, what), fixFor(what))
		return "", nil, path
	}
	return s, n, path
}

// list returns the elements of a list value.
func (o *object) list(key string) ([]*yaml.Node, string) {
	n, path := o.get(key)
	if n == nil {
		return nil, path
	}
	return o.d.list(n, path), path
}

func (d *decoder) list(n *yaml.Node, path string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		d.problem(n, path, "must be a list, not "+describe(n), "write each item on its own line starting with - ")
		return nil
	}
	out := make([]*yaml.Node, 0, len(n.Content))
	for _, c := range n.Content {
		c = resolve(c)
		if !d.visit(c) {
			break
		}
		out = append(out, c)
	}
	return out
}

// strs returns a list of strings, each matching re when re is set.
func (o *object) strs(key string, re *regexp.Regexp, what string) ([]string, []*yaml.Node) {
	items, path := o.list(key)
	var out []string
	var nodes []*yaml.Node
	seen := map[string]int{}
	for i, n := range items {
		p := indexPath(path, i)
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			o.d.problem(n, p, "must be a string, not "+describe(n), "quote it")
			continue
		}
		if re != nil && !re.MatchString(n.Value) {
			o.d.problem(n, p, fmt.Sprintf("%q is not %s", n.Value, what), fixFor(what))
			continue
		}
		if first, dup := seen[n.Value]; dup {
			o.d.problem(n, p, fmt.Sprintf("%q is listed twice (first at line %d)", n.Value, first), "remove the repeat")
			continue
		}
		seen[n.Value] = n.Line
		out = append(out, n.Value)
		nodes = append(nodes, n)
	}
	return out, nodes
}

// duration returns a duration written as a Go duration (90m, 1h30m) or an ISO 8601
// duration (PT1H). A bare number is refused: seconds or hours would be a guess.
func (o *object) duration(key string) (time.Duration, *yaml.Node, string) {
	n, path := o.get(key)
	if n == nil {
		return 0, nil, path
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") {
			o.d.problem(n, path, "a duration needs a unit", fmt.Sprintf("write %ss for seconds, or a value like 1h or 15m", n.Value))
		} else {
			o.d.problem(n, path, "must be a duration, not "+describe(n), "write a value like 1h, 15m or PT1H")
		}
		return 0, nil, path
	}
	dur, err := parseDuration(n.Value)
	if err != nil {
		o.d.problem(n, path, err.Error(), "write a value like 1h, 15m or PT1H")
		return 0, nil, path
	}
	return dur, n, path
}

var isoDuration = regexp.MustCompile(`^P(?:(\d{1,6})D)?(?:T(?:(\d{1,8})H)?(?:(\d{1,8})M)?(?:(\d{1,8})(?:\.(\d{1,9}))?S)?)?$`)

func parseDuration(s string) (time.Duration, error) {
	if strings.HasPrefix(s, "P") {
		m := isoDuration.FindStringSubmatch(s)
		if m == nil || s == "P" || strings.HasSuffix(s, "T") {
			return 0, fmt.Errorf("%q is not an ISO 8601 duration", s)
		}
		var d time.Duration
		for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute, time.Second} {
			if m[i+1] == "" {
				continue
			}
			v, _ := strconv.ParseInt(m[i+1], 10, 64) // the pattern bounds it to 8 digits
			d += time.Duration(v) * unit
		}
		if m[5] != "" {
			frac := m[5] + strings.Repeat("0", 9-len(m[5]))
			ns, _ := strconv.ParseInt(frac, 10, 64)
			d += time.Duration(ns)
		}
		return d, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// integer returns a whole number within [lo, hi]; a quoted number, a fraction or a value
// outside the range is a problem.
func (o *object) integer(key string, lo, hi int64) (int64, *yaml.Node, string) {
	n, path := o.get(key)
	if n == nil {
		return 0, nil, path
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		o.d.problem(n, path, "must be a whole number, not "+describe(n), fmt.Sprintf("write a number from %d to %d", lo, hi))
		return 0, nil, path
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil || v < lo || v > hi {
		o.d.problem(n, path, fmt.Sprintf("%s is outside %d to %d", n.Value, lo, hi), fmt.Sprintf("write a number from %d to %d", lo, hi))
		return 0, nil, path
	}
	return v, n, path
}

// boolean returns true or false; anything else (yes, "true", 1) is a problem.
func (o *object) boolean(key string) (bool, *yaml.Node, string) {
	n, path := o.get(key)
	if n == nil {
		return false, nil, path
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || (n.Value != "true" && n.Value != "false") {
		o.d.problem(n, path, "must be true or false, not "+describe(n), "write true or false")
		return false, nil, path
	}
	return n.Value == "true", n, path
}
