// Package demo owns the perimeter `phantom up` runs on embedded defaults: the demo spec
// (rendered with the addresses chosen at start), the demo orders backend, and the
// demo.env file that tells scripts how to reach it all.
package demo

import (
	"bytes"
	_ "embed"
	"errors"
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
// expanded), atomically and readable by the owner only: it holds a secret key. It first
// unsets the variables in unset: a session token left in the shell by an earlier
// `eval $(aws sts assume-role …)` would otherwise ride along with the long-term key.
func WriteEnv(path string, vars []EnvVar, unset ...string) error {
	var b strings.Builder
	b.WriteString("# Written by phantom up: source it to talk to the demo perimeter.\n")
	if len(unset) > 0 {
		fmt.Fprintf(&b, "unset %s\n", strings.Join(unset, " "))
	}
	for _, v := range vars {
		fmt.Fprintf(&b, "export %s=%s\n", v.Name, shellQuote(v.Value))
	}
	return atomicfile.Write(path, []byte(b.String()), 0o600)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// PortBase is the --port-base the demo's addresses were chosen from: the endpoint on the
// base and STS, the gateway and the backend on the next three ports, all on one address.
// It is 0 when they do not follow that layout (free ports, or a spec edited by hand).
func (p Perimeter) PortBase() int {
	b, err := p.BackendAddr()
	if err != nil || !p.EndpointAddr.IsValid() {
		return 0
	}
	base := int(p.EndpointAddr.Port())
	for i, a := range []netip.AddrPort{p.STSAddr, p.GatewayAddr, b} {
		if a.Addr() != p.EndpointAddr.Addr() || int(a.Port()) != base+i+1 {
			return 0
		}
	}
	return base
}

// BackendAddr is the address of the orders backend, which the demo serves over HTTPS
// (mutual TLS with the gateway) at an IP address and port: BackendURL's host.
func (p Perimeter) BackendAddr() (netip.AddrPort, error) {
	host, ok := strings.CutPrefix(p.BackendURL, "https://")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("the demo backend URL %q is not https://ADDRESS:PORT", p.BackendURL)
	}
	return netip.ParseAddrPort(host)
}

// Adopt takes the demo's addresses from spec, a demo spec written earlier (and perhaps
// edited since): the gateway's and STS's listen addresses, the demo endpoint's first
// listener and the orders backend's URL. An error names what the spec no longer has.
func (p *Perimeter) Adopt(spec *config.Spec) error {
	if !spec.Gateway.Listen.IsValid() || !spec.STS.Listen.IsValid() {
		return errors.New("it sets no gateway.listen or sts.listen")
	}
	ep, ok := spec.Endpoint(p.Endpoint)
	if !ok || len(ep.Listen) == 0 {
		return fmt.Errorf("it has no endpoint %s with a listen address", p.Endpoint)
	}
	api, ok := spec.API(p.APIID)
	if !ok {
		return fmt.Errorf("it has no API %s", p.APIID)
	}
	b, ok := api.Backends[demoBackend]
	if !ok || b.URL == nil || b.URL.Scheme != "https" {
		// The demo backend speaks HTTPS only (mutual TLS with the gateway): a spec from
		// before that names it over http.
		return fmt.Errorf("API %s has no https backend %q", p.APIID, demoBackend)
	}
	if _, err := netip.ParseAddrPort(b.URL.Host); err != nil {
		return fmt.Errorf("API %s's backend %q is not at an IP address and port: %v", p.APIID, demoBackend, err)
	}
	p.GatewayAddr, p.STSAddr, p.EndpointAddr = spec.Gateway.Listen, spec.STS.Listen, ep.Listen[0]
	p.BackendURL = "https://" + b.URL.Host
	return nil
}

// demoBackend is the name of the orders backend in the demo spec's API.
const demoBackend = "orders"

// The profiles of the AWS config file `phantom up` writes (AWSConfig).
const (
	// RoleProfile's credentials are sessions of the Service-A role, from credential_process.
	RoleProfile = "phantom-demo"
	// UserProfile holds the demo user's long-term key, which signs RoleProfile's AssumeRole.
	UserProfile = "phantom-demo-user"
)

// AWSConfigFile is what the demo's AWS config file needs besides the perimeter.
type AWSConfigFile struct {
	Phantom  string // absolute path of the phantom binary credential_process runs
	CABundle string // absolute path of the perimeter CA bundle
	// The demo user's access key.
	AccessKeyID, SecretAccessKey string
}

// AWSConfig renders an AWS shared config file (AWS_CONFIG_FILE) with two profiles that
// the AWS CLI, boto3 and aws-sdk-go-v2 read alike: UserProfile, the demo user's key, and
// RoleProfile, whose credential_process is `phantom credentials` for the Service-A role.
// Both trust the perimeter CA (ca_bundle) and send STS calls to the demo STS (a services
// section), so no --endpoint-url is needed. Paths are absolute: credential_process runs in
// whatever directory the tool does.
func (p Perimeter) AWSConfig(c AWSConfigFile) []byte {
	sts := "https://" + p.STSAddr.String()
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by phantom up: AWS CLI / SDK profiles for the demo perimeter. Use it with
#   AWS_CONFIG_FILE="$PHANTOM_AWS_CONFIG" aws sts get-caller-identity --profile %[1]s
# (or copy the profiles into ~/.aws/config; credential_process then needs a phantom binary
# that stays where it names: go build -o /usr/local/bin/phantom ./cmd/phantom).
# The AWS CLI v1 honours ca_bundle with AWS_PROFILE but not with --profile: there it
# needs AWS_CA_BUNDLE, which demo.env sets.

# Sessions of the Service-A role: credential_process asks the demo STS for one, signed
# with the demo user's key below, and the tool refreshes it before it expires.
[profile %[1]s]
region = %[2]s
ca_bundle = %[3]s
services = phantom-demo-endpoints
credential_process = %[4]s credentials --role %[5]s --source-profile %[6]s --sts %[7]s --ca-bundle %[10]s

# The demo user's long-term access key (as in demo.env).
[profile %[6]s]
region = %[2]s
ca_bundle = %[3]s
services = phantom-demo-endpoints
aws_access_key_id = %[8]s
aws_secret_access_key = %[9]s

[services phantom-demo-endpoints]
sts =
  endpoint_url = %[7]s
`, RoleProfile, p.Region, c.CABundle, shellWord(c.Phantom), p.RoleARN(), UserProfile, sts, c.AccessKeyID, c.SecretAccessKey, shellWord(c.CABundle))
	return []byte(b.String())
}

// WriteAWSConfig writes AWSConfig to path, atomically and readable by the owner only: it
// holds the demo user's secret key.
func (p Perimeter) WriteAWSConfig(path string, c AWSConfigFile) error {
	return atomicfile.Write(path, p.AWSConfig(c), 0o600)
}

// shellWord quotes s for a shell (credential_process runs under sh -c in aws-sdk-go-v2
// and is split like a shell line by botocore) only when it needs it.
func shellWord(s string) string {
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("_./:@%+=,-", c)) {
			return shellQuote(s)
		}
	}
	if s == "" {
		return "''"
	}
	return s
}
