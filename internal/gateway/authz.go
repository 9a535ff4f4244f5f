package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/authzmsg"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/policy"
	"github.com/phantom-perimeter/phantom/internal/sigv4"
)

const actionInvoke = "execute-api:Invoke"

// revocationAware adapts the identity service to AWS's answer for a revoked role session:
// the token is genuine and the call is denied (AccessDenied), as "Revoking IAM role temporary
// security credentials" describes, rather than the token being called invalid.
type revocationAware struct{ sigv4.CredentialSource }

var errRevoked = errors.New("role sessions were revoked after this session was issued")

func (c revocationAware) LookupCredential(ctx context.Context, id, token string) (sigv4.Credential, error) {
	cred, err := c.CredentialSource.LookupCredential(ctx, id, token)
	if err != nil && errors.Is(err, identity.ErrSessionRevoked) {
		return cred, errors.Join(sigv4.ErrAccessDenied, errRevoked)
	}
	return cred, err
}

// caller is the authenticated principal of a request.
type caller struct {
	arn         string // user ARN or assumed-role session ARN (the policy Request's principal)
	account     string
	accessKeyID string
	user        *config.User // IAM users (long-term keys and GetSessionToken sessions)
	role        *config.Role // assumed-role sessions
	claims      *identity.Claims
	principalID string        // aws:userid: AIDA… for users, AROA…:session for role sessions
	risk        string        // phantom:RiskLevel, "" absent
	issued      string        // the session's issue time (ISO 8601), "" without claims
	policies    [32]byte      // sessionDigest of claims
	facts       *sessionFacts // nil without claims
}

// identifyCaller resolves the verified credential to a principal of the spec and fills the
// event's userIdentity. A principal the spec no longer has, or a session without its claims,
// is refused: its policies cannot be known.
// sessionParts is where identifyCaller puts a session's context for the event.
type sessionParts struct {
	ctx    audit.SessionContext
	issuer audit.SessionIssuer
}

func identifyCaller(st *state, keyID string, cred sigv4.Credential, rv *identity.Resolved, ui *audit.UserIdentity, sp *sessionParts) (caller, *apiError) {
	spec := st.spec
	c := caller{arn: cred.Principal, accessKeyID: keyID, account: arn.Account(cred.Principal)}
	if rv != nil && rv.Credential.AccessKeyID == keyID {
		c.claims = rv.Claims
	}
	var facts *sessionFacts
	if c.claims != nil {
		facts = st.sessions.get(c.claims)
		c.issued, c.policies, c.facts = facts.issued, facts.policies, facts
	}
	ui.AccessKeyID, ui.ARN, ui.AccountID = c.accessKeyID, c.arn, c.account
	switch {
	case strings.Contains(c.arn, ":assumed-role/"):
		if c.claims == nil || c.claims.Role == "" {
			return c, errInvalidToken()
		}
		role, ok := spec.RoleByARN(c.claims.Role)
		if !ok {
			return c, errAccessDeniedMsg("User: " + c.arn + " is not authorized to perform: " + actionInvoke + " because the role of its session no longer exists")
		}
		c.role = role
		rid := st.uniqueID(role.ARN, arn.RoleID)
		c.principalID = facts.principalID(rid, c.claims.SessionName)
		ui.Type, ui.PrincipalID = "AssumedRole", c.principalID
		sp.issuer = audit.SessionIssuer{Type: "Role", PrincipalID: rid, ARN: role.ARN, AccountID: arn.Account(role.ARN), UserName: role.Name}
		sp.ctx = audit.SessionContext{
			SessionIssuer:  &sp.issuer,
			Attributes:     facts.attributes,
			SourceIdentity: c.claims.SourceIdentity,
		}
		ui.SessionContext = &sp.ctx
		if c.claims.Node != "" {
			// Credentials an agent obtained for a node, as CloudTrail marks IMDSv2 deliveries.
			ui.SessionContext.EC2RoleDelivery = "2.0"
		}
	case strings.Contains(c.arn, ":user/"):
		if c.claims != nil && c.claims.Role != c.arn {
			// A user's (GetSessionToken) session names the user as its role too; anything
			// else is a credential source out of step with its tokens.
			return c, errInvalidToken()
		}
		u, ok := spec.UserByARN(c.arn)
		if !ok {
			return c, errInvalidToken()
		}
		c.user = u
		c.principalID = st.uniqueID(u.ARN, arn.UserID)
		ui.Type, ui.PrincipalID, ui.UserName = "IAMUser", c.principalID, u.Name
		if c.claims != nil {
			sp.ctx = audit.SessionContext{Attributes: facts.attributes}
			ui.SessionContext = &sp.ctx
		}
	default:
		return c, errAccessDeniedMsg("The calling principal " + c.arn + " is not an IAM user or role session.")
	}
	return c, nil
}

// sessionFacts is what the event and the decision take from one session's claims, made
// once: identity hands every call of a session the same *identity.Claims (its cache of
// opened tokens), so a session's calls share its issue time, its sessionContext
// attributes (read-only once made: events only read them) and its principal id.
type sessionFacts struct {
	issued     string            // creationDate, aws:TokenIssueTime
	attributes map[string]string // sessionContext.attributes
	rid, pid   string            // the role's unique id and the principal id made with it
	policies   [32]byte          // sessionDigest: a session policy is hashed once, not per call
	assertion  assertionSlot     // the start of the session's identity assertions
}

// principalID is rid:session, made once per role unique id.
func (f *sessionFacts) principalID(rid, session string) string {
	if f.rid != rid || f.pid == "" {
		return rid + ":" + session
	}
	return f.pid
}

// sessionFactsCache holds the facts of the sessions seen under one spec, by claims.
// Bounded; cleared when full (the claims are identity's, reopened after its own
// eviction: an entry only saves formatting).
type sessionFactsCache struct {
	mu sync.RWMutex
	m  map[*identity.Claims]*sessionFacts
}

const sessionFactsCacheSize = 4096

func (c *sessionFactsCache) get(cl *identity.Claims) *sessionFacts {
	c.mu.RLock()
	f, ok := c.m[cl]
	c.mu.RUnlock()
	if ok {
		return f
	}
	issued := isoTime(cl.IssuedAt)
	f = &sessionFacts{issued: issued, attributes: map[string]string{"creationDate": issued, "mfaAuthenticated": boolString(cl.MFA)},
		policies: sessionDigest(cl)}
	if role := cl.Role; strings.Contains(role, ":role/") {
		f.rid = arn.RoleID(role)
		f.pid = f.rid + ":" + cl.SessionName
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= sessionFactsCacheSize {
		c.m = make(map[*identity.Claims]*sessionFacts)
	}
	c.m[cl] = f
	c.mu.Unlock()
	return f
}

// Condition keys by canonical name and in lower case: policy.Context compares names
// case-insensitively and stores them lower-cased, so the hot path hands it lower-case names
// (no conversion, no allocation) and explanations show the canonical spelling.
type condKey struct{ name, lower string }

func ck(name string) condKey { return condKey{name, strings.ToLower(name)} }

var (
	keySourceIP          = ck("aws:SourceIp")
	keySourceVpce        = ck("aws:SourceVpce")
	keySourceVpc         = ck("aws:SourceVpc")
	keySecureTransport   = ck("aws:SecureTransport")
	keyCurrentTime       = ck("aws:CurrentTime")
	keyEpochTime         = ck("aws:EpochTime")
	keyRequestedRegion   = ck("aws:RequestedRegion")
	keyUserAgent         = ck("aws:UserAgent")
	keyViaAWSService     = ck("aws:ViaAWSService")
	keyPrincipalAccount  = ck("aws:PrincipalAccount")
	keyPrincipalArn      = ck("aws:PrincipalArn")
	keyPrincipalType     = ck("aws:PrincipalType")
	keyUserid            = ck("aws:userid")
	keyUsername          = ck("aws:username")
	keyTokenIssueTime    = ck("aws:TokenIssueTime")
	keyMFAPresent        = ck("aws:MultiFactorAuthPresent")
	keyMFAAge            = ck("aws:MultiFactorAuthAge")
	keySourceIdentity    = ck("aws:SourceIdentity")
	keyEC2SourceVPC      = ck("aws:EC2InstanceSourceVPC")
	keyEC2SourcePrivIPv4 = ck("aws:EC2InstanceSourcePrivateIPv4")
	keyRiskLevel         = ck("phantom:RiskLevel")
)

const principalTagPrefix = "aws:PrincipalTag/"

// keyBuilder collects single-valued condition keys into one map, the values sharing one
// backing array. Unless canonical, every name it sets is made with strings.ToLower (ck,
// state.tagNames, tag), which decisions rely on (policy.Context.ResetLower).
type keyBuilder struct {
	canonical bool
	m         map[string][]string
	vals      []string
	// ctx and req are the one evaluation's policy.Context over m and policy.Request,
	// pooled with m.
	ctx policy.Context
	req policy.Request
}

func newKeyBuilder(canonical bool) *keyBuilder {
	return &keyBuilder{canonical: canonical, m: make(map[string][]string, 24), vals: make([]string, 0, 24)}
}

// keyBuilders recycles the builders of the lower-case keys every decision builds: the map
// is only read by the one evaluation it was built for (policy.ContextOf), then cleared.
type keyBuilders struct{ p sync.Pool }

func (kb *keyBuilders) get() *keyBuilder {
	if b, ok := kb.p.Get().(*keyBuilder); ok {
		return b
	}
	return newKeyBuilder(false)
}

func (kb *keyBuilders) put(b *keyBuilder) {
	if len(b.m) > 64 {
		return // an outsized tag set: do not keep its map
	}
	clear(b.m)
	clear(b.vals)
	b.vals = b.vals[:0]
	b.ctx, b.req = policy.Context{}, policy.Request{}
	kb.p.Put(b)
}

func (b *keyBuilder) set(k condKey, v string) {
	name := k.lower
	if b.canonical {
		name = k.name
	}
	b.setName(name, v)
}

func (b *keyBuilder) setName(name, v string) {
	b.vals = append(b.vals, v)
	n := len(b.vals)
	b.m[name] = b.vals[n-1 : n : n]
}

func (b *keyBuilder) tag(names map[string]string, key, v string) {
	if !b.canonical {
		if name, ok := names[key]; ok {
			b.setName(name, v)
			return
		}
	}
	name := principalTagPrefix + key
	if !b.canonical {
		name = strings.ToLower(name)
	}
	b.setName(name, v)
}

// conditionKeys builds the request's global condition keys ("AWS global condition context
// keys") for an authenticated caller (anonymous: c nil), with lower-case names unless
// canonical (for explanations).
func (g *Gateway) conditionKeys(cl *call, c *caller, canonical bool) map[string][]string {
	b := newKeyBuilder(canonical)
	g.fillKeys(b, cl, c)
	return b.m
}

// fillKeys adds the request's global condition keys to b.
func (g *Gateway) fillKeys(b *keyBuilder, cl *call, c *caller) {
	now := cl.now
	if cl.ch.sourceIP != "" {
		b.set(keySourceIP, cl.ch.sourceIP)
	}
	if ep := cl.ch.endpoint; ep != nil {
		b.set(keySourceVpce, ep.ID)
		if ep.VPC != "" {
			b.set(keySourceVpc, ep.VPC)
		}
	}
	b.set(keySecureTransport, boolString(cl.ch.secure))
	ct := g.clockKeys.at(now)
	b.set(keyCurrentTime, ct.iso)
	b.set(keyEpochTime, ct.epoch)
	b.set(keyRequestedRegion, cl.spec.Region)
	if ua := headerValue(cl.r.Header, "User-Agent"); ua != "" {
		b.set(keyUserAgent, ua)
	}
	b.set(keyViaAWSService, "false")
	if c == nil {
		return
	}
	b.set(keyPrincipalAccount, c.account)
	var specTags map[string]string
	switch {
	case c.role != nil:
		b.set(keyPrincipalArn, c.role.ARN) // the role's ARN, not the session's
		b.set(keyPrincipalType, "AssumedRole")
		b.set(keyUserid, c.principalID)
		specTags = c.role.Tags
	case c.user != nil:
		b.set(keyPrincipalArn, c.user.ARN)
		b.set(keyPrincipalType, "User")
		b.set(keyUserid, c.principalID)
		b.set(keyUsername, c.user.Name)
		specTags = c.user.Tags
	}
	for k, v := range specTags {
		b.tag(cl.st.tagNames, k, v)
	}
	if s := c.claims; s != nil {
		// Session tags override the principal's own tags of the same key.
		for _, t := range s.Tags {
			b.tag(cl.st.tagNames, t.Key, t.Value)
		}
		b.set(keyTokenIssueTime, c.issued)
		b.set(keyMFAPresent, boolString(s.MFA))
		if age, ok := s.MFAAge(now); ok {
			b.set(keyMFAAge, age)
		}
		if s.SourceIdentity != "" {
			b.set(keySourceIdentity, s.SourceIdentity)
		}
		if s.VPC != "" {
			b.set(keyEC2SourceVPC, s.VPC)
		}
		if s.PrivateIP.Is4() {
			b.set(keyEC2SourcePrivIPv4, s.PrivateIP.String())
		}
	}
	if c.risk != "" {
		b.set(keyRiskLevel, c.risk)
	}
	return
}

// clockKeys keeps aws:CurrentTime and aws:EpochTime of the current second: every
// request of that second shares the two strings instead of formatting its own.
type clockKeys struct{ p atomic.Pointer[clockStrings] }

type clockStrings struct {
	unix       int64
	iso, epoch string
}

func (c *clockKeys) at(now time.Time) *clockStrings {
	u := now.Unix()
	if s := c.p.Load(); s != nil && s.unix == u {
		return s
	}
	s := &clockStrings{unix: u, iso: isoTime(now), epoch: strconv.FormatInt(u, 10)}
	c.p.Store(s)
	return s
}

// compiledSet is a policy set with the names of its entries, for explanations.
type compiledSet struct {
	set   *policy.Set
	names []string
}

// setKey identifies a compiled set under one spec: who (the user or role whose policies
// apply), which session policies, which API and which endpoint.
type setKey struct {
	principal string // user or role ARN; "" for anonymous
	session   [32]byte
	api       string
	endpoint  string
}

// setCache holds the compiled sets of one spec. Bounded; cleared when full (a spec's set of
// distinct callers is small; the bound only stops unbounded session-policy variety).
type setCache struct {
	mu  sync.RWMutex
	max int
	m   map[setKey]*compiledSet
}

const setCacheSize = 4096

func newSetCache(max int) *setCache { return &setCache{max: max, m: make(map[setKey]*compiledSet)} }

func (c *setCache) get(k setKey, build func() *compiledSet) *compiledSet {
	c.mu.RLock()
	s, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return s
	}
	s = build()
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = s
	c.mu.Unlock()
	return s
}

// sessionDigest names a session's policies (inline text and managed ARNs) in the cache key.
func sessionDigest(s *identity.Claims) [32]byte {
	if s == nil || (s.Policy == "" && len(s.PolicyARNs) == 0) {
		return [32]byte{}
	}
	h := sha256.New()
	h.Write([]byte(s.Policy))
	for _, a := range s.PolicyARNs {
		h.Write([]byte{0})
		h.Write([]byte(a))
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// buildSet assembles the one set a request is decided by: the caller's identity side
// (inline and managed policies, permissions boundary, session policies), the API's resource
// policy and, through an endpoint, the endpoint policy (nil: AWS's default full access,
// which adds nothing). A session policy that no longer parses or names a managed policy the
// spec lacks enters as an empty session policy, which allows nothing.
func buildSet(spec *config.Spec, c *caller, api *config.API, ep *config.Endpoint) *compiledSet {
	cs := &compiledSet{}
	var entries []policy.Entry
	add := func(kind policy.Kind, p *policy.Policy, name string) {
		entries = append(entries, policy.Entry{Kind: kind, Policy: p})
		cs.names = append(cs.names, name)
	}
	// A policy missing its compiled form enters with no statements: it allows nothing, and a
	// boundary or session policy without statements denies everything (fail closed).
	compiled := func(p *config.Policy) *policy.Policy {
		if p == nil {
			return nil
		}
		return p.Compiled
	}
	addPrincipal := func(ips []config.IdentityPolicy, boundary *config.ManagedPolicy) {
		for _, ip := range ips {
			add(policy.Identity, compiled(ip.Policy), ip.Name())
		}
		if boundary != nil {
			add(policy.Boundary, compiled(boundary.Policy), "permissions boundary "+boundary.ARN)
		}
	}
	if c != nil {
		switch {
		case c.role != nil:
			addPrincipal(c.role.IdentityPolicies(), c.role.PermissionsBoundary)
		case c.user != nil:
			addPrincipal(c.user.IdentityPolicies(), c.user.PermissionsBoundary)
		}
		if s := c.claims; s != nil {
			if s.Policy != "" {
				p, err := policy.Parse([]byte(s.Policy))
				if err != nil {
					p = nil
				}
				add(policy.Session, p, "session policy")
			}
			for _, arn := range s.PolicyARNs {
				var p *policy.Policy
				if mp, ok := spec.ManagedPolicyByARN(arn); ok {
					p = compiled(mp.Policy)
				}
				add(policy.Session, p, "session policy "+arn)
			}
		}
	}
	if api.ResourcePolicy != nil {
		add(policy.Resource, compiled(api.ResourcePolicy), "resource policy of API "+api.ID)
	}
	if ep != nil && ep.Policy != nil {
		add(policy.Endpoint, compiled(ep.Policy), "endpoint policy of "+ep.ID)
	}
	cs.set = policy.NewSet(entries...)
	return cs
}

// denyMessage is API Gateway's AccessDeniedException text for an IAM denial.
func denyMessage(principal, resource string, explicit bool) string {
	if principal == "" {
		principal = "anonymous"
	}
	msg := "User: " + principal + " is not authorized to perform: " + actionInvoke + " on resource: " + resource
	if explicit {
		msg += " with an explicit deny"
	}
	return msg
}

// explain builds the decoded authorization message of a denial (AWS's DecodedMessage shape).
func explain(d policy.Decision, cs *compiledSet, principal, principalID string, ctx map[string][]string, resource string) *authzmsg.Message {
	m := &authzmsg.Message{
		Allowed:      d.Effect == policy.Allow,
		ExplicitDeny: d.Effect == policy.ExplicitDeny,
		Context: authzmsg.Context{
			Principal: authzmsg.Principal{ID: principalID, ARN: principal},
			Action:    actionInvoke,
			Resource:  resource,
		},
	}
	m.MatchedStatements.Items = []authzmsg.Statement{}
	m.Failures.Items = []string{}
	effect := "ALLOW"
	if d.Effect == policy.ExplicitDeny {
		effect = "DENY"
	}
	for _, mt := range d.Matched {
		name := ""
		if mt.Policy >= 0 && mt.Policy < len(cs.names) {
			name = cs.names[mt.Policy]
		}
		m.MatchedStatements.Items = append(m.MatchedStatements.Items, authzmsg.Statement{StatementID: mt.Statement, Effect: effect, Policy: name})
	}
	if d.Effect == policy.ImplicitDeny && d.Reason != "" {
		m.Failures.Items = append(m.Failures.Items, d.Reason)
	}
	keys := make([]string, 0, len(ctx))
	for k := range ctx {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m.Context.Conditions.Items = make([]authzmsg.Condition, 0, len(keys))
	for _, k := range keys {
		c := authzmsg.Condition{Key: k}
		for _, v := range ctx[k] {
			c.Values.Items = append(c.Values.Items, authzmsg.Value{Value: v})
		}
		m.Context.Conditions.Items = append(m.Context.Conditions.Items, c)
	}
	return m
}

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
