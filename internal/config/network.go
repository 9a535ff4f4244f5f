package config

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

const (
	defaultBackendTimeout = 29 * time.Second // API Gateway's default integration timeout
	maxBackendTimeout     = 5 * time.Minute
	minBackendTimeout     = 50 * time.Millisecond // API Gateway's minimum integration timeout
	maxResourcePolicy     = 20480                 // API Gateway resource policy size quota
	maxEndpointPolicy     = 20480                 // VPC endpoint policy size quota
)

// methods are the HTTP methods a route may name; ANY (API Gateway's catch-all) stands
// alone.
var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "ANY"}

func (d *decoder) apis(root *object, s *Spec, dir string) {
	items, path := root.list("apis")
	seen := map[string]*yaml.Node{}
	for i, n := range items {
		p := indexPath(path, i)
		o := d.object(n, p, "id", "name", "description", "stages", "backends", "routes", "resourcePolicy", "longTermKeys", "assertion")
		if !o.ok {
			continue
		}
		a := &API{Backends: map[string]*Backend{}}
		a.LongTermKeys = d.longTermKeys(o, s.Gateway.LongTermKeys)
		a.Assertion = d.assertionKind(o)
		o.require("id", "id: a1b2c3d4e5")
		id, idNode, idPath := o.match("id", apiIDRe, apiIDWhat)
		a.Name, _, _ = o.str("name")
		a.Description, _, _ = o.str("description")
		if o.require("stages", "stages: [prod]") {
			a.Stages, _ = o.strs("stages", stageRe, stageWhat)
			if sn, sp := o.get("stages"); sn != nil && sn.Kind == yaml.SequenceNode && len(sn.Content) == 0 {
				d.problem(sn, sp, "is empty", "list at least one stage, e.g. [prod]")
			}
		}
		if o.require("backends", "backends: {orders: {url: http://127.0.0.1:9000}}") {
			d.backends(o, a, dir)
		}
		if o.require("routes", "routes: [{path: /orders, methods: [GET], backend: orders}]") {
			d.routes(o, a)
		}
		if rn, rp := o.get("resourcePolicy"); rn != nil {
			a.ResourcePolicy = d.policy(rn, rp, resourcePolicy, "")
			d.policySize(a.ResourcePolicy, rn, rp, maxResourcePolicy, "an API resource policy")
		}
		if idNode == nil || !d.unique(seen, id, idNode, idPath, "API") {
			continue
		}
		a.ID = id
		if a.Name == "" {
			a.Name = id
		}
		s.APIs = append(s.APIs, a)
		s.apis[id] = a
	}
}

func (d *decoder) backends(o *object, a *API, dir string) {
	n, path := o.get("backends")
	if n == nil {
		return
	}
	entries := d.entries(n, path)
	if n.Kind == yaml.MappingNode && len(entries) == 0 {
		d.problem(n, path, "is empty", "define at least one backend: name: {url: http://host:port}")
	}
	for _, e := range entries {
		p := joinPath(path, e.key.Value)
		if !backendRe.MatchString(e.key.Value) {
			d.problem(e.key, p, fmt.Sprintf("%q is not %s", e.key.Value, backendWhat), "rename the backend")
			continue
		}
		bo := d.object(e.val, p, "url", "timeout", "ca")
		if !bo.ok {
			continue
		}
		b := &Backend{Name: e.key.Value, Timeout: defaultBackendTimeout}
		bo.require("url", "url: http://127.0.0.1:9000")
		if raw, un, up := bo.str("url"); un != nil {
			u, err := parseBackendURL(raw)
			if err != nil {
				fix := "write http://host:port/optional-prefix or https://..."
				if errors.Is(err, errURLCredentials) {
					fix = "remove user:password@; give the backend its credentials another way"
				}
				d.problem(un, up, err.Error(), fix)
			} else {
				b.URL = u
			}
		}
		if t, tn, tp := bo.duration("timeout"); tn != nil {
			if t < minBackendTimeout || t > maxBackendTimeout {
				d.problem(tn, tp, fmt.Sprintf("%s is outside 50ms to 5m", tn.Value), "choose a timeout in that range")
			} else {
				b.Timeout = t
			}
		}
		if file, cn, cp := bo.str("ca"); cn != nil {
			d.backendCA(b, file, dir, cn, cp)
		}
		a.Backends[b.Name] = b
	}
}

// backendCA loads the CA bundle an https backend's certificate must chain to.
func (d *decoder) backendCA(b *Backend, file, dir string, n *yaml.Node, path string) {
	if b.URL != nil && b.URL.Scheme != "https" {
		d.problem(n, path, "a CA is for an https backend, and the url is "+b.URL.Scheme, "use an https:// url, or remove ca")
		return
	}
	if !filepath.IsAbs(file) {
		file = filepath.Join(dir, file)
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		d.problem(n, path, fmt.Sprintf("CA bundle %s is not readable: %v", file, err), "point ca at the PEM file of the CA that issued the backend's certificate")
		return
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		d.problem(n, path, fmt.Sprintf("CA bundle %s holds no PEM certificate", file), "point ca at a PEM file of CERTIFICATE blocks")
		return
	}
	b.CAFile, b.CA, b.CADigest = file, pool, sha256.Sum256(pem)
}

func (d *decoder) routes(o *object, a *API) {
	items, path := o.list("routes")
	if n, _ := o.get("routes"); n != nil && n.Kind == yaml.SequenceNode && len(items) == 0 {
		d.problem(n, path, "is empty", "add at least one route")
	}
	type claim struct {
		line   int
		method string
	}
	claimed := map[string][]claim{} // route shape -> methods, to find routes that collide
	for i, n := range items {
		p := indexPath(path, i)
		ro := d.object(n, p, "path", "methods", "backend", "authorization", "upgrade", "matrixParameters", "longTermKeys")
		if !ro.ok {
			continue
		}
		r := &Route{Authorization: AuthIAM, LongTermKeys: d.longTermKeys(ro, a.LongTermKeys)}
		ro.require("path", "path: /orders/{id}")
		ro.require("methods", "methods: [GET]")
		ro.require("backend", "backend: orders")
		tmpl, tn, tp := ro.str("path")
		var shape string
		if tn != nil {
			segs, sh, err := parseTemplate(tmpl)
			if err != nil {
				d.problem(tn, tp, err.Error(), "write /literal/{name}/... with {name+} only as the last segment")
			} else {
				r.Path, r.Segments, shape = tmpl, segs, sh
			}
		}
		ms, mnodes := ro.strs("methods", nil, "")
		_, mp := ro.get("methods")
		for j, m := range ms {
			if !slices.Contains(methods, m) {
				fix := "use one of " + strings.Join(methods, ", ")
				if up := strings.ToUpper(m); slices.Contains(methods, up) {
					fix = fmt.Sprintf("write it in upper case: %s", up)
				}
				d.problem(mnodes[j], indexPath(mp, j), fmt.Sprintf("%q is not an HTTP method", m), fix)
				continue
			}
			if m == "ANY" && len(ms) > 1 {
				d.problem(mnodes[j], indexPath(mp, j), "ANY already matches every method", "write methods: [ANY] alone")
				continue
			}
			r.Methods = append(r.Methods, m)
		}
		if mn, _ := ro.get("methods"); mn != nil && mn.Kind == yaml.SequenceNode && len(mn.Content) == 0 {
			d.problem(mn, mp, "is empty", "list the methods, e.g. [GET]")
		}
		if bname, bn, bp := ro.str("backend"); bn != nil {
			if b, ok := a.Backends[bname]; ok {
				r.Backend = b
			} else {
				d.reference(bn, bp, "backend", "this API's backends", slices.Collect(maps.Keys(a.Backends)))
			}
		}
		if auth, an, ap := ro.str("authorization"); an != nil {
			switch Authorization(auth) {
			case AuthIAM, AuthNone:
				r.Authorization = Authorization(auth)
			default:
				d.problem(an, ap, fmt.Sprintf("%q is not an authorization type", auth), "use AWS_IAM (the default) or NONE")
			}
		}
		if kn, kp := ro.get("longTermKeys"); kn != nil && r.Authorization == AuthNone {
			d.problem(kn, kp, "a route with authorization NONE takes unsigned calls: no key is checked", "remove longTermKeys, or use authorization AWS_IAM")
		}
		ups, upNodes := ro.strs("upgrade", nil, "")
		_, upp := ro.get("upgrade")
		for j, u := range ups {
			if u != "websocket" {
				// h2c, say, would turn one authorized request into a connection of
				// unauthorized ones; the gateway verifies a WebSocket handshake only.
				d.problem(upNodes[j], indexPath(upp, j), fmt.Sprintf("%q is not a protocol a route can switch to", u), "write websocket, the only one")
				continue
			}
			r.Upgrade = append(r.Upgrade, u)
		}
		r.MatrixParameters, _, _ = ro.boolean("matrixParameters")
		if shape != "" {
			for _, m := range r.Methods {
				for _, c := range claimed[shape] {
					if c.method == m || c.method == "ANY" || m == "ANY" {
						d.problem(tn, tp, fmt.Sprintf("%s %s overlaps the route at line %d (%s)", m, tmpl, c.line, c.method),
							"give each path and method one route; parameter names do not make paths differ")
					}
				}
			}
			for _, m := range r.Methods {
				claimed[shape] = append(claimed[shape], claim{tn.Line, m})
			}
		}
		a.Routes = append(a.Routes, r)
	}
}

// parseTemplate parses an API Gateway-style path template. Its shape replaces parameter
// names with {} so two templates that match the same requests compare equal.
func parseTemplate(t string) ([]Segment, string, error) {
	if !strings.HasPrefix(t, "/") {
		return nil, "", fmt.Errorf("path %q must start with /", t)
	}
	if t == "/" {
		return nil, "/", nil
	}
	if strings.HasSuffix(t, "/") {
		return nil, "", fmt.Errorf("path %q ends with /", t)
	}
	parts := strings.Split(t[1:], "/")
	segs := make([]Segment, 0, len(parts))
	shape := make([]string, 0, len(parts))
	names := map[string]bool{}
	for i, part := range parts {
		switch {
		case part == "":
			return nil, "", fmt.Errorf("path %q has an empty segment", t)
		case part == "." || part == "..":
			// RFC 3986 §5.2.4 removes dot segments before matching; a route naming one
			// could never match.
			return nil, "", fmt.Errorf("path %q has a %q segment", t, part)
		case strings.ContainsAny(part, "{}"):
			m := paramRe.FindStringSubmatch(part)
			if m == nil {
				return nil, "", fmt.Errorf("segment %q is not a parameter like {name} or {name+}", part)
			}
			if names[m[1]] {
				return nil, "", fmt.Errorf("parameter {%s} appears twice in %q", m[1], t)
			}
			names[m[1]] = true
			if m[2] == "+" {
				if i != len(parts)-1 {
					return nil, "", fmt.Errorf("greedy parameter %s is not the last segment of %q", part, t)
				}
				segs = append(segs, Segment{Kind: Greedy, Value: m[1]})
				shape = append(shape, "{+}")
				continue
			}
			segs = append(segs, Segment{Kind: Param, Value: m[1]})
			shape = append(shape, "{}")
		case !literalSegmentRe.MatchString(part):
			return nil, "", fmt.Errorf("segment %q has characters a path segment cannot (letters, digits, . _ ~ : @ -)", part)
		default:
			segs = append(segs, Segment{Kind: Literal, Value: part})
			shape = append(shape, part)
		}
	}
	return segs, "/" + strings.Join(shape, "/"), nil
}

// listeners tracks every address the spec asks Phantom to listen on, so two components
// cannot claim the same port.
type listeners struct {
	d    *decoder
	seen []listener
}

type listener struct {
	ap netip.AddrPort
	n  *yaml.Node
}

func (l *listeners) add(ap netip.AddrPort, n *yaml.Node, path string) {
	for _, o := range l.seen {
		if o.ap.Port() == ap.Port() && overlaps(o.ap.Addr(), ap.Addr()) {
			l.d.problem(n, path, fmt.Sprintf("%s is already used by the listener at line %d", ap, o.n.Line),
				"give each listener its own address and port")
			return
		}
	}
	l.seen = append(l.seen, listener{ap, n})
}

// overlaps reports whether binding a and b on one port would collide: 0.0.0.0 takes every
// IPv4 address, and [::] (dual-stack on Linux by default) takes every address.
func overlaps(a, b netip.Addr) bool {
	a, b = a.Unmap(), b.Unmap()
	switch {
	case a == b:
		return true
	case a == netip.IPv6Unspecified() || b == netip.IPv6Unspecified():
		return true
	case a == netip.IPv4Unspecified():
		return b.Is4()
	case b == netip.IPv4Unspecified():
		return a.Is4()
	}
	return false
}

// listenAddr parses host:port with an IP address: a listener binds an address, and a name
// would make which interfaces are exposed depend on the resolver.
func (d *decoder) listenAddr(raw string, n *yaml.Node, path string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(raw)
	if err != nil {
		d.problem(n, path, fmt.Sprintf("%q is not an IP address and port", raw), "write it like 127.0.0.1:8443 or [::1]:8443")
		return netip.AddrPort{}, false
	}
	if ap.Port() == 0 {
		d.problem(n, path, "port 0 is not a fixed port", "choose a port from 1 to 65535")
		return netip.AddrPort{}, false
	}
	if ap.Addr().Zone() != "" {
		d.problem(n, path, "zoned addresses are not supported", "remove the %zone")
		return netip.AddrPort{}, false
	}
	return ap, true
}

func (d *decoder) endpoints(root *object, s *Spec, l *listeners) {
	items, path := root.list("endpoints")
	seen := map[string]*yaml.Node{}
	dnsSeen := map[string]*yaml.Node{}
	for i, n := range items {
		p := indexPath(path, i)
		o := d.object(n, p, "id", "vpc", "listen", "ingress", "apis", "privateDnsNames", "policy", "tls", "plaintext", "limits")
		if !o.ok {
			continue
		}
		for _, k := range []string{"tls", "plaintext"} {
			if o.has(k) {
				d.problem(o.keys[k], joinPath(p, k), "an endpoint listener is always TLS 1.2 or later; there is no plaintext option",
					"remove "+k)
			}
		}
		e := &Endpoint{}
		o.require("id", "id: vpce-0123456789abcdef0")
		o.require("vpc", "vpc: vpc-0123456789abcdef0")
		o.require("listen", `listen: ["127.0.0.1:8443"]`)
		id, idNode, idPath := o.match("id", vpceRe, vpceWhat)
		e.VPC, _, _ = o.match("vpc", vpcRe, vpcWhat)
		addrs, addrNodes := o.strs("listen", nil, "")
		ln, lp := o.get("listen")
		if ln != nil && ln.Kind == yaml.SequenceNode && len(ln.Content) == 0 {
			d.problem(ln, lp, "is empty", `list at least one TLS address, e.g. ["127.0.0.1:8443"]`)
		}
		for j, raw := range addrs {
			if strings.Contains(raw, "://") {
				d.problem(addrNodes[j], indexPath(lp, j), fmt.Sprintf("%q has a scheme", raw),
					"write host:port; endpoint listeners are always TLS")
				continue
			}
			if ap, ok := d.listenAddr(raw, addrNodes[j], indexPath(lp, j)); ok {
				l.add(ap, addrNodes[j], indexPath(lp, j))
				e.Listen = append(e.Listen, ap)
			}
		}
		e.Ingress = d.ingress(o, e)
		ln2, lp2 := o.get("limits")
		e.Limits = d.connectionLimits(d.object(ln2, lp2, "maxConnections", "maxConnectionsPerSource"), defaultConnectionLimits())
		apis, apiNodes := o.strs("apis", nil, "")
		_, ap := o.get("apis")
		for j, a := range apis {
			if _, ok := s.apis[a]; !ok {
				d.reference(apiNodes[j], indexPath(ap, j), "API", "apis", slices.Collect(maps.Keys(s.apis)))
				continue
			}
			e.APIs = append(e.APIs, a)
		}
		names, nameNodes := o.strs("privateDnsNames", nil, "")
		_, np := o.get("privateDnsNames")
		for j, raw := range names {
			h, err := hostName(raw, false)
			if err != nil {
				d.problem(nameNodes[j], indexPath(np, j), err.Error(), "write a DNS name like orders.internal.example")
				continue
			}
			if d.unique(dnsSeen, h, nameNodes[j], indexPath(np, j), "private DNS name") {
				e.PrivateDNSNames = append(e.PrivateDNSNames, h)
			}
		}
		if pn, pp := o.get("policy"); pn != nil {
			e.Policy = d.policy(pn, pp, endpointPolicy, "")
			d.policySize(e.Policy, pn, pp, maxEndpointPolicy, "an endpoint policy")
		}
		if idNode == nil || !d.unique(seen, id, idNode, idPath, "endpoint") {
			continue
		}
		e.ID = id
		s.Endpoints = append(s.Endpoints, e)
		s.endpoints[id] = e
		for _, h := range e.PrivateDNSNames {
			s.dnsNames[h] = e
		}
	}
}

// ingress decodes security-group rules. Only TCP is meaningful: the endpoint serves TLS.
func (d *decoder) ingress(o *object, e *Endpoint) []IngressRule {
	items, path := o.list("ingress")
	var out []IngressRule
	for i, n := range items {
		p := indexPath(path, i)
		ro := d.object(n, p, "protocol", "ports", "cidrs", "description")
		if !ro.ok {
			continue
		}
		r := IngressRule{Protocol: "tcp"}
		ro.require("ports", `ports: "443"`)
		ro.require("cidrs", "cidrs: [10.0.0.0/16]")
		if proto, pn, pp := ro.str("protocol"); pn != nil && proto != "tcp" {
			d.problem(pn, pp, fmt.Sprintf("protocol %q cannot reach a TLS listener", proto), "use protocol: tcp")
		}
		r.Description, _, _ = ro.str("description")
		pn, pp := ro.get("ports")
		if pn != nil {
			pr, err := parsePortRange(pn)
			if err != nil {
				d.problem(pn, pp, err.Error(), `write a port like "443" or a range like "8443-8444"`)
			} else {
				r.Ports = pr
				// DESIGN: the security group allows only TLS ports. A rule that opens no
				// listener port opens nothing and hides a typo.
				hit := false
				for _, ap := range e.Listen {
					hit = hit || pr.Contains(ap.Port())
				}
				if len(e.Listen) > 0 && !hit {
					d.problem(pn, pp, fmt.Sprintf("ports %s match none of the endpoint's TLS listeners", pn.Value),
						"use the port of a listen address")
				}
			}
		}
		cidrs, cnodes := ro.strs("cidrs", nil, "")
		cn, cp := ro.get("cidrs")
		if cn != nil && cn.Kind == yaml.SequenceNode && len(cn.Content) == 0 {
			d.problem(cn, cp, "is empty", "list the source ranges the rule admits")
		}
		for j, raw := range cidrs {
			pfx, err := parseCIDR(raw)
			if err != nil {
				d.problem(cnodes[j], indexPath(cp, j), err.Error(), cidrFix(raw))
				continue
			}
			r.CIDRs = append(r.CIDRs, pfx)
		}
		out = append(out, r)
	}
	return out
}

func parseCIDR(raw string) (netip.Prefix, error) {
	pfx, err := netip.ParsePrefix(raw)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR block", raw)
	}
	if pfx != pfx.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q has bits set past its /%d prefix", raw, pfx.Bits())
	}
	return pfx, nil
}

func cidrFix(raw string) string {
	if pfx, err := netip.ParsePrefix(raw); err == nil {
		return fmt.Sprintf("did you mean %s?", pfx.Masked())
	}
	if a, err := netip.ParseAddr(raw); err == nil {
		return fmt.Sprintf("write one address as %s/%d", a, a.BitLen())
	}
	return "write a block like 10.0.0.0/16"
}

var portRangeRe = regexp.MustCompile(`^([0-9]{1,5})(?:-([0-9]{1,5}))?$`)

// parsePortRange reads 443, "443" or "8443-8444".
func parsePortRange(n *yaml.Node) (PortRange, error) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!str") {
		return PortRange{}, fmt.Errorf("a port must be a number or a range, not %s", describe(n))
	}
	m := portRangeRe.FindStringSubmatch(n.Value)
	if m == nil || (n.ShortTag() == "!!int" && m[2] != "") {
		return PortRange{}, fmt.Errorf("%q is not a port or a port range", n.Value)
	}
	from, _ := strconv.Atoi(m[1])
	to := from
	if m[2] != "" {
		to, _ = strconv.Atoi(m[2])
	}
	if from < 1 || to > 65535 {
		return PortRange{}, fmt.Errorf("%q is outside the ports 1 to 65535", n.Value)
	}
	if from > to {
		return PortRange{}, fmt.Errorf("range %q runs backwards", n.Value)
	}
	return PortRange{uint16(from), uint16(to)}, nil
}

func (d *decoder) nodes(root *object, s *Spec) {
	items, path := root.list("nodes")
	seen := map[string]*yaml.Node{}
	ips := map[string]*yaml.Node{}
	for i, n := range items {
		p := indexPath(path, i)
		o := d.object(n, p, "name", "role", "vpc", "privateIp", "endpoint", "egressMode")
		if !o.ok {
			continue
		}
		nd := &Node{}
		o.require("name", "name: service-a-1")
		o.require("role", "role: app")
		o.require("vpc", "vpc: vpc-0123456789abcdef0")
		o.require("privateIp", "privateIp: 10.0.1.15")
		name, nameNode, namePath := o.match("name", labelRe, labelWhat)
		if role, rn, rp := o.str("role"); rn != nil {
			if _, ok := s.roles[role]; ok {
				nd.Role = role
			} else {
				d.reference(rn, rp, "role", "roles", slices.Collect(maps.Keys(s.roles)))
			}
		}
		vpc, vpcNode, vpcPath := o.match("vpc", vpcRe, vpcWhat)
		nd.VPC = vpc
		if raw, in, ip := o.str("privateIp"); in != nil {
			// aws:EC2InstanceSourcePrivateIPv4 is an IPv4 address.
			a, err := netip.ParseAddr(raw)
			switch {
			case err != nil || !a.Is4():
				d.problem(in, ip, fmt.Sprintf("%q is not an IPv4 address", raw), "write it like 10.0.1.15")
			case vpc != "" && !d.unique(ips, vpc+"/"+a.String(), in, ip, "private IP"):
			default:
				nd.PrivateIP = a
			}
		}
		if ep, en, epath := o.str("endpoint"); en != nil {
			e, ok := s.endpoints[ep]
			switch {
			case !ok:
				d.reference(en, epath, "endpoint", "endpoints", slices.Collect(maps.Keys(s.endpoints)))
			case vpc != "" && e.VPC != "" && e.VPC != vpc:
				d.problem(vpcNode, vpcPath, fmt.Sprintf("the node is in %s but its endpoint %s is in %s", vpc, ep, e.VPC),
					"put the node in its endpoint's VPC or pick an endpoint in the node's VPC")
			default:
				nd.Endpoint = ep
			}
		}
		nd.EgressMode, _ = d.enforcement(o, "egressMode", "an egress mode")
		if nameNode == nil || !d.unique(seen, name, nameNode, namePath, "node") {
			continue
		}
		nd.Name = name
		s.Nodes = append(s.Nodes, nd)
		s.nodes[name] = nd
	}
}

// ipLikeRe matches host names that a resolver or URL parser would read as an IPv4 address
// in another spelling (decimal 2130706433, hex 0x7f.1, octal 0177.0.0.1).
var ipLikeRe = regexp.MustCompile(`^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$`)

func (d *decoder) egressRules(root *object, s *Spec) {
	items, path := root.list("egress")
	seen := map[string]*yaml.Node{}
	for i, n := range items {
		p := indexPath(path, i)
		o := d.object(n, p, "role", "mode", "allow")
		if !o.ok {
			continue
		}
		eg := &Egress{}
		eg.Mode, _ = d.enforcement(o, "mode", "an egress mode")
		o.require("role", "role: app")
		o.require("allow", "allow: [{api: a1b2c3d4e5}]")
		role, rn, rp := o.str("role")
		known := false
		if rn != nil {
			if _, ok := s.roles[role]; ok {
				known = d.unique(seen, role, rn, rp, "egress rule set for role")
			} else {
				d.reference(rn, rp, "role", "roles", slices.Collect(maps.Keys(s.roles)))
			}
		}
		allows, ap := o.list("allow")
		for j, an := range allows {
			if a, ok := d.egressAllow(an, indexPath(ap, j), s); ok {
				eg.Allow = append(eg.Allow, a)
			}
		}
		if !known {
			continue
		}
		eg.Role = role
		s.Egress = append(s.Egress, eg)
		s.egress[role] = eg
	}
}

func (d *decoder) egressAllow(n *yaml.Node, path string, s *Spec) (EgressAllow, bool) {
	o := d.object(n, path, "api", "host", "cidr", "ports", "maxRiskLevel")
	if !o.ok {
		return EgressAllow{}, false
	}
	set := 0
	for _, k := range []string{"api", "host", "cidr"} {
		if o.has(k) {
			set++
		}
	}
	if set != 1 {
		d.problem(o.n, path, "a rule names exactly one of api, host and cidr", "split it into one rule per destination")
		return EgressAllow{}, false
	}
	var a EgressAllow
	ok := true
	if level, ln, lp := o.str("maxRiskLevel"); ln != nil {
		if !slices.Contains(riskLevels, level) {
			d.problem(ln, lp, fmt.Sprintf("%q is not a risk level", level), "use low, medium or high: the rule applies while the node's phantom:RiskLevel is at most that")
			ok = false
		}
		a.MaxRiskLevel = level
	}
	if id, in, ip := o.str("api"); in != nil {
		if o.has("ports") {
			d.problem(o.keys["ports"], joinPath(path, "ports"), "an API is reached on its endpoints' listener ports",
				"remove ports from an api rule")
			ok = false
		}
		if _, known := s.apis[id]; !known {
			d.reference(in, ip, "API", "apis", slices.Collect(maps.Keys(s.apis)))
			return a, false
		}
		served := false
		for _, e := range s.Endpoints {
			served = served || slices.Contains(e.APIs, id)
		}
		if !served {
			d.problem(in, ip, fmt.Sprintf("no endpoint serves API %s, so workloads could not reach it", id),
				"add it to an endpoint's apis")
			return a, false
		}
		a.API = id
		return a, ok
	}
	if !o.require("ports", "ports: [443]") {
		ok = false
	}
	if raw, hn, hp := o.str("host"); hn != nil {
		if addr, err := netip.ParseAddr(raw); err == nil {
			if addr.Zone() != "" || addr.String() != raw {
				d.problem(hn, hp, fmt.Sprintf("%q is not in canonical form", raw), fmt.Sprintf("write %s", addr.WithZone("")))
				ok = false
			}
			a.Host = addr.String()
		} else if raw == "*" {
			d.problem(hn, hp, "* would allow every host", "list the hosts the role may reach")
			ok = false
		} else if ipLikeRe.MatchString(strings.ToLower(raw)) {
			d.problem(hn, hp, fmt.Sprintf("%q is an IP address in a non-standard spelling", raw),
				"write IPv4 addresses in dotted decimal like 10.0.5.7, or use cidr:")
			ok = false
		} else if h, err := hostName(raw, true); err != nil {
			d.problem(hn, hp, err.Error(), "write a host like api.example.com or *.example.com")
			ok = false
		} else {
			a.Host = h
		}
	}
	if raw, cn, cp := o.str("cidr"); cn != nil {
		pfx, err := parseCIDR(raw)
		if err != nil {
			d.problem(cn, cp, err.Error(), cidrFix(raw))
			ok = false
		}
		a.CIDR = pfx
	}
	items, pp := o.list("ports")
	if pn, _ := o.get("ports"); pn != nil && pn.Kind == yaml.SequenceNode && len(items) == 0 {
		d.problem(pn, pp, "is empty", "list the ports, e.g. [443]")
		ok = false
	}
	for k, pn := range items {
		pr, err := parsePortRange(pn)
		if err != nil {
			d.problem(pn, indexPath(pp, k), err.Error(), `write a port like 443 or a range like "8000-8100"`)
			ok = false
			continue
		}
		a.Ports = append(a.Ports, pr)
	}
	return a, ok
}

// errURLCredentials refuses user:password@ in a URL: the spec is not a secret store and
// URLs end up in logs.
var errURLCredentials = errors.New("the URL holds credentials")

// parseBackendURL checks a backend URL: http or https to a host, no credentials (they
// would end up in logs), no query or fragment (the request supplies those).
func parseBackendURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		return nil, fmt.Errorf("%q is not an absolute URL", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scheme %q is not http or https", u.Scheme)
	case u.User != nil:
		return nil, errURLCredentials
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("the URL has a query or fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q is outside 1 to 65535", p)
		}
	}
	return u, nil
}
