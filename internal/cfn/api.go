package cfn

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// API Gateway REST API integration timeouts ("Amazon API Gateway quotas"): 50 ms to 29 s
// by default.
const (
	minIntegrationMillis = 50
	maxIntegrationMillis = 29000
)

// apiResource is one AWS::ApiGateway::Resource: a path segment under its parent.
type apiResource struct {
	id    string // logical id; "" for the API's root resource
	param string // the path parameter this segment binds, if any
}

func (x *translator) apis() error {
	for _, a := range x.s.APIs {
		if err := x.api(a); err != nil {
			return err
		}
	}
	return nil
}

func (x *translator) api(a *config.API) error {
	apiID := x.apiIDs[a.ID]
	pol, err := x.resourcePolicy(a)
	if err != nil {
		return err
	}
	props := map[string]any{
		"Name":                  a.Name,
		"EndpointConfiguration": map[string]any{"Types": []any{"PRIVATE"}},
		"Policy":                pol,
	}
	if a.Description != "" {
		props["Description"] = a.Description
	}
	x.add(apiID, "AWS::ApiGateway::RestApi", props)

	// API Gateway models a path as a tree of resources; routes share their prefixes.
	// Shapes ({} for any parameter name) key the tree because API Gateway allows one
	// parameter child per parent: /orders/{id} and /orders/{oid}/items share {id}.
	tree := map[string]apiResource{"": {}}
	var methods, own []string // own: the API's resources and methods
	for _, r := range a.Routes {
		shape, texts := "", []string{}
		var params []string
		parent := apiResource{}
		for _, seg := range r.Segments {
			part := seg.Value
			key := seg.Value
			switch seg.Kind {
			case config.Param:
				part, key = "{"+seg.Value+"}", "{}"
			case config.Greedy:
				part, key = "{"+seg.Value+"+}", "{+}"
			}
			shape += "/" + key
			texts = append(texts, seg.Value)
			res, ok := tree[shape]
			if !ok {
				res = apiResource{id: x.id("ApiResource"+camel(a.ID), strings.Join(texts, "-"))}
				if seg.Kind != config.Literal {
					res.param = seg.Value
				}
				x.add(res.id, "AWS::ApiGateway::Resource", map[string]any{
					"RestApiId": ref(apiID),
					"ParentId":  x.resourceRef(apiID, parent),
					"PathPart":  part,
				})
				tree[shape] = res
				own = append(own, res.id)
			}
			if res.param != "" {
				params = append(params, res.param)
			}
			parent = res
		}
		uri := x.integrationURI(r, tree)
		for _, m := range r.Methods {
			name := "Root"
			if len(texts) > 0 {
				name = strings.Join(texts, "-")
			}
			id := x.id("Method"+camel(a.ID), name+"-"+m)
			methods = append(methods, id)
			own = append(own, id)
			x.add(id, "AWS::ApiGateway::Method", x.method(apiID, parent, r, m, uri, params))
		}
	}
	slices.Sort(methods)

	// The deployment's logical id carries a digest of the API's resources and methods:
	// CloudFormation creates a deployment only when its logical id is new, so any change
	// to the API deploys again on a stack update instead of leaving the stage stale.
	h := sha256.New()
	for _, id := range append([]string{apiID}, own...) {
		b, err := json.Marshal(x.t.Resources[id])
		if err != nil {
			return fmt.Errorf("API %s: %w", a.ID, err)
		}
		h.Write(b)
	}
	digest := strings.ToUpper(hex.EncodeToString(h.Sum(nil))[:8])
	for _, stage := range a.Stages {
		dep := x.id("Deployment"+camel(a.ID), stage+"-"+digest)
		d := x.add(dep, "AWS::ApiGateway::Deployment", map[string]any{
			"RestApiId":   ref(apiID),
			"Description": fmt.Sprintf("API %s (%s), stage %s, content %s", a.ID, a.Name, stage, digest),
		})
		// A deployment of an API without its methods fails ("The REST API doesn't
		// contain any methods"); nothing else orders them.
		d.DependsOn = methods
		st := x.id("Stage"+camel(a.ID), stage)
		x.add(st, "AWS::ApiGateway::Stage", map[string]any{
			"RestApiId":    ref(apiID),
			"DeploymentId": ref(dep),
			"StageName":    stage,
		})
		x.t.Outputs[x.id("InvokeUrl"+camel(a.ID), stage)] = &Output{
			Description: fmt.Sprintf("Invoke URL of API %s (%s), stage %s, from inside a VPC with its execute-api endpoint (private DNS)", a.ID, a.Name, stage),
			Value:       sub("https://${" + apiID + "}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + stage),
		}
	}
	return nil
}

func (x *translator) resourceRef(apiID string, r apiResource) any {
	if r.id == "" {
		return getAtt(apiID, "RootResourceId")
	}
	return ref(r.id)
}

func (x *translator) method(apiID string, res apiResource, r *config.Route, method, uri string, params []string) map[string]any {
	auth := "AWS_IAM"
	if r.Authorization == config.AuthNone {
		auth = "NONE"
	}
	ms := r.Backend.Timeout.Milliseconds()
	if ms > maxIntegrationMillis {
		x.note("backend %s: timeout %s is over API Gateway's default integration timeout of 29s; it is capped at 29s", r.Backend.Name, r.Backend.Timeout)
		ms = maxIntegrationMillis
	}
	ms = max(ms, minIntegrationMillis)
	integration := map[string]any{
		"Type":                  "HTTP_PROXY",
		"IntegrationHttpMethod": method,
		"Uri":                   uri,
		"TimeoutInMillis":       ms,
	}
	props := map[string]any{
		"RestApiId":         ref(apiID),
		"ResourceId":        x.resourceRef(apiID, res),
		"HttpMethod":        method,
		"AuthorizationType": auth,
		"Integration":       integration,
	}
	if len(params) > 0 {
		mp, ip := map[string]any{}, map[string]any{}
		for _, p := range params {
			mp["method.request.path."+p] = true
			ip["integration.request.path."+p] = "method.request.path." + p
		}
		props["RequestParameters"] = mp
		integration["RequestParameters"] = ip
	}
	return props
}

// integrationURI is the backend URL of a route: Phantom's gateway sends the path after
// the stage, appended to the backend URL's path; API Gateway does the same when the URI
// names the path parameters (a greedy {proxy+} is {proxy} in the URI).
func (x *translator) integrationURI(r *config.Route, tree map[string]apiResource) string {
	u := r.Backend.URL
	if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); (err == nil && (a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast())) || u.Hostname() == "localhost" {
		x.note("backend %s at %s is not reachable from API Gateway: an HTTP_PROXY integration calls a public endpoint; publish the backend over HTTPS or put it behind a VPC link (ConnectionType VPC_LINK to a Network Load Balancer) and change the integration", r.Backend.Name, u)
	}
	base := strings.TrimSuffix(u.String(), "/")
	if len(r.Segments) == 0 {
		if u.Path == "" || u.Path == "/" {
			return base + "/"
		}
		return base
	}
	parts := make([]string, len(r.Segments))
	shape := ""
	for i, seg := range r.Segments {
		switch seg.Kind {
		case config.Literal:
			shape += "/" + seg.Value
			parts[i] = seg.Value
		case config.Param:
			shape += "/{}"
			parts[i] = "{" + tree[shape].param + "}"
		case config.Greedy:
			shape += "/{+}"
			parts[i] = "{" + tree[shape].param + "}"
		}
	}
	return base + "/" + strings.Join(parts, "/")
}

// resourcePolicy translates the API's resource policy and adds what API Gateway needs
// to behave as Phantom's gateway does.
func (x *translator) resourcePolicy(a *config.API) (map[string]any, error) {
	var doc map[string]any
	var stmts []any
	if a.ResourcePolicy != nil {
		d, kept, err := x.policy(a.ResourcePolicy, &policyCtx{kind: resourcePolicy, what: "API " + a.ID + ", resource policy", api: a.ID})
		if err != nil {
			return nil, err
		}
		doc = d
		if kept > 0 {
			stmts = d["Statement"].([]any)
		}
	} else {
		// Without a resource policy Phantom lets the identity policies of the account's
		// principals decide. A private API on AWS without one cannot be invoked at all;
		// allowing the account as principal delegates to IAM, as Phantom does.
		doc = map[string]any{"Version": "2012-10-17"}
		stmts = []any{map[string]any{
			"Sid":       "PhantomAccountPrincipals",
			"Effect":    "Allow",
			"Principal": map[string]any{"AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root")},
			"Action":    "execute-api:Invoke",
			"Resource":  "execute-api:/*",
		}}
		x.note("API %s has no resource policy; the template gives it one allowing the account's principals (their identity policies decide, as in Phantom), because a private API without a resource policy cannot be invoked", a.ID)
	}
	// Phantom lets anyone call a NONE route unless a policy explicitly denies it; on AWS
	// an unauthenticated call needs an Allow for Principal * in the resource policy. The
	// spec's Deny statements still apply to it.
	none := routeResources(a, func(r *config.Route) bool { return r.Authorization == config.AuthNone })
	if len(none) > 0 {
		stmts = append(stmts, map[string]any{
			"Sid":       "PhantomUnauthenticatedRoutes",
			"Effect":    "Allow",
			"Principal": "*",
			"Action":    "execute-api:Invoke",
			"Resource":  none,
		})
		x.note("API %s: routes with authorization NONE need the endpoint policy to allow anonymous callers too; Phantom does not require that, AWS does", a.ID)
	}
	// longTermKeys: refuse. AWS sets aws:TokenIssueTime only for temporary credentials
	// ("AWS global condition context keys"), so a Deny where it is absent refuses calls
	// signed with long-term keys, as Phantom's gateway does.
	refuse := routeResources(a, func(r *config.Route) bool {
		return r.Authorization != config.AuthNone && r.LongTermKeys == config.LongTermKeysRefuse
	})
	if len(refuse) > 0 {
		stmts = append(stmts, map[string]any{
			"Sid":       "PhantomRefuseLongTermKeys",
			"Effect":    "Deny",
			"Principal": "*",
			"Action":    "execute-api:Invoke",
			"Resource":  refuse,
			"Condition": map[string]any{"Null": map[string]any{"aws:TokenIssueTime": "true"}},
		})
	}
	if len(stmts) == 0 {
		stmts = []any{nothingStatement(resourcePolicy)}
	}
	doc["Statement"] = stmts
	return doc, nil
}

// routeResources are the execute-api resources (every stage) of the routes of a that
// match: one per method, ANY as *.
func routeResources(a *config.API, match func(*config.Route) bool) []any {
	var out []any
	for _, r := range a.Routes {
		if !match(r) {
			continue
		}
		for _, m := range r.Methods {
			if m == "ANY" {
				m = "*"
			}
			out = append(out, "execute-api:/*/"+m+"/"+wildPath(r))
		}
	}
	return out
}

// wildPath is a route's path in an execute-api ARN: parameters match any text (*).
func wildPath(r *config.Route) string {
	parts := make([]string, len(r.Segments))
	for i, seg := range r.Segments {
		parts[i] = seg.Value
		if seg.Kind != config.Literal {
			parts[i] = "*"
		}
	}
	return strings.Join(parts, "/")
}
