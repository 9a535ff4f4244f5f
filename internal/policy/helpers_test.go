package policy

import (
	"testing"
)

// mustParse parses a policy document or fails the test.
func mustParse(t testing.TB, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, doc)
	}
	return p
}

// list is a context value given as a list: a multivalued key even of one value.
type list []string

// ctx builds a Context from alternating key and value arguments; a value of type
// []string holds several values (a multivalued key unless it holds exactly one), a list
// always makes a multivalued key.
func ctx(kv ...any) *Context {
	c := NewContext(nil)
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		switch v := kv[i+1].(type) {
		case string:
			c.Set(k, v)
		case []string:
			c.Set(k, v...)
		case list:
			c.SetMultivalued(k, v...)
		}
	}
	return c
}
