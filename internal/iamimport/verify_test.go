package iamimport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// normal is a JSON document decoded for comparison: key order and whitespace do not
// count, numbers keep their text.
func normal(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func sameJSON(a, b []byte) bool {
	va, errA := normal(a)
	vb, errB := normal(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

// verify checks the import's promise against its input: every item of the input is in
// the spec exactly (documents equal after JSON normalisation, every attachment,
// membership, boundary, trust policy and tag), or a note names it; and the spec holds
// nothing the input does not. It returns every breach.
func verify(d *Details, res *Result) []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	noted := map[string]bool{}
	for _, n := range res.Notes {
		noted[n.Subject] = true
	}
	s := res.Spec

	// Managed policies, by the ARN the input gave them.
	policyByARN := map[string]ManagedPolicyDetail{}
	for _, p := range d.Policies {
		policyByARN[p.Arn] = p
	}
	defaultDoc := func(p ManagedPolicyDetail) []byte {
		for _, v := range p.PolicyVersionList {
			if v.IsDefaultVersion || v.VersionId == p.DefaultVersionId && p.DefaultVersionId != "" {
				return v.Document
			}
		}
		return nil
	}
	// carried finds the spec's copy of the input's managed policy arn.
	carried := func(arn string) *config.ManagedPolicy {
		p, ok := policyByARN[arn]
		if !ok {
			return nil
		}
		for _, mp := range s.ManagedPolicies {
			if mp.Name == p.PolicyName || (p.PolicyName == "" && mp.Name == nameFromARN(arn)) || mp.Name == "AWS-"+nameFromARN(arn) {
				if sameJSON(mp.Policy.Document, defaultDoc(p)) {
					return mp
				}
			}
		}
		return nil
	}
	for _, p := range d.Policies {
		if isAWSManaged(p.Arn) {
			continue
		}
		mp := carried(p.Arn)
		switch {
		case mp == nil && !noted["managed policy "+p.Arn]:
			fail("managed policy %s is neither carried with its default document nor noted", p.Arn)
		case mp != nil && mp.ARN != p.Arn:
			fail("managed policy %s became %s", p.Arn, mp.ARN)
		case mp != nil && mp.Description != p.Description:
			fail("managed policy %s: description %q, want %q", p.Arn, mp.Description, p.Description)
		}
	}
	for _, mp := range s.ManagedPolicies {
		found := false
		for _, p := range d.Policies {
			if carried(p.Arn) == mp {
				found = true
			}
		}
		if !found {
			fail("the spec's managed policy %s is not a policy of the input", mp.Name)
		}
	}

	inlineSame := func(who string, in []PolicyDetail, out []*config.Policy) {
		if len(in) != len(out) && !noted[who] {
			fail("%s has %d inline policies, the input %d, and no note", who, len(out), len(in))
		}
		for _, ip := range in {
			i := slices.IndexFunc(out, func(p *config.Policy) bool { return p.Name == ip.PolicyName })
			if i < 0 {
				if !noted[who] {
					fail("%s: inline policy %s is neither carried nor noted", who, ip.PolicyName)
				}
				continue
			}
			if !sameJSON(out[i].Document, ip.PolicyDocument) {
				fail("%s: inline policy %s differs: %s, input %s", who, ip.PolicyName, out[i].Document, []byte(ip.PolicyDocument))
			}
		}
	}
	attachedSame := func(who string, in []AttachedPolicy, out []*config.ManagedPolicy) {
		if len(in) != len(out) && !noted[who] {
			fail("%s attaches %d managed policies, the input %d, and no note", who, len(out), len(in))
		}
		for _, ap := range in {
			mp := carried(ap.PolicyArn)
			if mp == nil || !slices.Contains(out, mp) {
				if !noted[who] {
					fail("%s: attachment of %s is neither carried nor noted", who, ap.PolicyArn)
				}
			}
		}
	}
	boundarySame := func(who string, in *Boundary, out *config.ManagedPolicy) {
		switch {
		case in == nil || in.PermissionsBoundaryArn == "":
			if out != nil {
				fail("%s has a boundary the input does not", who)
			}
		case out == nil || carried(in.PermissionsBoundaryArn) != out:
			fail("%s: boundary %s not carried, yet %s is in the spec", who, in.PermissionsBoundaryArn, who)
		}
	}
	tagsSame := func(who string, in []Tag, out map[string]string) {
		want := map[string]string{}
		for _, t := range in {
			want[t.Key] = t.Value
		}
		if !reflect.DeepEqual(want, out) && !(len(want) == 0 && len(out) == 0) && !noted[who] {
			fail("%s: tags %v, input %v", who, out, want)
		}
	}
	pathOf := func(p string) string {
		if p == "" {
			return "/"
		}
		return p
	}

	for _, g := range d.GroupDetailList {
		who := "group " + g.GroupName
		sg, ok := s.Group(g.GroupName)
		if !ok {
			if !noted[who] {
				fail("%s is neither carried nor noted", who)
			}
			continue
		}
		if sg.Path != pathOf(g.Path) {
			fail("%s: path %s, input %s", who, sg.Path, g.Path)
		}
		inlineSame(who, g.GroupPolicyList, sg.Policies)
		attachedSame(who, g.AttachedManagedPolicies, sg.ManagedPolicies)
	}
	for _, u := range d.UserDetailList {
		who := "user " + u.UserName
		su, ok := s.User(u.UserName)
		if !ok {
			if !noted[who] {
				fail("%s is neither carried nor noted", who)
			}
			continue
		}
		if su.Path != pathOf(u.Path) {
			fail("%s: path %s, input %s", who, su.Path, u.Path)
		}
		inlineSame(who, u.UserPolicyList, su.Policies)
		attachedSame(who, u.AttachedManagedPolicies, su.ManagedPolicies)
		boundarySame(who, u.PermissionsBoundary, su.PermissionsBoundary)
		tagsSame(who, u.Tags, su.Tags)
		var groups []string
		for _, g := range su.Groups {
			groups = append(groups, g.Name)
		}
		if !slices.Equal(groups, u.GroupList) && !(len(groups) == 0 && len(u.GroupList) == 0) {
			// A member of a group that is left out is left out too, so a kept user has
			// every group.
			fail("%s: groups %v, input %v", who, groups, u.GroupList)
		}
	}
	for _, r := range d.RoleDetailList {
		who := "role " + r.RoleName
		sr, ok := s.Role(r.RoleName)
		if !ok {
			if !noted[who] {
				fail("%s is neither carried nor noted", who)
			}
			continue
		}
		if sr.Path != pathOf(r.Path) {
			fail("%s: path %s, input %s", who, sr.Path, r.Path)
		}
		if !sameJSON(sr.TrustPolicy.Document, r.AssumeRolePolicyDocument) && !noted[who] {
			fail("%s: trust policy %s, input %s", who, sr.TrustPolicy.Document, []byte(r.AssumeRolePolicyDocument))
		}
		if r.Description != sr.Description {
			fail("%s: description %q, input %q", who, sr.Description, r.Description)
		}
		inlineSame(who, r.RolePolicyList, sr.Policies)
		attachedSame(who, r.AttachedManagedPolicies, sr.ManagedPolicies)
		boundarySame(who, r.PermissionsBoundary, sr.PermissionsBoundary)
		tagsSame(who, r.Tags, sr.Tags)
	}
	// Nothing from nowhere: every spec principal was looked up by an input name above.
	if len(s.Users) > len(d.UserDetailList) || len(s.Groups) > len(d.GroupDetailList) || len(s.Roles) > len(d.RoleDetailList) {
		fail("the spec has %d users, %d groups, %d roles; the input %d, %d, %d", len(s.Users), len(s.Groups), len(s.Roles),
			len(d.UserDetailList), len(d.GroupDetailList), len(d.RoleDetailList))
	}
	if len(s.APIs)+len(s.Endpoints)+len(s.Nodes)+len(s.Egress) > 0 {
		fail("the spec has APIs, endpoints, nodes or egress rules: the input has none")
	}
	for _, n := range res.Notes {
		if strings.ContainsAny(n.Subject, "\n\r") {
			fail("note subject %q spans lines", n.Subject)
		}
	}
	return bad
}
