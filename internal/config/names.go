package config

import "strings"

// NameBinding is what a host name says about the API a call to an endpoint is for: the
// TLS server name (SNI) of the caller's connection, or its Host header. One rule, here,
// for the endpoint that enforces it and the egress proxy that checks a tunnel's server
// name before a byte of it reaches the endpoint.
type NameBinding struct {
	// API is the API the name binds to; "" when it names none (an IP address, a name of
	// this host, the private DNS name of an endpoint serving several APIs).
	API string
	// OtherEndpoint is set when the name addresses another endpoint of the spec (its
	// vpce id in an {api}-{vpce} name, or one of its private DNS names).
	OtherEndpoint string
}

// BindName applies the naming rules of API Gateway private APIs to a host name (without
// port; compared in lower case, a trailing dot ignored), for a call reaching endpoint ep:
//
//   - {api-id}.… (e.g. a1b2c3d4e5.execute-api.us-east-1.amazonaws.com, the private DNS
//     name of a private API) names that API;
//   - {api-id}-{vpce-id}.… (the endpoint-specific public DNS name) names that API through
//     that endpoint, and another endpoint's id addresses that endpoint;
//   - a private DNS name of ep names ep's API when ep serves exactly one (the name is the
//     API's, as orders.internal.example is the demo's orders API); one of another
//     endpoint addresses that endpoint.
//
// Anything else binds nothing.
func (s *Spec) BindName(ep *Endpoint, name string) NameBinding {
	h := strings.ToLower(strings.TrimSuffix(name, "."))
	if h == "" {
		return NameBinding{}
	}
	label, _, _ := strings.Cut(h, ".")
	switch {
	case IsAPIID(label):
		if _, ok := s.API(label); ok {
			return NameBinding{API: label}
		}
	case len(label) > 11 && label[10] == '-' && IsAPIID(label[:10]) && IsVPCEID(label[11:]):
		if vpce := label[11:]; ep == nil || vpce != ep.ID {
			return NameBinding{OtherEndpoint: vpce}
		}
		return NameBinding{API: label[:10]}
	}
	if e, ok := s.EndpointByDNSName(h); ok {
		switch {
		case ep == nil || e.ID != ep.ID:
			return NameBinding{OtherEndpoint: e.ID}
		case len(e.APIs) == 1:
			return NameBinding{API: e.APIs[0]}
		}
	}
	return NameBinding{}
}

// ExecuteAPIName is the private DNS name of an API in a region,
// {api-id}.execute-api.{region}.amazonaws.com: the name a workload reaches a private API
// by (through the endpoints of its VPC), and the one its TLS server name binds.
func ExecuteAPIName(api, region string) string {
	return api + ".execute-api." + region + ".amazonaws.com"
}

// ExecuteAPIWildcard is the certificate name that covers every API's private DNS names
// in a region, both {api-id} and {api-id}-{vpce-id}: *.execute-api.{region}.amazonaws.com.
func ExecuteAPIWildcard(region string) string {
	return "*.execute-api." + region + ".amazonaws.com"
}

// IsAPIID reports whether s is an API id: ten lower-case letters or digits (apiIDRe, the
// spec's format and API Gateway's). A loop rather than the regular expression: it runs on
// every request's Host and server name.
func IsAPIID(s string) bool {
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

// IsVPCEID reports whether s is an endpoint id: vpce- and 8 or 17 lower-case hex digits
// (vpceRe).
func IsVPCEID(s string) bool {
	h, ok := strings.CutPrefix(s, "vpce-")
	if !ok || len(h) != 8 && len(h) != 17 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
