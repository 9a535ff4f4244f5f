package sts

import (
	"net/url"
	"strconv"
	"strings"
)

// Limits on a query or form string, far above what any STS call needs (AssumeRole with
// 50 tags, 10 policy ARNs and 50 transitive keys has ~175 parameters).
const (
	maxParams     = 512
	maxParamBytes = 20000 // one decoded key or value: STS's longest, WebIdentityToken, is up to 20,000 chars; each action checks its own limits
)

// params holds the decoded parameters of one call. A key given twice is refused: two
// values for one parameter would leave it to chance which one was authorized.
type params map[string]string

// paramError is a malformed query or form string.
type paramError struct{ msg string }

func (e *paramError) Error() string { return e.msg }

// parseParams decodes an application/x-www-form-urlencoded string (the STS query
// protocol's body, or a GET's query) into p. Both '&' and nothing else separate pairs
// (';' is data, as Go's net/url has it since 1.17).
func parseParams(p params, s string) error {
	for s != "" {
		var pair string
		pair, s, _ = strings.Cut(s, "&")
		if pair == "" {
			continue
		}
		if len(p) >= maxParams {
			return &paramError{"too many parameters"}
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return &paramError{"invalid percent-encoding in a parameter name"}
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return &paramError{"invalid percent-encoding in the value of " + quoteName(key)}
		}
		if key == "" {
			return &paramError{"empty parameter name"}
		}
		if len(key) > 256 || len(val) > maxParamBytes {
			return &paramError{"parameter " + quoteName(key) + " is too long"}
		}
		if _, dup := p[key]; dup {
			return &paramError{"parameter " + quoteName(key) + " is given more than once"}
		}
		p[key] = val
	}
	return nil
}

// quoteName prints a parameter name for an error message, bounded and printable.
func quoteName(k string) string {
	if len(k) > 64 {
		k = k[:64]
	}
	return strconv.QuoteToASCII(k)
}

// members returns a query-protocol list (Prefix.member.1, Prefix.member.2, ...) where
// each member is built by get(index prefix). Members must be numbered 1..n without gaps;
// n is capped at limit+1 so an oversized list is reported by the caller's length check
// without reading it all.
func (p params) members(prefix string, fields ...string) ([]map[string]string, bool) {
	var out []map[string]string
	for i := 1; ; i++ {
		base := prefix + ".member." + strconv.Itoa(i)
		m := map[string]string{}
		found := false
		if len(fields) == 0 {
			if v, ok := p[base]; ok {
				m[""] = v
				found = true
			}
		}
		for _, f := range fields {
			if v, ok := p[base+"."+f]; ok {
				m[f] = v
				found = true
			}
		}
		if !found {
			break
		}
		out = append(out, m)
	}
	// Any other key under the prefix (a gap, index 0, a stray field) is malformed.
	n := 0
	for k := range p {
		if k == prefix || strings.HasPrefix(k, prefix+".") {
			n++
		}
	}
	want := 0
	for _, m := range out {
		want += len(m)
	}
	if len(fields) == 0 {
		want = len(out)
	}
	// "Prefix" alone (an empty list, as some SDKs send "Tags=") is allowed.
	if _, ok := p[prefix]; ok {
		if p[prefix] != "" {
			return nil, false
		}
		want++
	}
	return out, n == want
}
