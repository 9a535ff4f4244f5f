package policy

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The policy grammar is parsed from a small JSON reader of our own instead of
// encoding/json because IAM needs what encoding/json hides: duplicate keys must be
// rejected (encoding/json keeps the last one, so a second "Effect" could silently turn
// a Deny into an Allow), member order is kept for stable printing, and every node knows
// its byte offset so findings carry a line and column like Access Analyzer's.

type jsonKind uint8

const (
	jNull jsonKind = iota
	jBool
	jNumber
	jString
	jArray
	jObject
)

func (k jsonKind) String() string {
	switch k {
	case jNull:
		return "null"
	case jBool:
		return "boolean"
	case jNumber:
		return "number"
	case jString:
		return "string"
	case jArray:
		return "array"
	}
	return "object"
}

type jnode struct {
	kind    jsonKind
	str     string // string value, number text, or "true"/"false"
	off     int    // byte offset of the value
	items   []*jnode
	members []jmember
}

type jmember struct {
	key    string
	keyOff int
	val    *jnode
}

// maxDepth bounds nesting: a policy is at most five levels deep, and the bound keeps
// hostile input from exhausting the stack.
const maxDepth = 32

type jsonError struct {
	off int
	msg string
}

type jreader struct {
	data []byte
	pos  int
	err  *jsonError
}

func parseJSON(data []byte) (*jnode, *jsonError) {
	r := &jreader{data: data}
	r.skipWS()
	n := r.value(0)
	if r.err != nil {
		return nil, r.err
	}
	r.skipWS()
	if r.pos != len(r.data) {
		return nil, &jsonError{r.pos, "unexpected data after the JSON document"}
	}
	return n, nil
}

func (r *jreader) fail(off int, msg string) *jnode {
	if r.err == nil {
		r.err = &jsonError{off, msg}
	}
	return nil
}

func (r *jreader) skipWS() {
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

func (r *jreader) value(depth int) *jnode {
	if depth > maxDepth {
		return r.fail(r.pos, "JSON nested too deeply")
	}
	if r.pos >= len(r.data) {
		return r.fail(r.pos, "unexpected end of JSON")
	}
	start := r.pos
	switch c := r.data[r.pos]; {
	case c == '{':
		return r.object(depth)
	case c == '[':
		return r.array(depth)
	case c == '"':
		s, ok := r.string()
		if !ok {
			return nil
		}
		return &jnode{kind: jString, str: s, off: start}
	case c == 't':
		return r.literal("true", jBool)
	case c == 'f':
		return r.literal("false", jBool)
	case c == 'n':
		return r.literal("null", jNull)
	case c == '-' || (c >= '0' && c <= '9'):
		return r.number()
	}
	return r.fail(start, "invalid character "+strconv.QuoteRune(rune(r.data[r.pos]))+" looking for a JSON value")
}

func (r *jreader) literal(word string, k jsonKind) *jnode {
	start := r.pos
	if len(r.data)-r.pos < len(word) || string(r.data[r.pos:r.pos+len(word)]) != word {
		return r.fail(start, "invalid JSON literal")
	}
	r.pos += len(word)
	return &jnode{kind: k, str: word, off: start}
}

func (r *jreader) number() *jnode {
	start := r.pos
	d := r.data
	if r.pos < len(d) && d[r.pos] == '-' {
		r.pos++
	}
	digits := func() int {
		n := 0
		for r.pos < len(d) && d[r.pos] >= '0' && d[r.pos] <= '9' {
			r.pos++
			n++
		}
		return n
	}
	if r.pos < len(d) && d[r.pos] == '0' {
		r.pos++
	} else if digits() == 0 {
		return r.fail(start, "invalid JSON number")
	}
	if r.pos < len(d) && d[r.pos] == '.' {
		r.pos++
		if digits() == 0 {
			return r.fail(start, "invalid JSON number")
		}
	}
	if r.pos < len(d) && (d[r.pos] == 'e' || d[r.pos] == 'E') {
		r.pos++
		if r.pos < len(d) && (d[r.pos] == '+' || d[r.pos] == '-') {
			r.pos++
		}
		if digits() == 0 {
			return r.fail(start, "invalid JSON number")
		}
	}
	return &jnode{kind: jNumber, str: string(d[start:r.pos]), off: start}
}

func (r *jreader) string() (string, bool) {
	start := r.pos
	r.pos++ // opening quote
	d := r.data
	// Fast path: no escapes.
	i := r.pos
	for i < len(d) && d[i] != '"' && d[i] != '\\' && d[i] >= 0x20 && d[i] < utf8.RuneSelf {
		i++
	}
	if i < len(d) && d[i] == '"' {
		s := string(d[r.pos:i])
		r.pos = i + 1
		return s, true
	}
	var buf []byte
	buf = append(buf, d[r.pos:i]...)
	r.pos = i
	for {
		if r.pos >= len(d) {
			r.fail(start, "unterminated JSON string")
			return "", false
		}
		c := d[r.pos]
		switch {
		case c == '"':
			r.pos++
			return string(buf), true
		case c < 0x20:
			r.fail(r.pos, "control character in JSON string")
			return "", false
		case c == '\\':
			if r.pos+1 >= len(d) {
				r.fail(start, "unterminated JSON string")
				return "", false
			}
			e := d[r.pos+1]
			r.pos += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				ru, ok := r.hex4()
				if !ok {
					return "", false
				}
				if utf16.IsSurrogate(ru) {
					ru2 := rune(-1)
					if r.pos+1 < len(d) && d[r.pos] == '\\' && d[r.pos+1] == 'u' {
						r.pos += 2
						if ru2, ok = r.hex4(); !ok {
							return "", false
						}
					}
					ru = utf16.DecodeRune(ru, ru2)
					if ru == utf8.RuneError {
						r.fail(r.pos, "invalid surrogate pair in JSON string")
						return "", false
					}
				}
				buf = utf8.AppendRune(buf, ru)
			default:
				r.fail(r.pos-2, "invalid escape in JSON string")
				return "", false
			}
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			r.pos++
		default:
			ru, n := utf8.DecodeRune(d[r.pos:])
			if ru == utf8.RuneError && n <= 1 {
				r.fail(r.pos, "invalid UTF-8 in JSON string")
				return "", false
			}
			buf = append(buf, d[r.pos:r.pos+n]...)
			r.pos += n
		}
	}
}

func (r *jreader) hex4() (rune, bool) {
	if r.pos+4 > len(r.data) {
		r.fail(r.pos, "invalid \\u escape in JSON string")
		return 0, false
	}
	v, err := strconv.ParseUint(string(r.data[r.pos:r.pos+4]), 16, 32)
	if err != nil {
		r.fail(r.pos, "invalid \\u escape in JSON string")
		return 0, false
	}
	r.pos += 4
	return rune(v), true
}

func (r *jreader) array(depth int) *jnode {
	n := &jnode{kind: jArray, off: r.pos}
	r.pos++
	r.skipWS()
	if r.pos < len(r.data) && r.data[r.pos] == ']' {
		r.pos++
		return n
	}
	for {
		r.skipWS()
		v := r.value(depth + 1)
		if v == nil {
			return nil
		}
		n.items = append(n.items, v)
		r.skipWS()
		if r.pos >= len(r.data) {
			return r.fail(n.off, "unterminated JSON array")
		}
		switch r.data[r.pos] {
		case ',':
			r.pos++
		case ']':
			r.pos++
			return n
		default:
			return r.fail(r.pos, "expected ',' or ']' in JSON array")
		}
	}
}

func (r *jreader) object(depth int) *jnode {
	n := &jnode{kind: jObject, off: r.pos}
	var seen map[string]struct{}
	r.pos++
	r.skipWS()
	if r.pos < len(r.data) && r.data[r.pos] == '}' {
		r.pos++
		return n
	}
	for {
		r.skipWS()
		if r.pos >= len(r.data) || r.data[r.pos] != '"' {
			return r.fail(r.pos, "expected a string key in JSON object")
		}
		koff := r.pos
		k, ok := r.string()
		if !ok {
			return nil
		}
		// A linear scan is cheapest for the small objects of a policy; a map takes over
		// so a hostile object with many keys stays linear.
		dup := false
		if seen != nil {
			_, dup = seen[k]
			seen[k] = struct{}{}
		} else {
			for _, m := range n.members {
				if m.key == k {
					dup = true
				}
			}
			if len(n.members) >= 16 {
				seen = make(map[string]struct{}, 2*len(n.members))
				for _, m := range n.members {
					seen[m.key] = struct{}{}
				}
				seen[k] = struct{}{}
			}
		}
		if dup {
			return r.fail(koff, "duplicate key "+strconv.Quote(k))
		}
		r.skipWS()
		if r.pos >= len(r.data) || r.data[r.pos] != ':' {
			return r.fail(r.pos, "expected ':' after object key")
		}
		r.pos++
		r.skipWS()
		v := r.value(depth + 1)
		if v == nil {
			return nil
		}
		n.members = append(n.members, jmember{key: k, keyOff: koff, val: v})
		r.skipWS()
		if r.pos >= len(r.data) {
			return r.fail(n.off, "unterminated JSON object")
		}
		switch r.data[r.pos] {
		case ',':
			r.pos++
		case '}':
			r.pos++
			return n
		default:
			return r.fail(r.pos, "expected ',' or '}' in JSON object")
		}
	}
}

// lineCol converts a byte offset to a 1-based line and column (columns count runes).
// It scans from the start; the parser uses its line index for many findings.
func lineCol(data []byte, off int) (int, int) {
	ps := parser{data: data}
	return ps.lineCol(off)
}
