package console

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/policy"
)

// principal is the signed-in caller: a user or role session of the spec with its
// policies.
type principal struct {
	arn       string // user ARN or assumed-role session ARN
	account   string
	accessKey string
	user      *config.User
	role      *config.Role
	claims    *identity.Claims
	set       *policy.Set
}

// kind is how pages name the principal.
func (p *principal) kind() string {
	if p.role != nil {
		return "role session"
	}
	return "user"
}

// identify resolves a resolved credential to a user or role of the spec; false when the
// spec does not have it (its policies cannot be known: refused, as the gateway does).
func identify(spec *config.Spec, rv identity.Resolved) (*principal, bool) {
	p := &principal{arn: rv.Credential.Principal, account: rv.Account, accessKey: rv.Credential.AccessKeyID, claims: rv.Claims}
	if p.account == "" {
		p.account = spec.Account
	}
	switch {
	case strings.Contains(p.arn, ":assumed-role/"):
		if p.claims == nil || p.claims.Role == "" {
			return nil, false
		}
		role, ok := spec.RoleByARN(p.claims.Role)
		if !ok {
			return nil, false
		}
		p.role = role
	case strings.Contains(p.arn, ":user/"):
		if p.claims != nil && p.claims.Role != p.arn {
			return nil, false
		}
		u, ok := spec.UserByARN(p.arn)
		if !ok {
			return nil, false
		}
		p.user = u
	default:
		return nil, false
	}
	p.set = identitySet(spec, p.user, p.role, p.claims, nil)
	return p, true
}

// labelled is a policy of a set with the name explanations give it.
type labelled struct {
	entry policy.Entry
	name  string
}

// identityEntries are the identity side of a decision: a user's or role's inline and
// managed policies, its permissions boundary and a session's policies. A policy without
// its compiled form enters with no statements: it allows nothing, and a boundary or
// session policy without statements denies everything (fail closed).
func identityEntries(spec *config.Spec, u *config.User, r *config.Role, claims *identity.Claims) []labelled {
	var out []labelled
	compiled := func(cp *config.Policy) *policy.Policy {
		if cp == nil {
			return nil
		}
		return cp.Compiled
	}
	add := func(ips []config.IdentityPolicy, boundary *config.ManagedPolicy) {
		for _, ip := range ips {
			label := ip.Name()
			if ip.Managed != nil {
				label = "managed policy " + label
			}
			out = append(out, labelled{policy.Entry{Kind: policy.Identity, Policy: compiled(ip.Policy)}, label})
		}
		if boundary != nil {
			out = append(out, labelled{policy.Entry{Kind: policy.Boundary, Policy: compiled(boundary.Policy)}, "permissions boundary " + boundary.ARN})
		}
	}
	switch {
	case r != nil:
		add(r.IdentityPolicies(), r.PermissionsBoundary)
	case u != nil:
		add(u.IdentityPolicies(), u.PermissionsBoundary)
	}
	if claims != nil {
		if claims.Policy != "" {
			sp, err := policy.Parse([]byte(claims.Policy))
			if err != nil {
				sp = nil
			}
			out = append(out, labelled{policy.Entry{Kind: policy.Session, Policy: sp}, "session policy"})
		}
		for _, arn := range claims.PolicyARNs {
			var sp *policy.Policy
			if mp, ok := spec.ManagedPolicyByARN(arn); ok {
				sp = compiled(mp.Policy)
			}
			out = append(out, labelled{policy.Entry{Kind: policy.Session, Policy: sp}, "session policy " + arn})
		}
	}
	return out
}

func identitySet(spec *config.Spec, u *config.User, r *config.Role, claims *identity.Claims, extra []labelled) *policy.Set {
	ls := append(identityEntries(spec, u, r, claims), extra...)
	entries := make([]policy.Entry, len(ls))
	for i, l := range ls {
		entries[i] = l.entry
	}
	return policy.NewSet(entries...)
}

// principalKeys are the condition keys the principal determines ("AWS global condition
// context keys"), as the gateway sets them: aws:PrincipalArn is a role session's role.
func principalKeys(m map[string][]string, account string, u *config.User, r *config.Role, claims *identity.Claims) {
	m["aws:PrincipalAccount"] = []string{account}
	var tags map[string]string
	switch {
	case r != nil:
		m["aws:PrincipalArn"] = []string{r.ARN}
		m["aws:PrincipalType"] = []string{"AssumedRole"}
		tags = r.Tags
	case u != nil:
		m["aws:PrincipalArn"] = []string{u.ARN}
		m["aws:PrincipalType"] = []string{"User"}
		m["aws:username"] = []string{u.Name}
		tags = u.Tags
	}
	for k, v := range tags {
		m["aws:PrincipalTag/"+k] = []string{v}
	}
	if c := claims; c != nil {
		for _, t := range c.Tags {
			m["aws:PrincipalTag/"+t.Key] = []string{t.Value}
		}
		m["aws:TokenIssueTime"] = []string{c.IssuedAt.UTC().Format(time.RFC3339)}
		m["aws:MultiFactorAuthPresent"] = []string{strconv.FormatBool(c.MFA)}
		if c.SourceIdentity != "" {
			m["aws:SourceIdentity"] = []string{c.SourceIdentity}
		}
		if c.VPC != "" {
			m["aws:EC2InstanceSourceVPC"] = []string{c.VPC}
		}
		if c.PrivateIP.Is4() {
			m["aws:EC2InstanceSourcePrivateIPv4"] = []string{c.PrivateIP.String()}
		}
	}
}

// requestKeys are the global keys of a console request; the console is not behind an
// endpoint, so aws:SourceVpce and aws:SourceVpc are absent (as at the findings API).
func requestKeys(m map[string][]string, spec *config.Spec, now time.Time, ip, userAgent string) {
	m["aws:SecureTransport"] = []string{"true"}
	m["aws:CurrentTime"] = []string{now.UTC().Format("2006-01-02T15:04:05Z")}
	m["aws:EpochTime"] = []string{strconv.FormatInt(now.Unix(), 10)}
	m["aws:RequestedRegion"] = []string{spec.Region}
	m["aws:ViaAWSService"] = []string{"false"}
	if ip != "" {
		m["aws:SourceIp"] = []string{ip}
	}
	if userAgent != "" {
		m["aws:UserAgent"] = []string{userAgent}
	}
}

// riskOrder ranks phantom:RiskLevel values as package respond raises them.
var riskOrder = map[string]int{"low": 1, "medium": 2, "high": 3, "critical": 4}

// riskLevel is phantom:RiskLevel for the principal: the level set on its ARN or, for a
// role session, on its role, whichever is higher.
func (h *Handler) riskLevel(ctx context.Context, p *principal) (string, error) {
	levels, err := h.cfg.Store.ListRiskLevels(ctx)
	if err != nil {
		return "", err
	}
	best := ""
	for _, l := range levels {
		if l.Principal == p.arn || (p.role != nil && l.Principal == p.role.ARN) {
			if riskOrder[l.Level] > riskOrder[best] || best == "" {
				best = l.Level
			}
		}
	}
	return best, nil
}

// decide evaluates one console action for the signed-in principal.
func (h *Handler) decide(rq *request, action, resource string) policy.Decision {
	p := rq.p
	m := map[string][]string{}
	requestKeys(m, rq.spec, rq.now, sourceIP(rq.r), rq.r.UserAgent())
	principalKeys(m, p.account, p.user, p.role, p.claims)
	if age, ok := p.claims.MFAAge(rq.now); ok {
		m["aws:MultiFactorAuthAge"] = []string{age}
	}
	if rq.risk != "" {
		m["phantom:RiskLevel"] = []string{rq.risk}
	}
	req := policy.Request{Principal: p.arn, Action: action, Resource: resource, ResourceAccount: rq.spec.Account,
		Context: policy.NewContext(m)}
	return p.set.Evaluate(&req)
}

// authorize decides every action of a page; on the first denial it audits it, answers
// 403 and returns false.
func (h *Handler) authorize(rq *request, eventName string, checks ...check) bool {
	for _, c := range checks {
		d := h.decide(rq, c.action, c.resource)
		if d.Effect == policy.Allow {
			continue
		}
		msg := "User: " + rq.p.arn + " is not authorized to perform: " + c.action + " on resource: " + c.resource
		if d.Effect == policy.ExplicitDeny {
			msg += " with an explicit deny"
		}
		ev := h.event(rq.r, rq.now, eventName)
		h.identityOf(ev, rq.p)
		ev.ErrorCode, ev.ErrorMessage = "AccessDenied", msg
		ev.AdditionalEventData = map[string]any{"action": c.action, "resource": c.resource, "decision": d.Effect.String()}
		if err := h.cfg.Auditor.Record(rq.r.Context(), ev); err != nil {
			h.log.Error("console could not audit a denial", "error", err)
		}
		h.errorPage(rq.w, rq.r, rq, http.StatusForbidden, "Access denied", msg)
		return false
	}
	return true
}

type check struct{ action, resource string }

func (h *Handler) detectorARN(spec *config.Spec) string {
	return "arn:aws:guardduty:" + spec.Region + ":" + spec.Account + ":detector/" + h.cfg.DetectorID
}

// identityOf fills an event's userIdentity with the principal.
func (h *Handler) identityOf(ev *audit.Event, p *principal) {
	ev.UserIdentity = audit.UserIdentity{ARN: p.arn, AccountID: p.account, AccessKeyID: p.accessKey}
	switch {
	case p.role != nil:
		ev.UserIdentity.Type = "AssumedRole"
		ev.UserIdentity.SessionContext = &audit.SessionContext{
			SessionIssuer: &audit.SessionIssuer{Type: "Role", ARN: p.role.ARN, AccountID: p.account, UserName: p.role.Name},
			Attributes:    map[string]string{"creationDate": p.claims.IssuedAt.UTC().Format(time.RFC3339), "mfaAuthenticated": strconv.FormatBool(p.claims.MFA)},
		}
	case p.user != nil:
		ev.UserIdentity.Type, ev.UserIdentity.UserName = "IAMUser", p.user.Name
	}
}
