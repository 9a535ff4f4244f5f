// Package cfn owns the translation of a perimeter spec into an AWS CloudFormation template
// that builds the same architecture on AWS itself: private REST APIs with AWS_IAM
// authorization and their resource policies, execute-api interface VPC endpoints with
// their policies and security groups, IAM managed policies, users, roles, OIDC providers
// and instance profiles, workload security groups whose egress reflects the spec's egress
// rules, and a GuardDuty detector.
//
// Translate is a pure function of a validated *config.Spec: no I/O, no clock, no
// randomness, and every map is emitted in sorted key order, so one spec always gives the
// same bytes. What AWS cannot express (Phantom's listen ports, host-name egress, the
// phantom:* condition keys, ...) is translated fail-closed and listed in the template's
// Metadata. It does not deploy anything, and does not own the spec's validation
// (internal/config does).
package cfn

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// Template is a CloudFormation template. Field order is the conventional section order;
// maps are emitted sorted by key.
type Template struct {
	AWSTemplateFormatVersion string
	Description              string
	Metadata                 map[string]any
	Parameters               map[string]*Parameter
	Resources                map[string]*Resource
	Outputs                  map[string]*Output `json:",omitempty"`
}

// Parameter is a template parameter: the spec names VPCs but does not own networks, so
// the real VPC and subnet ids are supplied at deploy time.
type Parameter struct {
	Type        string
	Description string
}

// Resource is one resource of the template.
type Resource struct {
	Type       string
	DependsOn  []string       `json:",omitempty"`
	Metadata   map[string]any `json:",omitempty"`
	Properties map[string]any
}

// Output is one template output.
type Output struct {
	Description string
	Value       any
}

// Marshal encodes t as indented JSON ending in a newline. JSON rather than YAML: CloudFormation
// reads both, but JSON has one spelling of every value (no short-form !Sub tags, no
// implicit typing of "true" or "0123" strings), and encoding/json sorts map keys, so the
// output is byte-identical for the same spec.
func Marshal(t *Template) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "<" in a description is not HTML here
	enc.SetIndent("", "  ")
	if err := enc.Encode(t); err != nil {
		return nil, fmt.Errorf("encode template: %w", err)
	}
	return b.Bytes(), nil
}

// awsPort is the only port an execute-api interface endpoint serves: HTTPS.
const awsPort = 443

// Translate builds the CloudFormation template for s.
func Translate(s *config.Spec) (*Template, error) {
	x := newTranslator(s)
	x.allocate()
	x.parameters()
	if err := x.managedPolicies(); err != nil {
		return nil, err
	}
	if err := x.oidcProviders(); err != nil {
		return nil, err
	}
	if err := x.groups(); err != nil {
		return nil, err
	}
	if err := x.users(); err != nil {
		return nil, err
	}
	if err := x.roles(); err != nil {
		return nil, err
	}
	if err := x.apis(); err != nil {
		return nil, err
	}
	if err := x.endpoints(); err != nil {
		return nil, err
	}
	x.workloads()
	x.guardDuty()
	x.t.Metadata = x.metadata()
	return x.t, nil
}

// translator holds the template being built and the logical ids allocated for the spec's
// names, so every cross-reference is resolved the same way.
type translator struct {
	s *config.Spec
	t *Template

	used map[string]bool // logical ids taken (resources, parameters, outputs)

	managed     map[string]string // managed policy name -> logical id
	groupIDs    map[string]string // group name -> logical id
	userIDs     map[string]string // user name -> logical id
	roleIDs     map[string]string // role name -> logical id
	oidc        map[string]string // OIDC provider ARN -> logical id
	apiIDs      map[string]string // API id -> RestApi logical id
	endpointIDs map[string]string // endpoint id -> VPCEndpoint logical id
	endpointSGs map[string]string // endpoint id -> its security group's logical id
	vpcParams   map[string]string // spec VPC id -> VpcId parameter
	subnets     map[string]string // spec VPC id -> SubnetIds parameter
	profiles    map[string]string // role name -> instance profile logical id (node roles)

	// conditions records what phantom:* keys did to each policy; notExpressed records
	// what the spec says that AWS cannot. Both end up in Metadata, in spec order.
	conditions   []string
	notExpressed []string
}

func newTranslator(s *config.Spec) *translator {
	return &translator{
		s: s,
		t: &Template{
			AWSTemplateFormatVersion: "2010-09-09",
			Parameters:               map[string]*Parameter{},
			Resources:                map[string]*Resource{},
			Outputs:                  map[string]*Output{},
		},
		used:        map[string]bool{},
		managed:     map[string]string{},
		groupIDs:    map[string]string{},
		userIDs:     map[string]string{},
		roleIDs:     map[string]string{},
		oidc:        map[string]string{},
		apiIDs:      map[string]string{},
		endpointIDs: map[string]string{},
		endpointSGs: map[string]string{},
		vpcParams:   map[string]string{},
		subnets:     map[string]string{},
		profiles:    map[string]string{},
	}
}

// allocate reserves the logical ids of everything other resources refer to, in spec
// order, before any resource is built.
func (x *translator) allocate() {
	for _, mp := range x.s.ManagedPolicies {
		x.managed[mp.Name] = x.id("ManagedPolicy", mp.Name)
	}
	for _, g := range x.s.Groups {
		x.groupIDs[g.Name] = x.id("Group", g.Name)
	}
	for _, u := range x.s.Users {
		x.userIDs[u.Name] = x.id("User", u.Name)
	}
	for _, r := range x.s.Roles {
		x.roleIDs[r.Name] = x.id("Role", r.Name)
	}
	for _, p := range x.s.OIDCProviders {
		x.oidc[p.ARN] = x.id("OIDCProvider", p.Name)
	}
	for _, a := range x.s.APIs {
		x.apiIDs[a.ID] = x.id("RestApi", a.ID)
	}
	for _, e := range x.s.Endpoints {
		x.endpointIDs[e.ID] = x.id("VpcEndpoint", e.ID)
		x.endpointSGs[e.ID] = x.id("EndpointSecurityGroup", e.ID)
		x.vpc(e.VPC)
		if _, ok := x.subnets[e.VPC]; !ok {
			x.subnets[e.VPC] = x.id("SubnetIds", e.VPC)
		}
	}
	for _, n := range x.s.Nodes {
		x.vpc(n.VPC)
		if _, ok := x.profiles[n.Role]; !ok {
			x.profiles[n.Role] = x.id("InstanceProfile", n.Role)
		}
	}
}

func (x *translator) vpc(id string) {
	if _, ok := x.vpcParams[id]; !ok {
		x.vpcParams[id] = x.id("VpcId", id)
	}
}

// maxLogicalID is CloudFormation's limit on a logical id's length.
const maxLogicalID = 255

// id returns a new logical id: prefix and the name's alphanumeric runs, each capitalised
// (service-a -> ServiceA). CloudFormation allows only [A-Za-z0-9]; names that collide
// once reduced (service-a and service_a) get a short hash of the full name, so ids depend
// only on the spec, never on map order.
func (x *translator) id(prefix, name string) string {
	base := prefix + camel(name)
	if len(base) > maxLogicalID-64 {
		base = base[:maxLogicalID-64]
	}
	if !x.used[base] {
		x.used[base] = true
		return base
	}
	h := sha256.Sum256([]byte(prefix + "\x00" + name))
	sum := strings.ToUpper(hex.EncodeToString(h[:]))
	for _, n := range []int{8, 16, 64} {
		if id := base + sum[:n]; !x.used[id] {
			x.used[id] = true
			return id
		}
	}
	panic("cfn: no free logical id for " + prefix + " " + name) // needs a SHA-256 collision
}

// camel keeps ASCII letters and digits, capitalising the first letter of each run.
func camel(s string) string {
	var b strings.Builder
	up := true
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z':
			if up {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			up = false
		case r >= 'A' && r <= 'Z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			up = false
		default:
			up = true
		}
	}
	return b.String()
}

// Intrinsic functions.

func ref(id string) map[string]any { return map[string]any{"Ref": id} }

func getAtt(id, attr string) map[string]any {
	return map[string]any{"Fn::GetAtt": []any{id, attr}}
}

func sub(s string) map[string]any { return map[string]any{"Fn::Sub": s} }

// subEscape makes literal text safe inside Fn::Sub, where ${x} is a reference and ${!x}
// is the literal ${x} (IAM policy variables such as ${aws:username} must stay literal).
func subEscape(s string) string { return strings.ReplaceAll(s, "${", "${!") }

func (x *translator) add(id, typ string, props map[string]any) *Resource {
	r := &Resource{Type: typ, Properties: props}
	x.t.Resources[id] = r
	return r
}

// note records something the spec says that the template cannot, once.
func (x *translator) note(format string, args ...any) {
	if n := fmt.Sprintf(format, args...); !slices.Contains(x.notExpressed, n) {
		x.notExpressed = append(x.notExpressed, n)
	}
}

func (x *translator) parameters() {
	for vpc, id := range x.vpcParams {
		x.t.Parameters[id] = &Parameter{
			Type:        "AWS::EC2::VPC::Id",
			Description: fmt.Sprintf("The VPC the perimeter spec calls %s: its endpoints and workloads are placed here", vpc),
		}
	}
	for vpc, id := range x.subnets {
		x.t.Parameters[id] = &Parameter{
			Type:        "List<AWS::EC2::Subnet::Id>",
			Description: fmt.Sprintf("Subnets of the VPC the spec calls %s for its execute-api interface endpoints (one per Availability Zone)", vpc),
		}
	}
}

func (x *translator) guardDuty() {
	x.add("GuardDutyDetector", "AWS::GuardDuty::Detector", map[string]any{
		"Enable":                     true,
		"FindingPublishingFrequency": "FIFTEEN_MINUTES",
	})
	if len(x.s.Detection.Responses) > 0 {
		x.note("detection.responses (automatic revokeSessions, disableAccessKey, raiseRiskLevel, notify) are not generated: on AWS they are EventBridge rules on GuardDuty findings invoking your own automation")
	}
	if len(x.s.Detection.ThreatLists) > 0 {
		x.note("detection.threatLists are local files; upload them to S3 and add AWS::GuardDuty::ThreatIntelSet resources")
	}
	x.note("GuardDuty allows one detector per account and Region: remove GuardDutyDetector when one already exists")
}

func (x *translator) metadata() map[string]any {
	digest := hex.EncodeToString(x.s.Digest[:])
	x.t.Description = fmt.Sprintf("Phantom perimeter %s (account %s, %s) on AWS: private REST APIs with AWS_IAM authorization behind execute-api interface VPC endpoints that admit only HTTPS on 443, IAM users, roles and policies, workload security groups and GuardDuty. Generated by phantom export cloudformation.",
		filepath.Base(x.s.File), x.s.Account, x.s.Region)
	m := map[string]any{
		"Source": map[string]any{"File": filepath.Base(x.s.File), "SHA256": digest, "Account": x.s.Account, "Region": x.s.Region},
		"Ports": "Phantom's endpoint listen ports (the spec's listen and ingress ports) are where Phantom itself listens. " +
			"An execute-api interface endpoint on AWS serves HTTPS on port 443 only, so every endpoint security group here admits TCP 443 from the spec's ingress CIDRs, " +
			"and workload egress to an API is TCP 443 to the endpoint's security group.",
		"AccountAndRegion": "ARNs in the spec's account and Region are written with the pseudo parameters AWS::AccountId, AWS::Region and AWS::Partition; spec API ids, endpoint ids and VPC ids are replaced by references to the resources and parameters that stand for them.",
		"PhantomConditionKeys": "phantom:* condition keys (phantom:RiskLevel) exist only in Phantom; AWS cannot evaluate them. " +
			"The translation fails closed: an Allow statement that depends on a phantom:* key (a condition on it, or a phantom: policy variable anywhere) is dropped, because AWS could not limit it to the risk levels the spec allows; " +
			"a Deny statement keeps its AWS conditions and loses only the phantom:* ones, as if they held, so it applies at least whenever Phantom would apply it (a Deny conditioned only on phantom:* becomes unconditional). " +
			"A policy left with no statements gets one that matches nothing (Deny NotAction *), so an endpoint policy never falls back to AWS's full-access default.",
		"Deploy": "aws cloudformation deploy --template-file TEMPLATE --stack-name NAME --capabilities CAPABILITY_NAMED_IAM --parameter-overrides " + x.paramExample(),
	}
	if len(x.conditions) > 0 {
		m["PhantomConditionTranslations"] = x.conditions
	}
	if len(x.notExpressed) > 0 {
		m["NotExpressed"] = x.notExpressed
	}
	return map[string]any{"Phantom": m}
}

func (x *translator) paramExample() string {
	var parts []string
	for _, e := range x.s.Endpoints {
		id := x.subnets[e.VPC]
		p := id + "=subnet-aaaa,subnet-bbbb"
		if !slices.Contains(parts, p) {
			parts = append(parts, x.vpcParams[e.VPC]+"=vpc-...", p)
		}
	}
	for _, n := range x.s.Nodes {
		if p := x.vpcParams[n.VPC] + "=vpc-..."; !slices.Contains(parts, p) {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}
