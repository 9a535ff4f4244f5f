package detect

import (
	"slices"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// PeerGroups maps each of the spec's users and roles that has managed policies to its
// peer group: the sorted names of those policies. Principals with the same managed
// policies do the same job, so a new one (or a new session of a new role) is compared
// with what they do; the others are grouped by IAM path (peerGroup).
func PeerGroups(spec *config.Spec) map[string]string {
	out := map[string]string{}
	add := func(arn string, mps []*config.ManagedPolicy) {
		if len(mps) == 0 || arn == "" {
			return
		}
		names := make([]string, 0, len(mps))
		for _, mp := range mps {
			names = append(names, mp.Name)
		}
		slices.Sort(names)
		out[arn] = strings.Join(slices.Compact(names), ",")
	}
	for _, u := range spec.Users {
		add(u.ARN, u.ManagedPolicies)
	}
	for _, r := range spec.Roles {
		add(r.ARN, r.ManagedPolicies)
	}
	return out
}

// SetPeerGroups replaces the operator's peer groups (a spec reload).
func (d *Detector) SetPeerGroups(groups map[string]string) {
	d.mu.Lock()
	d.cfg.PeerGroups = groups
	d.peerGen++
	d.mu.Unlock()
}
