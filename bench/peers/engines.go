package peers

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/cedar-policy/cedar-go"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Prepared is a scenario compiled for one engine, with its requests already converted to
// that engine's input form, so a benchmark measures decisions and nothing else.
type Prepared interface {
	// Decide evaluates request i of the scenario and returns Allow, ExplicitDeny or
	// ImplicitDeny.
	Decide(i int) (string, error)
}

// Engine compiles scenarios for one policy engine.
type Engine struct {
	Name    string
	Prepare func(Scenario) (Prepared, error)
}

// Engines lists the engines compared, Phantom first: it is the one under test, the others
// are the baselines.
func Engines() []Engine {
	return []Engine{
		{"phantom", preparePhantom},
		{"cedar", prepareCedar},
		{"opa", prepareOPA},
	}
}

type cedarPrepared struct {
	ps   *cedar.PolicySet
	reqs []cedar.Request
	// denies holds the ids of forbid policies: Cedar says only allow or deny, and IAM's
	// ExplicitDeny is a forbid that matched.
	denies map[cedar.PolicyID]bool
}

func prepareCedar(s Scenario) (Prepared, error) {
	ps, err := cedar.NewPolicySetFromBytes(s.Name+".cedar", []byte(s.Cedar()))
	if err != nil {
		return nil, fmt.Errorf("parse cedar policies: %w", err)
	}
	p := &cedarPrepared{ps: ps, denies: map[cedar.PolicyID]bool{}}
	for id, pol := range ps.All() {
		if pol.Effect() == cedar.Forbid {
			p.denies[id] = true
		}
	}
	for _, r := range s.Requests {
		rec := cedar.RecordMap{"arn": cedar.String(r.Resource)}
		for k, v := range r.Context {
			if a, err := netip.ParseAddr(v); err == nil {
				rec[cedar.String(ctxKey(k))] = cedar.IPAddr(netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			rec[cedar.String(ctxKey(k))] = cedar.String(v)
		}
		p.reqs = append(p.reqs, cedar.Request{
			Principal: cedar.NewEntityUID("Role", cedar.String(s.Principal)),
			Action:    cedar.NewEntityUID("Action", cedar.String(r.Action)),
			Resource:  cedar.NewEntityUID("Resource", cedar.String(r.Resource)),
			Context:   cedar.NewRecord(rec),
		})
	}
	return p, nil
}

func (p *cedarPrepared) Decide(i int) (string, error) {
	d, diag := cedar.Authorize(p.ps, nil, p.reqs[i])
	if len(diag.Errors) > 0 {
		return "", fmt.Errorf("cedar evaluation: %s", diag.Errors[0].Message)
	}
	if d == cedar.Allow {
		return "Allow", nil
	}
	for _, r := range diag.Reasons {
		if p.denies[r.PolicyID] {
			return "ExplicitDeny", nil
		}
	}
	return "ImplicitDeny", nil
}

type opaPrepared struct {
	q      rego.PreparedEvalQuery
	inputs []ast.Value
}

func prepareOPA(s Scenario) (Prepared, error) {
	ctx := context.Background()
	q, err := rego.New(
		rego.Query("data.phantom.bench.decision"),
		rego.Module(s.Name+".rego", s.Rego()),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("prepare rego: %w", err)
	}
	p := &opaPrepared{q: q}
	for _, r := range s.Requests {
		c := map[string]any{}
		for k, v := range r.Context {
			c[ctxKey(k)] = v
		}
		in, err := ast.InterfaceToValue(map[string]any{
			"principal": s.Principal, "action": r.Action, "resource": r.Resource, "context": c,
		})
		if err != nil {
			return nil, fmt.Errorf("rego input for %s: %w", r.Name, err)
		}
		p.inputs = append(p.inputs, in)
	}
	return p, nil
}

func (p *opaPrepared) Decide(i int) (string, error) {
	rs, err := p.q.Eval(context.Background(), rego.EvalParsedInput(p.inputs[i]))
	if err != nil {
		return "", fmt.Errorf("rego evaluation: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return "", fmt.Errorf("rego evaluation: unexpected result %v", rs)
	}
	d, ok := rs[0].Expressions[0].Value.(string)
	if !ok {
		return "", fmt.Errorf("rego evaluation: decision %v is not a string", rs[0].Expressions[0].Value)
	}
	return d, nil
}
