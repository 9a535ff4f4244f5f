package policy

import "strings"

// Context holds a request's condition keys. Key names are case-insensitive ("Condition
// key names are not case-sensitive", "IAM JSON policy elements: Condition"); values are
// case-sensitive and a key may hold several values. A key is multivalued ("Single-valued
// vs. multivalued context keys", aws:TagKeys) when it holds other than one value, or
// when SetMultivalued set it, as a request context can carry a list of one value. A
// Context must not be modified while an evaluation reads it.
type Context struct {
	m     map[string][]string
	multi map[string]bool // keys set as lists whatever their length
}

// NewContext builds a Context from m. Keys that differ only in case are merged.
func NewContext(m map[string][]string) *Context {
	c := &Context{m: make(map[string][]string, len(m))}
	for k, v := range m {
		lk := strings.ToLower(k)
		c.m[lk] = append(c.m[lk], v...)
	}
	return c
}

// ContextOf builds a Context that uses m itself instead of a copy, for callers that build
// a fresh map per request (a gateway evaluating every call): m and its value slices must not
// be modified while the Context is in use (Set writes to m). Names already in lower case — what a hot path
// should pass — cost nothing; if any name is not, ContextOf returns NewContext(m), so the
// lookups are case-insensitive either way.
func ContextOf(m map[string][]string) *Context {
	for k := range m {
		if !isLower(k) {
			return NewContext(m)
		}
	}
	return &Context{m: m}
}

// Reset makes c what ContextOf(m) returns, in place, for a caller that keeps a Context
// per worker instead of allocating one per request; the same rules hold for m.
func (c *Context) Reset(m map[string][]string) {
	for k := range m {
		if !isLower(k) {
			*c = *NewContext(m)
			return
		}
	}
	*c = Context{m: m}
}

// ResetLower is Reset for a caller that made every name of m with strings.ToLower: the
// names are not checked again (each decision of a gateway would range over its map for
// nothing). A name not in lower case would never be found; a caller that cannot promise
// lower case calls Reset.
func (c *Context) ResetLower(m map[string][]string) {
	*c = Context{m: m}
}

// isLower reports whether strings.ToLower(s) == s.
func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			return false
		}
		if c >= 0x80 {
			return strings.ToLower(s) == s
		}
	}
	return true
}

// Set replaces the values of key. Set with no values records the key as present with an
// empty set of values, which a multivalued key can be.
func (c *Context) Set(key string, values ...string) {
	if c.m == nil {
		c.m = make(map[string][]string)
	}
	lk := strings.ToLower(key)
	c.m[lk] = append([]string{}, values...)
	delete(c.multi, lk)
}

// SetMultivalued replaces the values of key and makes it a multivalued key even with a
// single value (as the AWS policy simulator's list-typed context entries are).
func (c *Context) SetMultivalued(key string, values ...string) {
	c.Set(key, values...)
	if c.multi == nil {
		c.multi = make(map[string]bool)
	}
	c.multi[strings.ToLower(key)] = true
}

// multivalued reports whether an already lowercased key holding vals is multivalued.
func (c *Context) multivalued(lowerKey string, vals []string) bool {
	return len(vals) != 1 || c != nil && len(c.multi) > 0 && c.multi[lowerKey]
}

// Get returns the values of key and whether it is present.
func (c *Context) Get(key string) ([]string, bool) {
	if c == nil {
		return nil, false
	}
	v, ok := c.m[strings.ToLower(key)]
	return v, ok
}

// get looks up an already lowercased key without allocating.
func (c *Context) get(lowerKey string) ([]string, bool) {
	if c == nil {
		return nil, false
	}
	v, ok := c.m[lowerKey]
	return v, ok
}
