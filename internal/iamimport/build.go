package iamimport

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// serviceLinkedPath is the path of every service-linked role (IAM User Guide, "Using
// service-linked roles"): an AWS service creates, assumes and deletes it.
const serviceLinkedPath = "/aws-service-role/"

// build reads the details into an account, noting what cannot be carried at all.
func build(d *Details, accountID string) (*account, error) {
	a := &account{id: accountID}
	if a.id == "" {
		id, err := accountOf(d)
		if err != nil {
			return nil, err
		}
		a.id = id
	}
	byARN := map[string]*managed{}
	awsByARN := map[string]ManagedPolicyDetail{}
	for _, p := range d.Policies {
		if isAWSManaged(p.Arn) {
			awsByARN[p.Arn] = p
			continue
		}
		mp := a.managedFrom(p)
		byARN[p.Arn] = mp
		a.policies = append(a.policies, mp)
	}
	// resolve finds an attached policy: the account's, or AWS's when the input has it.
	// A policy missing from the input is unknown, so it could deny: its holder goes.
	missing := map[string]*managed{}
	resolve := func(arn string) *managed {
		if mp, ok := byARN[arn]; ok {
			return mp
		}
		if p, ok := awsByARN[arn]; ok {
			mp := a.managedFrom(p)
			byARN[arn] = mp
			a.policies = append(a.policies, mp)
			return mp
		}
		if mp, ok := missing[arn]; ok {
			return mp
		}
		mp := &managed{name: nameFromARN(arn), arn: arn, restrictive: true}
		missing[arn] = mp
		return mp
	}

	// sameARN leaves out a principal whose ARN is not the one the spec gives it: a
	// policy naming it by its ARN would name something else.
	sameARN := func(p *principal, arn string) {
		path := p.path
		if path == "" {
			path = "/"
		}
		if want := "arn:aws:iam::" + a.id + ":" + p.kind + path + p.name; arn != want {
			a.leaveOut(p, "its ARN %s is not the one its account, path and name make (%s)", arn, want)
		}
	}
	groups := map[string]*principal{}
	for _, g := range d.GroupDetailList {
		p := &principal{kind: "group", name: g.GroupName, path: g.Path}
		p.inline = inlines(g.GroupPolicyList)
		p.managed = attachments(g.AttachedManagedPolicies, resolve)
		groups[g.GroupName] = p
		a.groups = append(a.groups, p)
	}
	for _, u := range d.UserDetailList {
		p := &principal{kind: "user", name: u.UserName, path: u.Path, tags: u.Tags}
		p.inline = inlines(u.UserPolicyList)
		p.managed = attachments(u.AttachedManagedPolicies, resolve)
		p.boundary = boundaryOf(u.PermissionsBoundary, resolve)
		a.users = append(a.users, p)
		sameARN(p, u.Arn)
		var absent []string
		for _, name := range u.GroupList {
			g, ok := groups[name]
			if !ok {
				absent = append(absent, name)
				continue
			}
			p.groups = append(p.groups, g)
			g.members = append(g.members, p)
		}
		if len(absent) > 0 {
			a.leaveOut(p, "a member of group %s, which is not in the input (its policies could deny)", strings.Join(absent, ", "))
		}
	}
	// After the users: a group left out takes its members with it.
	for i, g := range d.GroupDetailList {
		sameARN(a.groups[i], g.Arn)
	}
	profiles := map[string]bool{}
	for _, r := range d.RoleDetailList {
		p := &principal{kind: "role", name: r.RoleName, path: r.Path, desc: r.Description, tags: r.Tags,
			trust: json.RawMessage(r.AssumeRolePolicyDocument), maxSession: r.MaxSessionDuration}
		p.inline = inlines(r.RolePolicyList)
		p.managed = attachments(r.AttachedManagedPolicies, resolve)
		p.boundary = boundaryOf(r.PermissionsBoundary, resolve)
		a.roles = append(a.roles, p)
		sameARN(p, r.Arn)
		for _, ip := range r.InstanceProfileList {
			if profiles[ip.Arn+ip.InstanceProfileName] {
				continue
			}
			profiles[ip.Arn+ip.InstanceProfileName] = true
			a.note("instance profile "+ip.InstanceProfileName, "not expressible: a Phantom workload host names its role itself (nodes[].role, with its VPC and address); declare the hosts that use role %s under nodes%s",
				r.RoleName, tagText(ip.Tags))
		}
		switch {
		case strings.HasPrefix(r.Path, serviceLinkedPath):
			a.leaveOut(p, "a service-linked role (path %s): an AWS service assumes it, nothing in a Phantom perimeter does", r.Path)
		case len(r.AssumeRolePolicyDocument) == 0:
			a.leaveOut(p, "the input has no trust policy for it")
		}
	}
	for _, mp := range a.policies {
		want := "arn:aws:iam::" + a.id + ":policy" + mp.path + mp.name
		switch {
		case mp.doc == nil:
			a.dropPolicy(mp, "the input holds no default version of it")
		case !isAWSManaged(mp.arn) && mp.arn != want:
			a.dropPolicy(mp, fmt.Sprintf("its ARN is not the one its account, path and name make (%s), so policies naming it would not find it", want))
		}
	}
	for _, arn := range slices.Sorted(maps.Keys(missing)) {
		a.dropPolicy(missing[arn], "it is attached here but not in the input (an AWS managed policy left out by --filter, or a partial file); include it to import its holders")
	}
	a.uniqueNames()
	for arn := range awsByARN {
		if _, used := byARN[arn]; !used {
			a.skippedAWS++
		}
	}
	return a, nil
}

func (a *account) managedFrom(p ManagedPolicyDetail) *managed {
	mp := &managed{name: p.PolicyName, arn: p.Arn, path: p.Path, desc: p.Description}
	if mp.name == "" {
		mp.name = nameFromARN(p.Arn)
	}
	if mp.path == "" {
		mp.path = pathFromARN(p.Arn)
	}
	var others []string
	for _, v := range p.PolicyVersionList {
		if v.IsDefaultVersion || (p.DefaultVersionId != "" && v.VersionId == p.DefaultVersionId) {
			mp.doc = json.RawMessage(v.Document)
			continue
		}
		others = append(others, v.VersionId)
	}
	mp.restrictive = mp.doc == nil || restrictive(mp.doc)
	if len(others) > 0 {
		a.note("managed policy "+p.Arn, "versions %s not carried: only the default version is in force, and the spec holds one document", strings.Join(others, ", "))
	}
	return mp
}

func inlines(list []PolicyDetail) []*inline {
	out := make([]*inline, 0, len(list))
	for _, p := range list {
		doc := json.RawMessage(p.PolicyDocument)
		out = append(out, &inline{name: p.PolicyName, doc: doc, restrictive: doc == nil || restrictive(doc)})
	}
	return out
}

func attachments(list []AttachedPolicy, resolve func(string) *managed) []*managed {
	var out []*managed
	for _, ap := range list {
		if mp := resolve(ap.PolicyArn); !slices.Contains(out, mp) {
			out = append(out, mp)
		}
	}
	return out
}

func boundaryOf(b *Boundary, resolve func(string) *managed) *managed {
	if b == nil || b.PermissionsBoundaryArn == "" {
		return nil
	}
	return resolve(b.PermissionsBoundaryArn)
}

// accountOf finds the account id in the principals' and policies' ARNs; they must agree.
func accountOf(d *Details) (string, error) {
	var arns []string
	for _, u := range d.UserDetailList {
		arns = append(arns, u.Arn)
	}
	for _, g := range d.GroupDetailList {
		arns = append(arns, g.Arn)
	}
	for _, r := range d.RoleDetailList {
		arns = append(arns, r.Arn)
	}
	for _, p := range d.Policies {
		if !isAWSManaged(p.Arn) {
			arns = append(arns, p.Arn)
		}
	}
	id := ""
	for _, arn := range arns {
		parts := strings.SplitN(arn, ":", 6)
		if len(parts) < 6 || parts[4] == "" {
			continue
		}
		if id != "" && parts[4] != id {
			return "", fmt.Errorf("the input holds ARNs of two accounts, %s and %s: import one account at a time", id, parts[4])
		}
		id = parts[4]
	}
	if id == "" {
		return "", errors.New("no ARN in the input names the account: give --account")
	}
	return id, nil
}

func isAWSManaged(arn string) bool { return strings.HasPrefix(arn, "arn:aws:iam::aws:policy/") }

// nameFromARN is the last segment of a policy ARN (arn:aws:iam::ACCOUNT:policy/PATH/NAME).
func nameFromARN(arn string) string { return arn[strings.LastIndexByte(arn, '/')+1:] }

// pathFromARN is the path of a policy ARN: / or /a/b/.
func pathFromARN(arn string) string {
	_, rest, ok := strings.Cut(arn, ":policy/")
	if !ok {
		return "/"
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return "/"
	}
	return "/" + rest[:i+1]
}

func tagText(tags []Tag) string {
	if len(tags) == 0 {
		return ""
	}
	kv := make([]string, len(tags))
	for i, t := range tags {
		kv[i] = t.Key + "=" + t.Value
	}
	return " (its tags, not carried: " + strings.Join(kv, ", ") + ")"
}

// uniqueNames renames the AWS managed policies whose names an account's own policy has
// already (the spec names policies case-insensitively, as IAM does within an account).
func (a *account) uniqueNames() {
	taken := map[string]bool{}
	for _, mp := range a.policies {
		if !isAWSManaged(mp.arn) {
			taken[strings.ToLower(mp.name)] = true
		}
	}
	for _, mp := range a.policies {
		if !isAWSManaged(mp.arn) {
			continue
		}
		name := mp.name
		for i := 1; taken[strings.ToLower(name)]; i++ {
			name = fmt.Sprintf("AWS-%s", mp.name)
			if i > 1 {
				name = fmt.Sprintf("AWS-%s-%d", mp.name, i)
			}
		}
		why := ""
		if name != mp.name {
			why = fmt.Sprintf(" (not %s: the account has a policy of its own of that name)", mp.name)
			mp.name = name
		}
		taken[strings.ToLower(name)] = true
		if !mp.dropped {
			a.note("managed policy "+mp.arn, "carried as this perimeter's managed policy %s%s: an AWS managed policy, copied at the version the input holds (AWS updates its own; this copy changes only when you import again)", name, why)
		}
	}
}
