// Package config owns the perimeter spec: the one YAML file that describes a perimeter
// (account, region, users, roles, OIDC providers, APIs, endpoints, nodes, egress rules and
// the settings of the gateway, STS, audit log and detector). It parses the file, applies
// defaults, validates every value and reference (policies included, compiled by
// internal/policy) and reports each problem with file, line, column and what to do. It also
// watches the file and swaps in a new immutable *Spec when a valid change arrives.
//
// It does not own runtime state: access keys, sessions, revocations, enrolled nodes and
// findings live in internal/store; what the components do with a Spec is theirs.
package config

import (
	"crypto/x509"
	"encoding/json"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/policy"
)

// Spec is a loaded, validated perimeter. It is immutable once returned by Load or Parse:
// the watcher replaces the whole value on reload, so readers never lock and never see a
// half-applied change.
type Spec struct {
	// File is the path the spec was loaded from, as given to Load.
	File string
	// Digest is the SHA-256 of the file's bytes; an unchanged file is not re-applied.
	Digest [32]byte

	Version int
	Account string
	Region  string

	Gateway   Gateway
	STS       STS
	Console   Console
	Audit     Audit
	Events    Events
	Detection Detection

	ManagedPolicies []*ManagedPolicy
	Groups          []*Group
	Users           []*User
	Roles           []*Role
	OIDCProviders   []*OIDCProvider
	APIs            []*API
	Endpoints       []*Endpoint
	Nodes           []*Node
	Egress          []*Egress

	managedPolicies map[string]*ManagedPolicy
	groups          map[string]*Group
	users           map[string]*User
	roles           map[string]*Role
	oidcProviders   map[string]*OIDCProvider
	apis            map[string]*API
	endpoints       map[string]*Endpoint
	nodes           map[string]*Node
	egress          map[string]*Egress
	byARN           map[string]any
	dnsNames        map[string]*Endpoint
}

// Policy is one IAM policy document from the spec, kept both as the JSON the policy
// engine parsed and as its compiled form, so the request path never parses.
type Policy struct {
	// Name is the inline or managed policy's name; empty for trust, resource and
	// endpoint policies, which AWS does not name.
	Name string
	// Document is the policy as compact JSON.
	Document json.RawMessage
	// Compiled is the parsed policy, ready to evaluate.
	Compiled *policy.Policy
	// Line and Column locate the document in the spec file.
	Line, Column int
}

// ManagedPolicy is a customer managed policy that users and roles attach by name, or use
// as a permissions boundary.
type ManagedPolicy struct {
	Name        string
	Path        string
	Description string
	ARN         string
	Policy      *Policy
}

// Group is an IAM group: a set of users that share its inline and managed policies. A
// group is no principal: nothing assumes it or names it in a Principal element.
type Group struct {
	Name            string
	Path            string
	ARN             string
	Policies        []*Policy
	ManagedPolicies []*ManagedPolicy
}

// User is an IAM user: a person or system with long-term access keys (kept in the store).
type User struct {
	Name                string
	Path                string
	ARN                 string
	Tags                map[string]string
	Policies            []*Policy
	ManagedPolicies     []*ManagedPolicy
	PermissionsBoundary *ManagedPolicy
	// Groups are the groups the user belongs to; their policies are the user's too.
	Groups []*Group

	identity []IdentityPolicy
}

// Role is an IAM role that principals named by its trust policy may assume.
type Role struct {
	Name                string
	Path                string
	ARN                 string
	Description         string
	TrustPolicy         *Policy
	Policies            []*Policy
	ManagedPolicies     []*ManagedPolicy
	PermissionsBoundary *ManagedPolicy
	MaxSessionDuration  time.Duration
	Tags                map[string]string

	identity []IdentityPolicy
}

// IdentityPolicy is one identity-based policy of a principal: an inline or attached
// managed policy of its own or, for a user, of one of its groups.
type IdentityPolicy struct {
	Policy *Policy
	// Managed is the managed policy it is; nil for an inline policy.
	Managed *ManagedPolicy
	// Owner holds an inline policy: "user alice", "role app" or "group developers".
	Owner string
}

// Name names the policy as a decision explains it: "group developers inline policy
// read" or the managed policy's ARN.
func (p IdentityPolicy) Name() string {
	if p.Managed != nil {
		return p.Managed.ARN
	}
	return p.Owner + " inline policy " + p.Policy.Name
}

// IdentityPolicies returns every identity-based policy IAM evaluates for the user: its
// own inline and managed policies, then those of each of its groups (IAM User Guide,
// "Policy evaluation logic": a user's permissions are its own policies and its groups').
// A managed policy attached twice is listed once. The permissions boundary is not among
// them. Every component deciding for a user uses this, so none can forget the groups.
func (u *User) IdentityPolicies() []IdentityPolicy { return u.identity }

// IdentityPolicies returns the role's inline and attached managed policies.
func (r *Role) IdentityPolicies() []IdentityPolicy { return r.identity }

// identityPolicies lists the policies of owner (inline) and managed, then of groups,
// each managed policy once.
func identityPolicies(owner string, inline []*Policy, managed []*ManagedPolicy, groups []*Group) []IdentityPolicy {
	var out []IdentityPolicy
	seen := map[*ManagedPolicy]bool{}
	add := func(owner string, inline []*Policy, managed []*ManagedPolicy) {
		for _, p := range inline {
			out = append(out, IdentityPolicy{Policy: p, Owner: owner})
		}
		for _, mp := range managed {
			if !seen[mp] {
				seen[mp] = true
				out = append(out, IdentityPolicy{Policy: mp.Policy, Managed: mp})
			}
		}
	}
	add(owner, inline, managed)
	for _, g := range groups {
		add("group "+g.Name, g.Policies, g.ManagedPolicies)
	}
	return out
}

// OIDCProvider is an OpenID Connect identity provider trusted for
// AssumeRoleWithWebIdentity.
type OIDCProvider struct {
	// URL is the issuer; tokens' iss claim must equal it.
	URL string
	// Name is the URL without its scheme: the provider's name in its ARN and the prefix of
	// its condition keys (<name>:sub, <name>:aud, <name>:amr).
	Name      string
	ARN       string
	ClientIDs []string
	// JWKSURL is where signing keys are fetched; empty means OpenID discovery from URL.
	JWKSURL string
	// SignIn, when set, signs people in through this provider: phantom login and the
	// console's single sign-on. At most one provider has it.
	SignIn *SignIn
}

// SignIn is how people sign in through an OIDC provider: as a public OAuth 2.0 client
// (PKCE, the device authorization grant; no client secret), whose ID tokens STS exchanges
// for role sessions with AssumeRoleWithWebIdentity.
type SignIn struct {
	// ClientID is the client registered at the provider, one of the provider's ClientIDs
	// (the audience of the ID tokens it issues).
	ClientID string
	// Scopes are requested at sign-in; they include openid.
	Scopes []string
	// RoleClaim names the ID token claim listing the roles (names or ARNs) a person may
	// take; "" when the role is always named at sign-in.
	RoleClaim string
}

// Console holds the web console's settings.
type Console struct {
	// KeySignIn says whether people may sign in with an access key and secret; with
	// refuse, single sign-on is the only way in.
	KeySignIn KeySignIn
}

// KeySignIn says whether the console takes access-key sign-ins.
type KeySignIn string

const (
	KeySignInAllow  KeySignIn = "allow"
	KeySignInRefuse KeySignIn = "refuse"
)

// Authorization says how the gateway authorizes a route.
type Authorization string

const (
	// AuthIAM requires a SigV4 signature and an IAM allow; the default.
	AuthIAM Authorization = "AWS_IAM"
	// AuthNone lets anyone call the route; only when written explicitly.
	AuthNone Authorization = "NONE"
)

// LongTermKeys says whether calls signed with users' long-term access keys (AKIA…) are
// accepted, or only calls signed with STS sessions (ASIA…).
type LongTermKeys string

const (
	// LongTermKeysAllow accepts both; the default.
	LongTermKeysAllow LongTermKeys = "allow"
	// LongTermKeysRefuse refuses calls signed with long-term keys: people and workloads
	// alike must come through STS.
	LongTermKeysRefuse LongTermKeys = "refuse"
)

// AssertionKind is how the gateway proves a call's identity to an API's backends
// (X-Phantom-Identity, docs/backends.md).
type AssertionKind string

const (
	// AssertionHS256 MACs the assertion (JWS HS256, RFC 7518 §3.2) under the API's own
	// key, derived from the gateway's assertion key with the API id (phantom keys
	// backend): a backend holding its API's key verifies, and cannot forge assertions
	// for another API. The default: a hash per request instead of a signature.
	AssertionHS256 AssertionKind = "hs256"
	// AssertionEdDSA signs it with the gateway's Ed25519 key (RFC 8037), verifiable with
	// the published JWKS and no secret at the backend.
	AssertionEdDSA AssertionKind = "eddsa"
)

// API is an API Gateway-like REST API served by the gateway.
type API struct {
	ID             string
	Name           string
	Description    string
	Stages         []string
	Backends       map[string]*Backend
	Routes         []*Route
	ResourcePolicy *Policy
	// LongTermKeys is the API's own setting, or the gateway's when it has none; each
	// route resolves its own from it.
	LongTermKeys LongTermKeys
	// Assertion is how its backends are told who called (hs256 by default).
	Assertion AssertionKind
}

// Backend is an upstream HTTP service.
type Backend struct {
	Name    string
	URL     *url.URL
	Timeout time.Duration
	// CA verifies an https backend's certificate (loaded from CAFile, relative paths
	// resolved against the spec's directory); nil means the gateway's default (the
	// perimeter CA and the system's roots). CADigest is the SHA-256 of the file.
	CA       *x509.CertPool
	CAFile   string
	CADigest [32]byte
}

// Route maps a path template and methods to a backend.
type Route struct {
	// Path is the template as written, e.g. /orders/{id} or /files/{proxy+}.
	Path     string
	Segments []Segment
	// Methods are upper-case HTTP methods; ANY stands alone and matches every method.
	Methods       []string
	Backend       *Backend
	Authorization Authorization
	// LongTermKeys is the route's own setting, or its API's: what the gateway applies.
	LongTermKeys LongTermKeys
	// Upgrade lists the protocols a request to this route may switch to (websocket is
	// the only one); empty: an Upgrade is refused.
	Upgrade []string
	// MatrixParameters admits ";" parameters in path segments (/a;v=1/b); otherwise a
	// path with one is refused, as backends disagree on what it means.
	MatrixParameters bool
}

// SegmentKind is the kind of one path-template segment.
type SegmentKind int

const (
	// Literal matches the segment text exactly (paths are case-sensitive, as in API Gateway).
	Literal SegmentKind = iota
	// Param matches one non-empty segment and binds it to Value.
	Param
	// Greedy matches the rest of the path (one or more segments) and binds it to Value;
	// only the last segment may be greedy.
	Greedy
)

// Segment is one parsed segment of a route's path template.
type Segment struct {
	Kind  SegmentKind
	Value string
}

// Endpoint is the VPC-endpoint analogue: TLS-only listeners guarded by security-group
// ingress rules, forwarding the APIs it lists to the gateway over mTLS.
type Endpoint struct {
	ID  string
	VPC string
	// Listen are the TLS listener addresses. There is no plaintext option: an endpoint
	// listener is always TLS 1.2 or later.
	Listen          []netip.AddrPort
	Ingress         []IngressRule
	APIs            []string
	PrivateDNSNames []string
	// Policy is the endpoint policy; nil means AWS's default, full access.
	Policy *Policy
	// Limits bound the connections its listeners hold open.
	Limits ConnectionLimits
}

// ConnectionLimits bound the TCP connections one listener holds open: in all, and from
// one source address.
type ConnectionLimits struct {
	MaxConnections          int
	MaxConnectionsPerSource int
}

// IngressRule is a security-group rule: TCP to a port range from source CIDRs.
type IngressRule struct {
	Protocol    string
	Ports       PortRange
	CIDRs       []netip.Prefix
	Description string
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ From, To uint16 }

// Contains reports whether port is in the range.
func (r PortRange) Contains(port uint16) bool { return port >= r.From && port <= r.To }

// Node is a workload host (Service A's instance) that runs the agent.
type Node struct {
	Name      string
	Role      string
	VPC       string
	PrivateIP netip.Addr
	// Endpoint is the endpoint this node is expected to use; empty when unbound.
	Endpoint string
	// EgressMode is ModeReport when the egress proxy only reports what it would refuse
	// this node (and forwards it anyway); ModeEnforce otherwise.
	EgressMode ResponseMode
}

// Egress lists where workloads of one role may send data; everything else is denied.
type Egress struct {
	Role  string
	Allow []EgressAllow
	// Mode is ModeReport when the proxy only reports what the rules would refuse (and
	// forwards it anyway): how a rule set is rolled out without breaking workloads.
	Mode ResponseMode
}

// EgressAllow is one allowed destination; exactly one of API, Host and CIDR is set.
type EgressAllow struct {
	// API allows the API with this id, through the endpoints that serve it.
	API string
	// Host is a lower-case host name, a *.domain wildcard (one or more leading labels) or
	// an IP address.
	Host string
	// CIDR allows an address range.
	CIDR  netip.Prefix
	Ports []PortRange
	// MaxRiskLevel, when set, is the highest phantom:RiskLevel (low, medium, high) of the
	// node's session for which the rule allows anything: above it the rule does not apply.
	MaxRiskLevel string
}

// Gateway holds the gateway's settings.
type Gateway struct {
	// Name names the gateway in its certificate (spiffe://phantom/<account>/gateway/<name>).
	Name string
	// Listen is the gateway's own TLS address; the zero value leaves it to the command.
	Listen netip.AddrPort
	// ClockSkew is how far a SigV4 request's date may be from now.
	ClockSkew time.Duration
	// LongTermKeys is the perimeter-wide default of APIs that do not set their own.
	LongTermKeys LongTermKeys
	// Limits bound what callers can make the gateway hold: memory, connections, time.
	Limits Limits
	// ReplayProtection refuses a second use of one signature; off unless Enabled.
	ReplayProtection ReplayProtection
}

// Limits are the gateway's bounds on its callers. Every one has a default (see
// docs/spec.md for why each is what it is).
type Limits struct {
	ConnectionLimits
	// MaxBodyBytes is the largest request body (API Gateway's payload limit by default).
	MaxBodyBytes int64
	// BodyBufferBytes bounds the bodies held in memory at once: those whose signature
	// covers a hash the request does not declare, read whole before it is checked.
	BodyBufferBytes int64
	// HeaderTimeout bounds the TLS handshake and the request line and headers.
	HeaderTimeout time.Duration
	// BodyTimeout and MinBodyRate bound the body: it must arrive within BodyTimeout plus
	// one second for every MinBodyRate bytes received.
	BodyTimeout time.Duration
	MinBodyRate int64
	// MaxInFlight bounds the requests being handled at once.
	MaxInFlight int
}

// ReplayProtection makes a signature good for one request of the named methods within
// its validity, across every gateway replica sharing the store.
type ReplayProtection struct {
	Enabled bool
	Methods []string
}

// STS holds the STS API's settings.
type STS struct {
	// Listen is the STS TLS address; the zero value leaves it to the command.
	Listen netip.AddrPort
}

// Audit holds the audit log's settings.
type Audit struct {
	// Dir is where segments are written; relative paths are inside the data directory.
	Dir string
}

// Events holds how audit records travel to the detectors over NATS JetStream (package
// events); URLs empty: they do not (the detector follows the chains in audit.dir).
type Events struct {
	// URLs are the NATS servers, nats:// or tls://.
	URLs []string
	// Creds is a NATS credentials file, NKey a file holding an nkey seed; CA the PEM
	// bundle the servers' certificates chain to; Cert and Key a client certificate.
	// Relative paths are beside the spec.
	Creds, NKey, CA, Cert, Key string
	// Stream is the JetStream stream ("": PHANTOM_AUDIT); Replicas its replicas when a
	// process creates it (0: 1).
	Stream   string
	Replicas int
}

// Detection holds the detector's settings and the automatic responses to findings.
type Detection struct {
	LearningPeriod time.Duration
	ThreatLists    []ThreatList
	// SigmaRules is a directory of Sigma rules for AWS CloudTrail the detector runs on
	// every event (absolute; relative paths in the spec are resolved against the spec
	// file's directory). Empty: none.
	SigmaRules string
	Responses  []Response
	// ProtectedPrincipals are principal ARNs (* matches any run of characters) no response
	// ever acts on: break-glass administrators. A role's ARN protects its sessions too.
	ProtectedPrincipals []string
}

// ThreatList is a file of malicious addresses or CIDRs, one a line.
type ThreatList struct {
	Name string
	// File is an absolute path (relative paths in the spec are resolved against the spec
	// file's directory).
	File string
}

// Response says what to do when a finding matches.
type Response struct {
	// FindingType is a GuardDuty finding type; * matches any run of characters.
	FindingType string
	// MinSeverity is the lowest severity (1 to 8.9) the response applies to.
	MinSeverity float64
	Actions     []Action
	// RiskLevel is the phantom:RiskLevel set by ActionRaiseRiskLevel.
	RiskLevel string
	// Webhook is where ActionNotify posts the finding.
	Webhook string
	// Mode is ModeEnforce (act) or ModeReport (record what would have been done).
	Mode ResponseMode
	// MaxPerHour caps how many findings the response acts on in any hour
	// (DefaultMaxPerHour when unset); past it, actions wait and are audited as throttled.
	MaxPerHour int
}

// ResponseMode says whether a response, an egress rule set or a node's egress acts
// (enforce) or only records what it would have done (report).
type ResponseMode string

const (
	ModeEnforce ResponseMode = "enforce"
	ModeReport  ResponseMode = "report"
)

// RiskRank orders phantom:RiskLevel values: none (0) < any unknown level (1) < low <
// medium < high < critical. The detector raises levels on this order and the egress
// proxy compares a node's level with a rule's maxRiskLevel on it.
func RiskRank(level string) int {
	switch level {
	case "":
		return 0
	case "low":
		return 2
	case "medium":
		return 3
	case "high":
		return 4
	case "critical":
		return 5
	}
	return 1
}

// DefaultMaxPerHour is a response's cap when the spec sets none: one finding a minute on
// average, in bursts.
const DefaultMaxPerHour = 60

// Action is an automatic response to a finding.
type Action string

const (
	ActionRevokeSessions   Action = "revokeSessions"
	ActionDisableAccessKey Action = "disableAccessKey"
	ActionRaiseRiskLevel   Action = "raiseRiskLevel"
	ActionNotify           Action = "notify"
)

// ManagedPolicy returns the managed policy with this name.
func (s *Spec) ManagedPolicy(name string) (*ManagedPolicy, bool) {
	p, ok := s.managedPolicies[name]
	return p, ok
}

// Group returns the group with this name.
func (s *Spec) Group(name string) (*Group, bool) { g, ok := s.groups[name]; return g, ok }

// User returns the user with this name.
func (s *Spec) User(name string) (*User, bool) { u, ok := s.users[name]; return u, ok }

// Role returns the role with this name.
func (s *Spec) Role(name string) (*Role, bool) { r, ok := s.roles[name]; return r, ok }

// RoleByARN returns the role with this ARN.
func (s *Spec) RoleByARN(arn string) (*Role, bool) { r, ok := s.byARN[arn].(*Role); return r, ok }

// UserByARN returns the user with this ARN.
func (s *Spec) UserByARN(arn string) (*User, bool) { u, ok := s.byARN[arn].(*User); return u, ok }

// ManagedPolicyByARN returns the managed policy with this ARN, as AssumeRole's PolicyArns
// name them.
func (s *Spec) ManagedPolicyByARN(arn string) (*ManagedPolicy, bool) {
	p, ok := s.byARN[arn].(*ManagedPolicy)
	return p, ok
}

// EndpointByDNSName returns the endpoint serving a private DNS name (case-insensitive,
// trailing dot ignored, as DNS compares names).
func (s *Spec) EndpointByDNSName(host string) (*Endpoint, bool) {
	e, ok := s.dnsNames[strings.ToLower(strings.TrimSuffix(host, "."))]
	return e, ok
}

// OIDCProvider returns the provider whose issuer URL is iss; a trailing slash is ignored,
// as issuers differ on it.
func (s *Spec) OIDCProvider(iss string) (*OIDCProvider, bool) {
	p, ok := s.oidcProviders[strings.TrimSuffix(iss, "/")]
	return p, ok
}

// SignInProvider returns the OIDC provider people sign in through, if the spec has one.
func (s *Spec) SignInProvider() (*OIDCProvider, bool) {
	for _, p := range s.OIDCProviders {
		if p.SignIn != nil {
			return p, true
		}
	}
	return nil, false
}

// API returns the API with this id.
func (s *Spec) API(id string) (*API, bool) { a, ok := s.apis[id]; return a, ok }

// Endpoint returns the endpoint with this id.
func (s *Spec) Endpoint(id string) (*Endpoint, bool) { e, ok := s.endpoints[id]; return e, ok }

// Node returns the node with this name.
func (s *Spec) Node(name string) (*Node, bool) { n, ok := s.nodes[name]; return n, ok }

// EgressFor returns the egress rules of a role; a role without rules may send nowhere.
func (s *Spec) EgressFor(role string) (*Egress, bool) { e, ok := s.egress[role]; return e, ok }

// ARN returns the API's execute-api ARN prefix, arn:aws:execute-api:{region}:{account}:{id}.
func (a *API) ARN(s *Spec) string {
	return "arn:aws:execute-api:" + s.Region + ":" + s.Account + ":" + a.ID
}
