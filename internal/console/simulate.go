package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/policy"
)

// Simulation is the simulator form: one authorization question about a principal of
// the spec.
type Simulation struct {
	Principal string // user or role ARN from the spec
	Action    string // service:Action
	Resource  string // ARN or *
	Endpoint  string // vpce id the request comes through, "" none
	// Context holds the condition keys given on the form; they override the defaults.
	Context     map[string][]string
	ContextText string
}

const (
	maxSimARN         = 2048
	maxContextLines   = 64
	maxContextKey     = 256
	maxContextValue   = 1024
	maxContextTextLen = 16 << 10
)

var (
	actionRe     = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}:[A-Za-z0-9*?]{1,128}$`)
	contextKeyRe = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}:[A-Za-z0-9_.:/+@ -]{1,190}$`)
)

// ParseSimulation reads and bounds the simulator form.
func ParseSimulation(form url.Values) (Simulation, error) {
	s := Simulation{
		Principal:   strings.TrimSpace(form.Get("principal")),
		Action:      strings.TrimSpace(form.Get("action")),
		Resource:    strings.TrimSpace(form.Get("resource")),
		Endpoint:    strings.TrimSpace(form.Get("endpoint")),
		ContextText: form.Get("context"),
	}
	if s.Principal == "" {
		return s, errors.New("principal: choose a user or role")
	}
	if err := printable(s.Principal, maxSimARN); err != nil {
		return s, fmt.Errorf("principal: %w", err)
	}
	if !actionRe.MatchString(s.Action) {
		return s, errors.New("action: write service:Action, e.g. execute-api:Invoke")
	}
	if s.Resource == "" {
		s.Resource = "*"
	}
	if err := printable(s.Resource, maxSimARN); err != nil {
		return s, fmt.Errorf("resource: %w", err)
	}
	if err := printable(s.Endpoint, 64); err != nil {
		return s, fmt.Errorf("endpoint: %w", err)
	}
	ctx, err := ParseContextKeys(s.ContextText)
	if err != nil {
		return s, fmt.Errorf("context: %w", err)
	}
	s.Context = ctx
	return s, nil
}

// ParseContextKeys reads condition keys, one "key=value" a line; a key given on several
// lines is multivalued. Blank lines and lines starting with # are skipped.
func ParseContextKeys(text string) (map[string][]string, error) {
	if len(text) > maxContextTextLen {
		return nil, fmt.Errorf("longer than %d bytes", maxContextTextLen)
	}
	out := map[string][]string{}
	n := 0
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n++
		if n > maxContextLines {
			return nil, fmt.Errorf("more than %d keys", maxContextLines)
		}
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok {
			return nil, fmt.Errorf("line %d: write key=value", i+1)
		}
		if len(k) > maxContextKey || !contextKeyRe.MatchString(k) {
			return nil, fmt.Errorf("line %d: %q is not a condition key like aws:SourceIp", i+1, truncate(k, 64))
		}
		if err := printable(v, maxContextValue); err != nil {
			return nil, fmt.Errorf("line %d: value %w", i+1, err)
		}
		// Keys are case-insensitive; keep the first spelling.
		name := k
		for have := range out {
			if strings.EqualFold(have, k) {
				name = have
			}
		}
		out[name] = append(out[name], v)
	}
	return out, nil
}

// simResult is the simulator's answer.
type simResult struct {
	Effect   string
	Class    string
	Matched  []kv // policy, statement
	Reason   string
	Policies []string
	Context  []kv
}

// evaluate decides the simulation the way the gateway decides a call: the principal's
// identity side, plus the API's resource policy for its execute-api resources, plus the
// endpoint policy (and aws:SourceVpce, aws:SourceVpc) when it comes through an endpoint,
// plus a role's trust policy for sts:AssumeRole on it.
func evaluate(spec *config.Spec, s Simulation, now time.Time) (simResult, error) {
	var u *config.User
	var r *config.Role
	if x, ok := spec.UserByARN(s.Principal); ok {
		u = x
	} else if x, ok := spec.RoleByARN(s.Principal); ok {
		r = x
	} else {
		return simResult{}, errors.New("principal: not a user or role of the perimeter spec")
	}
	ls := identityEntries(spec, u, r, nil)
	for _, a := range spec.APIs {
		if a.ResourcePolicy != nil && (s.Resource == a.ARN(spec) || strings.HasPrefix(s.Resource, a.ARN(spec)+"/")) {
			ls = append(ls, labelled{policy.Entry{Kind: policy.Resource, Policy: a.ResourcePolicy.Compiled}, "resource policy of API " + a.ID})
		}
	}
	if strings.HasPrefix(strings.ToLower(s.Action), "sts:") {
		if tr, ok := spec.RoleByARN(s.Resource); ok && tr.TrustPolicy != nil {
			ls = append(ls, labelled{policy.Entry{Kind: policy.Resource, Policy: tr.TrustPolicy.Compiled}, "trust policy of role " + tr.Name})
		}
	}
	m := map[string][]string{}
	requestKeys(m, spec, now, "", "")
	principalKeys(m, spec.Account, u, r, nil)
	if s.Endpoint != "" {
		ep, ok := spec.Endpoint(s.Endpoint)
		if !ok {
			return simResult{}, errors.New("endpoint: not an endpoint of the perimeter spec")
		}
		if ep.Policy != nil {
			ls = append(ls, labelled{policy.Entry{Kind: policy.Endpoint, Policy: ep.Policy.Compiled}, "endpoint policy of " + ep.ID})
		}
		m["aws:SourceVpce"] = []string{ep.ID}
		if ep.VPC != "" {
			m["aws:SourceVpc"] = []string{ep.VPC}
		}
	}
	for k, v := range s.Context {
		for have := range m {
			if strings.EqualFold(have, k) {
				delete(m, have)
			}
		}
		m[k] = v
	}
	entries := make([]policy.Entry, len(ls))
	res := simResult{}
	for i, l := range ls {
		entries[i] = l.entry
		res.Policies = append(res.Policies, l.name)
	}
	req := policy.Request{Principal: s.Principal, Action: s.Action, Resource: s.Resource, ResourceAccount: spec.Account,
		Context: policy.NewContext(m)}
	d := policy.NewSet(entries...).Evaluate(&req)
	res.Effect, res.Reason = d.Effect.String(), d.Reason
	res.Class = map[policy.Effect]string{policy.Allow: "allow", policy.ImplicitDeny: "implicit", policy.ExplicitDeny: "deny"}[d.Effect]
	for _, mt := range d.Matched {
		name := "policy " + strconv.Itoa(mt.Policy)
		if mt.Policy >= 0 && mt.Policy < len(ls) {
			name = ls[mt.Policy].name
		}
		res.Matched = append(res.Matched, kv{name, mt.Statement})
	}
	for k, v := range m {
		res.Context = append(res.Context, kv{k, strings.Join(v, ", ")})
	}
	sortKV(res.Context)
	return res, nil
}

type simulateData struct {
	Principals []kv // ARN, label
	Endpoints  []string
	Actions    []string
	Form       Simulation
	Error      string
	Result     *simResult
}

// simulatable lists the principals the signed-in principal may simulate.
func (h *Handler) simulatable(rq *request) []kv {
	var out []kv
	for _, u := range rq.spec.Users {
		if h.decide(rq, ActionSimulatePrincipalPolicy, u.ARN).Effect == policy.Allow {
			out = append(out, kv{u.ARN, "user " + u.Name})
		}
	}
	for _, r := range rq.spec.Roles {
		if h.decide(rq, ActionSimulatePrincipalPolicy, r.ARN).Effect == policy.Allow {
			out = append(out, kv{r.ARN, "role " + r.Name})
		}
	}
	return out
}

func (h *Handler) simulateData(rq *request) simulateData {
	d := simulateData{Principals: h.simulatable(rq), Actions: []string{"execute-api:Invoke", "sts:AssumeRole", "guardduty:ListFindings"}}
	for _, e := range rq.spec.Endpoints {
		d.Endpoints = append(d.Endpoints, e.ID)
	}
	d.Form.Action = "execute-api:Invoke"
	if len(rq.spec.APIs) > 0 {
		a := rq.spec.APIs[0]
		stage := "prod"
		if len(a.Stages) > 0 {
			stage = a.Stages[0]
		}
		d.Form.Resource = a.ARN(rq.spec) + "/" + stage + "/GET/"
		if len(a.Routes) > 0 {
			d.Form.Resource = a.ARN(rq.spec) + "/" + stage + "/GET" + a.Routes[0].Path
		}
	}
	if len(rq.spec.Endpoints) > 0 {
		d.Form.Endpoint = rq.spec.Endpoints[0].ID
	}
	d.Form.ContextText = "aws:SourceIp=10.0.1.5\n"
	return d
}

// simulateForm shows the simulator.
func (h *Handler) simulateForm(w http.ResponseWriter, r *http.Request) {
	rq, ok := h.signedIn(w, r, false)
	if !ok {
		return
	}
	d := h.simulateData(rq)
	if len(d.Principals) == 0 {
		h.authorize(rq, "SimulatePrincipalPolicy", check{ActionSimulatePrincipalPolicy, "arn:aws:iam::" + rq.spec.Account + ":*"})
		return
	}
	h.render(w, r, http.StatusOK, "simulate", rq, "Policy simulator", d)
}

// simulate answers the simulator form.
func (h *Handler) simulate(w http.ResponseWriter, r *http.Request) {
	rq, ok := h.signedIn(w, r, false)
	if !ok || !h.checkCSRF(rq, "SimulatePrincipalPolicy") {
		return
	}
	d := h.simulateData(rq)
	sim, err := ParseSimulation(r.PostForm)
	d.Form = sim
	if err != nil {
		d.Error = err.Error()
		h.render(w, r, http.StatusBadRequest, "simulate", rq, "Policy simulator", d)
		return
	}
	if !slices.ContainsFunc(d.Principals, func(p kv) bool { return p.K == sim.Principal }) {
		if _, u := rq.spec.UserByARN(sim.Principal); !u {
			if _, ro := rq.spec.RoleByARN(sim.Principal); !ro {
				d.Error = "principal: not a user or role of the perimeter spec"
				h.render(w, r, http.StatusBadRequest, "simulate", rq, "Policy simulator", d)
				return
			}
		}
	}
	if !h.authorize(rq, "SimulatePrincipalPolicy", check{ActionSimulatePrincipalPolicy, sim.Principal}) {
		return
	}
	res, err := evaluate(rq.spec, sim, rq.now)
	if err != nil {
		d.Error = err.Error()
		h.render(w, r, http.StatusBadRequest, "simulate", rq, "Policy simulator", d)
		return
	}
	ev := h.event(r, rq.now, "SimulatePrincipalPolicy")
	h.identityOf(ev, rq.p)
	ev.ReadOnly = true
	ev.RequestParameters = map[string]any{"policySourceArn": sim.Principal, "actionNames": []string{sim.Action},
		"resourceArns": []string{sim.Resource}, "contextKeys": len(sim.Context)}
	if sim.Endpoint != "" {
		ev.RequestParameters["vpcEndpointId"] = sim.Endpoint
	}
	ev.ResponseElements = map[string]any{"evalDecision": res.Effect}
	if !h.record(rq, ev) {
		return
	}
	d.Result = &res
	h.render(w, r, http.StatusOK, "simulate", rq, "Policy simulator", d)
}
