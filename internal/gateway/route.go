package gateway

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// reqPath is a request path after normalization: RFC 3986 §5.2.4 dot segments removed
// (also their percent-encoded spellings), empty segments dropped. The gateway authorizes,
// routes and forwards this one path, so a path the signature covered in another spelling
// (/prod/a/../admin) is authorized as what it reaches (/prod/admin), never as what it says.
type reqPath struct {
	raw []string // segments as sent (percent-encoded), forwarded to the backend
	dec []string // the same segments decoded, matched against routes and named in ARNs
}

// parsePath normalizes an escaped request path. It refuses (ok false) a path that does not
// start with "/", has an invalid percent escape, or has a segment that decodes to something
// containing "/", "\" or NUL: such a segment would be one segment here and several (or a
// truncated one) to a backend that decodes it.
func parsePath(escaped string) (p reqPath, ok bool) {
	if !strings.HasPrefix(escaped, "/") {
		return p, false
	}
	n := strings.Count(escaped, "/")
	p.raw = make([]string, 0, n)
	p.dec = make([]string, 0, n)
	rest := escaped[1:]
	for {
		seg, tail, more := strings.Cut(rest, "/")
		d := seg
		if strings.IndexByte(seg, '%') >= 0 {
			var err error
			if d, err = url.PathUnescape(seg); err != nil {
				return reqPath{}, false
			}
		}
		if strings.ContainsAny(d, "/\\\x00") {
			return reqPath{}, false
		}
		switch d {
		case "", ".":
		case "..":
			if len(p.raw) > 0 {
				p.raw, p.dec = p.raw[:len(p.raw)-1], p.dec[:len(p.dec)-1]
			}
		default:
			p.raw, p.dec = append(p.raw, seg), append(p.dec, d)
		}
		if !more {
			return p, true
		}
		rest = tail
	}
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

// selectAPI picks the API a request is for, in the contract's order (.coord/dataplane-api.md,
// "API selection"): the Host's first label naming an API ({apiid} or {apiid}-{vpceid}), then
// the x-apigw-api-id header, then the only API there is (the endpoint's list when the request
// came through one, else the spec's). ok is false when none applies.
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
