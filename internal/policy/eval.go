package policy

import (
	"slices"
	"strconv"
	"strings"
)

// Entry is one policy of a Set with its type.
type Entry struct {
	Kind   Kind
	Policy *Policy
}

const numKinds = 6

func kindIndex(k Kind) int {
	switch k {
	case Identity:
		return 0
	case Resource:
		return 1
	case Boundary:
		return 2
	case Session:
		return 3
	case SCP:
		return 4
	case Endpoint:
		return 5
	}
	return -1
}

// setStmt is a statement placed in a Set: its policy, its type and the Match that names
// it (precomputed so a decision decided by one statement allocates nothing).
type setStmt struct {
	*statement
	kind   int
	policy int
	id     int
	single []Match
	reason string // Decision.Reason when this statement is the first explicit deny
}

type svcIndex struct {
	exact map[string][]*setStmt // lowercased full action -> statements naming it literally
	// prefixes holds statements whose actions in this service are literals or
	// "literal*" patterns ("s3:Get*", "s3:*"), keyed by the lowercased literal; Evaluate
	// looks up the request action's prefixes of each length in prefixLens, so common
	// wildcard grants are found by lookup, not by scanning.
	prefixes   map[string][]*setStmt
	prefixLens []int
	// patterns holds statements with any other wildcard action in this service
	// ("ec2:*Instances", "s3:Get?bject"): checked one by one.
	patterns []*setStmt
}

// Set is an immutable, compiled set of policies for one principal and resource. It is
// safe for concurrent use; build a new Set and swap it (atomic.Pointer) to change it.
type Set struct {
	stmts    []setStmt
	has      [numKinds]bool
	services map[string]*svcIndex
	// global holds statements that may match any action: NotAction statements and
	// actions whose service part has a wildcard ("*", "s3*:Get").
	global []*setStmt
	// broken, when set, is why the set denies every request: it was given a policy of a
	// type the engine does not know, or a document its type does not allow.
	broken string
}

// NewSet builds a Set. Entries with a nil Policy are kept in the numbering (Match.Policy
// indexes entries) but contribute no statements. An entry the set cannot honour fails
// closed: the set then denies every request (Decision.Reason says why) rather than
// ignore or half-apply a policy. That is an entry of unknown Kind, or a document its
// Kind does not allow (a Principal in an identity policy, a resource-policy statement
// without one...), which ParseKind refuses but Parse, knowing no kind, accepts.
func NewSet(entries ...Entry) *Set {
	s := &Set{services: map[string]*svcIndex{}}
	n := 0
	for _, e := range entries {
		if e.Policy != nil {
			n += len(e.Policy.stmts)
		}
	}
	s.stmts = make([]setStmt, 0, n)
	for pi, e := range entries {
		k := kindIndex(e.Kind)
		if k < 0 {
			s.fail("policy " + strconv.Itoa(pi) + " has unknown type " + strconv.Quote(string(e.Kind)))
			continue
		}
		s.has[k] = true
		if e.Policy == nil {
			continue
		}
		if f, bad := e.Policy.kindProblem(e.Kind); bad {
			s.fail("policy " + strconv.Itoa(pi) + " is not valid as " + article(string(e.Kind)) + " policy: " + f.Message + " (" + f.Path + ")")
			continue
		}
		for _, st := range e.Policy.stmts {
			s.stmts = append(s.stmts, setStmt{statement: st, kind: k, policy: pi, id: len(s.stmts),
				single: []Match{{Policy: pi, Statement: st.label()}},
				reason: "explicitly denied by " + kindName(k) + " policy " + strconv.Itoa(pi) + " statement " + st.label()})
		}
	}
	for i := range s.stmts {
		st := &s.stmts[i]
		s.index(st)
	}
	return s
}

func (s *Set) fail(why string) {
	if s.broken == "" {
		s.broken = "fails closed: " + why
	}
}

func (s *Set) svc(name string) *svcIndex {
	x := s.services[name]
	if x == nil {
		x = &svcIndex{exact: map[string][]*setStmt{}, prefixes: map[string][]*setStmt{}}
		s.services[name] = x
	}
	return x
}

// index places a statement where Evaluate will find it: by exact action, by action
// prefix, in its service's pattern list, or in the global list. A statement with two
// matching entries (s3:Get* and s3:GetObject) can be visited twice for one request;
// visiting is idempotent and explicitDeny removes duplicates.
func (s *Set) index(st *setStmt) {
	if st.notAction {
		s.global = append(s.global, st)
		return
	}
	for _, a := range st.actions {
		if a.service == "" {
			s.global = append(s.global, st)
			return
		}
	}
	wild := map[string]bool{} // services where the statement has a general glob
	for _, a := range st.actions {
		if a.pat.form != formExact && a.pat.form != formPrefix {
			wild[a.service] = true
		}
	}
	done := map[string]bool{}
	for _, a := range st.actions {
		x := s.svc(a.service)
		if wild[a.service] {
			if !done[a.service] {
				x.patterns = append(x.patterns, st)
				done[a.service] = true
			}
			continue
		}
		if a.pat.form == formPrefix {
			key := "prefix\x00" + a.pat.lit
			if done[key] {
				continue
			}
			done[key] = true
			if _, ok := x.prefixes[a.pat.lit]; !ok {
				x.prefixLens = append(x.prefixLens, len(a.pat.lit))
				slices.Sort(x.prefixLens)
				x.prefixLens = slices.Compact(x.prefixLens)
			}
			x.prefixes[a.pat.lit] = append(x.prefixes[a.pat.lit], st)
			continue
		}
		if done[a.pat.lit] {
			continue
		}
		done[a.pat.lit] = true
		x.exact[a.pat.lit] = append(x.exact[a.pat.lit], st)
	}
}

// evalState is one evaluation: the request split once, looked up without allocating.
type evalState struct {
	req       *Request
	ctx       *Context
	pi        principalInfo
	resParts  [6]string
	resIsARN  bool
	principal [1]string
	account   [1]string
	resAcct   [1]string
	roleARN   [1]string // aws:PrincipalArn of a role session, built on first use
	// hasBoundary: the caller has a permissions boundary (the set holds one).
	hasBoundary bool
}

// lookup returns a context key's values. aws:PrincipalArn, aws:PrincipalAccount and
// aws:ResourceAccount fall back to the Request's fields when the context does not set
// them ("AWS global condition context keys"). For a role session aws:PrincipalArn is the
// role's ARN, not the session's ("for IAM roles, the request context returns the ARN of
// the role, not the ARN of the user that assumed the role", B3). A session ARN does not
// carry the role's path, so the derived ARN has none: callers that know the role (the
// gateway does) set the key themselves. Deriving it is the one lookup that allocates,
// and only when a condition reads the key and the context lacks it.
func (st *evalState) lookup(lowerKey string) ([]string, bool) {
	if v, ok := st.ctx.get(lowerKey); ok {
		return v, true
	}
	switch lowerKey {
	case "aws:principalarn":
		if st.pi.isSession {
			if st.roleARN[0] == "" {
				st.roleARN[0] = "arn:" + st.pi.partition + ":iam::" + st.pi.account + ":role/" + st.pi.roleName
			}
			return st.roleARN[:], true
		}
		if st.principal[0] != "" {
			return st.principal[:], true
		}
	case "aws:principalaccount":
		if st.account[0] != "" {
			return st.account[:], true
		}
	case "aws:resourceaccount":
		if st.resAcct[0] != "" {
			return st.resAcct[:], true
		}
	}
	return nil, false
}

// matches reports whether a statement applies to the request (ignoring its Effect), and
// for resource-based and endpoint policies how its Principal matched (asCaller for other
// policy types, which name no principal: they apply to the caller they are attached to).
// NewSet has refused every document its type does not allow, so a statement here has
// Resource unless it is in a resource-based policy (a role trust policy has none), and
// has Principal or NotPrincipal exactly when it is in a resource-based or endpoint policy.
func (st *evalState) matches(s *setStmt, checkAction bool) (bool, principalMatch) {
	if s.kind == kindIndex(SCP) && !st.pi.isARN {
		// SCPs apply to the IAM principals of their accounts only (B4; see Evaluate).
		return false, noMatch
	}
	if checkAction {
		any := false
		for i := range s.actions {
			if s.actions[i].pat.match(st.req.Action, st, foldASCII) {
				any = true
				break
			}
		}
		if any == s.notAction {
			return false, noMatch
		}
	}
	if s.hasResource {
		any := false
		for i := range s.resources {
			if s.resources[i].matchParts(&st.resParts, st.resIsARN, st) {
				any = true
				break
			}
		}
		if any == s.notResource {
			return false, noMatch
		}
	}
	how := asCaller
	if s.hasPrincipal {
		how = s.principal.match(&st.pi, st)
		if s.notPrincipal {
			// Everyone not listed: a grant to principals it does not name, capped as one.
			if how == noMatch {
				how = viaEntity
			} else {
				how = noMatch
			}
			// "The NotPrincipal element with a Deny effect will always deny any IAM
			// principal that has a permissions boundary policy attached, regardless
			// of the values specified in the NotPrincipal element" ("Permissions
			// boundaries for IAM entities"). Reproduced: it fails closed.
			if s.deny && st.hasBoundary && st.pi.isARN && s.kind == kindIndex(Resource) {
				how = viaEntity
			}
		}
		if how == noMatch {
			return false, noMatch
		}
	}
	// Every condition must hold: conditions are ANDed across operators and keys.
	for _, c := range s.conds {
		if !c.eval(st) {
			return false, noMatch
		}
	}
	return true, how
}

// Evaluate decides one request with AWS's "Policy evaluation logic":
//
//  1. An explicit Deny in any policy of any type wins.
//  2. When the set has SCPs and the caller is an IAM principal, one of them must allow
//     (an SCP never grants). SCPs apply to the principals of the accounts they are
//     attached to, so they neither deny nor limit anonymous and service callers (B4).
//  3. When the set has a VPC endpoint policy, it must allow ("Control access to VPC
//     endpoints using endpoint policies").
//  4. Same account: the identity-based policy or the resource-based policy must allow.
//     An identity allow is capped by the permissions boundary and the session policy
//     when present. How a resource-based allow counts depends on how its Principal
//     matched the caller (principalMatch): naming the caller itself (its user or role
//     session ARN, or "*") is not limited by an implicit deny in a boundary or session
//     policy (B2); naming the role behind a session is capped like an identity allow;
//     naming the account delegates to the account (B1): it grants nothing by itself, the
//     caller's identity-based policy must allow.
//  5. Cross account (ResourceAccount set and different from the principal's): the
//     identity side (capped as above) and the resource-based policy, whatever principal
//     it names, must both allow ("Cross-account policy evaluation logic").
//
// A request without a principal (anonymous), or whose principal is not an ARN (a
// service principal such as ec2.amazonaws.com), can be allowed only by a resource-based
// policy, whatever the account fields say. A set NewSet could not build faithfully
// denies every request. Evaluate does no parsing and, for a decision made by one
// statement, allocates nothing.
func (s *Set) Evaluate(req *Request) Decision { return s.evaluate(req, false) }

// Admits decides the resource-based side of a request on its own: whether the set's
// resource-based policies allow the request's principal however they name it (an account
// principal admits every principal of the account, a role ARN the role's sessions, with
// no boundary or session policy applied), after the explicit denies, SCPs and VPC
// endpoint policies of the set, as Evaluate applies them. It is for decisions whose
// identity side is evaluated apart: a role trust policy must allow sts:AssumeRole
// explicitly even within the account ("Policy evaluation logic": role trust policies
// are an exception), and for an account principal the caller's identity-based policies
// must then allow it too, which the caller of Admits checks with Evaluate.
func (s *Set) Admits(req *Request) Decision { return s.evaluate(req, true) }

func (s *Set) evaluate(req *Request, resourceSide bool) Decision {
	if s == nil || req == nil {
		return Decision{Effect: ImplicitDeny, Reason: "no policies or no request"}
	}
	if s.broken != "" {
		return Decision{Effect: ImplicitDeny, Reason: s.broken}
	}
	st := evalState{req: req, ctx: req.Context, hasBoundary: s.has[kindIndex(Boundary)]}
	st.pi = newPrincipalInfo(req.Principal, req.PrincipalAccount)
	st.resParts, st.resIsARN = arnParts(req.Resource)
	st.principal[0] = req.Principal
	st.account[0] = st.pi.account
	st.resAcct[0] = req.ResourceAccount
	if st.resAcct[0] == "" {
		st.resAcct[0] = st.pi.account
	}

	// Find the candidate lists for the action without allocating: the lowercased
	// action lives in a stack buffer and map lookups with string(bytes) do not copy.
	// ASCII-only lowering keeps byte offsets equal to req.Action's (Unicode lowering
	// can change lengths) and matches how actions are compiled.
	var buf [128]byte
	lower := appendLowerASCII(buf[:0], req.Action)
	var x *svcIndex
	if i := strings.IndexByte(req.Action, ':'); i > 0 {
		x = s.services[string(lower[:i])]
	}

	var (
		denyFirst *setStmt
		denyN     int
		// best is the first allowing statement of each policy type. For resource-based
		// policies it counts any principal match (what a cross-account request needs);
		// resGrant only those that grant within the account (viaEntity or asCaller), and
		// resDirect those no boundary or session policy caps (asCaller).
		best      [numKinds]*setStmt
		resGrant  *setStmt
		resDirect *setStmt
	)
	resK := kindIndex(Resource)
	visit := func(c *setStmt, checkAction bool) {
		if !c.deny && best[c.kind] != nil && c.id > best[c.kind].id &&
			(c.kind != resK || (resDirect != nil && c.id > resDirect.id)) {
			// This policy type already allows through an earlier statement, as strongly
			// as it can; a later one changes neither the outcome nor the report.
			return
		}
		ok, how := st.matches(c, checkAction)
		if !ok {
			return
		}
		if c.deny {
			if denyFirst == nil {
				denyFirst = c
			}
			denyN++
			return
		}
		// Report the first allowing statement in policy order, whatever order the
		// index visits candidates in.
		if best[c.kind] == nil || c.id < best[c.kind].id {
			best[c.kind] = c
		}
		if c.kind != resK {
			return
		}
		if how >= viaEntity && (resGrant == nil || c.id < resGrant.id) {
			resGrant = c
		}
		if how == asCaller && (resDirect == nil || c.id < resDirect.id) {
			resDirect = c
		}
	}
	s.candidates(x, lower, visit)

	if denyN > 0 {
		return s.explicitDeny(&st, x, lower, denyFirst, denyN)
	}
	var matched [numKinds + 1]*setStmt
	nm := 0
	add := func(c *setStmt) {
		if c != nil {
			matched[nm] = c
			nm++
		}
	}
	if s.has[kindIndex(SCP)] && st.pi.isARN {
		if best[kindIndex(SCP)] == nil {
			return Decision{Effect: ImplicitDeny, Reason: "SCP does not allow"}
		}
		add(best[kindIndex(SCP)])
	}
	if s.has[kindIndex(Endpoint)] {
		if best[kindIndex(Endpoint)] == nil {
			return Decision{Effect: ImplicitDeny, Reason: "VPC endpoint policy does not allow"}
		}
		add(best[kindIndex(Endpoint)])
	}
	idAllow := best[kindIndex(Identity)]
	resAllow := best[resK]
	boundOK := !s.has[kindIndex(Boundary)] || best[kindIndex(Boundary)] != nil
	sessOK := !s.has[kindIndex(Session)] || best[kindIndex(Session)] != nil
	capped := func() Decision {
		if !boundOK {
			return Decision{Effect: ImplicitDeny, Reason: "permissions boundary does not allow"}
		}
		return Decision{Effect: ImplicitDeny, Reason: "session policy does not allow"}
	}
	addCaps := func() {
		add(best[kindIndex(Boundary)])
		add(best[kindIndex(Session)])
	}

	switch {
	case resourceSide:
		if resAllow == nil {
			return Decision{Effect: ImplicitDeny, Reason: "resource-based policy does not allow"}
		}
		add(resAllow)
	case req.Principal == "":
		if resAllow == nil {
			return Decision{Effect: ImplicitDeny, Reason: "anonymous request: no resource-based policy allows"}
		}
		add(resAllow)
	case !st.pi.isARN:
		// A service principal (ec2.amazonaws.com) or canonical user has no account and
		// no identity-based policies: only a resource-based policy can grant it access.
		if resAllow == nil {
			return Decision{Effect: ImplicitDeny, Reason: "service principal: no resource-based policy allows"}
		}
		add(resAllow)
	case req.ResourceAccount != "" && req.ResourceAccount != st.pi.account:
		switch {
		case idAllow == nil && resAllow == nil:
			return Decision{Effect: ImplicitDeny, Reason: "cross-account request: no identity-based or resource-based policy allows"}
		case resAllow == nil:
			return Decision{Effect: ImplicitDeny, Reason: "cross-account request: resource-based policy does not allow"}
		case idAllow == nil:
			return Decision{Effect: ImplicitDeny, Reason: "cross-account request: identity-based policy does not allow"}
		case !boundOK || !sessOK:
			return capped()
		}
		add(idAllow)
		addCaps()
		add(resAllow)
	default:
		switch {
		case resDirect != nil:
			add(resDirect)
		case idAllow == nil && resGrant == nil && resAllow != nil:
			return Decision{Effect: ImplicitDeny, Reason: "the resource-based policy names the account, which delegates to the account's identity-based policies: none allows"}
		case idAllow == nil && resGrant == nil:
			return Decision{Effect: ImplicitDeny, Reason: "no identity-based or resource-based policy allows"}
		case !boundOK || !sessOK:
			return capped()
		default:
			add(idAllow)
			add(resGrant)
			addCaps()
		}
	}
	d := Decision{Effect: Allow}
	if nm == 1 {
		d.Matched = matched[0].single[:1:1]
	} else if nm > 1 {
		ms := matched[:nm]
		slices.SortFunc(ms, func(a, b *setStmt) int { return a.id - b.id })
		d.Matched = make([]Match, nm)
		for i, c := range ms {
			d.Matched[i] = c.single[0]
		}
	}
	return d
}

// explicitDeny builds the ExplicitDeny decision, naming every denying statement in
// policy order.
func (s *Set) explicitDeny(st *evalState, x *svcIndex, lower []byte, first *setStmt, n int) Decision {
	d := Decision{Effect: ExplicitDeny, Reason: first.reason}
	if n == 1 {
		d.Matched = first.single[:1:1]
		return d
	}
	var ds []*setStmt
	collect := func(c *setStmt, checkAction bool) {
		if c.deny {
			if ok, _ := st.matches(c, checkAction); ok {
				ds = append(ds, c)
			}
		}
	}
	s.candidates(x, lower, collect)
	slices.SortFunc(ds, func(a, b *setStmt) int { return a.id - b.id })
	ds = slices.CompactFunc(ds, func(a, b *setStmt) bool { return a.id == b.id })
	if len(ds) == 1 {
		d.Matched = ds[0].single[:1:1]
		return d
	}
	d.Matched = make([]Match, len(ds))
	for i, c := range ds {
		d.Matched[i] = c.single[0]
	}
	d.Reason = ds[0].reason
	return d
}

func appendLowerASCII(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// candidates calls fn with every statement that may apply to the lowercased action:
// exact and prefix hits (action already known to match), then the statements whose
// actions must be checked one by one.
func (s *Set) candidates(x *svcIndex, lower []byte, fn func(c *setStmt, checkAction bool)) {
	if x != nil {
		for _, c := range x.exact[string(lower)] {
			fn(c, false)
		}
		for _, n := range x.prefixLens {
			if n > len(lower) {
				break
			}
			for _, c := range x.prefixes[string(lower[:n])] {
				fn(c, false)
			}
		}
		for _, c := range x.patterns {
			fn(c, true)
		}
	}
	for _, c := range s.global {
		fn(c, true)
	}
}

func kindName(k int) string {
	switch k {
	case 0:
		return "identity-based"
	case 1:
		return "resource-based"
	case 2:
		return "permissions boundary"
	case 3:
		return "session"
	case 4:
		return "SCP"
	}
	return "VPC endpoint"
}
