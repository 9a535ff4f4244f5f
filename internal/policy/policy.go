// Package policy owns the IAM policy language: it parses and compiles policy documents
// (the JSON grammar of "IAM JSON policy element reference"), evaluates a set of policies
// for one request with AWS's "Policy evaluation logic", and explains every decision by the
// statements that made it. It does not know where policies are stored, who the caller is,
// or how requests arrive: callers build a Request (usually the gateway, from a verified
// SigV4 request) and a Set (usually from the perimeter config) and swap Sets atomically.
package policy

import "strconv"

// Kind is the type of a policy in a Set, which decides its role in evaluation.
type Kind string

// Policy types of "Policy evaluation logic".
const (
	Identity Kind = "identity" // identity-based policy of the user or role
	Resource Kind = "resource" // resource-based policy of the target (bucket, API, role trust)
	Boundary Kind = "boundary" // permissions boundary of the user or role
	Session  Kind = "session"  // session policy passed to AssumeRole/GetFederationToken
	SCP      Kind = "scp"      // organization guardrail (service control policy)
	Endpoint Kind = "endpoint" // VPC endpoint policy of the endpoint the request came through
)

func (k Kind) valid() bool {
	switch k {
	case Identity, Resource, Boundary, Session, SCP, Endpoint:
		return true
	}
	return false
}

// Effect is the outcome of an evaluation.
type Effect int

const (
	ImplicitDeny Effect = iota // nothing allowed the request (the default)
	Allow
	ExplicitDeny // a Deny statement matched
)

func (e Effect) String() string {
	switch e {
	case Allow:
		return "Allow"
	case ExplicitDeny:
		return "ExplicitDeny"
	}
	return "ImplicitDeny"
}

// Match names a statement that decided an evaluation.
type Match struct {
	Policy    int    // index in NewSet's entries
	Statement string // Sid, or the statement's index as a decimal string
}

// Decision is the result of Evaluate. Matched lists the denying statements for
// ExplicitDeny and the allowing ones for Allow; Reason explains an ImplicitDeny (and
// summarises the others). Matched may be shared with other decisions: do not modify it.
type Decision struct {
	Effect  Effect
	Matched []Match
	Reason  string
}

// Request is one authorization question.
type Request struct {
	Principal        string // ARN of the caller (role ARN, assumed-role session ARN, user ARN)
	PrincipalAccount string // derived from Principal when empty
	Action           string // "service:Action"
	Resource         string // ARN
	ResourceAccount  string // empty: same account as the principal
	Context          *Context
}

// Policy is a parsed and compiled policy document. It is immutable and may be shared
// by any number of Sets and goroutines.
type Policy struct {
	version    string
	hasVersion bool
	id         string
	hasID      bool
	stmts      []*statement
}

// Statements returns the number of statements in the policy.
func (p *Policy) Statements() int { return len(p.stmts) }

// Version returns the policy language version in effect ("2008-10-17" when the
// document has no Version element, as AWS documents).
func (p *Policy) Version() string {
	if !p.hasVersion {
		return version2008
	}
	return p.version
}

const (
	version2012 = "2012-10-17"
	version2008 = "2008-10-17"
)

type statement struct {
	index  int
	sid    string
	hasSid bool
	deny   bool

	hasPrincipal bool
	notPrincipal bool
	principal    principals

	notAction bool
	actions   []actionPat

	hasResource  bool
	notResource  bool
	resources    []arnPattern
	resourcesRaw []string

	conds []*condition
}

// label is how Decision.Matched names the statement.
func (s *statement) label() string {
	if s.hasSid && s.sid != "" {
		return s.sid
	}
	return strconv.Itoa(s.index)
}

type actionPat struct {
	raw     string
	service string // lowercased literal service prefix; "" when the service part has wildcards
	pat     pattern
}
