package policy

import (
	"strings"
	"unicode/utf8"
)

// Patterns are compiled once at Parse. IAM's wildcards are '*' (any run of characters,
// possibly empty) and '?' (exactly one character) ("IAM JSON policy elements: Action",
// "... Resource", and the StringLike/ArnLike rows of "IAM JSON policy elements: Condition
// operators"). Policy variables ("IAM policy elements: Variables and tags") are resolved
// per request; the text a variable resolves to is matched literally, so a user named "*"
// cannot widen a pattern — that is what ${*}, ${?} and ${$} exist for.

type segKind uint8

const (
	segLit segKind = iota
	segStar
	segQmark
	segVar
)

type seg struct {
	kind   segKind
	lit    string // segLit: the text; segVar: the default value when hasDef
	key    string // segVar: the lowercased context key
	hasDef bool
}

type patForm uint8

const (
	formGlob   patForm = iota // general segments
	formExact                 // lit
	formPrefix                // lit*
	formSuffix                // *lit
	formAny                   // *
)

// pattern is a compiled string pattern: literal text, wildcards and policy variables.
type pattern struct {
	form    patForm
	lit     string
	segs    []seg
	hasVars bool
}

// varError describes a malformed policy variable found while tokenizing.
type varError string

// tokenize splits text into segments. wild makes '*' and '?' wildcards; vars enables
// ${...} policy variables (only documents of Version 2012-10-17 have them: under
// 2008-10-17 "${" is literal text). fold lowercases literal text (actions).
func tokenize(text string, wild, vars, fold bool) ([]seg, varError) {
	var segs []seg
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			s := lit.String()
			if fold {
				s = string(appendLowerASCII(nil, s)) // actions fold ASCII only, as Evaluate does
			}
			segs = append(segs, seg{kind: segLit, lit: s})
			lit.Reset()
		}
	}
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case vars && c == '$' && i+1 < len(text) && text[i+1] == '{':
			end := strings.IndexByte(text[i+2:], '}')
			if end < 0 {
				return nil, varError("policy variable " + text[i:] + " is not closed with '}'")
			}
			body := text[i+2 : i+2+end]
			i += 2 + end + 1
			switch strings.TrimSpace(body) {
			case "*", "?", "$":
				// "Special characters": ${*}, ${?} and ${$} stand for the literal
				// characters where they would otherwise be wildcards or start a variable.
				lit.WriteString(strings.TrimSpace(body))
				continue
			}
			key, def, hasDef := body, "", false
			if k, d, ok := strings.Cut(body, ","); ok {
				key = k
				d = strings.TrimSpace(d)
				if len(d) < 2 || d[0] != '\'' || d[len(d)-1] != '\'' {
					return nil, varError("default value of policy variable ${" + body + "} must be in single quotes")
				}
				def, hasDef = d[1:len(d)-1], true
			}
			key = strings.TrimSpace(key)
			if key == "" || strings.ContainsAny(key, "${'") {
				return nil, varError("invalid policy variable ${" + body + "}")
			}
			flush()
			segs = append(segs, seg{kind: segVar, key: strings.ToLower(key), lit: def, hasDef: hasDef})
		case wild && c == '*':
			flush()
			if n := len(segs); n > 0 && segs[n-1].kind == segStar {
				i++
				continue // "**" is "*"
			}
			segs = append(segs, seg{kind: segStar})
			i++
		case wild && c == '?':
			flush()
			segs = append(segs, seg{kind: segQmark})
			i++
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	return segs, ""
}

func newPattern(segs []seg) pattern {
	p := pattern{segs: segs, form: formGlob}
	for _, s := range segs {
		if s.kind == segVar {
			p.hasVars = true
			return p
		}
	}
	switch {
	case len(segs) == 0:
		p.form = formExact
	case len(segs) == 1 && segs[0].kind == segLit:
		p.form, p.lit = formExact, segs[0].lit
	case len(segs) == 1 && segs[0].kind == segStar:
		p.form = formAny
	case len(segs) == 2 && segs[0].kind == segLit && segs[1].kind == segStar:
		p.form, p.lit = formPrefix, segs[0].lit
	case len(segs) == 2 && segs[0].kind == segStar && segs[1].kind == segLit:
		p.form, p.lit = formSuffix, segs[1].lit
	}
	return p
}

func compilePattern(text string, wild, vars, fold bool) (pattern, varError) {
	segs, err := tokenize(text, wild, vars, fold)
	if err != "" {
		return pattern{}, err
	}
	return newPattern(segs), ""
}

// resolve substitutes policy variables into buf. An unresolved variable without a
// default makes the pattern match nothing ("If the variable is not present ... the
// policy does not match", "IAM policy elements: Variables and tags"); a multi-valued key
// cannot be a variable, so it is unresolved too.
func (p *pattern) resolve(buf []seg, r *evalState) ([]seg, bool) {
	for _, s := range p.segs {
		if s.kind != segVar {
			buf = append(buf, s)
			continue
		}
		var v string
		if vals, ok := r.lookup(s.key); ok && len(vals) == 1 {
			v = vals[0]
		} else if s.hasDef {
			v = s.lit
		} else {
			return nil, false
		}
		buf = append(buf, seg{kind: segLit, lit: v})
	}
	return buf, true
}

// match reports whether s matches the pattern. fold compares case-insensitively.
func (p *pattern) match(s string, r *evalState, fold foldMode) bool {
	if !p.hasVars {
		switch {
		case p.form == formAny:
			return true
		case fold == foldUnicode:
			// Unicode folding can change byte lengths; use the general matcher.
		case p.form == formExact:
			return equalFold(s, p.lit, fold)
		case p.form == formPrefix:
			return hasPrefixFold(s, p.lit, fold)
		case p.form == formSuffix:
			return len(s) >= len(p.lit) && equalFold(s[len(s)-len(p.lit):], p.lit, fold)
		}
		return matchSegs(p.segs, s, fold)
	}
	var buf [16]seg
	segs, ok := p.resolve(buf[:0], r)
	if !ok {
		return false
	}
	return matchSegs(segs, s, fold)
}

// foldMode selects case-insensitive comparison. Actions fold ASCII only: action names
// are ASCII, and Unicode folding (the Kelvin sign folds to 'k') would let an odd request
// action match a pattern its bytes do not spell. StringEqualsIgnoreCase folds Unicode.
type foldMode uint8

const (
	foldNone foldMode = iota
	foldASCII
	foldUnicode
)

func equalFold(a, b string, fold foldMode) bool {
	switch fold {
	case foldNone:
		return a == b
	case foldUnicode:
		return strings.EqualFold(a, b)
	}
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func hasPrefixFold(s, prefix string, fold foldMode) bool {
	if fold == foldUnicode {
		// Folded text may differ in byte length; compare rune by rune.
		for _, pr := range prefix {
			if s == "" {
				return false
			}
			r, n := utf8.DecodeRuneInString(s)
			if r != pr && !strings.EqualFold(s[:n], string(pr)) {
				return false
			}
			s = s[n:]
		}
		return true
	}
	if len(s) < len(prefix) {
		return false
	}
	return equalFold(s[:len(prefix)], prefix, fold)
}

// litPrefix reports whether s begins with lit (under fold) and how many bytes of s that
// prefix takes.
func litPrefix(s, lit string, fold foldMode) (int, bool) {
	if fold != foldUnicode {
		return len(lit), hasPrefixFold(s, lit, fold)
	}
	n := 0
	for _, pr := range lit {
		if n >= len(s) {
			return 0, false
		}
		r, sz := utf8.DecodeRuneInString(s[n:])
		if r != pr && !strings.EqualFold(s[n:n+sz], string(pr)) {
			return 0, false
		}
		n += sz
	}
	return n, true
}

// matchSegs is the classic linear glob match with backtracking to the last '*' only,
// which is exact for patterns of literals, '*' and '?'. '?' consumes one UTF-8 character.
func matchSegs(segs []seg, s string, fold foldMode) bool {
	pi, si := 0, 0
	starPi, starSi := -1, 0
	for {
		if pi < len(segs) {
			g := &segs[pi]
			switch g.kind {
			case segStar:
				starPi, starSi = pi, si
				pi++
				continue
			case segQmark:
				if si < len(s) {
					_, n := utf8.DecodeRuneInString(s[si:])
					si += n
					pi++
					continue
				}
			case segLit:
				if fold == foldNone && starPi >= 0 && pi == starPi+1 {
					// The literal after the last star: the star absorbs up to the literal's
					// next occurrence, found at once rather than tried at every position
					// (none: nothing the star can absorb makes the rest match).
					i := strings.Index(s[si:], g.lit)
					if i < 0 {
						return false
					}
					si += i
					starSi = si
					si += len(g.lit)
					pi++
					continue
				}
				if n, ok := litPrefix(s[si:], g.lit, fold); ok {
					si += n
					pi++
					continue
				}
			}
		} else if si == len(s) {
			return true
		}
		if starPi >= 0 && starSi < len(s) {
			_, n := utf8.DecodeRuneInString(s[starSi:])
			starSi += n
			si, pi = starSi, starPi+1
			continue
		}
		return false
	}
}

// arnPattern matches ARNs part by part, as ArnLike does: "Each of the six
// colon-delimited components of the ARN is checked separately and each can include
// multi-character match wildcards (*) or single-character match wildcards (?)"
// ("IAM JSON policy elements: Condition operators", ARN condition operators). A
// wildcard therefore never crosses a ':' in partition, service, region or account; the
// sixth part (the resource) keeps its own colons. The single pattern "*" matches any
// resource, ARN or not.
type arnPattern struct {
	any   bool
	parts [6]pattern
}

// compileARN compiles an ARN pattern; ok is false when text is not "*" and does not
// have the six parts of an ARN beginning with "arn".
func compileARN(text string, vars bool) (arnPattern, bool, varError) {
	if text == "*" {
		return arnPattern{any: true}, true, ""
	}
	segs, verr := tokenize(text, true, vars, false)
	if verr != "" {
		return arnPattern{}, false, verr
	}
	var ap arnPattern
	part := 0
	var cur []seg
	for _, s := range segs {
		if s.kind != segLit || part == 5 {
			cur = append(cur, s)
			continue
		}
		rest := s.lit
		for part < 5 {
			i := strings.IndexByte(rest, ':')
			if i < 0 {
				break
			}
			if i > 0 {
				cur = append(cur, seg{kind: segLit, lit: rest[:i]})
			}
			ap.parts[part] = newPattern(cur)
			cur = nil
			part++
			rest = rest[i+1:]
		}
		if rest != "" {
			cur = append(cur, seg{kind: segLit, lit: rest})
		}
	}
	if part != 5 {
		return arnPattern{}, false, ""
	}
	ap.parts[5] = newPattern(cur)
	// The first part must be the literal "arn" (wildcards allowed, as ArnLike allows them
	// in every part; but plain text that is not an ARN is rejected).
	if first := ap.parts[0]; first.form == formExact && first.lit != "arn" {
		return arnPattern{}, false, ""
	}
	return ap, true, ""
}

// arnParts splits an ARN into its six parts without allocating; ok is false for a
// string that has fewer than six colon-separated parts.
func arnParts(s string) (parts [6]string, ok bool) {
	// One pass over the bytes: the parts before the resource are short, where a call
	// to IndexByte per part costs more than the scan.
	n, start := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			parts[n] = s[start:i]
			n++
			start = i + 1
			if n == 5 {
				parts[5] = s[start:]
				return parts, true
			}
		}
	}
	return [6]string{}, false
}

func (a *arnPattern) matchParts(parts *[6]string, isARN bool, r *evalState) bool {
	if a.any {
		return true
	}
	if !isARN {
		return false
	}
	for i := range parts {
		if !a.parts[i].match(parts[i], r, foldNone) {
			return false
		}
	}
	return true
}

func (a *arnPattern) match(s string, r *evalState) bool {
	if a.any {
		return true
	}
	parts, ok := arnParts(s)
	return a.matchParts(&parts, ok, r)
}
