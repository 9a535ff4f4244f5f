package gateway

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// reqPath is a request path after normalization: RFC 3986 §5.2.4 dot segments removed,
// empty segments dropped. The gateway authorizes, routes and forwards this one path, so a
// path the signature covered in another spelling (/prod/a/../admin) is authorized as what
// it reaches (/prod/admin), never as what it says, and the backend receives byte for byte
// the segments that were authorized.
type reqPath struct {
	raw []string // segments as sent (percent-encoded), forwarded to the backend
	dec []string // the same segments decoded, matched against routes and named in ARNs
	// params reports a segment with a ";" parameter (/a;v=1/b), which only a route that
	// allows matrix parameters accepts.
	params bool
}

// maxDecodes bounds how many times parsePath decodes a segment looking for a separator or
// dot segment hidden under layers of percent-encoding (%25252e is "." after three).
const maxDecodes = 4

// parsePath normalizes an escaped request path, or says why it refuses it (400): the path
// must start with "/", and no segment may mean one thing to the gateway and another to a
// backend that decodes it again, resolves ";" parameters or accepts overlong UTF-8. So a
// segment is refused when it holds a "\", an invalid percent escape, or bytes that are
// not UTF-8 (overlong forms like %c0%ae included), and when it, or what it decodes to
// after one or more further decodings, contains "/", "\" or NUL, is a dot segment
// spelled with escapes (%2e%2e), or is a dot segment before ";" parameters (..;). A
// literal dot segment is removed as RFC 3986 §5.2.4 says.
func parsePath(escaped string) (p reqPath, reason string) {
	return parsePathIn(escaped, nil)
}

// parsePathIn is parsePath with the segments kept in scratch (two halves: raw, decoded)
// when they fit.
func parsePathIn(escaped string, scratch []string) (p reqPath, reason string) {
	if !strings.HasPrefix(escaped, "/") {
		return p, "the path does not start with /"
	}
	n := strings.Count(escaped, "/")
	if half := len(scratch) / 2; n <= half {
		p.raw, p.dec = scratch[:0:half], scratch[half:half:2*half]
	} else {
		p.raw = make([]string, 0, n)
		p.dec = make([]string, 0, n)
	}
	rest := escaped[1:]
	popped := false
	for {
		seg, tail, more := strings.Cut(rest, "/")
		d, params, why := segment(seg)
		if why != "" {
			return reqPath{}, "path segment " + strconv.Quote(truncate(seg, 64)) + " " + why
		}
		p.params = p.params || params
		switch d {
		case "", ".":
		case "..":
			if len(p.raw) > 0 {
				p.raw, p.dec = p.raw[:len(p.raw)-1], p.dec[:len(p.dec)-1]
				popped = true
			}
		default:
			p.raw, p.dec = append(p.raw, seg), append(p.dec, d)
		}
		if !more {
			if p.params && popped {
				// A ".." may have removed the only segment with parameters (/a;v=1/..):
				// params describes the path that is forwarded, so look again.
				p.params = false
				for _, r := range p.raw {
					_, params, _ := segment(r)
					p.params = p.params || params
				}
			}
			return p, ""
		}
		rest = tail
	}
}

// is reports whether escaped is "/" and the raw segments joined by "/": the path came in
// normalized (the path an event names is then the request's own string).
func (p reqPath) is(escaped string) bool {
	if len(p.raw) == 0 {
		return escaped == "/"
	}
	for _, seg := range p.raw {
		if len(escaped) < 1+len(seg) || escaped[0] != '/' || escaped[1:1+len(seg)] != seg {
			return false
		}
		escaped = escaped[1+len(seg):]
	}
	return escaped == ""
}

// segment decodes one raw segment and applies parsePath's rules to it.
func segment(seg string) (dec string, params bool, why string) {
	if strings.IndexByte(seg, '\\') >= 0 {
		return "", false, "contains a backslash, a separator to some backends"
	}
	if strings.IndexByte(seg, 0) >= 0 {
		return "", false, "contains NUL"
	}
	if strings.IndexByte(seg, '%') < 0 {
		// Nothing encoded: the fast path of every ordinary request.
		if strings.IndexByte(seg, ';') >= 0 {
			if why := paramRule(seg); why != "" {
				return "", false, why
			}
			params = true
		}
		if !utf8.ValidString(seg) {
			return "", false, "is not valid UTF-8"
		}
		return seg, params, ""
	}
	d, err := url.PathUnescape(seg)
	if err != nil {
		return "", false, "has an invalid percent-encoding"
	}
	if d == "." || d == ".." {
		return "", false, "is a dot segment spelled with percent-encoding"
	}
	// The decoded form and every further decoding a backend might apply.
	for level, cur := 0, d; ; level++ {
		if strings.ContainsAny(cur, "/\\\x00") {
			return "", false, "decodes to a separator or NUL"
		}
		if !utf8.ValidString(cur) {
			return "", false, "decodes to bytes that are not UTF-8 (an overlong or invalid encoding)"
		}
		if strings.IndexByte(cur, ';') >= 0 {
			if why := paramRule(cur); why != "" {
				return "", false, why
			}
			params = true
		}
		if level > 0 && (cur == "." || cur == "..") {
			return "", false, "decodes to a dot segment when decoded again"
		}
		if level >= maxDecodes || strings.IndexByte(cur, '%') < 0 {
			return d, params, ""
		}
		next, err := url.PathUnescape(cur)
		if err != nil || next == cur {
			return d, params, "" // not an encoding a backend could decode: data
		}
		cur = next
	}
}

// paramRule refuses a segment whose part before its ";" parameters is a dot segment or
// empty: Java servlet containers read "..;x" as "..".
func paramRule(s string) string {
	switch name, _, _ := strings.Cut(s, ";"); name {
	case "", ".", "..":
		return "has ; parameters after a dot segment or an empty name"
	}
	return ""
}

// routeMatch is a matched stage and route.
type routeMatch struct {
	stage string
	route *config.Route
	rest  reqPath // the path after the stage
}

// match finds the stage and route for method and path. ok is false when the stage or the
// path is unknown or no route of the path allows the method: API Gateway answers all three
// with 403 "Missing Authentication Token".
func match(api *config.API, method string, p reqPath) (routeMatch, bool) {
	if len(p.dec) == 0 {
		return routeMatch{}, false
	}
	stage := p.dec[0]
	found := false
	for _, s := range api.Stages {
		if s == stage {
			found = true
			break
		}
	}
	if !found {
		return routeMatch{}, false
	}
	rest := reqPath{raw: p.raw[1:], dec: p.dec[1:]}
	var best *config.Route
	for _, r := range api.Routes {
		if !methodAllowed(r.Methods, method) || !segmentsMatch(r.Segments, rest.dec) {
			continue
		}
		if best == nil || moreSpecific(r.Segments, best.Segments) {
			best = r
		}
	}
	if best == nil {
		return routeMatch{}, false
	}
	return routeMatch{stage: stage, route: best, rest: rest}, true
}

func methodAllowed(methods []string, m string) bool {
	for _, x := range methods {
		if x == m || x == "ANY" {
			return true
		}
	}
	return false
}

// segmentsMatch reports whether a path template matches the decoded segments. Literals
// compare exactly (API Gateway paths are case-sensitive); {name} takes one non-empty
// segment; {name+} takes one or more.
func segmentsMatch(tmpl []config.Segment, segs []string) bool {
	for i, t := range tmpl {
		if t.Kind == config.Greedy {
			return len(segs) > i
		}
		if i >= len(segs) {
			return false
		}
		if t.Kind == config.Literal && t.Value != segs[i] {
			return false
		}
	}
	return len(tmpl) == len(segs)
}

// moreSpecific reports whether template a wins over b when both match: API Gateway prefers,
// segment by segment from the left, a literal over a parameter over a greedy parameter.
func moreSpecific(a, b []config.Segment) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i].Kind != b[i].Kind {
			return a[i].Kind < b[i].Kind
		}
	}
	return len(a) > len(b)
}

// selectAPI picks the API a request is for, in this order (as a private API's callers name
// it: "Invoking a private API", API Gateway Developer Guide): the Host's first label naming
// an API ({apiid} or {apiid}-{vpceid}), then the x-apigw-api-id header, then the only API
// there is (the endpoint's list when the request came through one, else the spec's). ok is
// false when none applies.
func selectAPI(spec *config.Spec, host string, hdr http.Header, ep *config.Endpoint) (*config.API, bool) {
	if id := hostAPIID(host); id != "" {
		if api, ok := spec.API(id); ok {
			return api, true
		}
	}
	if v := hdr.Values("X-Apigw-Api-Id"); len(v) > 0 {
		if len(v) != 1 {
			return nil, false
		}
		return spec.API(v[0])
	}
	if ep != nil {
		if len(ep.APIs) == 1 {
			return spec.API(ep.APIs[0])
		}
		return nil, false
	}
	if len(spec.APIs) == 1 {
		return spec.APIs[0], true
	}
	return nil, false
}

// hostAPIID returns the API id a Host names in its first label ("a1b2c3d4e5" of
// a1b2c3d4e5.execute-api.us-east-1.amazonaws.com or a1b2c3d4e5-vpce-0123….execute-api…),
// or "" when the first label has neither shape. The vpce part names nothing the gateway
// trusts: aws:SourceVpce comes from the endpoint's certificate only.
func hostAPIID(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	label, _, _ := strings.Cut(host, ".")
	if id, vpce, ok := strings.Cut(label, "-"); ok {
		if !strings.HasPrefix(strings.ToLower(vpce), "vpce-") {
			return ""
		}
		label = id
	}
	if len(label) != 10 {
		return ""
	}
	return strings.ToLower(label)
}

// listsAPI reports whether the endpoint serves the API.
func listsAPI(ep *config.Endpoint, id string) bool {
	for _, a := range ep.APIs {
		if a == id {
			return true
		}
	}
	return false
}
