package endpoint

import (
	"fmt"
	"slices"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// headerAPIID is API Gateway's header naming a private API when the host does not
// ("Invoking your private API using endpoint-specific public DNS host names", the
// x-apigw-api-id header).
const headerAPIID = "X-Apigw-Api-Id"

// selectAPI picks the API a request addresses, in the order the data-plane contract fixes
// for the endpoint and the gateway alike:
//
//  1. the Host's first label, {api-id} naming an API or {api-id}-{vpce-id} (the host
//     names API Gateway gives a private API per endpoint), or a private DNS name of this
//     endpoint when it serves one API (config.Spec.BindName);
//  2. the x-apigw-api-id header;
//  3. the endpoint's only API, when it lists exactly one.
//
// The API must be one the endpoint lists. A host that names another endpoint (its vpce id
// or one of its private DNS names) addresses that endpoint, not this one, and is refused.
//
// The connection's TLS server name (sni) binds it: a server name that names an API makes
// that the API of every request on the connection, and a request naming another by Host
// or header is misdirected (RFC 9110 §15.5.20: this connection cannot serve that target),
// so a tunnel the egress proxy admitted for one API cannot be turned to another. A server
// name naming another endpoint is refused; one that names no API binds nothing.
//
// On refusal api is empty, misdirected tells a 421 from a 403, and reason says why (for
// the audit record, never the caller).
func selectAPI(s *config.Spec, ep *config.Endpoint, sni, host string, hdr []string) (api string, misdirected bool, reason string) {
	if s == nil || ep == nil {
		return "", false, "the endpoint is not in the current spec"
	}
	h := hostName(host)
	b := s.BindName(ep, h)
	switch {
	case b.OtherEndpoint != "" && isAPIVPCEHost(h):
		return "", false, fmt.Sprintf("the host names endpoint %s, not this one", b.OtherEndpoint)
	case b.OtherEndpoint != "":
		return "", false, fmt.Sprintf("the host is a private DNS name of endpoint %s", b.OtherEndpoint)
	}
	named := b.API
	if named == "" {
		switch len(hdr) {
		case 0:
		case 1:
			if named = hdr[0]; named == "" {
				return "", false, "the x-apigw-api-id header is empty"
			}
		default:
			return "", false, "the request has more than one x-apigw-api-id header"
		}
	}
	if sni != "" {
		sb := b
		if sni != h {
			// Clients send the Host they resolved as the server name: then the two bind
			// alike and the binding is not worked out twice.
			sb = s.BindName(ep, sni)
		}
		switch {
		case sb.OtherEndpoint != "":
			return "", true, fmt.Sprintf("the TLS server name %q addresses endpoint %s, not this one", truncate(sni, 128), sb.OtherEndpoint)
		case sb.API != "" && named != "" && named != sb.API:
			return "", true, fmt.Sprintf("the TLS server name binds the connection to API %s; the request names API %s", sb.API, truncate(named, 64))
		case sb.API != "" && len(hdr) == 1 && hdr[0] != sb.API:
			// Named by the host, contradicted by the header: not a request this connection
			// serves either.
			return "", true, fmt.Sprintf("the TLS server name binds the connection to API %s; x-apigw-api-id names API %s", sb.API, truncate(hdr[0], 64))
		case sb.API != "":
			named = sb.API
		}
	}
	if named == "" {
		if len(ep.APIs) != 1 {
			return "", false, fmt.Sprintf("the request names no API and the endpoint serves %d", len(ep.APIs))
		}
		return ep.APIs[0], false, ""
	}
	if !slices.Contains(ep.APIs, named) {
		return "", false, fmt.Sprintf("API %q is not served by this endpoint", truncate(named, 64))
	}
	return named, false, ""
}

// isAPIVPCEHost reports whether a host's first label is {api-id}-{vpce-id}.
func isAPIVPCEHost(h string) bool {
	label, _, _ := strings.Cut(h, ".")
	return len(label) > 11 && label[10] == '-' && config.IsAPIID(label[:10])
}

// hostName returns the host of a Host header without its port, in lower case and without
// a trailing dot (DNS names compare that way).
func hostName(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return strings.ToLower(host[1:i])
		}
		return ""
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		host = host[:i]
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
