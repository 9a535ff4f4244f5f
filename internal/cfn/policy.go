package cfn

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// policyKind is where a policy document is attached; it decides how ARNs are written
// (API Gateway's execute-api:/ shorthand exists only in an API's own resource policy) and
// which statements need a Principal.
type policyKind int

const (
	identityPolicy policyKind = iota
	trustPolicy
	resourcePolicy
	endpointPolicy
)

// policyCtx says which policy is being translated.
type policyCtx struct {
	kind     policyKind
	what     string // where the policy sits, for Metadata: "role app, inline policy write-orders"
	api      string // resourcePolicy: the API id it belongs to
	endpoint string // endpointPolicy: the endpoint id it belongs to
	// roleDeps collects, for a trust policy, the logical ids of spec roles named as
	// principals: IAM rejects a trust policy whose principal does not exist yet.
	roleDeps []string
}

// policy translates one spec policy document into IAM JSON for CloudFormation. It returns
// the document and how many of the spec's statements survived; when none did, the
// document holds one statement that matches nothing, never an empty Statement (invalid)
// and never no policy at all (for an endpoint policy that would mean AWS's full-access
// default).
func (x *translator) policy(p *config.Policy, c *policyCtx) (map[string]any, int, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(p.Document))
	dec.UseNumber() // keep numbers in conditions exactly as written
	if err := dec.Decode(&doc); err != nil {
		return nil, 0, fmt.Errorf("%s: decode policy: %w", c.what, err)
	}
	var stmts []any
	switch v := doc["Statement"].(type) {
	case []any:
		stmts = v
	case map[string]any:
		stmts = []any{v}
	default:
		return nil, 0, fmt.Errorf("%s: the policy has no Statement", c.what)
	}
	out := make([]any, 0, len(stmts))
	for i, raw := range stmts {
		st, ok := raw.(map[string]any)
		if !ok {
			return nil, 0, fmt.Errorf("%s: statement %d is not an object", c.what, i+1)
		}
		label := fmt.Sprintf("statement %d", i+1)
		if sid, _ := st["Sid"].(string); sid != "" {
			label = "statement " + sid
		}
		if !x.phantomKeys(st, c, label) {
			continue
		}
		out = append(out, x.rewriteStatement(st, c))
	}
	kept := len(out)
	if kept == 0 {
		out = append(out, nothingStatement(c.kind))
	}
	doc["Statement"] = out
	return doc, kept, nil
}

// nothingStatement matches no request, for a policy none of whose statements survived:
// as a Deny of NotAction "*" (no action) it denies nothing, so the policy allows nothing,
// which is what an identity policy, boundary, resource or endpoint policy whose every
// Allow was dropped must mean. A trust policy has no Resource element; for it the
// statement denies every STS action to everyone, so the role cannot be assumed.
func nothingStatement(kind policyKind) map[string]any {
	switch kind {
	case trustPolicy:
		return map[string]any{"Sid": "PhantomNothingExpressible", "Effect": "Deny", "Principal": "*", "Action": "sts:*"}
	case identityPolicy:
		return map[string]any{"Sid": "PhantomNothingExpressible", "Effect": "Deny", "NotAction": "*", "Resource": "*"}
	}
	return map[string]any{"Sid": "PhantomNothingExpressible", "Effect": "Deny", "Principal": "*", "NotAction": "*", "Resource": "*"}
}

// isPhantomKey reports a Phantom-only condition key (condition keys are case-insensitive,
// "IAM JSON policy elements: Condition").
func isPhantomKey(k string) bool { return strings.HasPrefix(strings.ToLower(k), "phantom:") }

// mentionsPhantom reports a ${phantom:...} policy variable anywhere in v.
func mentionsPhantom(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(strings.ToLower(v), "${phantom:")
	case []any:
		return slices.ContainsFunc(v, mentionsPhantom)
	case map[string]any:
		for k, e := range v {
			if mentionsPhantom(k) || mentionsPhantom(e) {
				return true
			}
		}
	}
	return false
}

// phantomKeys applies the fail-closed translation of phantom:* keys to one statement and
// reports whether the statement is kept.
//
// AWS has no phantom:* keys: in a request on AWS they are simply absent, and what an
// absent key does depends on the operator (false for StringEquals, true for
// StringNotEquals and Null:true, ...), which would make the result an accident of how
// the spec's author phrased the condition. So the key is not left in, and neither value
// is assumed for both effects; each effect gets the worst case for the caller:
//
//   - Allow: Phantom allows only when the phantom condition holds (e.g. RiskLevel is low).
//     AWS cannot check that, so the statement is dropped. Keeping it without the
//     condition would allow at every risk level: fail-open.
//   - Deny: Phantom denies when the AWS conditions and the phantom ones hold. Dropping the
//     phantom ones (treating them as true) denies whenever the AWS conditions hold,
//     a superset of Phantom's denials; a Deny conditioned on phantom:* alone becomes
//     unconditional. Dropping the statement instead would lose the deny: fail-open.
//     A ${phantom:...} variable in a Deny's Resource or Action widens that element to "*".
//
// Conditions are ANDed across operators and keys ("Creating a condition with multiple
// keys or values"), so removing one key from a Deny only widens it; every policy type's
// Allow statements only grant (identity) or bound (boundary, resource, endpoint, trust),
// so removing an Allow only narrows. Every change is listed in the template's Metadata.
func (x *translator) phantomKeys(st map[string]any, c *policyCtx, label string) bool {
	cond, _ := st["Condition"].(map[string]any)
	var found []string
	for _, op := range sortedKeys(cond) {
		block, _ := cond[op].(map[string]any)
		for _, k := range sortedKeys(block) {
			if isPhantomKey(k) || mentionsPhantom(block[k]) {
				found = append(found, op+" "+k)
			}
		}
	}
	var elems []string
	for _, e := range []string{"Action", "NotAction", "Resource", "NotResource", "Principal", "NotPrincipal"} {
		if v, ok := st[e]; ok && mentionsPhantom(v) {
			elems = append(elems, e)
		}
	}
	if len(found) == 0 && len(elems) == 0 {
		return true
	}
	what := strings.Join(append(append([]string{}, found...), elems...), ", ")
	if effect, _ := st["Effect"].(string); effect != "Deny" {
		x.conditions = append(x.conditions, fmt.Sprintf("%s, %s: Allow dropped: it depends on %s, which AWS cannot evaluate", c.what, label, what))
		return false
	}
	for op, raw := range cond {
		block, _ := raw.(map[string]any)
		for k, v := range block {
			if isPhantomKey(k) || mentionsPhantom(v) {
				delete(block, k)
			}
		}
		if len(block) == 0 {
			delete(cond, op)
		}
	}
	widen := map[string]string{"Action": "Action", "NotAction": "Action", "Resource": "Resource", "NotResource": "Resource",
		"Principal": "Principal", "NotPrincipal": "Principal"}
	for _, e := range elems {
		delete(st, e)
	}
	for _, e := range elems {
		st[widen[e]] = "*"
	}
	msg := fmt.Sprintf("%s, %s: Deny kept with %s treated as matching", c.what, label, what)
	if len(cond) == 0 {
		delete(st, "Condition")
		msg += "; it is now unconditional"
	}
	x.conditions = append(x.conditions, msg)
	return true
}

// rewriteStatement rewrites the statement's ARNs and ids for the template.
func (x *translator) rewriteStatement(st map[string]any, c *policyCtx) map[string]any {
	for _, e := range []string{"Resource", "NotResource"} {
		if v, ok := st[e]; ok {
			st[e] = mapStrings(v, func(s string) any { return x.arn(s, c, true) })
		}
	}
	for _, e := range []string{"Principal", "NotPrincipal"} {
		p, ok := st[e].(map[string]any)
		if !ok {
			continue // "*"
		}
		for k, v := range p {
			switch k {
			case "AWS":
				p[k] = mapStrings(v, func(s string) any { return x.principal(s, c) })
			case "Federated":
				p[k] = mapStrings(v, func(s string) any {
					if id, ok := x.oidc[s]; ok {
						return ref(id) // Ref of an AWS::IAM::OIDCProvider is its ARN
					}
					return x.arn(s, c, false)
				})
			}
		}
	}
	if cond, ok := st["Condition"].(map[string]any); ok {
		for _, raw := range cond {
			block, _ := raw.(map[string]any)
			for k, v := range block {
				block[k] = mapStrings(v, func(s string) any { return x.conditionValue(s, c) })
			}
		}
	}
	return st
}

// principal rewrites an AWS principal. In a trust policy a spec user is named by GetAtt
// and a spec role gets a DependsOn, because IAM refuses a trust policy naming a principal
// that does not exist yet; elsewhere the name-based ARN is enough and adds no dependency
// (identity and endpoint policies naming users and roles would otherwise form cycles).
func (x *translator) principal(s string, c *policyCtx) any {
	if s == x.s.Account {
		return sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")
	}
	if c.kind == trustPolicy {
		if u, ok := x.s.UserByARN(s); ok {
			return getAtt(x.userIDs[u.Name], "Arn")
		}
		if r, ok := x.s.RoleByARN(s); ok && !slices.Contains(c.roleDeps, x.roleIDs[r.Name]) {
			c.roleDeps = append(c.roleDeps, x.roleIDs[r.Name])
		}
	}
	return x.arn(s, c, false)
}

// conditionValue rewrites a condition value: ARNs as everywhere, the spec's endpoint and
// VPC ids to the endpoint resource and the VPC parameter that stand for them on AWS (an
// aws:SourceVpce condition must name the endpoint AWS creates), the spec's account id to
// the deploying account.
func (x *translator) conditionValue(s string, c *policyCtx) any {
	if strings.HasPrefix(s, "arn:") {
		return x.arn(s, c, false)
	}
	if id, ok := x.endpointIDs[s]; ok {
		if c.kind == endpointPolicy && s == c.endpoint {
			// A resource cannot refer to itself; the literal id will not match the
			// endpoint AWS creates, so a condition on it fails closed.
			x.note("%s names its own endpoint id %s in a condition; it is kept literally and will not match the endpoint AWS creates", c.what, s)
			return s
		}
		return ref(id)
	}
	if id, ok := x.vpcParams[s]; ok {
		return ref(id)
	}
	if s == x.s.Account {
		return ref("AWS::AccountId")
	}
	return s
}

// arn rewrites an ARN in the spec's account or Region to the deploying account and
// Region, and an execute-api ARN of a spec API to the API CloudFormation creates. Other
// strings are returned as they are.
func (x *translator) arn(s string, c *policyCtx, inResource bool) any {
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] != "aws" {
		return s
	}
	svc, region, account, res := parts[2], parts[3], parts[4], parts[5]
	if svc == "execute-api" && account == x.s.Account && (region == x.s.Region || region == "*") {
		apiID, rest, _ := strings.Cut(res, "/")
		if logical, ok := x.apiIDs[apiID]; ok {
			reg := "${AWS::Region}"
			if region == "*" {
				reg = "*"
			}
			switch {
			case c.kind == resourcePolicy && inResource && apiID == c.api:
				// API Gateway expands execute-api:/stage/METHOD/path in a resource
				// policy to the API's own ARN ("API Gateway resource policy examples").
				return "execute-api:/" + rest
			case c.kind == endpointPolicy && x.apiNamesEndpoint(apiID, c.endpoint):
				// The API's resource policy refers to this endpoint (aws:SourceVpce), so
				// the endpoint cannot refer back to the API: CloudFormation would see a
				// cycle. The API id becomes *; the resource policy still admits calls
				// through this endpoint only, and stages, methods and paths stay.
				x.note("the policy of endpoint %s names API %s as * (any API id): the API's resource policy refers to the endpoint, and CloudFormation cannot create two resources that refer to each other; the resource policy's aws:SourceVpce condition still pins the API to the endpoint", c.endpoint, apiID)
				return sub("arn:${AWS::Partition}:execute-api:" + reg + ":${AWS::AccountId}:*/" + subEscape(rest))
			default:
				return sub("arn:${AWS::Partition}:execute-api:" + reg + ":${AWS::AccountId}:${" + logical + "}/" + subEscape(rest))
			}
		}
	}
	reg, acct := subEscape(region), subEscape(account)
	changed := false
	if region != "" && region == x.s.Region {
		reg, changed = "${AWS::Region}", true
	}
	if account == x.s.Account {
		acct, changed = "${AWS::AccountId}", true
	}
	if !changed {
		return s
	}
	return sub("arn:${AWS::Partition}:" + subEscape(svc) + ":" + reg + ":" + acct + ":" + subEscape(res))
}

// apiNamesEndpoint reports whether the API's resource policy holds the endpoint id as a
// value (and so will refer to the endpoint resource).
func (x *translator) apiNamesEndpoint(apiID, endpoint string) bool {
	a, ok := x.s.API(apiID)
	return ok && a.ResourcePolicy != nil && bytes.Contains(a.ResourcePolicy.Document, []byte(`"`+endpoint+`"`))
}

// mapStrings applies f to a string or to each string of a list.
func mapStrings(v any, f func(string) any) any {
	switch v := v.(type) {
	case string:
		return f(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			if s, ok := e.(string); ok {
				out[i] = f(s)
			} else {
				out[i] = e
			}
		}
		return out
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
