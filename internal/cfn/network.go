package cfn

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// noEgress replaces a security group's default allow-all egress: CloudFormation removes
// the default rule only when SecurityGroupEgress lists some rule, and a rule to the
// loopback address lets nothing leave ("AWS::EC2::SecurityGroup", SecurityGroupEgress).
var noEgress = map[string]any{
	"IpProtocol":  "-1",
	"CidrIp":      "127.0.0.1/32",
	"Description": "No egress: replaces the default allow-all rule",
}

func (x *translator) endpoints() error {
	privateDNS := map[string]string{} // VPC -> endpoint that has execute-api private DNS
	for _, e := range x.s.Endpoints {
		sg := x.endpointSGs[e.ID]
		var ingress []any
		seen := map[netip.Prefix]bool{}
		for _, r := range e.Ingress {
			for _, p := range r.CIDRs {
				if p.Addr().IsLoopback() {
					// Loopback sources exist only on the host Phantom runs on.
					x.note("endpoint %s: ingress from loopback %s is Phantom-host only and has no AWS equivalent; it is left out", e.ID, p)
					continue
				}
				if seen[p] {
					continue
				}
				seen[p] = true
				ingress = append(ingress, cidrRule(map[string]any{
					"IpProtocol": "tcp", "FromPort": awsPort, "ToPort": awsPort,
					"Description": sgText(fmt.Sprintf("HTTPS from %s (Phantom listens on %s)", orDefault(r.Description, "the spec"), ports(r.Ports))),
				}, p))
			}
		}
		props := map[string]any{
			"GroupDescription":    sgText("Phantom endpoint " + e.ID + ": HTTPS (TCP 443) from the ingress CIDRs of the spec only"),
			"VpcId":               ref(x.vpcParams[e.VPC]),
			"SecurityGroupEgress": []any{noEgress},
		}
		if len(ingress) > 0 {
			props["SecurityGroupIngress"] = ingress
		} else {
			x.note("endpoint %s: no ingress CIDR applies on AWS, so its security group admits nothing", e.ID)
		}
		res := x.add(sg, "AWS::EC2::SecurityGroup", props)
		listen := make([]string, len(e.Listen))
		for i, ap := range e.Listen {
			listen[i] = ap.String()
		}
		res.Metadata = map[string]any{"Phantom": map[string]any{
			"Endpoint":       e.ID,
			"PhantomListen":  listen,
			"AWSPort":        awsPort,
			"PortDifference": "Phantom's endpoint listens on the ports above; an execute-api interface endpoint serves HTTPS on 443 only, so the ingress rules admit 443.",
		}}

		ep := map[string]any{
			"VpcEndpointType":  "Interface",
			"ServiceName":      sub("com.amazonaws.${AWS::Region}.execute-api"),
			"VpcId":            ref(x.vpcParams[e.VPC]),
			"SubnetIds":        ref(x.subnets[e.VPC]),
			"SecurityGroupIds": []any{getAtt(sg, "GroupId")},
		}
		// Private DNS makes *.execute-api.REGION.amazonaws.com resolve to the endpoint
		// inside the VPC; AWS allows it on one execute-api endpoint per VPC.
		if first, taken := privateDNS[e.VPC]; taken {
			ep["PrivateDnsEnabled"] = false
			x.note("endpoint %s: private DNS for execute-api is on endpoint %s in the same VPC (AWS allows one); call its APIs with the endpoint-specific host names", e.ID, first)
		} else {
			ep["PrivateDnsEnabled"] = true
			privateDNS[e.VPC] = e.ID
		}
		if e.Policy != nil {
			doc, _, err := x.policy(e.Policy, &policyCtx{kind: endpointPolicy, what: "endpoint " + e.ID + ", policy", endpoint: e.ID})
			if err != nil {
				return err
			}
			ep["PolicyDocument"] = doc
		}
		x.add(x.endpointIDs[e.ID], "AWS::EC2::VPCEndpoint", ep)
		x.t.Outputs[x.id("EndpointId", e.ID)] = &Output{
			Description: "The execute-api interface endpoint the spec calls " + e.ID,
			Value:       ref(x.endpointIDs[e.ID]),
		}
		if len(e.PrivateDNSNames) > 0 {
			x.note("endpoint %s: private DNS names %s need a custom domain name for private APIs (AWS::ApiGateway::DomainNameV2, a certificate and Route 53 records), which is not generated", e.ID, strings.Join(e.PrivateDNSNames, ", "))
		}
		x.note("endpoint %s serves APIs %s in Phantom; on AWS an execute-api endpoint reaches every private API in the Region that its policy and the API's resource policy admit", e.ID, strings.Join(e.APIs, ", "))
	}
	return nil
}

// workloads builds a security group for the nodes of each role in each VPC whose egress
// is what the role's egress rules allow: APIs through their endpoints' security groups on
// 443, CIDRs and IP addresses on their ports, nothing else.
func (x *translator) workloads() {
	type group struct {
		role, vpc string
		nodes     []string
	}
	var groups []*group
	for _, n := range x.s.Nodes {
		i := slices.IndexFunc(groups, func(g *group) bool { return g.role == n.Role && g.vpc == n.VPC })
		if i < 0 {
			groups = append(groups, &group{role: n.Role, vpc: n.VPC})
			i = len(groups) - 1
		}
		groups[i].nodes = append(groups[i].nodes, n.Name+" "+n.PrivateIP.String())
	}
	for _, eg := range x.s.Egress {
		if !slices.ContainsFunc(groups, func(g *group) bool { return g.role == eg.Role }) {
			x.note("egress rules of role %s: no node runs the role, so there is no VPC to put its security group in", eg.Role)
		}
	}
	for _, g := range groups {
		id := x.id("WorkloadSecurityGroup", g.role+"-"+g.vpc)
		var rules []any
		seen := map[string]bool{}
		addRule := func(r map[string]any) {
			b, _ := json.Marshal(r)
			if !seen[string(b)] {
				seen[string(b)] = true
				rules = append(rules, r)
			}
		}
		if eg, ok := x.s.EgressFor(g.role); ok {
			for _, a := range eg.Allow {
				switch {
				case a.API != "":
					reached := false
					for _, e := range x.s.Endpoints {
						if e.VPC != g.vpc || !slices.Contains(e.APIs, a.API) {
							continue
						}
						reached = true
						addRule(map[string]any{
							"IpProtocol": "tcp", "FromPort": awsPort, "ToPort": awsPort,
							"DestinationSecurityGroupId": getAtt(x.endpointSGs[e.ID], "GroupId"),
							"Description":                sgText("API " + a.API + " through endpoint " + e.ID),
						})
					}
					if !reached {
						x.note("role %s in %s: egress to API %s is left out: no endpoint in that VPC serves it", g.role, g.vpc, a.API)
					}
				case a.CIDR.IsValid():
					for _, pr := range a.Ports {
						addRule(cidrRule(portRule(pr, "CIDR "+a.CIDR.String()), a.CIDR))
					}
				default:
					addr, err := netip.ParseAddr(a.Host)
					if err != nil {
						x.note("role %s: egress to host %s on ports %s cannot be expressed: security groups filter addresses, not names; use AWS Network Firewall domain lists or an egress proxy", g.role, a.Host, portList(a.Ports))
						continue
					}
					for _, pr := range a.Ports {
						addRule(cidrRule(portRule(pr, "host "+a.Host), netip.PrefixFrom(addr, addr.BitLen())))
					}
				}
			}
		}
		if len(rules) == 0 {
			rules = []any{noEgress} // a role without egress rules may send nowhere
		}
		res := x.add(id, "AWS::EC2::SecurityGroup", map[string]any{
			"GroupDescription":    sgText("Phantom workloads of role " + g.role + " in " + g.vpc + ": egress only to what the egress rules of the spec allow"),
			"VpcId":               ref(x.vpcParams[g.vpc]),
			"SecurityGroupEgress": rules,
		})
		res.Metadata = map[string]any{"Phantom": map[string]any{
			"Role":  g.role,
			"Nodes": g.nodes,
			"Use":   "launch the role's instances with this security group and instance profile " + x.profiles[g.role] + "; the instances themselves are not part of the perimeter spec",
		}}
		x.t.Outputs[id] = &Output{Description: "Security group for the nodes of role " + g.role + " in " + g.vpc, Value: getAtt(id, "GroupId")}
	}
}

func portRule(pr config.PortRange, what string) map[string]any {
	return map[string]any{
		"IpProtocol": "tcp", "FromPort": int(pr.From), "ToPort": int(pr.To),
		"Description": sgText(what + " on " + ports(pr)),
	}
}

// cidrRule sets the rule's destination or source block: CidrIp or CidrIpv6 by family.
func cidrRule(r map[string]any, p netip.Prefix) map[string]any {
	if p.Addr().Is4() {
		r["CidrIp"] = p.String()
	} else {
		r["CidrIpv6"] = p.String()
	}
	return r
}

func ports(pr config.PortRange) string {
	if pr.From == pr.To {
		return fmt.Sprintf("port %d", pr.From)
	}
	return fmt.Sprintf("ports %d-%d", pr.From, pr.To)
}

func portList(prs []config.PortRange) string {
	out := make([]string, len(prs))
	for i, pr := range prs {
		out[i] = strings.TrimPrefix(strings.TrimPrefix(ports(pr), "ports "), "port ")
	}
	return strings.Join(out, ", ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// sgText keeps what EC2 accepts in security group and rule descriptions (a-z, A-Z, 0-9,
// spaces and ._-:/()#,@[]+=&;{}!$*, at most 255 characters).
func sgText(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(" ._-:/()#,@[]+=&;{}!$*", r) {
			b.WriteRune(r)
		}
	}
	out := b.String()
	if len(out) > 255 {
		out = out[:255]
	}
	return out
}
