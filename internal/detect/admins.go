package detect

import (
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/policy"
)

// adminProbes are actions only an administrator is allowed on every resource: whoever may
// grant themselves any permission or mint credentials for anyone is an administrator.
var adminProbes = []string{"iam:PutUserPolicy", "iam:AttachUserPolicy", "iam:CreateAccessKey", "sts:AssumeRole"}

// AdminUsers lists the spec's users whose policies, their groups' included (capped by
// their permissions boundary), allow every one of adminProbes on any resource: the users whose long-term
// keys Config.AdminUsers should watch, derived from the perimeter instead of kept by hand.
func AdminUsers(spec *config.Spec) []string {
	var admins []string
	for _, u := range spec.Users {
		var entries []policy.Entry
		for _, ip := range u.IdentityPolicies() {
			entries = append(entries, policy.Entry{Kind: policy.Identity, Policy: ip.Policy.Compiled})
		}
		if u.PermissionsBoundary != nil {
			entries = append(entries, policy.Entry{Kind: policy.Boundary, Policy: u.PermissionsBoundary.Policy.Compiled})
		}
		if len(entries) == 0 {
			continue
		}
		set := policy.NewSet(entries...)
		admin := true
		for _, action := range adminProbes {
			req := policy.Request{Principal: u.ARN, Action: action, Resource: "arn:aws:iam::" + spec.Account + ":user/phantom-admin-probe",
				Context: policy.NewContext(nil)}
			if set.Evaluate(&req).Effect != policy.Allow {
				admin = false
				break
			}
		}
		if admin {
			admins = append(admins, u.Name)
		}
	}
	return admins
}
