package policy

import (
	"slices"
	"testing"
)

// TestContext: condition key names are case-insensitive ("IAM JSON policy elements:
// Condition"); values keep their case; a key can be present with no values.
func TestContext(t *testing.T) {
	c := NewContext(map[string][]string{"aws:SourceIp": {"10.0.0.1"}, "AWS:TagKeys": {"a"}, "aws:tagkeys": {"b"}})
	if v, ok := c.Get("AWS:SOURCEIP"); !ok || !slices.Equal(v, []string{"10.0.0.1"}) {
		t.Errorf("Get upper-case: %v %v", v, ok)
	}
	v, _ := c.Get("aws:TagKeys")
	slices.Sort(v)
	if !slices.Equal(v, []string{"a", "b"}) {
		t.Errorf("keys differing only in case were not merged: %v", v)
	}
	vals := []string{"Alice"}
	c.Set("aws:UserName", vals...)
	vals[0] = "mallory" // Set copies: the caller's slice cannot change the context later
	if v, _ := c.Get("aws:username"); !slices.Equal(v, []string{"Alice"}) {
		t.Errorf("Set: %v", v)
	}
	c.Set("aws:TagKeys")
	if v, ok := c.Get("aws:tagkeys"); !ok || len(v) != 0 {
		t.Errorf("empty multivalued key: %v %v", v, ok)
	}
	if _, ok := c.Get("aws:missing"); ok {
		t.Error("absent key reported present")
	}
	var nilCtx *Context
	if _, ok := nilCtx.Get("k"); ok {
		t.Error("nil context has keys")
	}
	var zero Context
	zero.Set("k", "v")
	if v, ok := zero.Get("K"); !ok || v[0] != "v" {
		t.Error("zero Context is not usable")
	}
}

// TestContextOf: a map with lower-case names is used as is (no copy); any other name makes
// ContextOf fall back to NewContext, so lookups stay case-insensitive and keys that differ
// only in case are merged.
func TestContextOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    map[string][]string
		key  string
		want []string
	}{
		{"lower case", map[string][]string{"aws:sourceip": {"10.0.0.1"}}, "AWS:SourceIp", []string{"10.0.0.1"}},
		{"mixed case falls back", map[string][]string{"aws:SourceIp": {"10.0.0.1"}}, "aws:sourceip", []string{"10.0.0.1"}},
		{"merged", map[string][]string{"aws:TagKeys": {"a"}, "aws:tagkeys": {"a"}}, "aws:tagkeys", []string{"a", "a"}},
		{"non-ASCII upper case", map[string][]string{"aws:principaltag/Äbc": {"v"}}, "aws:PrincipalTag/äbc", []string{"v"}},
		{"non-ASCII lower case", map[string][]string{"aws:principaltag/äbc": {"v"}}, "aws:PrincipalTag/ÄBC", []string{"v"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ContextOf(tc.m)
			if v, ok := c.Get(tc.key); !ok || !slices.Equal(v, tc.want) {
				t.Errorf("Get(%q) = %v %v, want %v", tc.key, v, ok, tc.want)
			}
		})
	}
}

// BenchmarkContextOf: a map whose names are already lower case is not copied (at most
// one allocation a call; allocations are a benchmark's measure, not a test's).
func BenchmarkContextOf(b *testing.B) {
	m := map[string][]string{"aws:sourceip": {"10.0.0.1"}, "aws:principalaccount": {"123456789012"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = ContextOf(m)
	}
}

// TestContextReset: a reused Context answers as ContextOf's does, upper-case names merged.
func TestContextReset(t *testing.T) {
	var c Context
	c.Reset(map[string][]string{"aws:sourceip": {"10.0.0.1"}})
	if v, ok := c.Get("AWS:SourceIp"); !ok || len(v) != 1 || v[0] != "10.0.0.1" {
		t.Fatalf("%v %v", v, ok)
	}
	c.Reset(map[string][]string{"AWS:SourceVpce": {"vpce-1"}})
	if _, ok := c.Get("aws:sourceip"); ok {
		t.Fatal("Reset kept the previous request's keys")
	}
	if v, ok := c.Get("aws:sourcevpce"); !ok || v[0] != "vpce-1" {
		t.Fatalf("%v %v", v, ok)
	}
}
