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

// ctx builds a Context from alternating key and value arguments; a value of type
// []string makes a multivalued key.
func ctx(kv ...any) *Context {
	c := NewContext(nil)
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		switch v := kv[i+1].(type) {
		case string:
			c.Set(k, v)
		case []string:
			c.Set(k, v...)
		}
	}
	return c
}
