package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/policy"
	"github.com/phantom-perimeter/phantom/internal/policy/simulate"
)

// exampleCall is a call an example perimeter exists to allow or to refuse.
type exampleCall struct {
	name string
	// as is the caller:
	//   user/NAME  the user's long-term key
	//   role/NAME  a session of the role
	//   node/NAME  the node's agent: for sts:AssumeRole, the node asking STS for its role
	//              (the trust policy alone, as internal/sts decides it); otherwise a session
	//              of the node's role bound to the node (aws:EC2InstanceSource*), from the
	//              node's address
	//   oidc/HOST  the holder of a token of the OIDC provider HOST (for
	//              sts:AssumeRoleWithWebIdentity: the trust policy alone)
	as string
	// action defaults to execute-api:Invoke.
	action string
	// call is API/STAGE/METHOD/PATH for execute-api:Invoke (the route must exist), or the
	// role's name for sts actions.
	call string
	// via is the endpoint the call came through; "" is straight to the gateway.
	via string
	// context adds or replaces condition keys: session tags (aws:PrincipalTag/K on a
	// session, aws:RequestTag/K and aws:TagKeys on AssumeRole), token claims,
	// phantom:RiskLevel, another aws:SourceIp. A value is a string or a []string.
	context map[string]any
	want    string // Allow, ExplicitDeny or ImplicitDeny
}

// exampleCalls names, per file in examples/, at least one call the example allows and
// one it refuses. A new example fails TestExamples until it is listed here.
var exampleCalls = map[string][]exampleCall{
	"demo.yaml": {
		{name: "alice reads orders through the endpoint", as: "user/alice", call: "a1b2c3d4e5/prod/GET/orders",
			via: "vpce-0123456789abcdef0", want: "Allow"},
		{name: "alice around the endpoint: the resource policy requires aws:SourceVpce", as: "user/alice",
			call: "a1b2c3d4e5/prod/GET/orders", want: "ExplicitDeny"},
		{name: "an app session creates orders", as: "role/app", call: "a1b2c3d4e5/prod/POST/orders",
			via: "vpce-0123456789abcdef0", want: "Allow"},
		{name: "alice cannot create orders: the resource policy's account principal delegates to her read-only policies",
			as: "user/alice", call: "a1b2c3d4e5/prod/POST/orders", via: "vpce-0123456789abcdef0", want: "ImplicitDeny"},
		{name: "alice assumes app", as: "user/alice", action: "sts:AssumeRole", call: "app", want: "Allow"},
		{name: "alice cannot assume ci-deployer", as: "user/alice", action: "sts:AssumeRole", call: "ci-deployer",
			want: "ImplicitDeny"},
		{name: "the Service A node gets its role", as: "node/service-a-1", action: "sts:AssumeRole", call: "app", want: "Allow"},
		{name: "a job of example/orders gets ci-deployer", as: "oidc/token.actions.githubusercontent.com",
			action: "sts:AssumeRoleWithWebIdentity", call: "ci-deployer", want: "Allow",
			context: map[string]any{
				"token.actions.githubusercontent.com:sub": "repo:example/orders:ref:refs/heads/main",
				"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
			}},
		{name: "a job of another repository does not", as: "oidc/token.actions.githubusercontent.com",
			action: "sts:AssumeRoleWithWebIdentity", call: "ci-deployer", want: "ImplicitDeny",
			context: map[string]any{
				"token.actions.githubusercontent.com:sub": "repo:example/billing:ref:refs/heads/main",
				"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
			}},
	},
	"multi-team.yaml": {
		{name: "pat calls the payments API through the payments endpoint", as: "user/pat",
			call: "k7x2m9q4w1/prod/POST/payments", via: "vpce-01a2b3c4d5e6f7a8b", want: "Allow"},
		{name: "pat around the payments endpoint", as: "user/pat",
			call: "k7x2m9q4w1/prod/GET/payments", want: "ExplicitDeny"},
		{name: "pat at the search endpoint: not the search team (and not in pat's boundary)", as: "user/pat",
			call: "r3t8v5n1b6/prod/GET/search", via: "vpce-09f8e7d6c5b4a3928", want: "ExplicitDeny"},
		{name: "sam searches through the search endpoint", as: "user/sam",
			call: "r3t8v5n1b6/prod/GET/search", via: "vpce-09f8e7d6c5b4a3928", want: "Allow"},
		{name: "sam's search credentials at the payments endpoint", as: "user/sam",
			call: "k7x2m9q4w1/prod/GET/payments", via: "vpce-01a2b3c4d5e6f7a8b", want: "ExplicitDeny"},
		{name: "pat assumes developer tagged with pat's own team", as: "user/pat", action: "sts:AssumeRole", call: "developer",
			context: map[string]any{"aws:RequestTag/team": "payments", "aws:TagKeys": []string{"team"}}, want: "Allow"},
		{name: "pat cannot tag a developer session with another team", as: "user/pat", action: "sts:AssumeRole", call: "developer",
			context: map[string]any{"aws:RequestTag/team": "search", "aws:TagKeys": []string{"team"}}, want: "ImplicitDeny"},
		{name: "pat cannot assume developer without the session tag", as: "user/pat", action: "sts:AssumeRole", call: "developer",
			want: "ImplicitDeny"},
		{name: "a developer session tagged search reads the search API", as: "role/developer",
			call: "r3t8v5n1b6/prod/GET/indexes/products", via: "vpce-09f8e7d6c5b4a3928",
			context: map[string]any{"aws:PrincipalTag/team": "search"}, want: "Allow"},
		{name: "the developer boundary keeps prod read-only", as: "role/developer",
			call: "r3t8v5n1b6/prod/DELETE/indexes/products", via: "vpce-09f8e7d6c5b4a3928",
			context: map[string]any{"aws:PrincipalTag/team": "search"}, want: "ImplicitDeny"},
		{name: "staging writes are allowed to developer sessions", as: "role/developer",
			call: "r3t8v5n1b6/staging/PUT/indexes/products", via: "vpce-09f8e7d6c5b4a3928",
			context: map[string]any{"aws:PrincipalTag/team": "search"}, want: "Allow"},
		{name: "a developer session tagged search at the payments API", as: "role/developer",
			call: "k7x2m9q4w1/prod/GET/payments", via: "vpce-01a2b3c4d5e6f7a8b",
			context: map[string]any{"aws:PrincipalTag/team": "search"}, want: "ExplicitDeny"},
	},
	"ci-oidc.yaml": {
		{name: "a production job of acme/inventory gets deployer", as: "oidc/token.actions.githubusercontent.com",
			action: "sts:AssumeRoleWithWebIdentity", call: "deployer", want: "Allow",
			context: map[string]any{
				"token.actions.githubusercontent.com:sub": "repo:acme/inventory:environment:production",
				"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
			}},
		{name: "a pull request's job does not get deployer", as: "oidc/token.actions.githubusercontent.com",
			action: "sts:AssumeRoleWithWebIdentity", call: "deployer", want: "ImplicitDeny",
			context: map[string]any{
				"token.actions.githubusercontent.com:sub": "repo:acme/inventory:pull_request",
				"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
			}},
		{name: "a pull request's job gets ci-reader", as: "oidc/token.actions.githubusercontent.com",
			action: "sts:AssumeRoleWithWebIdentity", call: "ci-reader", want: "Allow",
			context: map[string]any{
				"token.actions.githubusercontent.com:sub": "repo:acme/inventory:pull_request",
				"token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
			}},
		{name: "a token for another audience gets nothing", as: "oidc/token.actions.githubusercontent.com",
			action: "sts:AssumeRoleWithWebIdentity", call: "ci-reader", want: "ImplicitDeny",
			context: map[string]any{
				"token.actions.githubusercontent.com:sub": "repo:acme/inventory:pull_request",
				"token.actions.githubusercontent.com:aud": "https://github.com/acme",
			}},
		{name: "deployer deploys inventory from the runners", as: "role/deployer",
			call: "d3p10y4p1z/prod/POST/services/inventory/deployments", via: "vpce-0c1a2b3d4e5f60789", want: "Allow"},
		{name: "deployer may not deploy another service", as: "role/deployer",
			call: "d3p10y4p1z/prod/POST/services/billing/deployments", via: "vpce-0c1a2b3d4e5f60789", want: "ImplicitDeny"},
		{name: "deployer may not roll back", as: "role/deployer",
			call: "d3p10y4p1z/prod/POST/services/inventory/rollbacks", via: "vpce-0c1a2b3d4e5f60789", want: "ImplicitDeny"},
		{name: "deployer credentials outside the runners' endpoint", as: "role/deployer",
			call: "d3p10y4p1z/prod/POST/services/inventory/deployments", want: "ExplicitDeny"},
		{name: "ci-reader reads a deployment", as: "role/ci-reader",
			call: "d3p10y4p1z/prod/GET/services/inventory/deployments/42", via: "vpce-0c1a2b3d4e5f60789", want: "Allow"},
		{name: "ci-reader cannot deploy", as: "role/ci-reader",
			call: "d3p10y4p1z/prod/POST/services/inventory/deployments", via: "vpce-0c1a2b3d4e5f60789", want: "ImplicitDeny"},
	},
	"workloads.yaml": {
		{name: "the ledger batch node writes an entry", as: "node/ledger-batch-1",
			call: "l3dg3r8k2w/prod/POST/entries", via: "vpce-0d4c3b2a1f0e9d8c7", want: "Allow"},
		{name: "not at phantom:RiskLevel high", as: "node/ledger-batch-1",
			call: "l3dg3r8k2w/prod/POST/entries", via: "vpce-0d4c3b2a1f0e9d8c7",
			context: map[string]any{"phantom:RiskLevel": "high"}, want: "ExplicitDeny"},
		{name: "medium risk still writes", as: "node/ledger-batch-1",
			call: "l3dg3r8k2w/prod/POST/entries", via: "vpce-0d4c3b2a1f0e9d8c7",
			context: map[string]any{"phantom:RiskLevel": "medium"}, want: "Allow"},
		{name: "the node's credentials from another address", as: "node/ledger-batch-1",
			call: "l3dg3r8k2w/prod/GET/balances", via: "vpce-0d4c3b2a1f0e9d8c7",
			context: map[string]any{"aws:SourceIp": "10.30.9.99"}, want: "ExplicitDeny"},
		{name: "checkout places an order", as: "node/checkout-2",
			call: "o7r3d5x1q9/prod/POST/orders", via: "vpce-0d4c3b2a1f0e9d8c7", want: "Allow"},
		{name: "checkout cannot read the ledger", as: "node/checkout-1",
			call: "l3dg3r8k2w/prod/GET/balances", via: "vpce-0d4c3b2a1f0e9d8c7", want: "ImplicitDeny"},
		{name: "reporting reads both APIs but writes neither", as: "node/reporting-1",
			call: "o7r3d5x1q9/prod/POST/orders", via: "vpce-0d4c3b2a1f0e9d8c7", want: "ImplicitDeny"},
		{name: "reporting reads the ledger", as: "node/reporting-1",
			call: "l3dg3r8k2w/prod/GET/entries/2024-001", via: "vpce-0d4c3b2a1f0e9d8c7", want: "Allow"},
		{name: "a node of the VPC gets its role", as: "node/reporting-1", action: "sts:AssumeRole", call: "reporting", want: "Allow"},
		{name: "a node outside the VPC does not", as: "node/reporting-1", action: "sts:AssumeRole", call: "reporting",
			context: map[string]any{"aws:EC2InstanceSourceVPC": "vpc-0123456789abcdef0"}, want: "ImplicitDeny"},
	},
}

// TestExamples runs the built binary over every perimeter in examples/: `config validate`
// must accept it, and `policy simulate` must decide the calls exampleCalls names for it
// as the table says. The policy sets are assembled from the loaded spec as the gateway
// (internal/gateway buildSet) and STS (internal/sts) assemble them: for an API call the
// caller's identity policies, permissions boundary, the API's resource policy and the
// endpoint's policy, with the global condition keys of the request; for AssumeRole the
// trust policy and the caller's identity side, each of which must allow every action
// (sts:TagSession too when tags are passed); for a node or a web identity, the trust
// policy alone. A trust policy on its own is decided as STS decides it, by
// policy.Set.Admits (a statement naming the account admits the account's principals,
// whose identity side decides next), which `policy simulate` does not offer: those
// cases run in-process on the same engine.
func TestExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	bin := buildPhantom(t)
	for _, file := range files {
		base := filepath.Base(file)
		t.Run(base, func(t *testing.T) {
			calls := exampleCalls[base]
			var allows, denies int
			for _, c := range calls {
				if c.want == "Allow" {
					allows++
				} else {
					denies++
				}
			}
			if allows == 0 || denies == 0 {
				t.Fatalf("exampleCalls[%q] must name at least one allowed and one denied call (has %d and %d)", base, allows, denies)
			}

			out, err := exec.Command(bin, "config", "validate", file).CombinedOutput()
			if err != nil || !strings.Contains(string(out), ": valid: ") {
				t.Fatalf("phantom config validate %s: %v\n%s", file, err, out)
			}
			spec, err := config.Load(file)
			if err != nil {
				t.Fatal(err)
			}

			// Every call's cases go to one simulate run; owner maps each case back. Trust
			// sides are decided in-process first.
			var cases []simulate.Case
			var owner []int
			got := make([]string, len(calls))
			why := make([]string, len(calls))
			for i, c := range calls {
				cs, trust, err := exampleCases(spec, c)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				cases = append(cases, cs...)
				for range cs {
					owner = append(owner, i)
				}
				for _, tc := range trust {
					d, err := admits(tc)
					if err != nil {
						t.Fatalf("%s: %v", c.name, err)
					}
					if got[i] == "" || got[i] == "Allow" {
						got[i], why[i] = d.Effect.String(), "trust policy: "+d.Reason
					}
				}
			}
			in, err := json.Marshal(cases)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "policy", "simulate", "--input", "-")
			cmd.Stdin = strings.NewReader(string(in))
			res, err := cmd.Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				t.Fatalf("phantom policy simulate: %v\n%s", err, stderr)
			}
			var results []simulate.Result
			if err := json.Unmarshal(res, &results); err != nil || len(results) != len(cases) {
				t.Fatalf("simulate printed %d results for %d cases (%v):\n%s", len(results), len(cases), err, res)
			}

			// A call is allowed when all its cases are; otherwise it takes the first
			// explicit deny, else the first implicit one.
			for j, r := range results {
				i := owner[j]
				switch {
				case got[i] == "" || got[i] == "Allow":
					got[i], why[i] = r.Decision, r.Reason
				case got[i] == "ImplicitDeny" && r.Decision == "ExplicitDeny":
					got[i], why[i] = r.Decision, r.Reason
				}
			}
			for i, c := range calls {
				if got[i] != c.want {
					t.Errorf("%s: %s %s %s: got %s, want %s (%s)", c.name, c.as, orDefault(c.action, "execute-api:Invoke"), c.call, got[i], c.want, why[i])
				}
			}
		})
	}
	for name := range exampleCalls {
		if !slices.Contains(files, filepath.Join("../../examples", name)) {
			t.Errorf("exampleCalls names %s, which is not in examples/", name)
		}
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// exampleCases turns a call into the simulate cases that decide it, and the trust-policy
// cases that must admit the caller (admits).
func exampleCases(s *config.Spec, c exampleCall) (cases, trustSide []simulate.Case, err error) {
	kind, name, _ := strings.Cut(c.as, "/")
	action := orDefault(c.action, "execute-api:Invoke")
	ctx := map[string]any{
		"aws:SecureTransport": "true",
		"aws:RequestedRegion": s.Region,
		"aws:CurrentTime":     "2026-01-15T12:00:00Z",
		"aws:EpochTime":       "1768478400",
	}
	var (
		principal string
		identity  []simulate.Policy
		node      *config.Node
	)
	setPrincipal := func(arn, typ string, tags map[string]string) {
		ctx["aws:PrincipalArn"], ctx["aws:PrincipalAccount"], ctx["aws:PrincipalType"] = arn, s.Account, typ
		for k, v := range tags {
			ctx["aws:PrincipalTag/"+k] = v
		}
	}
	roleSession := func(role string, session string) error {
		r, ok := s.Role(role)
		if !ok {
			return fmt.Errorf("no role %s in the spec", role)
		}
		principal = "arn:aws:sts::" + s.Account + ":assumed-role/" + r.Name + "/" + session
		setPrincipal(r.ARN, "AssumedRole", r.Tags)
		identity = identitySide(r.Policies, r.ManagedPolicies, r.PermissionsBoundary)
		return nil
	}
	switch kind {
	case "user":
		u, ok := s.User(name)
		if !ok {
			return nil, nil, fmt.Errorf("no user %s in the spec", name)
		}
		principal = u.ARN
		setPrincipal(u.ARN, "User", u.Tags)
		ctx["aws:username"] = u.Name
		identity = identitySide(u.Policies, u.ManagedPolicies, u.PermissionsBoundary)
	case "role":
		if err := roleSession(name, "examples-test"); err != nil {
			return nil, nil, err
		}
	case "node":
		n, ok := s.Node(name)
		if !ok {
			return nil, nil, fmt.Errorf("no node %s in the spec", name)
		}
		node = n
		if action != "sts:AssumeRole" {
			if err := roleSession(n.Role, n.Name); err != nil {
				return nil, nil, err
			}
			ctx["aws:EC2InstanceSourceVPC"] = n.VPC
			ctx["aws:EC2InstanceSourcePrivateIPv4"] = n.PrivateIP.String()
			ctx["aws:SourceIp"] = n.PrivateIP.String()
		}
	case "oidc":
	default:
		return nil, nil, fmt.Errorf("caller %q: want user/, role/, node/ or oidc/", c.as)
	}

	var out []simulate.Case
	add := func(ps []simulate.Policy, principal, resource string) error {
		for k, v := range c.context {
			ctx[k] = v
		}
		raw := map[string]json.RawMessage{}
		for k, v := range ctx {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			raw[k] = b
		}
		out = append(out, simulate.Case{Policies: ps, Request: simulate.Request{
			Principal: principal, Action: action, Resource: resource, ResourceAccount: s.Account, Context: raw}})
		return nil
	}

	if action == "execute-api:Invoke" {
		if kind == "oidc" {
			return nil, nil, fmt.Errorf("a web identity calls APIs with the role session it gets: use role/NAME")
		}
		api, err := checkRoute(s, c.call)
		if err != nil {
			return nil, nil, err
		}
		ps := slices.Clone(identity)
		if api.ResourcePolicy != nil {
			ps = append(ps, simulate.Policy{Type: "resource", Document: api.ResourcePolicy.Document})
		}
		if c.via != "" {
			ep, ok := s.Endpoint(c.via)
			if !ok || !slices.Contains(ep.APIs, api.ID) {
				return nil, nil, fmt.Errorf("endpoint %s does not serve API %s", c.via, api.ID)
			}
			ctx["aws:SourceVpce"], ctx["aws:SourceVpc"] = ep.ID, ep.VPC
			if ep.Policy != nil {
				ps = append(ps, simulate.Policy{Type: "endpoint", Document: ep.Policy.Document})
			}
		}
		return out, nil, add(ps, principal, "arn:aws:execute-api:"+s.Region+":"+s.Account+":"+c.call)
	}

	role, ok := s.Role(c.call)
	if !ok {
		return nil, nil, fmt.Errorf("no role %s in the spec", c.call)
	}
	trust := []simulate.Policy{{Type: "resource", Document: role.TrustPolicy.Document}}
	switch {
	case kind == "oidc" && action == "sts:AssumeRoleWithWebIdentity":
		p, ok := s.OIDCProvider("https://" + name)
		if !ok {
			return nil, nil, fmt.Errorf("no OIDC provider https://%s in the spec", name)
		}
		ctx["aws:FederatedProvider"] = p.ARN
		return out, nil, add(trust, p.ARN, role.ARN)
	case kind == "node" && action == "sts:AssumeRole":
		// internal/sts nodeTrusted: the account acting as the EC2 service, the node's
		// network in the context, the node's name as the session name.
		root := "arn:aws:iam::" + s.Account + ":root"
		ctx["aws:PrincipalArn"], ctx["aws:PrincipalAccount"], ctx["aws:PrincipalType"] = root, s.Account, "AWSService"
		ctx["aws:PrincipalServiceName"] = "ec2.amazonaws.com"
		ctx["aws:EC2InstanceSourceVPC"] = node.VPC
		ctx["aws:EC2InstanceSourcePrivateIPv4"] = node.PrivateIP.String()
		ctx["sts:RoleSessionName"] = node.Name
		err := add(trust, root, role.ARN)
		return nil, out, err
	case (kind == "user" || kind == "role") && action == "sts:AssumeRole":
		// internal/sts authorizer: the trust policy and the caller's identity side must
		// each allow sts:AssumeRole, and sts:TagSession when the call passes tags.
		ctx["sts:RoleSessionName"] = "examples-test"
		actions := []string{"sts:AssumeRole"}
		if _, tagged := c.context["aws:TagKeys"]; tagged {
			actions = append(actions, "sts:TagSession")
		}
		var trustSide []simulate.Case
		for _, a := range actions {
			action = a
			if err := add(trust, principal, role.ARN); err != nil {
				return nil, nil, err
			}
			trustSide = append(trustSide, out[len(out)-1])
			out = out[:len(out)-1]
			if err := add(identity, principal, role.ARN); err != nil {
				return nil, nil, err
			}
		}
		return out, trustSide, nil
	}
	return nil, nil, fmt.Errorf("%s by %s is not a call this test knows how to assemble", action, c.as)
}

// admits decides a trust-policy case as internal/sts does: the trust policy on its own,
// by policy.Set.Admits.
func admits(c simulate.Case) (policy.Decision, error) {
	var entries []policy.Entry
	for _, p := range c.Policies {
		pol, err := policy.ParseKind(p.Document, policy.Kind(p.Type))
		if err != nil {
			return policy.Decision{}, err
		}
		entries = append(entries, policy.Entry{Kind: policy.Kind(p.Type), Policy: pol})
	}
	ctx := policy.NewContext(nil)
	for k, raw := range c.Request.Context {
		var one string
		var many []string
		switch {
		case json.Unmarshal(raw, &one) == nil:
			ctx.Set(k, one)
		case json.Unmarshal(raw, &many) == nil:
			ctx.SetMultivalued(k, many...)
		default:
			return policy.Decision{}, fmt.Errorf("context key %s: %s is neither a string nor a list of strings", k, raw)
		}
	}
	r := c.Request
	return policy.NewSet(entries...).Admits(&policy.Request{Principal: r.Principal, Action: r.Action,
		Resource: r.Resource, ResourceAccount: r.ResourceAccount, Context: ctx}), nil
}

// identitySide is a principal's identity-based policies and permissions boundary.
func identitySide(inline []*config.Policy, managed []*config.ManagedPolicy, boundary *config.ManagedPolicy) []simulate.Policy {
	var out []simulate.Policy
	for _, p := range inline {
		out = append(out, simulate.Policy{Type: "identity", Document: p.Document})
	}
	for _, mp := range managed {
		out = append(out, simulate.Policy{Type: "identity", Document: mp.Policy.Document})
	}
	if boundary != nil {
		out = append(out, simulate.Policy{Type: "boundary", Document: boundary.Policy.Document})
	}
	return out
}

// checkRoute finds the API of API/STAGE/METHOD/PATH and checks that the stage and a
// route for the method and path exist, so that a typo in the table cannot pass as a
// denial.
func checkRoute(s *config.Spec, call string) (*config.API, error) {
	parts := strings.SplitN(call, "/", 4)
	if len(parts) != 4 {
		return nil, fmt.Errorf("call %q: want API/STAGE/METHOD/PATH", call)
	}
	api, ok := s.API(parts[0])
	if !ok {
		return nil, fmt.Errorf("no API %s in the spec", parts[0])
	}
	if !slices.Contains(api.Stages, parts[1]) {
		return nil, fmt.Errorf("API %s has no stage %s", api.ID, parts[1])
	}
	segs := strings.Split(parts[3], "/")
	for _, r := range api.Routes {
		if (slices.Contains(r.Methods, parts[2]) || slices.Contains(r.Methods, "ANY")) && routeMatches(r.Segments, segs) {
			return api, nil
		}
	}
	return nil, fmt.Errorf("API %s has no route for %s /%s", api.ID, parts[2], parts[3])
}

func routeMatches(tmpl []config.Segment, segs []string) bool {
	for i, t := range tmpl {
		switch {
		case t.Kind == config.Greedy:
			return i < len(segs)
		case i >= len(segs):
			return false
		case t.Kind == config.Literal && t.Value != segs[i]:
			return false
		}
	}
	return len(tmpl) == len(segs)
}
