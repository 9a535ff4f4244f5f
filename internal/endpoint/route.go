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
//     names API Gateway gives a private API per endpoint);
//  2. the x-apigw-api-id header;
//  3. the endpoint's only API, when it lists exactly one.
//
// The API must be one the endpoint lists. A host that names another endpoint (its vpce id
// or one of its private DNS names) addresses that endpoint, not this one, and is refused.
// On refusal api is empty and reason says why (for the audit record, never the caller).
func selectAPI(s *config.Spec, ep *config.Endpoint, host string, hdr []string) (api, reason string) {
	if s == nil || ep == nil {
		return "", "the endpoint is not in the current spec"
	}
	h := hostName(host)
	label, _, _ := strings.Cut(h, ".")
	switch {
	case len(label) == 10 && isAPIID(label):
		if _, ok := s.API(label); ok {
			api = label
		}
	case len(label) > 11 && label[10] == '-' && isAPIID(label[:10]) && validVPCEID(label[11:]):
		if vpce := label[11:]; vpce != ep.ID {
			return "", fmt.Sprintf("the host names endpoint %s, not this one", vpce)
		}
		api = label[:10]
	}
	if api == "" && h != "" {
		if other, ok := s.EndpointByDNSName(h); ok && other.ID != ep.ID {
			return "", fmt.Sprintf("the host is a private DNS name of endpoint %s", other.ID)
		}
	}
	if api == "" {
		switch len(hdr) {
		case 0:
		case 1:
			if api = hdr[0]; api == "" {
				return "", "the x-apigw-api-id header is empty"
			}
		default:
			return "", "the request has more than one x-apigw-api-id header"
		}
	}
	if api == "" {
		if len(ep.APIs) != 1 {
			return "", fmt.Sprintf("the request names no API and the endpoint serves %d", len(ep.APIs))
		}
		return ep.APIs[0], ""
	}
	if !slices.Contains(ep.APIs, api) {
		return "", fmt.Sprintf("API %q is not served by this endpoint", truncate(api, 64))
	}
	return api, ""
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

// isAPIID reports whether s is ten lower-case letters or digits, API Gateway's API id
// format (the spec's too).
func isAPIID(s string) bool {
	if len(s) != 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
