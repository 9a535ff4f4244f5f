package peers

import (
	"fmt"

	"github.com/phantom-perimeter/phantom/internal/policy"
)

type phantomPrepared struct {
	set  *policy.Set
	reqs []*policy.Request
}

func preparePhantom(s Scenario) (Prepared, error) {
	pol, err := policy.Parse(s.IAM())
	if err != nil {
		return nil, fmt.Errorf("parse IAM policy: %w", err)
	}
	p := &phantomPrepared{set: policy.NewSet(policy.Entry{Kind: policy.Identity, Policy: pol})}
	for _, r := range s.Requests {
		c := make(map[string][]string, len(r.Context))
		for k, v := range r.Context {
			c[k] = []string{v}
		}
		p.reqs = append(p.reqs, &policy.Request{
			Principal: s.Principal,
			Action:    r.Action,
			Resource:  r.Resource,
			Context:   policy.NewContext(c),
		})
	}
	return p, nil
}

func (p *phantomPrepared) Decide(i int) (string, error) {
	return p.set.Evaluate(p.reqs[i]).Effect.String(), nil
}
