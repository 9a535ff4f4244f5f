package sigv4

import (
	"strings"
	"testing"
	"time"
)

// TestCanonicalURI pins the canonical URI of paths as sent, in both modes ("Create a
// canonical request", IAM User Guide; RFC 3986 §5.2.4 for dot segments).
func TestCanonicalURI(t *testing.T) {
	tests := []struct {
		name, raw  string
		normalized string // every service but S3
		s3         string // DisablePathNormalization
	}{
		{"empty", "", "/", "/"},
		{"root", "/", "/", "/"},
		{"escape encoded twice", "/a%20b", "/a%2520b", "/a%20b"},
		{"raw space", "/a b", "/a%20b", "/a%20b"},
		{"utf-8", "/\xe1\x88\xb4", "/%E1%88%B4", "/%E1%88%B4"},
		{"reserved characters", "/a:b@c!$'()*+,;=", "/a%3Ab%40c%21%24%27%28%29%2A%2B%2C%3B%3D", "/a%3Ab%40c%21%24%27%28%29%2A%2B%2C%3B%3D"},
		{"unreserved kept", "/-._~AZaz09", "/-._~AZaz09", "/-._~AZaz09"},
		{"dot segments", "/a/./b/../c", "/a/c", "/a/./b/../c"},
		{"dot-dot above root", "/../../a", "/a", "/../../a"},
		{"dot-dot at end", "/a/b/..", "/a", "/a/b/.."},
		{"trailing slash kept", "/a/b/", "/a/b/", "/a/b/"},
		{"repeated slashes collapsed", "//a///b//", "/a/b/", "//a///b//"},
		{"only slashes", "///", "/", "///"},
		{"escaped dots are not dot segments", "/a/%2E%2E/b", "/a/%252E%252E/b", "/a/../b"},
		{"escaped slash is not a separator", "/a%2Fb", "/a%252Fb", "/a%2Fb"},
		{"lower-case escape", "/a%2fb", "/a%252fb", "/a%2Fb"},
		{"no leading slash", "a/b", "/a/b", "/a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := appendCanonicalURI(nil, tt.raw, true)
			if !ok || string(got) != tt.normalized {
				t.Errorf("normalized: %q -> %q (ok %v), want %q", tt.raw, got, ok, tt.normalized)
			}
			got, ok = appendCanonicalURI(nil, tt.raw, false)
			if !ok || string(got) != tt.s3 {
				t.Errorf("S3-style: %q -> %q (ok %v), want %q", tt.raw, got, ok, tt.s3)
			}
		})
	}
	if _, ok := appendCanonicalURI(nil, "/a%zz", false); ok {
		t.Error("S3-style: malformed escape accepted")
	}
}

// TestCanonicalQuery pins the canonical query string: decoded ('+' is a space), encoded
// again, sorted by name then value.
func TestCanonicalQuery(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"", ""},
		{"b=2&a=1", "a=1&b=2"},
		{"a=2&a=1&a=10", "a=1&a=10&a=2"},
		{"flag", "flag="},
		{"empty=", "empty="},
		{"=v", "=v"},
		{"a=b+c", "a=b%20c"},
		{"a=b%20c", "a=b%20c"},
		{"a=%2b", "a=%2B"},
		{"a=%7E~", "a=~~"},
		{"a=*'()!", "a=%2A%27%28%29%21"},
		{"k=a=b", "k=a%3Db"},
		{"a=1&&b=2&", "a=1&b=2"},
		{"\xe1\x88\xb4=x&Z=y&a=z", "%E1%88%B4=x&Z=y&a=z"},
		{"Param2=value2&Param1=value1", "Param1=value1&Param2=value2"},
	}
	for _, tt := range tests {
		s := newScratch()
		if e := s.parseQuery(tt.raw); e != nil {
			t.Errorf("%q: %v", tt.raw, e)
			continue
		}
		s.sortQuery()
		if got := string(s.appendCanonicalQuery(nil, false, false)); got != tt.want {
			t.Errorf("%q -> %q, want %q", tt.raw, got, tt.want)
		}
	}
	for _, bad := range []string{"a=%", "a=%4", "a=%zz", "%g0=1"} {
		if e := newScratch().parseQuery(bad); e == nil || e.Code != CodeMalformedQueryString {
			t.Errorf("%q: got %v, want MalformedQueryString", bad, e)
		}
	}
}

// TestCanonicalHeaderValue pins "Trimall": trimmed, inner runs of spaces collapsed.
func TestCanonicalHeaderValue(t *testing.T) {
	for in, want := range map[string]string{
		"value":            "value",
		"  a   b  ":        "a b",
		"\ta b\t":          "a b",
		`"a   b   c"`:      `"a b c"`,
		"":                 "",
		"   ":              "",
		"application/json": "application/json",
	} {
		if got := string(appendHeaderValue(nil, in)); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

// TestRawURI pins the second form real clients sign: normalized mode, the path as sent
// encoded again (aws-sdk-go-v2); S3-style, the path as sent with its escapes kept
// (botocore, aws-sdk-go-v2 with DisableURIPathEscaping).
func TestRawURI(t *testing.T) {
	tests := []struct {
		raw, normalized, s3 string
		s3ok                bool
	}{
		{"", "/", "/", true},
		{"//a/../b", "//a/../b", "//a/../b", true},
		{"/a%20b", "/a%2520b", "/a%20b", true},
		{"/a%7Eb", "/a%257Eb", "/a%7Eb", true},
		{"/a%2fb", "/a%252fb", "/a%2fb", true},
		{"/a b!", "/a%20b%21", "/a%20b%21", true},
		{"/a%zz", "/a%25zz", "", false},
		{"/a%2", "/a%252", "", false},
	}
	for _, tt := range tests {
		got, ok := appendRawURI(nil, tt.raw, true)
		if !ok || string(got) != tt.normalized {
			t.Errorf("normalized %q -> %q, want %q", tt.raw, got, tt.normalized)
		}
		got, ok = appendRawURI(nil, tt.raw, false)
		if ok != tt.s3ok || ok && string(got) != tt.s3 {
			t.Errorf("S3-style %q -> %q (ok %v), want %q (ok %v)", tt.raw, got, ok, tt.s3, tt.s3ok)
		}
	}
}

// FuzzAppendHeaderValue holds appendHeaderValue to the byte-by-byte "Trimall" it replaced.
func FuzzAppendHeaderValue(f *testing.F) {
	for _, s := range []string{"value", "  a   b  ", "\ta b\t", `"a   b   c"`, "", "   ", "a \t  b", "x  ", "  \t  y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if got, want := string(appendHeaderValue([]byte("p:"), v)), "p:"+trimallBytewise(v); got != want {
			t.Fatalf("%q -> %q, want %q", v, got, want)
		}
	})
}

// trimallBytewise is "Trimall" one byte at a time: trimmed of spaces and tabs, inner runs
// of spaces collapsed to one.
func trimallBytewise(v string) string {
	v = strings.Trim(v, " \t")
	var dst []byte
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' {
			if !space {
				dst = append(dst, ' ')
			}
			space = true
			continue
		}
		space = false
		dst = append(dst, c)
	}
	return string(dst)
}

// FuzzParseBasic holds parseBasic to time.Parse(iso8601Basic) on 16-byte inputs: the same
// refusals, the same instants.
func FuzzParseBasic(f *testing.F) {
	for _, s := range []string{"20150830T123600Z", "20240229T000000Z", "20230229T000000Z", "21000229T120000Z", "20000229T235959Z",
		"20151330T123600Z", "20150831T246000Z", "20150830T123660Z", "2015083OT123600Z", "20150830 123600Z", "20150830T123600z",
		"+0150830T123600Z", "20150830T12360-Z", "00000101T000000Z", "99991231T235959Z", "20150431T000000Z", "20150830T123600"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseBasic(s)
		want, err := time.Parse(iso8601Basic, s)
		wantOK := err == nil && len(s) == len(iso8601Basic)
		if ok != wantOK || ok && !got.Equal(want) {
			t.Fatalf("%q: parseBasic %v %v, time.Parse %v %v", s, got, ok, want, err)
		}
	})
}
