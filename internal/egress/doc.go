// Package egress owns the egress proxy: the HTTP forward proxy (CONNECT and absolute-form
// http:// requests) that a perimeter's workloads must use to send data anywhere. It
// identifies the calling node from its proxy credentials, allows only the destinations
// its role's egress rules name (APIs through the endpoints that serve them, host:port
// patterns, CIDRs), and guards against SSRF: every host spelling is read as the address it
// denotes, a name is resolved once and the checked address is what gets dialled, and
// loopback, link-local, metadata, private and reserved ranges are refused unless a rule
// names them. Every decision is one CloudTrail-format audit event.
//
// It does not own the rules (internal/config), the node's credentials for AWS APIs
// (internal/sts, internal/agent) or the audit chain (internal/audit).
package egress
