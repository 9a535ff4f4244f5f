// Package demo owns the perimeter `phantom up` runs on embedded defaults: the demo spec
// (rendered with the addresses chosen at start), the demo orders backend, and the
// demo.env file that tells scripts how to reach it all.
package demo

import (
	"bytes"
	_ "embed"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"text/template"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/config"
)

//go:embed perimeter.yaml.tmpl
var specTemplate string

// Perimeter is the demo's names and the addresses chosen when it starts.
type Perimeter struct {
	Account   string
	Region    string
	User      string // the demo user, with a long-term access key
	Role      string // Service A's role, which the demo user may assume
	OtherRole string // a role the endpoint policy does not admit
	APIID     string
	Endpoint  string // vpce-…
	VPC       string
	Node      string // the Service A node the demo agent runs as

	// IngressCIDR is what the endpoint's security group admits besides the VPC: this
	// host's loopback addresses 127.0.0.0-127.0.0.3 (the node is 127.0.0.1; tests
	// use 127.0.0.2 as "another host in the network" and anything above as outside).
	IngressCIDR string
	// NodeIP is the demo node's private address: the agent runs on this host.
	NodeIP string

	GatewayAddr  netip.AddrPort
	STSAddr      netip.AddrPort
	EndpointAddr netip.AddrPort
	BackendURL   string
}

// Defaults returns the demo's names; the addresses are left for the caller to fill.
func Defaults() Perimeter {
	return Perimeter{
		Account:   "123456789012",
		Region:    "us-east-1",
		User:      "demo",
		Role:      "service-a",
		OtherRole: "reporting",
		APIID:     "a1b2c3d4e5",
		Endpoint:  "vpce-0123456789abcdef0",
		VPC:       "vpc-0a1b2c3d4e5f60718",
		Node:      "service-a-1",

		IngressCIDR: "127.0.0.0/30",
		NodeIP:      "127.0.0.1",
	}
}

// EndpointPort is the endpoint's TCP port, the one its security group admits.
func (p Perimeter) EndpointPort() uint16 { return p.EndpointAddr.Port() }

// RoleARN is the ARN of the Service-A role.
func (p Perimeter) RoleARN() string { return "arn:aws:iam::" + p.Account + ":role/" + p.Role }

// OtherRoleARN is the ARN of the role the endpoint policy does not admit.
func (p Perimeter) OtherRoleARN() string {
	return "arn:aws:iam::" + p.Account + ":role/" + p.OtherRole
}

// Spec renders the demo perimeter spec.
func (p Perimeter) Spec() ([]byte, error) {
	for name, a := range map[string]netip.AddrPort{"gateway": p.GatewayAddr, "sts": p.STSAddr, "endpoint": p.EndpointAddr} {
		if !a.IsValid() || a.Port() == 0 {
			return nil, fmt.Errorf("demo perimeter: the %s address is not set", name)
		}
	}
	if p.BackendURL == "" {
		return nil, fmt.Errorf("demo perimeter: the backend URL is not set")
	}
	t, err := template.New("perimeter").Option("missingkey=error").Parse(specTemplate)
	if err != nil {
		return nil, fmt.Errorf("demo perimeter template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("render demo perimeter: %w", err)
	}
	return b.Bytes(), nil
}

// InvokeURL is the URL of a demo route through the endpoint.
func (p Perimeter) InvokeURL(path string) string {
	return "https://" + p.EndpointAddr.String() + "/prod" + path
}

// NodeInvokeURL is the URL of a demo route as the demo node's workloads call it: by the
// orders API's private DNS name (API_ID.execute-api.REGION.amazonaws.com), which the
// egress proxy resolves to the endpoint, and which binds the connection to the orders API
// (a tunnel to the endpoint by its address alone is refused).
func (p Perimeter) NodeInvokeURL(path string) string {
	return "https://" + config.ExecuteAPIName(p.APIID, p.Region) + ":" + strconv.Itoa(int(p.EndpointPort())) + "/prod" + path
}

// EnvVar is one line of demo.env.
type EnvVar struct{ Name, Value string }

// WriteEnv writes vars as shell export lines (values single-quoted, so nothing in them is
// expanded), atomically and readable by the owner only: it holds a secret key.
func WriteEnv(path string, vars []EnvVar) error {
	var b strings.Builder
	b.WriteString("# Written by phantom up: source it to talk to the demo perimeter.\n")
	for _, v := range vars {
		fmt.Fprintf(&b, "export %s=%s\n", v.Name, shellQuote(v.Value))
	}
	return atomicfile.Write(path, []byte(b.String()), 0o600)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
