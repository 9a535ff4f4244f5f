package cfn

import (
	"github.com/phantom-perimeter/phantom/internal/config"
)

func (x *translator) managedPolicies() error {
	for _, mp := range x.s.ManagedPolicies {
		doc, _, err := x.policy(mp.Policy, &policyCtx{kind: identityPolicy, what: "managed policy " + mp.Name})
		if err != nil {
			return err
		}
		props := map[string]any{"ManagedPolicyName": mp.Name, "Path": mp.Path, "PolicyDocument": doc}
		if mp.Description != "" {
			props["Description"] = mp.Description
		}
		x.add(x.managed[mp.Name], "AWS::IAM::ManagedPolicy", props)
	}
	return nil
}

func (x *translator) oidcProviders() error {
	for _, p := range x.s.OIDCProviders {
		ids := make([]any, len(p.ClientIDs))
		for i, id := range p.ClientIDs {
			ids[i] = id
		}
		x.add(x.oidc[p.ARN], "AWS::IAM::OIDCProvider", map[string]any{"Url": p.URL, "ClientIdList": ids})
		if p.JWKSURL != "" {
			x.note("OIDC provider %s: jwksUrl %s is Phantom's; IAM finds the signing keys by OpenID discovery from the issuer", p.URL, p.JWKSURL)
		}
	}
	return nil
}

func (x *translator) groups() error {
	for _, g := range x.s.Groups {
		props := map[string]any{"GroupName": g.Name, "Path": g.Path}
		if err := x.principalPolicies(props, "group "+g.Name, g.Policies, g.ManagedPolicies, nil); err != nil {
			return err
		}
		x.add(x.groupIDs[g.Name], "AWS::IAM::Group", props)
	}
	return nil
}

func (x *translator) users() error {
	for _, u := range x.s.Users {
		props := map[string]any{"UserName": u.Name, "Path": u.Path}
		if err := x.principalPolicies(props, "user "+u.Name, u.Policies, u.ManagedPolicies, u.PermissionsBoundary); err != nil {
			return err
		}
		if len(u.Groups) > 0 {
			groups := make([]any, len(u.Groups))
			for i, g := range u.Groups {
				groups[i] = ref(x.groupIDs[g.Name]) // Ref of a group is its name
			}
			props["Groups"] = groups
		}
		if len(u.Tags) > 0 {
			props["Tags"] = tags(u.Tags)
		}
		// No AWS::IAM::AccessKey: a key's secret would land in the stack's outputs or in
		// a resource's attributes; people create their own keys after deployment.
		x.add(x.userIDs[u.Name], "AWS::IAM::User", props)
	}
	return nil
}

// principalPolicies sets the inline policies, attached managed policies and permissions
// boundary shared by users, groups (which have no boundary) and roles.
func (x *translator) principalPolicies(props map[string]any, what string, inline []*config.Policy, managed []*config.ManagedPolicy, boundary *config.ManagedPolicy) error {
	var pols []any
	for _, p := range inline {
		doc, kept, err := x.policy(p, &policyCtx{kind: identityPolicy, what: what + ", inline policy " + p.Name})
		if err != nil {
			return err
		}
		if kept == 0 {
			// An inline policy that grants nothing is no policy.
			x.note("%s, inline policy %s is omitted: none of its statements can be expressed on AWS", what, p.Name)
			continue
		}
		pols = append(pols, map[string]any{"PolicyName": p.Name, "PolicyDocument": doc})
	}
	if len(pols) > 0 {
		props["Policies"] = pols
	}
	if len(managed) > 0 {
		arns := make([]any, len(managed))
		for i, mp := range managed {
			arns[i] = ref(x.managed[mp.Name]) // Ref of a managed policy is its ARN
		}
		props["ManagedPolicyArns"] = arns
	}
	if boundary != nil {
		props["PermissionsBoundary"] = ref(x.managed[boundary.Name])
	}
	return nil
}

// ec2Trust lets EC2 deliver a node role's credentials through its instance profile: on
// AWS that is how Service A's host gets them (Phantom's agent proves the node with a
// certificate instead). Who may launch instances with the role is then decided by
// iam:PassRole.
var ec2Trust = map[string]any{
	"Sid":       "PhantomNodesInstanceProfile",
	"Effect":    "Allow",
	"Principal": map[string]any{"Service": "ec2.amazonaws.com"},
	"Action":    "sts:AssumeRole",
}

func (x *translator) roles() error {
	deps := map[string][]string{} // role logical id -> roles it depends on
	for _, r := range x.s.Roles {
		id := x.roleIDs[r.Name]
		c := &policyCtx{kind: trustPolicy, what: "role " + r.Name + ", trust policy"}
		trust, kept, err := x.policy(r.TrustPolicy, c)
		if err != nil {
			return err
		}
		profile, isNode := x.profiles[r.Name]
		if isNode {
			stmts := trust["Statement"].([]any)
			if kept == 0 {
				stmts = nil
			}
			trust["Statement"] = append(stmts, ec2Trust)
		}
		props := map[string]any{
			"RoleName":                 r.Name,
			"Path":                     r.Path,
			"AssumeRolePolicyDocument": trust,
			"MaxSessionDuration":       int(r.MaxSessionDuration.Seconds()),
		}
		if r.Description != "" {
			props["Description"] = r.Description
		}
		if err := x.principalPolicies(props, "role "+r.Name, r.Policies, r.ManagedPolicies, r.PermissionsBoundary); err != nil {
			return err
		}
		if len(r.Tags) > 0 {
			props["Tags"] = tags(r.Tags)
		}
		res := x.add(id, "AWS::IAM::Role", props)
		for _, d := range c.roleDeps {
			switch {
			case d == id:
				x.note("role %s trusts itself; IAM accepts that only once the role exists, so create the stack without that principal and add it in an update", r.Name)
			case reaches(deps, d, id):
				x.note("roles trust each other in a cycle through %s and %s; IAM needs each trusted role to exist first, so deploy one trust relationship in a stack update", r.Name, d)
			default:
				deps[id] = append(deps[id], d)
				res.DependsOn = append(res.DependsOn, d)
			}
		}
		if isNode {
			x.add(profile, "AWS::IAM::InstanceProfile", map[string]any{
				"InstanceProfileName": r.Name,
				"Path":                r.Path,
				"Roles":               []any{ref(id)},
			})
			x.t.Outputs[profile] = &Output{Description: "Instance profile for the nodes of role " + r.Name + " (Service A's hosts)", Value: ref(profile)}
		}
	}
	return nil
}

// reaches reports whether to is reachable from from in the dependency graph.
func reaches(deps map[string][]string, from, to string) bool {
	seen := map[string]bool{}
	stack := []string{from}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n == to {
			return true
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		stack = append(stack, deps[n]...)
	}
	return false
}

// tags is IAM's tag list, sorted by key.
func tags(m map[string]string) []any {
	out := make([]any, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, map[string]any{"Key": k, "Value": m[k]})
	}
	return out
}
