package handoff

// Headers of the other way an endpoint process reaches the gateway: it terminates the
// caller's TLS itself and forwards each request on a mutually authenticated TLS connection,
// with these headers saying what only it knows (internal/endpoint's forward.go sets them
// and strips any a caller sent). The gateway believes them only on a connection whose
// verified client certificate names an endpoint of the current spec; in one process the
// same facts travel as a typed value instead (the endpoint's and the gateway's Handover).
// The names are in canonical form: both sides index http.Header with them directly.
const (
	HeaderSourceIP   = "X-Phantom-Source-Ip"   // the caller's address: aws:SourceIp, sourceIPAddress
	HeaderAPIID      = "X-Phantom-Api-Id"      // the API the endpoint selected
	HeaderTLSVersion = "X-Phantom-Tls-Version" // the caller's TLS version, for the audit record
	HeaderTLSCipher  = "X-Phantom-Tls-Cipher"  // the caller's cipher suite, for the audit record
)
