package policy

import "strings"

// Principal matching for resource-based and VPC endpoint policies ("AWS JSON policy
// elements: Principal").
//
//   - "*" and {"AWS": "*"} match every principal, anonymous included.
//   - An account id or arn:aws:iam::ACCOUNT:root delegates to the account: it matches
//     any principal of that account, whose own identity policies must then allow.
//   - A role ARN matches the role and its sessions, arn:aws:sts::ACCOUNT:assumed-role/
//     NAME/SESSION ("Role principals" / "Role session principals"): the path is not part
//     of the session ARN.
//   - A user ARN or a role session ARN matches exactly that principal.
//   - Service, Federated and CanonicalUser principals match a request whose Principal is
//     that name, or whose context carries it (aws:PrincipalServiceName for services,
//     aws:FederatedProvider for federation), as AWS carries them in the request context.

// principalMatch says how a Principal element matched the caller, which decides what a
// same-account Allow of a resource-based policy is worth ("Policy evaluation logic",
// "AWS JSON policy elements: Principal"). Higher values are stronger; an element with
// several principals matches as its strongest.
type principalMatch uint8

const (
	noMatch principalMatch = iota
	// viaAccount: the account principal matched. It delegates to the account: within
	// the account the caller's identity-based policies must also allow (B1).
	viaAccount
	// viaEntity: the role behind a session (role ARN), or another principal that is not
	// the caller itself. A grant, capped by the caller's permissions boundary and session
	// policy.
	viaEntity
	// asCaller: the caller's own user or role-session ARN, or "*" (which matches each
	// caller as itself). A grant no implicit deny in a boundary or session policy limits
	// (B2: observed on AWS for "*", documented for user and session ARNs).
	asCaller
)

type principalGroup struct {
	typ    string // "AWS", "Service", "Federated", "CanonicalUser"
	values []string
}

type roleRef struct {
	arn, account, name string
}

type principals struct {
	star      bool // "Principal": "*"
	groups    []principalGroup
	any       bool
	accounts  []string
	direct    []string // user ARNs and role session ARNs: matched exactly
	other     []string // other IAM/STS ARNs (groups cannot be principals; federated-user etc.)
	roles     []roleRef
	services  []string
	federated []string
	canonical []string
}

// principalInfo is the request's principal, split once per evaluation.
type principalInfo struct {
	arn     string
	account string
	// session: "arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION" gives roleName NAME.
	isSession bool
	roleName  string
	partition string
	isARN     bool // false for anonymous and for service, canonical-user or other non-ARN principals
}

func newPrincipalInfo(arn, account string) principalInfo {
	pi := principalInfo{arn: arn, account: account}
	parts, ok := arnParts(arn)
	if !ok || parts[0] != "arn" {
		return pi
	}
	pi.isARN = true
	pi.partition = parts[1]
	if pi.account == "" {
		pi.account = parts[4]
	}
	if parts[2] == "sts" {
		if rest, ok := strings.CutPrefix(parts[5], "assumed-role/"); ok {
			if name, _, ok := strings.Cut(rest, "/"); ok && name != "" {
				pi.isSession, pi.roleName = true, name
			}
		}
	}
	return pi
}

// isAccountID reports whether s is a 12-digit AWS account id.
func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// addAWS classifies one value of an "AWS" principal; it returns a message when the value
// is not a principal AWS accepts. Partial wildcards are rejected: "You cannot use a
// wildcard to match part of a principal name or ARN" ("AWS JSON policy elements:
// Principal").
func (p *principals) addAWS(v string) string {
	if v == "*" {
		p.any = true
		return ""
	}
	if strings.ContainsAny(v, "*?") {
		return "a principal cannot contain a wildcard except as the whole value \"*\""
	}
	if isAccountID(v) {
		p.accounts = append(p.accounts, v)
		return ""
	}
	parts, ok := arnParts(v)
	if !ok || parts[0] != "arn" || parts[1] == "" {
		return "AWS principal " + quote(v) + " is neither an account id nor an ARN"
	}
	switch parts[2] {
	case "iam":
		if !isAccountID(parts[4]) {
			return "AWS principal " + quote(v) + " does not name a 12-digit account"
		}
		res := parts[5]
		switch {
		case res == "root":
			p.accounts = append(p.accounts, parts[4])
		case strings.HasPrefix(res, "role/"):
			name := res[strings.LastIndexByte(res, '/')+1:]
			if name == "" {
				return "role principal " + quote(v) + " has no role name"
			}
			p.roles = append(p.roles, roleRef{arn: v, account: parts[4], name: name})
		case strings.HasPrefix(res, "user/"):
			p.direct = append(p.direct, v)
		case strings.HasPrefix(res, "group/"):
			// "You cannot identify a user group as a principal in a policy".
			return "a user group (" + quote(v) + ") cannot be a principal"
		default:
			p.other = append(p.other, v)
		}
	case "sts":
		if !isAccountID(parts[4]) {
			return "AWS principal " + quote(v) + " does not name a 12-digit account"
		}
		if strings.HasPrefix(parts[5], "assumed-role/") {
			p.direct = append(p.direct, v)
		} else {
			p.other = append(p.other, v)
		}
	default:
		return "AWS principal " + quote(v) + " is not an IAM or STS ARN"
	}
	return ""
}

// match reports how the request principal is one of p: as itself, through the entity
// behind it, through its account, or not at all.
func (p *principals) match(pi *principalInfo, r *evalState) principalMatch {
	if p.star || p.any {
		return asCaller
	}
	for _, d := range p.direct {
		if d == pi.arn {
			return asCaller
		}
	}
	for i := range p.roles {
		ro := &p.roles[i]
		if ro.arn == pi.arn {
			return viaEntity
		}
		if pi.isSession && pi.roleName == ro.name && pi.account == ro.account {
			return viaEntity
		}
	}
	for _, o := range p.other {
		if o == pi.arn {
			return viaEntity
		}
	}
	if contains(p.canonical, pi.arn) {
		return viaEntity
	}
	if len(p.services) > 0 && (contains(p.services, pi.arn) || anyValueIn(r, "aws:principalservicename", p.services)) {
		return viaEntity
	}
	if len(p.federated) > 0 && (contains(p.federated, pi.arn) || anyValueIn(r, "aws:federatedprovider", p.federated)) {
		return viaEntity
	}
	for _, a := range p.accounts {
		if a == pi.account {
			return viaAccount
		}
	}
	return noMatch
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func anyValueIn(r *evalState, key string, list []string) bool {
	vals, _ := r.lookup(key)
	for _, v := range vals {
		if contains(list, v) {
			return true
		}
	}
	return false
}
