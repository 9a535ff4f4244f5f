package config

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

const demoPath = "../../examples/demo.yaml"

type schemaVerdict int

const (
	schemaAccepts schemaVerdict = iota // only the loader's semantic checks catch it
	schemaRejects                      // the editor schema flags it too
	schemaNotJSON                      // not a single JSON-representable document at all
)

// badSpecs holds one file per kind of broken spec and the exact error it must produce
// (Smokescreen's broken-config style), and whether the JSON Schema, which editors use,
// catches the same file.
var badSpecs = []struct {
	name   string
	schema schemaVerdict
	want   string
}{
	{name: "user_unknown_group", schema: schemaAccepts,
		want: "testdata/user_unknown_group.yaml:8:14: users[0].groups[0]: no group named \"developer\"; did you mean \"developers\"?"},
	{name: "group_policy_with_principal", schema: schemaAccepts,
		want: "testdata/group_policy_with_principal.yaml:11:42: groups[0].policies[0].document.Statement[0].Principal: an identity policy cannot have Principal: it applies to the principal it is attached to; remove it (UNSUPPORTED_PRINCIPAL); correct this element of the policy (IAM JSON policy grammar)"},
	{name: "account_format", schema: schemaRejects,
		want: "testdata/account_format.yaml:2:10: account: \"12345\" is not a 12-digit account id; write the 12 digits in quotes, e.g. \"123456789012\""},
	{name: "account_unquoted", schema: schemaRejects,
		want: "testdata/account_unquoted.yaml:2:10: account: must be a string, not a number; quote it: account: \"123456789012\""},
	{name: "alias_bomb", schema: schemaNotJSON,
		want: "testdata/alias_bomb.yaml:12:52: the file expands to more than 1048576 values (aliases repeat what they name); write the values out or use fewer aliases"},
	{name: "api_duplicate_id", schema: schemaAccepts,
		want: "testdata/api_duplicate_id.yaml:11:9: apis[1].id: API \"a1b2c3d4e5\" is defined twice (first at line 5); rename or remove one of them"},
	{name: "api_id_format", schema: schemaRejects,
		want: "testdata/api_id_format.yaml:5:9: apis[0].id: \"Orders-API\" is not an API id of 10 lower-case letters and digits, like a1b2c3d4e5; write 10 characters from a-z and 0-9, e.g. a1b2c3d4e5"},
	{name: "backend_ca_plain_http", schema: schemaAccepts,
		want: "testdata/backend_ca_plain_http.yaml:8:50: apis[0].backends.orders.ca: a CA is for an https backend, and the url is http; use an https:// url, or remove ca"},
	{name: "backend_ca_missing", schema: schemaAccepts,
		want: "testdata/backend_ca_missing.yaml:8:51: apis[0].backends.orders.ca: CA bundle testdata/no-such-ca.pem is not readable: open testdata/no-such-ca.pem: no such file or directory; point ca at the PEM file of the CA that issued the backend's certificate"},
	{name: "backend_timeout_range", schema: schemaAccepts,
		want: "testdata/backend_timeout_range.yaml:8:55: apis[0].backends.orders.timeout: 10m is outside 50ms to 5m; choose a timeout in that range"},
	{name: "backend_url_credentials", schema: schemaRejects,
		want: "testdata/backend_url_credentials.yaml:8:21: apis[0].backends.orders.url: the URL holds credentials; remove user:password@; give the backend its credentials another way"},
	{name: "backend_url_scheme", schema: schemaRejects,
		want: "testdata/backend_url_scheme.yaml:8:21: apis[0].backends.orders.url: scheme \"ftp\" is not http or https; write http://host:port/optional-prefix or https://..."},
	{name: "duplicate_key", schema: schemaNotJSON,
		want: "testdata/duplicate_key.yaml:4:1: region: duplicate key (first set at line 3); keep one of them"},
	{name: "egress_api_not_served", schema: schemaAccepts,
		want: "testdata/egress_api_not_served.yaml:19:19: egress[0].allow[0].api: no endpoint serves API a1b2c3d4e5, so workloads could not reach it; add it to an endpoint's apis"},
	{name: "egress_bare_wildcard", schema: schemaRejects,
		want: "testdata/egress_bare_wildcard.yaml:12:20: egress[0].allow[0].host: * would allow every host; list the hosts the role may reach"},
	{name: "egress_duplicate_role", schema: schemaAccepts,
		want: "testdata/egress_duplicate_role.yaml:12:12: egress[1].role: egress rule set for role \"app\" is defined twice (first at line 11); rename or remove one of them"},
	{name: "egress_ip_spelling", schema: schemaAccepts,
		want: "testdata/egress_ip_spelling.yaml:12:20: egress[0].allow[0].host: \"0x7f000001\" is an IP address in a non-standard spelling; write IPv4 addresses in dotted decimal like 10.0.5.7, or use cidr:"},
	{name: "egress_missing_ports", schema: schemaRejects,
		want: "testdata/egress_missing_ports.yaml:12:13: egress[0].allow[0]: missing required key \"ports\"; add ports: [443]"},
	{name: "egress_risk_level_unknown", schema: schemaRejects,
		want: "testdata/egress_risk_level_unknown.yaml:12:65: egress[0].allow[0].maxRiskLevel: \"severe\" is not a risk level; use low, medium or high: the rule applies while the node's phantom:RiskLevel is at most that"},
	{name: "egress_mode_unknown", schema: schemaRejects,
		want: "testdata/egress_mode_unknown.yaml:12:11: egress[0].mode: \"audit\" is not an egress mode; use enforce (act) or report (record what would have been done)"},
	{name: "egress_two_destinations", schema: schemaRejects,
		want: "testdata/egress_two_destinations.yaml:12:13: egress[0].allow[0]: a rule names exactly one of api, host and cidr; split it into one rule per destination"},
	{name: "egress_unknown_api", schema: schemaAccepts,
		want: "testdata/egress_unknown_api.yaml:26:19: egress[0].allow[0].api: no API named \"b1b2c3d4e5\"; did you mean \"a1b2c3d4e5\"?"},
	{name: "empty", schema: schemaNotJSON,
		want: "testdata/empty.yaml: the file is empty; start it with version: 1"},
	{name: "endpoint_policy_without_principal", schema: schemaAccepts,
		want: "testdata/endpoint_policy_without_principal.yaml:21:11: endpoints[0].policy.Statement[0]: an endpoint policy statement needs Principal or NotPrincipal (use \"*\" for everyone, then narrow it with conditions) (MISSING_PRINCIPAL); correct this element of the policy (IAM JSON policy grammar)"},
	{name: "endpoint_id_format", schema: schemaRejects,
		want: "testdata/endpoint_id_format.yaml:12:9: endpoints[0].id: \"vpce-xyz\" is not an endpoint id like vpce-0123456789abcdef0; write vpce- and 17 hex digits, e.g. vpce-0123456789abcdef0"},
	{name: "endpoint_limits_per_source", schema: schemaAccepts,
		want: "testdata/endpoint_limits_per_source.yaml:18:60: endpoints[0].limits.maxConnectionsPerSource: 200 is more than maxConnections 100; keep it at most maxConnections"},
	{name: "endpoint_listen_hostname", schema: schemaRejects,
		want: "testdata/endpoint_listen_hostname.yaml:14:14: endpoints[0].listen[0]: \"localhost:8443\" is not an IP address and port; write it like 127.0.0.1:8443 or [::1]:8443"},
	{name: "endpoint_listen_scheme", schema: schemaRejects,
		want: "testdata/endpoint_listen_scheme.yaml:14:14: endpoints[0].listen[0]: \"http://127.0.0.1:8443\" has a scheme; write host:port; endpoint listeners are always TLS"},
	{name: "endpoint_plaintext", schema: schemaRejects,
		want: "testdata/endpoint_plaintext.yaml:18:5: endpoints[0].tls: an endpoint listener is always TLS 1.2 or later; there is no plaintext option; remove tls"},
	{name: "endpoint_unknown_api", schema: schemaAccepts,
		want: "testdata/endpoint_unknown_api.yaml:17:12: endpoints[0].apis[0]: no API named \"a1b2c3d4e6\"; did you mean \"a1b2c3d4e5\"?"},
	{name: "gateway_buffer_below_body", schema: schemaAccepts,
		want: "testdata/gateway_buffer_below_body.yaml:7:22: gateway.limits.bodyBufferBytes: bodyBufferBytes 52428800 is below maxBodyBytes 104857600: a body of the maximum size could never be read; raise bodyBufferBytes or lower maxBodyBytes"},
	{name: "gateway_header_timeout_unit", schema: schemaRejects,
		want: "testdata/gateway_header_timeout_unit.yaml:6:20: gateway.limits.headerTimeout: a duration needs a unit; write 10s for seconds, or a value like 1h or 15m"},
	{name: "gateway_limits_range", schema: schemaRejects,
		want: "testdata/gateway_limits_range.yaml:6:19: gateway.limits.maxBodyBytes: 0 is outside 1 to 1073741824; write a number from 1 to 1073741824"},
	{name: "gateway_replay_method_any", schema: schemaRejects,
		want: "testdata/gateway_replay_method_any.yaml:6:14: gateway.replayProtection.enabled: must be true or false, not a string; write true or false\n" +
			"testdata/gateway_replay_method_any.yaml:7:21: gateway.replayProtection.methods[1]: \"ANY\" is not an HTTP method; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"},
	{name: "identity_policy_with_principal", schema: schemaAccepts,
		want: "testdata/identity_policy_with_principal.yaml:12:26: users[0].policies[0].document.Statement[0].Principal: an identity policy cannot have Principal: it applies to the principal it is attached to; remove it (UNSUPPORTED_PRINCIPAL); correct this element of the policy (IAM JSON policy grammar)"},
	{name: "ingress_cidr_host_bits", schema: schemaAccepts,
		want: "testdata/ingress_cidr_host_bits.yaml:16:33: endpoints[0].ingress[0].cidrs[0]: \"10.1.2.3/16\" has bits set past its /16 prefix; did you mean 10.1.0.0/16?"},
	{name: "ingress_port_no_listener", schema: schemaAccepts,
		want: "testdata/ingress_port_no_listener.yaml:16:17: endpoints[0].ingress[0].ports: ports 443 match none of the endpoint's TLS listeners; use the port of a listen address"},
	{name: "ingress_port_range_backwards", schema: schemaAccepts,
		want: "testdata/ingress_port_range_backwards.yaml:16:17: endpoints[0].ingress[0].ports: range \"8444-8443\" runs backwards; write a port like \"443\" or a range like \"8443-8444\""},
	{name: "ingress_protocol_udp", schema: schemaRejects,
		want: "testdata/ingress_protocol_udp.yaml:16:20: endpoints[0].ingress[0].protocol: protocol \"udp\" cannot reach a TLS listener; use protocol: tcp"},
	{name: "listener_conflict", schema: schemaAccepts,
		want: "testdata/listener_conflict.yaml:16:14: endpoints[0].listen[0]: 127.0.0.1:8443 is already used by the listener at line 5; give each listener its own address and port"},
	{name: "many_problems", schema: schemaRejects,
		want: "testdata/many_problems.yaml:2:10: account: \"1234\" is not a 12-digit account id; write the 12 digits in quotes, e.g. \"123456789012\"" +
			"\n" + "testdata/many_problems.yaml:6:23: users[0].managedPolicies[0]: no managed policy named \"Missing\"; define it under managedPolicies or fix the name" +
			"\n" + "testdata/many_problems.yaml:9:25: roles[0].maxSessionDuration: 30m is outside AWS's range for a role (1h to 12h); use a value from 1h to 12h" +
			"\n" + "testdata/many_problems.yaml:15:12: nodes[0].name: \"Service_A\" is not a lower-case DNS label like service-a-1; use a-z, 0-9 and inner hyphens, e.g. service-a-1"},
	{name: "merge_key", schema: schemaNotJSON,
		want: "testdata/merge_key.yaml:6:5: users[1]: merge keys (<<) are not supported; write the keys out, or use an alias for a whole value" +
			"\n" + "testdata/merge_key.yaml:6:5: users[1]: missing required key \"name\"; add name: alice"},
	{name: "missing_account", schema: schemaRejects,
		want: "testdata/missing_account.yaml:1:1: missing required key \"account\"; add account: \"123456789012\""},
	{name: "multiple_documents", schema: schemaNotJSON,
		want: "testdata/multiple_documents.yaml:4:1: the file holds more than one YAML document; keep one perimeter per file and remove the --- line"},
	{name: "node_duplicate_ip", schema: schemaAccepts,
		want: "testdata/node_duplicate_ip.yaml:12:66: nodes[1].privateIp: private IP \"10.0.1.15\" is defined twice (first at line 11); rename or remove one of them"},
	{name: "node_ipv6", schema: schemaRejects,
		want: "testdata/node_ipv6.yaml:11:66: nodes[0].privateIp: \"fd00::15\" is not an IPv4 address; write it like 10.0.1.15"},
	{name: "node_unknown_role", schema: schemaAccepts,
		want: "testdata/node_unknown_role.yaml:25:31: nodes[0].role: no role named \"ap\"; did you mean \"app\"?"},
	{name: "node_vpc_mismatch", schema: schemaAccepts,
		want: "testdata/node_vpc_mismatch.yaml:25:41: nodes[0].vpc: the node is in vpc-11111111 but its endpoint vpce-0123456789abcdef0 is in vpc-0a1b2c3d4e5f60718; put the node in its endpoint's VPC or pick an endpoint in the node's VPC"},
	{name: "oidc_missing_client_ids", schema: schemaRejects,
		want: "testdata/oidc_missing_client_ids.yaml:5:5: oidcProviders[0]: missing required key \"clientIds\"; add clientIds: [my-app]"},
	{name: "oidc_plain_http", schema: schemaAccepts,
		want: "testdata/oidc_plain_http.yaml:5:10: oidcProviders[0].url: an issuer URL must use https; use https:// (plain http is allowed only to a loopback address)"},
	{name: "policy_grammar_json_block", schema: schemaAccepts,
		want: "testdata/policy_grammar_json_block.yaml:13:25: roles[0].trustPolicy.Statement[0].Condition.StringEqualz: unknown condition operator \"StringEqualz\" (UNKNOWN_OPERATOR); correct this element of the policy (IAM JSON policy grammar)"},
	{name: "policy_grammar_yaml", schema: schemaAccepts,
		want: "testdata/policy_grammar_yaml.yaml:12:19: managedPolicies[0].document.Statement[1].Effect: Effect must be \"Allow\" or \"Deny\", not \"Permit\" (INVALID_EFFECT); correct this element of the policy (IAM JSON policy grammar)\n" +
			"testdata/policy_grammar_yaml.yaml:16:56: managedPolicies[0].document.Statement[1].Condition.IpAddress.aws:SourceIp[1]: IP condition value \"10.0.0.300/32\" is not an IPv4 or IPv6 address or CIDR block (INVALID_CONDITION_VALUE); correct this element of the policy (IAM JSON policy grammar)"},
	{name: "policy_json_string_invalid", schema: schemaAccepts,
		want: "testdata/policy_json_string_invalid.yaml:8:41: roles[0].trustPolicy: the policy is not valid JSON: invalid character '}' looking for beginning of object key string (line 2 of the JSON); fix the JSON, or write the policy as YAML"},
	{name: "policy_not_a_document", schema: schemaRejects,
		want: "testdata/policy_not_a_document.yaml:8:19: users[0].policies[0].document: must be a policy document, not a list; write a mapping with Version: \"2012-10-17\" and Statement, or a JSON string"},
	{name: "region_format", schema: schemaRejects,
		want: "testdata/region_format.yaml:3:9: region: \"US East\" is not a region name like us-east-1; write e.g. us-east-1 or eu-central-1"},
	{name: "resource_policy_without_principal", schema: schemaAccepts,
		want: "testdata/resource_policy_without_principal.yaml:14:9: apis[0].resourcePolicy.Statement: a resource policy statement needs Principal or NotPrincipal (use \"*\" for everyone, then narrow it with conditions) (MISSING_PRINCIPAL); correct this element of the policy (IAM JSON policy grammar)"},
	{name: "response_notify_without_webhook", schema: schemaRejects,
		want: "testdata/response_notify_without_webhook.yaml:6:7: detection.responses[0]: notify needs a webhook; add webhook: https://hooks.example/phantom"},
	{name: "response_mode_unknown", schema: schemaRejects,
		want: "testdata/response_mode_unknown.yaml:6:73: detection.responses[0].mode: \"dry-run\" is not a response mode; use enforce (act) or report (record what would have been done)"},
	{name: "response_max_per_hour", schema: schemaRejects,
		want: "testdata/response_max_per_hour.yaml:6:79: detection.responses[0].maxPerHour: 0 is outside 1 to 100000; write how many findings the response may act on per hour, e.g. 60"},
	{name: "protected_other_account", schema: schemaAccepts,
		want: "testdata/protected_other_account.yaml:6:7: detection.protectedPrincipals[0]: \"arn:aws:iam::210987654321:role/break-glass\" is not a principal of account 123456789012; name a user or role ARN of this perimeter, e.g. arn:aws:iam::123456789012:role/break-glass"},
	{name: "response_severity_range", schema: schemaRejects,
		want: "testdata/response_severity_range.yaml:6:53: detection.responses[0].minSeverity: 9.5 is outside GuardDuty's severities 1 to 8.9; use 1-3.9 low, 4-6.9 medium, 7-8.9 high"},
	{name: "response_unknown_action", schema: schemaRejects,
		want: "testdata/response_unknown_action.yaml:6:50: detection.responses[0].actions[0]: \"revokeSession\" is not a response action; did you mean \"revokeSessions\"?"},
	{name: "role_max_session_bad_iso", schema: schemaRejects,
		want: "testdata/role_max_session_bad_iso.yaml:6:25: roles[0].maxSessionDuration: \"P1H\" is not an ISO 8601 duration; write a value like 1h, 15m or PT1H"},
	{name: "role_max_session_no_unit", schema: schemaRejects,
		want: "testdata/role_max_session_no_unit.yaml:6:25: roles[0].maxSessionDuration: a duration needs a unit; write 3600s for seconds, or a value like 1h or 15m"},
	{name: "role_max_session_too_long", schema: schemaAccepts,
		want: "testdata/role_max_session_too_long.yaml:6:25: roles[0].maxSessionDuration: 13h is outside AWS's range for a role (1h to 12h); use a value from 1h to 12h"},
	{name: "role_missing_trust_policy", schema: schemaRejects,
		want: "testdata/role_missing_trust_policy.yaml:5:5: roles[0]: missing required key \"trustPolicy\"; add trustPolicy: a policy naming who may assume the role"},
	{name: "root_is_list", schema: schemaRejects,
		want: "testdata/root_is_list.yaml:1:1: must be a mapping of keys to values, not a list; write it as key: value lines"},
	{name: "api_assertion_unknown", schema: schemaRejects,
		want: "testdata/api_assertion_unknown.yaml:7:16: apis[0].assertion: \"hmac\" is not hs256 or eddsa; write assertion: hs256 (backends hold the API's key: phantom keys backend), or eddsa (backends verify with the gateway's JWKS)"},
	{name: "long_term_keys_invalid", schema: schemaRejects,
		want: "testdata/long_term_keys_invalid.yaml:5:17: gateway.longTermKeys: \"deny\" is not allow or refuse; write longTermKeys: refuse to accept only STS sessions, or allow"},
	{name: "long_term_keys_route_none", schema: schemaAccepts,
		want: "testdata/long_term_keys_route_none.yaml:10:93: apis[0].routes[0].longTermKeys: a route with authorization NONE takes unsigned calls: no key is checked; remove longTermKeys, or use authorization AWS_IAM"},
	{name: "sign_in_client_not_listed", schema: schemaAccepts,
		want: "testdata/sign_in_client_not_listed.yaml:8:17: oidcProviders[0].signIn.clientId: \"phantom\" is not one of the provider's clientIds; add it to clientIds: STS accepts only tokens for those audiences"},
	{name: "sign_in_twice", schema: schemaAccepts,
		want: "testdata/sign_in_twice.yaml:10:13: oidcProviders[1].signIn: people already sign in through the provider at line 7; keep signIn on one provider"},
	{name: "sign_in_without_openid", schema: schemaRejects,
		want: "testdata/sign_in_without_openid.yaml:9:15: oidcProviders[0].signIn.scopes: does not include openid; add openid: sign-in needs an ID token"},
	{name: "console_key_sign_in_refused_without_sso", schema: schemaAccepts,
		want: "testdata/console_key_sign_in_refused_without_sso.yaml:5:14: console.keySignIn: no one could sign in to the console: no OIDC provider has signIn; add signIn to an OIDC provider, or allow key sign-in"},
	{name: "route_authorization_invalid", schema: schemaRejects,
		want: "testdata/route_authorization_invalid.yaml:10:73: apis[0].routes[0].authorization: \"IAM\" is not an authorization type; use AWS_IAM (the default) or NONE"},
	{name: "route_upgrade_h2c", schema: schemaRejects,
		want: "testdata/route_upgrade_h2c.yaml:10:64: apis[0].routes[0].upgrade[0]: \"h2c\" is not a protocol a route can switch to; write websocket, the only one"},
	{name: "route_greedy_not_last", schema: schemaRejects,
		want: "testdata/route_greedy_not_last.yaml:10:16: apis[0].routes[0].path: greedy parameter {proxy+} is not the last segment of \"/files/{proxy+}/meta\"; write /literal/{name}/... with {name+} only as the last segment"},
	{name: "route_method_lower_case", schema: schemaRejects,
		want: "testdata/route_method_lower_case.yaml:10:35: apis[0].routes[0].methods[0]: \"get\" is not an HTTP method; write it in upper case: GET"},
	{name: "route_overlap", schema: schemaAccepts,
		want: "testdata/route_overlap.yaml:11:16: apis[0].routes[1].path: ANY /orders overlaps the route at line 10 (GET); give each path and method one route; parameter names do not make paths differ"},
	{name: "route_overlap_param_names", schema: schemaAccepts,
		want: "testdata/route_overlap_param_names.yaml:11:16: apis[0].routes[1].path: GET /orders/{orderId} overlaps the route at line 10 (GET); give each path and method one route; parameter names do not make paths differ"},
	{name: "route_param_invalid", schema: schemaRejects,
		want: "testdata/route_param_invalid.yaml:10:16: apis[0].routes[0].path: segment \"{order-id}\" is not a parameter like {name} or {name+}; write /literal/{name}/... with {name+} only as the last segment"},
	{name: "route_trailing_slash", schema: schemaRejects,
		want: "testdata/route_trailing_slash.yaml:10:16: apis[0].routes[0].path: path \"/orders/\" ends with /; write /literal/{name}/... with {name+} only as the last segment"},
	{name: "route_unknown_backend", schema: schemaAccepts,
		want: "testdata/route_unknown_backend.yaml:10:50: apis[0].routes[0].backend: no backend named \"order\"; did you mean \"orders\"?"},
	{name: "syntax_unquoted_star", schema: schemaNotJSON,
		want: "testdata/syntax_unquoted_star.yaml:11: invalid YAML: did not find expected alphabetic or numeric character; fix the syntax; quote values that start with * & ! | > % @ or `"},
	{name: "sigma_rules_missing", schema: schemaAccepts,
		want: "testdata/sigma_rules_missing.yaml:5:15: detection.sigmaRules: Sigma rules directory testdata/no-such-rules is not a readable directory; create it (Sigma rules, *.yml) or fix the path"},
	{name: "threat_list_missing", schema: schemaAccepts,
		want: "testdata/threat_list_missing.yaml:6:31: detection.threatLists[0].file: threat list testdata/no-such-list.txt is not a readable file; create it (one address or CIDR a line) or fix the path"},
	{name: "trust_policy_unknown_oidc_provider", schema: schemaAccepts,
		want: "testdata/trust_policy_unknown_oidc_provider.yaml:6:18: roles[0].trustPolicy.Statement.Principal.Federated: principal arn:aws:iam::123456789012:oidc-provider/token.example does not exist in this perimeter; define it in this spec or fix the ARN"},
	{name: "trust_policy_unknown_principal", schema: schemaAccepts,
		want: "testdata/trust_policy_unknown_principal.yaml:13:19: roles[0].trustPolicy.Statement[0].Principal.AWS[0]: principal arn:aws:iam::123456789012:user/alcie does not exist in this perimeter; did you mean \"arn:aws:iam::123456789012:user/alice\"?"},
	{name: "trust_policy_without_principal", schema: schemaAccepts,
		want: "testdata/trust_policy_without_principal.yaml:9:11: roles[0].trustPolicy.Statement[0]: a resource policy statement needs Principal or NotPrincipal (use \"*\" for everyone, then narrow it with conditions) (MISSING_PRINCIPAL); correct this element of the policy (IAM JSON policy grammar)"},
	{name: "unknown_key_nested", schema: schemaRejects,
		want: "testdata/unknown_key_nested.yaml:6:5: roles[0]: unknown key \"maxSesionDuration\"; did you mean \"maxSessionDuration\"?"},
	{name: "unknown_key_no_suggestion", schema: schemaRejects,
		want: "testdata/unknown_key_no_suggestion.yaml:4:1: unknown key \"colour\"; remove it; the keys here are version, account, region, gateway, sts, console, audit, events, detection, managedPolicies, groups, users, roles, oidcProviders, apis, endpoints, nodes, egress"},
	{name: "unknown_key_typo", schema: schemaRejects,
		want: "testdata/unknown_key_typo.yaml:3:1: unknown key \"regoin\"; did you mean \"region\"?"},
	{name: "unsupported_version", schema: schemaRejects,
		want: "testdata/unsupported_version.yaml:1:10: version: unsupported version \"2\"; this phantom reads version: 1"},
	{name: "events_url_credentials", schema: schemaRejects,
		want: "testdata/events_url_credentials.yaml:5:10: events.urls[0]: \"nats://user:pw@nats.internal:4222\" is not a NATS server URL without credentials (nats://HOST:PORT or tls://HOST:PORT; credentials go in creds or nkey); write a NATS server URL without credentials (nats://HOST:PORT or tls://HOST:PORT; credentials go in creds or nkey)"},
	{name: "events_creds_and_nkey", schema: schemaAccepts,
		want: "testdata/events_creds_and_nkey.yaml:7:9: events.nkey: is set with creds; give a creds file or an nkey seed file, not both"},
	{name: "events_without_urls", schema: schemaAccepts,
		want: "testdata/events_without_urls.yaml:5:3: events: has settings but no urls; name the NATS servers in urls, or remove events"},
	{name: "user_duplicate_case", schema: schemaAccepts,
		want: "testdata/user_duplicate_case.yaml:6:11: users[1].name: user \"Alice\" is defined twice (first at line 5); rename or remove one of them"},
	{name: "user_name_invalid", schema: schemaRejects,
		want: "testdata/user_name_invalid.yaml:5:11: users[0].name: \"alice smith\" is not a name of 1 to 64 letters, digits and _+=,.@- (IAM's rule); rename it, e.g. alice or app-role"},
	{name: "user_tag_duplicate_case", schema: schemaAccepts,
		want: "testdata/user_tag_duplicate_case.yaml:6:28: users[0].tags.Team: tag \"Team\" is defined twice (first at line 6); rename or remove one of them"},
	{name: "user_tag_reserved", schema: schemaRejects,
		want: "testdata/user_tag_reserved.yaml:6:12: users[0].tags.aws:team: tag keys starting with aws: are reserved for AWS; rename the tag"},
	{name: "user_unknown_boundary", schema: schemaAccepts,
		want: "testdata/user_unknown_boundary.yaml:6:26: users[0].permissionsBoundary: no managed policy named \"Boundary\"; define it under managedPolicies or fix the name"},
	{name: "user_unknown_managed_policy", schema: schemaAccepts,
		want: "testdata/user_unknown_managed_policy.yaml:9:23: users[0].managedPolicies[0]: no managed policy named \"ReadOnlly\"; did you mean \"ReadOnly\"?"},
}

func TestLoadBadSpecs(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, tc := range badSpecs {
		listed = append(listed, filepath.Join("testdata", tc.name+".yaml"))
	}
	for _, f := range files {
		if !slices.Contains(listed, f) {
			t.Errorf("%s has no row in badSpecs", f)
		}
	}
	for _, f := range listed {
		if !slices.Contains(files, f) {
			t.Errorf("badSpecs row %s has no file", f)
		}
	}
	for _, tc := range badSpecs {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load(filepath.Join("testdata", tc.name+".yaml"))
			if s != nil {
				t.Fatalf("Load returned a spec for a bad file")
			}
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Load error = %v (%T), want *config.Error", err, err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error:\n got: %s\nwant: %s", got, tc.want)
			}
			for _, p := range cerr.Problems {
				if p.Msg == "" || p.Fix == "" {
					t.Errorf("problem %q lacks what is wrong or what to do", p)
				}
			}
		})
	}
}

func TestLoadDemo(t *testing.T) {
	s, err := Load(demoPath)
	if err != nil {
		t.Fatalf("load demo: %v", err)
	}
	if s.Account != "123456789012" || s.Region != "us-east-1" || s.Version != 1 {
		t.Errorf("account, region, version = %q, %q, %d", s.Account, s.Region, s.Version)
	}
	alice, ok := s.User("alice")
	if !ok {
		t.Fatal("user alice missing")
	}
	if alice.ARN != "arn:aws:iam::123456789012:user/alice" || alice.Path != "/" {
		t.Errorf("alice ARN, path = %q, %q", alice.ARN, alice.Path)
	}
	if alice.Tags["team"] != "payments" {
		t.Errorf("alice tags = %v", alice.Tags)
	}
	if alice.PermissionsBoundary == nil || alice.PermissionsBoundary.Name != "PerimeterBoundary" {
		t.Errorf("alice boundary = %+v", alice.PermissionsBoundary)
	}
	if len(alice.ManagedPolicies) != 1 || alice.ManagedPolicies[0].ARN != "arn:aws:iam::123456789012:policy/OrdersReadOnly" {
		t.Errorf("alice managed policies = %+v", alice.ManagedPolicies)
	}
	app, ok := s.Role("app")
	if !ok {
		t.Fatal("role app missing")
	}
	// Every policy is compiled at load, so the request path never parses.
	for _, p := range []*Policy{app.TrustPolicy, app.Policies[0], alice.Policies[0], alice.PermissionsBoundary.Policy} {
		if p == nil || p.Compiled == nil {
			t.Fatalf("policy %+v not compiled", p)
		}
	}
	if app.MaxSessionDuration != time.Hour || app.TrustPolicy == nil || len(app.Policies) != 1 {
		t.Errorf("role app = %+v", app)
	}
	if r, ok := s.RoleByARN("arn:aws:iam::123456789012:role/app"); !ok || r != app {
		t.Errorf("RoleByARN did not find app")
	}
	if u, ok := s.UserByARN("arn:aws:iam::123456789012:user/alice"); !ok || u != alice {
		t.Errorf("UserByARN did not find alice")
	}
	if _, ok := s.UserByARN(app.ARN); ok {
		t.Errorf("UserByARN found a role")
	}
	if mp, ok := s.ManagedPolicyByARN("arn:aws:iam::123456789012:policy/OrdersReadOnly"); !ok || mp.Name != "OrdersReadOnly" {
		t.Errorf("ManagedPolicyByARN = %v, %v", mp, ok)
	}
	if e, ok := s.EndpointByDNSName("Orders.Internal.Example."); !ok || e.ID != "vpce-0123456789abcdef0" {
		t.Errorf("EndpointByDNSName = %v, %v", e, ok)
	}
	ci, _ := s.Role("ci-deployer")
	if ci == nil || ci.MaxSessionDuration != 2*time.Hour {
		t.Errorf("ci-deployer max session from PT2H = %v", ci)
	}
	if !bytes.Contains(ci.TrustPolicy.Document, []byte(`"sts:AssumeRoleWithWebIdentity"`)) || bytes.Contains(ci.TrustPolicy.Document, []byte("\n")) {
		t.Errorf("JSON-string trust policy not compacted: %s", ci.TrustPolicy.Document)
	}
	oidc, ok := s.OIDCProvider("https://token.actions.githubusercontent.com/")
	if !ok || oidc.Name != "token.actions.githubusercontent.com" ||
		oidc.ARN != "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com" {
		t.Errorf("oidc provider = %+v", oidc)
	}
	api, ok := s.API("a1b2c3d4e5")
	if !ok {
		t.Fatal("api missing")
	}
	if api.ARN(s) != "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5" || api.ResourcePolicy == nil || api.ResourcePolicy.Compiled == nil {
		t.Errorf("api = %+v", api)
	}
	if len(api.Routes) != 3 {
		t.Fatalf("routes = %d", len(api.Routes))
	}
	r := api.Routes[1]
	want := []Segment{{Literal, "orders"}, {Param, "id"}}
	if !slices.Equal(r.Segments, want) || r.Authorization != AuthIAM || r.Backend != api.Backends["orders"] {
		t.Errorf("route 1 = %+v", r)
	}
	if api.Routes[2].Authorization != AuthNone {
		t.Errorf("explicit NONE lost")
	}
	if b := api.Backends["orders"]; b.Timeout != 10*time.Second || b.URL.String() != "http://127.0.0.1:9000" {
		t.Errorf("backend = %+v", b)
	}
	ep, ok := s.Endpoint("vpce-0123456789abcdef0")
	if !ok {
		t.Fatal("endpoint missing")
	}
	if !slices.Equal(ep.Listen, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8443")}) || ep.Policy == nil || ep.Policy.Compiled == nil {
		t.Errorf("endpoint = %+v", ep)
	}
	if len(ep.Ingress) != 1 || ep.Ingress[0].Ports != (PortRange{8443, 8443}) || ep.Ingress[0].Protocol != "tcp" ||
		!slices.Equal(ep.Ingress[0].CIDRs, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/16")}) {
		t.Errorf("ingress = %+v", ep.Ingress)
	}
	n, ok := s.Node("service-a-1")
	if !ok || n.Role != "app" || n.PrivateIP != netip.MustParseAddr("10.0.1.15") || n.Endpoint != ep.ID {
		t.Errorf("node = %+v", n)
	}
	eg, ok := s.EgressFor("app")
	if !ok || len(eg.Allow) != 2 || eg.Allow[0].API != "a1b2c3d4e5" || eg.Allow[1].Host != "*.s3.us-east-1.amazonaws.com" ||
		!slices.Equal(eg.Allow[1].Ports, []PortRange{{443, 443}}) {
		t.Errorf("egress = %+v", eg)
	}
	if _, ok := s.EgressFor("ci-deployer"); ok {
		t.Errorf("a role without rules has egress")
	}
	if s.Gateway.ClockSkew != 5*time.Minute || s.Gateway.Listen != netip.MustParseAddrPort("127.0.0.1:8445") ||
		s.STS.Listen != netip.MustParseAddrPort("127.0.0.1:8444") {
		t.Errorf("gateway, sts = %+v, %+v", s.Gateway, s.STS)
	}
	if len(s.Detection.Responses) != 2 || s.Detection.Responses[0].RiskLevel != "high" || s.Detection.Responses[0].MinSeverity != 5 {
		t.Errorf("responses = %+v", s.Detection.Responses)
	}
}

// TestDefaults checks what an omitted key means: the values a security engineer would
// expect, and AWS's where AWS has one.
func TestDefaults(t *testing.T) {
	spec := `version: 1
account: "000000000001"
region: eu-central-1
roles:
  - name: r
    trustPolicy: {Version: "2012-10-17", Statement: {Effect: Allow, Principal: {AWS: "arn:aws:iam::000000000001:root"}, Action: sts:AssumeRole}}
apis:
  - id: abcdefghij
    stages: [v1]
    backends: {b: {url: "https://b.internal"}}
    routes: [{path: "/{proxy+}", methods: [ANY], backend: b}]
`
	s, err := Parse("inline.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := s.Role("r")
	if r.MaxSessionDuration != time.Hour || r.Path != "/" || r.ARN != "arn:aws:iam::000000000001:role/r" {
		t.Errorf("role defaults = %+v", r)
	}
	a, _ := s.API("abcdefghij")
	if a.Name != "abcdefghij" || a.Routes[0].Authorization != AuthIAM || a.Backends["b"].Timeout != 29*time.Second {
		t.Errorf("api defaults = %+v %+v", a, a.Routes[0])
	}
	if !slices.Equal(a.Routes[0].Segments, []Segment{{Greedy, "proxy"}}) {
		t.Errorf("greedy root = %+v", a.Routes[0].Segments)
	}
	if s.Gateway.Name != "gateway" || s.Gateway.ClockSkew != 5*time.Minute || s.Audit.Dir != "audit" ||
		s.Detection.LearningPeriod != 7*24*time.Hour || s.Gateway.Listen.IsValid() {
		t.Errorf("settings defaults = %+v %+v %+v", s.Gateway, s.Audit, s.Detection)
	}
	wantLimits := Limits{
		ConnectionLimits: ConnectionLimits{MaxConnections: 4096, MaxConnectionsPerSource: 256},
		MaxBodyBytes:     10 << 20, BodyBufferBytes: 256 << 20, HeaderTimeout: 10 * time.Second,
		BodyTimeout: 20 * time.Second, MinBodyRate: 4096, MaxInFlight: 1024,
	}
	if s.Gateway.Limits != wantLimits {
		t.Errorf("gateway limits = %+v, want %+v", s.Gateway.Limits, wantLimits)
	}
	if rp := s.Gateway.ReplayProtection; rp.Enabled || !slices.Equal(rp.Methods, []string{"POST", "PUT", "PATCH", "DELETE"}) {
		t.Errorf("replay protection = %+v, want off for POST, PUT, PATCH, DELETE", rp)
	}
	if r := a.Routes[0]; len(r.Upgrade) != 0 || r.MatrixParameters {
		t.Errorf("route upgrade %v, matrix parameters %v: want none", r.Upgrade, r.MatrixParameters)
	}
}

// TestSettings: the gateway's limits, the replay guard and a route's upgrade and matrix
// parameters as written.
func TestSettings(t *testing.T) {
	spec := `version: 1
account: "000000000001"
region: eu-central-1
gateway:
  limits: {maxBodyBytes: 1048576, bodyBufferBytes: 16777216, headerTimeout: 5s, bodyTimeout: 1m, minBodyRate: 100,
    maxConnections: 10, maxConnectionsPerSource: 2, maxInFlight: 3}
  replayProtection: {enabled: true, methods: [POST]}
apis:
  - id: abcdefghij
    stages: [v1]
    backends: {b: {url: "https://b.internal"}}
    routes: [{path: "/ws", methods: [GET], backend: b, upgrade: [websocket], matrixParameters: true}]
endpoints:
  - id: vpce-0123456789abcdef0
    vpc: vpc-0a1b2c3d4e5f60718
    listen: ["127.0.0.1:8443"]
    ingress: [{ports: "8443", cidrs: [127.0.0.0/8]}]
    apis: [abcdefghij]
    limits: {maxConnections: 7}
`
	s, err := Parse("inline.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{ConnectionLimits: ConnectionLimits{MaxConnections: 10, MaxConnectionsPerSource: 2}, MaxBodyBytes: 1 << 20,
		BodyBufferBytes: 16 << 20, HeaderTimeout: 5 * time.Second, BodyTimeout: time.Minute, MinBodyRate: 100, MaxInFlight: 3}
	if s.Gateway.Limits != want {
		t.Errorf("limits = %+v, want %+v", s.Gateway.Limits, want)
	}
	if rp := s.Gateway.ReplayProtection; !rp.Enabled || !slices.Equal(rp.Methods, []string{"POST"}) {
		t.Errorf("replay protection = %+v", rp)
	}
	a, _ := s.API("abcdefghij")
	if r := a.Routes[0]; !slices.Equal(r.Upgrade, []string{"websocket"}) || !r.MatrixParameters {
		t.Errorf("route = %+v", r)
	}
	ep, _ := s.Endpoint("vpce-0123456789abcdef0")
	if ep.Limits != (ConnectionLimits{MaxConnections: 7, MaxConnectionsPerSource: 7}) {
		t.Errorf("endpoint limits = %+v", ep.Limits)
	}
}

func TestPolicyYAMLToJSON(t *testing.T) {
	spec := `version: 1
account: "123456789012"
region: us-east-1
managedPolicies:
  - name: p
    document:
      Version: 2012-10-17
      Statement:
        - Effect: Allow
          Action: ["execute-api:Invoke"]
          Resource: "*"
          Condition:
            NumericLessThan: {"aws:MultiFactorAuthAge": 3600}
            Bool: {"aws:SecureTransport": true}
            StringEquals: {"aws:PrincipalTag/level": "007"}
`
	s, err := Parse("inline.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.ManagedPolicy("p")
	// An unquoted date stays the string it was written as; numbers and booleans keep their
	// JSON types, which IAM accepts in conditions; a quoted "007" keeps its zeros.
	want := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["execute-api:Invoke"],"Resource":"*",` +
		`"Condition":{"NumericLessThan":{"aws:MultiFactorAuthAge":3600},"Bool":{"aws:SecureTransport":true},` +
		`"StringEquals":{"aws:PrincipalTag/level":"007"}}}]}`
	if string(p.Policy.Document) != want {
		t.Errorf("document:\n got: %s\nwant: %s", p.Policy.Document, want)
	}
	if p.Policy.Line != 7 || p.Policy.Column != 7 {
		t.Errorf("policy position = %d:%d, want 7:7", p.Policy.Line, p.Policy.Column)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		ok   bool
	}{
		{"go hours", "1h", time.Hour, true},
		{"go compound", "1h30m", 90 * time.Minute, true},
		{"iso hours", "PT12H", 12 * time.Hour, true},
		{"iso days and time", "P1DT2H3M4S", 26*time.Hour + 3*time.Minute + 4*time.Second, true},
		{"iso fractional seconds", "PT0.5S", 500 * time.Millisecond, true},
		{"iso time designator required before hours", "P1H", 0, false},
		{"iso empty", "P", 0, false},
		{"iso dangling T", "P1DT", 0, false},
		{"negative", "-1h", 0, false},
		{"no unit", "3600", 0, false},
		{"garbage", "soon", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDuration(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		shape string // "" when the template is invalid
	}{
		{"root", "/", "/"},
		{"literal", "/orders", "/orders"},
		{"param", "/orders/{id}", "/orders/{}"},
		{"param names do not change the shape", "/orders/{orderId}", "/orders/{}"},
		{"greedy last", "/files/{proxy+}", "/files/{+}"},
		{"greedy not last", "/files/{proxy+}/x", ""},
		{"two params same name", "/a/{id}/b/{id}", ""},
		{"partial param", "/orders/id-{id}", ""},
		{"dot segment (RFC 3986 5.2.4)", "/a/../b", ""},
		{"empty segment", "/a//b", ""},
		{"no leading slash", "orders", ""},
		{"trailing slash", "/orders/", ""},
		{"percent and spaces", "/a b", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, shape, err := parseTemplate(tc.in)
			if tc.shape == "" {
				if err == nil {
					t.Errorf("parseTemplate(%q) accepted, shape %q", tc.in, shape)
				}
				return
			}
			if err != nil || shape != tc.shape {
				t.Errorf("parseTemplate(%q) = %q, %v; want %q", tc.in, shape, err, tc.shape)
			}
		})
	}
}

func TestProblemFormat(t *testing.T) {
	tests := []struct {
		name string
		p    Problem
		want string
	}{
		{"full", Problem{File: "f.yaml", Line: 3, Column: 5, Path: "roles[0].name", Msg: "bad", Fix: "fix it"}, "f.yaml:3:5: roles[0].name: bad; fix it"},
		{"no column", Problem{File: "f.yaml", Line: 3, Msg: "bad", Fix: "fix it"}, "f.yaml:3: bad; fix it"},
		{"whole file", Problem{File: "f.yaml", Msg: "bad", Fix: "fix it"}, "f.yaml: bad; fix it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFileTooLarge(t *testing.T) {
	data := append([]byte("version: 1\n# "), bytes.Repeat([]byte("x"), MaxFileSize)...)
	_, err := Parse("big.yaml", data)
	want := "big.yaml: the file is larger than 8388608 bytes; split policies into managed policies or trim the file"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %s", err, want)
	}
}

// specJSON converts a spec file to the JSON value JSON Schema validators see, or reports
// that the file is not one JSON-representable document.
func specJSON(t *testing.T, file string) (any, bool) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d := &decoder{file: file}
	root := d.document(data)
	if root == nil {
		return nil, false
	}
	var b bytes.Buffer
	if !d.toJSON(&b, root, "") {
		return nil, false
	}
	v, err := jsonschema.UnmarshalJSON(&b)
	if err != nil {
		t.Fatalf("%s: converted JSON does not parse: %v", file, err)
	}
	return v, true
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("schema/phantom.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("phantom.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("phantom.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

// TestSchemaAgrees checks the editor schema against the loader: every example the loader
// accepts the schema accepts, and each broken file is flagged by the schema exactly when
// the table says the mistake is one a schema can see (the loader checks more: references,
// uniqueness, ranges and the policy grammar).
func TestSchemaAgrees(t *testing.T) {
	sch := compileSchema(t)
	examples, _ := filepath.Glob("../../examples/*.yaml")
	if len(examples) == 0 {
		t.Fatal("no examples found")
	}
	for _, f := range examples {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Fatalf("loader rejects example: %v", err)
			}
			v, ok := specJSON(t, f)
			if !ok {
				t.Fatal("example is not JSON-representable")
			}
			if err := sch.Validate(v); err != nil {
				t.Errorf("schema rejects example: %v", err)
			}
		})
	}
	for _, tc := range badSpecs {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := specJSON(t, filepath.Join("testdata", tc.name+".yaml"))
			if tc.schema == schemaNotJSON {
				if ok {
					t.Fatalf("file converted to JSON; the table says it cannot")
				}
				return
			}
			if !ok {
				t.Fatal("file did not convert to JSON")
			}
			err := sch.Validate(v)
			switch {
			case tc.schema == schemaRejects && err == nil:
				t.Errorf("schema accepts a file the table says it rejects")
			case tc.schema == schemaAccepts && err != nil:
				t.Errorf("schema rejects a file the table says only the loader catches: %v", err)
			}
		})
	}
}

func FuzzSpec(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	seeds = append(seeds, demoPath)
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if (s == nil) == (err == nil) {
			t.Fatalf("Parse returned spec %v and error %v", s != nil, err)
		}
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
				t.Fatalf("error without problems: %v", err)
			}
			for _, p := range cerr.Problems {
				if !strings.HasPrefix(p.String(), "fuzz.yaml") {
					t.Fatalf("problem not located in the file: %s", p)
				}
			}
		}
	})
}

func TestSuggest(t *testing.T) {
	keys := []string{"maxSessionDuration", "managedPolicies", "permissionsBoundary", "name", "path"}
	tests := []struct {
		name, in, want string
	}{
		{"dropped letter", "maxSesionDuration", "maxSessionDuration"},
		{"swapped neighbours", "nmae", "name"},
		{"case only", "ManagedPolicies", "managedPolicies"},
		{"too far from anything", "colour", ""},
		{"short words need a close match", "pat", "path"},
		{"short words are not guessed wildly", "xy", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := suggest(tc.in, keys); got != tc.want {
				t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestLocate(t *testing.T) {
	src := `doc:
  Version: "2012-10-17"
  Statement:
    - Effect: Allow
      Action: execute-api:Invoke
      Resource: "*"
      Condition:
        StringEquals:
          aws:PrincipalTag/team.name: payments
          aws:SourceVpce: [vpce-0123456789abcdef0, vpce-11111111]
single:
  Statement:
    Effect: Deny
`
	d := &decoder{file: "t.yaml"}
	root := d.document([]byte(src))
	o := d.object(root, "", "doc", "single")
	doc, _ := o.get("doc")
	single, _ := o.get("single")
	tests := []struct {
		name      string
		yaml      *yaml.Node
		jsonPath  string
		line, col int
		wantPath  string
	}{
		{"statement", doc, "Statement[0]", 4, 7, "doc.Statement[0]"},
		{"key with a slash and a dot", doc, "Statement[0].Condition.StringEquals.aws:PrincipalTag/team.name", 9, 39, "doc.Statement[0].Condition.StringEquals.aws:PrincipalTag/team.name"},
		{"list element", doc, "$.Statement[0].Condition.StringEquals.aws:SourceVpce[1]", 10, 52, "doc.Statement[0].Condition.StringEquals.aws:SourceVpce[1]"},
		{"single statement object is element 0", single, "Statement[0].Effect", 13, 13, "single.Statement[0].Effect"},
		{"missing key falls back to the document", doc, "Statement[0].Principal", 2, 3, "doc.Statement[0].Principal"},
		{"index out of range falls back", doc, "Statement[3]", 2, 3, "doc.Statement[3]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, p := locate(tc.yaml, tc.yaml, joinPath("", strings.Split(tc.wantPath, ".")[0]), tc.jsonPath)
			if n.Line != tc.line || n.Column != tc.col || p != tc.wantPath {
				t.Errorf("locate = %d:%d %s, want %d:%d %s", n.Line, n.Column, p, tc.line, tc.col, tc.wantPath)
			}
		})
	}
}

func TestProblemsAreCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\naccount: \"123456789012\"\nregion: us-east-1\nusers:\n")
	for range 150 {
		b.WriteString("  - name: \"bad name\"\n")
	}
	_, err := Parse("many.yaml", []byte(b.String()))
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v", err)
	}
	if len(cerr.Problems) != maxProblems+1 {
		t.Fatalf("%d problems, want %d and a summary", len(cerr.Problems), maxProblems)
	}
	if got, want := cerr.Problems[maxProblems].String(), "many.yaml: 50 more problems not shown; fix the ones above and validate again"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	if cerr.Problems[0].Line != 5 || cerr.Problems[maxProblems-1].Line != 104 {
		t.Errorf("the first problems in the file were not the ones kept: lines %d..%d", cerr.Problems[0].Line, cerr.Problems[maxProblems-1].Line)
	}
}

// TestLongTermKeysInherit: a route takes its own longTermKeys, else its API's, else the
// gateway's default, else allow.
func TestLongTermKeysInherit(t *testing.T) {
	spec, err := Parse("ltk.yaml", []byte(`version: 1
account: "123456789012"
region: us-east-1
gateway: {longTermKeys: refuse}
apis:
  - id: aaaaaaaaaa
    stages: [prod]
    backends: {b: {url: "http://127.0.0.1:9000"}}
    routes:
      - {path: /inherits, methods: [GET], backend: b}
      - {path: /allows, methods: [GET], backend: b, longTermKeys: allow}
  - id: bbbbbbbbbb
    longTermKeys: allow
    stages: [prod]
    backends: {b: {url: "http://127.0.0.1:9000"}}
    routes:
      - {path: /inherits, methods: [GET], backend: b}
      - {path: /refuses, methods: [GET], backend: b, longTermKeys: refuse}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]LongTermKeys{
		"aaaaaaaaaa /inherits": LongTermKeysRefuse, "aaaaaaaaaa /allows": LongTermKeysAllow,
		"bbbbbbbbbb /inherits": LongTermKeysAllow, "bbbbbbbbbb /refuses": LongTermKeysRefuse,
	}
	for _, a := range spec.APIs {
		for _, r := range a.Routes {
			if got := r.LongTermKeys; got != want[a.ID+" "+r.Path] {
				t.Errorf("%s %s: %q, want %q", a.ID, r.Path, got, want[a.ID+" "+r.Path])
			}
		}
	}
	plain, err := Parse("plain.yaml", []byte("version: 1\naccount: \"123456789012\"\nregion: us-east-1\n"))
	if err != nil || plain.Gateway.LongTermKeys != LongTermKeysAllow {
		t.Errorf("default: %q, %v", plain.Gateway.LongTermKeys, err)
	}
}

func TestSignIn(t *testing.T) {
	spec, err := Parse("sso.yaml", []byte(`version: 1
account: "123456789012"
region: us-east-1
console: {keySignIn: refuse}
oidcProviders:
  - url: https://token.actions.githubusercontent.com
    clientIds: [sts.amazonaws.com]
  - url: https://idp.example/tenant
    clientIds: [sts.amazonaws.com, phantom]
    signIn:
      clientId: phantom
      roleClaim: https://phantom.example/roles
`))
	if err != nil {
		t.Fatal(err)
	}
	p, ok := spec.SignInProvider()
	if !ok || p.URL != "https://idp.example/tenant" || p.SignIn.ClientID != "phantom" || p.SignIn.RoleClaim != "https://phantom.example/roles" ||
		strings.Join(p.SignIn.Scopes, " ") != "openid profile email offline_access" {
		t.Fatalf("sign-in provider %+v %+v", p, p.SignIn)
	}
	if spec.Console.KeySignIn != KeySignInRefuse {
		t.Errorf("keySignIn %q", spec.Console.KeySignIn)
	}
	plain, _ := Parse("plain.yaml", []byte("version: 1\naccount: \"123456789012\"\nregion: us-east-1\n"))
	if _, ok := plain.SignInProvider(); ok || plain.Console.KeySignIn != KeySignInAllow {
		t.Errorf("defaults: %v %q", ok, plain.Console.KeySignIn)
	}
}

// TestBindName: the names that bind a call to an API (API Gateway private API host
// names, an endpoint's private DNS name when it serves one API), and those that address
// another endpoint.
func TestBindName(t *testing.T) {
	s, err := Parse("bind.yaml", []byte(`version: 1
account: "123456789012"
region: us-east-1
apis:
  - {id: a1b2c3d4e5, stages: [prod], backends: {b: {url: "http://127.0.0.1:9000"}}, routes: [{path: /x, methods: [GET], backend: b}]}
  - {id: b2c3d4e5f6, stages: [prod], backends: {b: {url: "http://127.0.0.1:9000"}}, routes: [{path: /x, methods: [GET], backend: b}]}
endpoints:
  - {id: vpce-0123456789abcdef0, vpc: vpc-0a1b2c3d4e5f60718, listen: ["127.0.0.1:8443"], ingress: [{ports: "8443", cidrs: [127.0.0.0/8]}],
     apis: [a1b2c3d4e5], privateDnsNames: [orders.internal.example]}
  - {id: vpce-0fedcba987654321f, vpc: vpc-0a1b2c3d4e5f60718, listen: ["127.0.0.1:8444"], ingress: [{ports: "8444", cidrs: [127.0.0.0/8]}],
     apis: [a1b2c3d4e5, b2c3d4e5f6], privateDnsNames: [shared.internal.example]}
`))
	if err != nil {
		t.Fatal(err)
	}
	one, _ := s.Endpoint("vpce-0123456789abcdef0")
	two, _ := s.Endpoint("vpce-0fedcba987654321f")
	for _, tc := range []struct {
		name string
		ep   *Endpoint
		host string
		want NameBinding
	}{
		{"execute-api name", two, ExecuteAPIName("b2c3d4e5f6", "us-east-1"), NameBinding{API: "b2c3d4e5f6"}},
		{"upper case, trailing dot", two, "B2C3D4E5F6.execute-api.us-east-1.amazonaws.com.", NameBinding{API: "b2c3d4e5f6"}},
		{"api-vpce name of this endpoint", two, "b2c3d4e5f6-vpce-0fedcba987654321f.execute-api.us-east-1.amazonaws.com", NameBinding{API: "b2c3d4e5f6"}},
		{"api-vpce name of another endpoint", one, "b2c3d4e5f6-vpce-0fedcba987654321f.execute-api.us-east-1.amazonaws.com", NameBinding{OtherEndpoint: "vpce-0fedcba987654321f"}},
		{"unknown API id", two, "zzzzzzzzzz.execute-api.us-east-1.amazonaws.com", NameBinding{}},
		{"private DNS name, one API", one, "orders.internal.example", NameBinding{API: "a1b2c3d4e5"}},
		{"private DNS name, two APIs", two, "shared.internal.example", NameBinding{}},
		{"another endpoint's private DNS name", one, "shared.internal.example", NameBinding{OtherEndpoint: "vpce-0fedcba987654321f"}},
		{"an address", one, "127.0.0.1", NameBinding{}},
		{"nothing", one, "", NameBinding{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.BindName(tc.ep, tc.host); got != tc.want {
				t.Errorf("BindName(%s, %q) = %+v, want %+v", tc.ep.ID, tc.host, got, tc.want)
			}
		})
	}
}

// FuzzIDFormats holds IsAPIID and IsVPCEID, which BindName runs on every request's Host
// and server name, to the regular expressions that validate the spec.
func FuzzIDFormats(f *testing.F) {
	for _, s := range []string{"a1b2c3d4e5", "A1B2C3D4E5", "a1b2c3d4e", "a1b2c3d4e5f", "vpce-0123456789abcdef0",
		"vpce-0123abcd", "vpce-0123abcde", "vpce-0123456789ABCDEF0", "vpce-", "", "a1b2c3d4e\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := IsAPIID(s), apiIDRe.MatchString(s); got != want {
			t.Errorf("IsAPIID(%q) = %v, apiIDRe says %v", s, got, want)
		}
		if got, want := IsVPCEID(s), vpceRe.MatchString(s); got != want {
			t.Errorf("IsVPCEID(%q) = %v, vpceRe says %v", s, got, want)
		}
	})
}
