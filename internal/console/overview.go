package console

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/policy"
)

// graph is one picture, laid out on the server and drawn as SVG by the template.
type graph struct {
	Width, Height int
	Columns       []column
	Nodes         []node
	Edges         []edge
}

type column struct {
	X     int
	Title string
}

type node struct {
	X, Y, W, H int
	Class      string
	Lines      []textLine
}

type textLine struct {
	X, Y  int
	Text  string
	Class string
}

type edge struct {
	D     string // SVG path
	Class string
	Title string
}

// pictures are the two pictures of a spec: who reaches which API through which
// endpoint, and where workloads may send data.
type pictures struct {
	Access    graph
	Egress    graph
	Unreached []string // principals that reach no API through any endpoint
	Counts    []kv
}

const (
	colWidth  = 250
	colGap    = 90
	nodeW     = 230
	lineH     = 16
	nodePad   = 10
	rowGap    = 18
	topMargin = 44
)

// layout places nodes in columns, top to bottom, and sizes the picture.
type layout struct {
	g     graph
	nextY []int
	pos   map[string]int // node key -> index
}

func newLayout(titles ...string) *layout {
	l := &layout{pos: map[string]int{}}
	for i, t := range titles {
		l.g.Columns = append(l.g.Columns, column{X: 20 + i*(colWidth+colGap), Title: t})
		l.nextY = append(l.nextY, topMargin)
	}
	l.g.Width = 20 + len(titles)*(colWidth+colGap) - colGap + 20
	return l
}

func (l *layout) add(col int, key, class string, lines ...string) {
	x, y := l.g.Columns[col].X, l.nextY[col]
	lines = wrap(lines, maxLineChars)
	n := node{X: x, Y: y, W: nodeW, H: 2*nodePad + len(lines)*lineH, Class: class}
	for i, t := range lines {
		cls := "sub"
		if i == 0 {
			cls = "title"
		}
		n.Lines = append(n.Lines, textLine{X: x + 10, Y: y + nodePad + 12 + i*lineH, Text: t, Class: cls})
	}
	l.pos[key] = len(l.g.Nodes)
	l.g.Nodes = append(l.g.Nodes, n)
	l.nextY[col] = y + n.H + rowGap
	l.g.Height = max(l.g.Height, l.nextY[col]+10)
}

func (l *layout) link(from, to, class, title string) {
	a, ok1 := l.pos[from]
	b, ok2 := l.pos[to]
	if !ok1 || !ok2 {
		return
	}
	na, nb := l.g.Nodes[a], l.g.Nodes[b]
	x1, y1 := na.X+na.W, na.Y+na.H/2
	x2, y2 := nb.X, nb.Y+nb.H/2
	mx := (x1 + x2) / 2
	l.g.Edges = append(l.g.Edges, edge{D: fmt.Sprintf("M%d %d C%d %d %d %d %d %d", x1, y1, mx, y1, mx, y2, x2, y2), Class: class, Title: title})
}

// maxLineChars is about what fits a node's width in the 11px font.
const maxLineChars = 38

// wrap breaks lines longer than n at spaces (continuations indented); a word longer than
// n is cut.
func wrap(lines []string, n int) []string {
	var out []string
	for _, l := range lines {
		prefix := ""
		for len(l) > n {
			cut := strings.LastIndexByte(l[:n], ' ')
			if cut <= len(prefix) {
				cut = n
			}
			out = append(out, l[:cut])
			l = "  " + strings.TrimLeft(l[cut:], " ")
			prefix = "  "
		}
		out = append(out, l)
	}
	return out
}

// picturesOf draws a spec. Principal-to-endpoint arrows are decisions, not structure: an
// arrow means that a call of the principal to one of the endpoint's APIs, through that
// endpoint, is allowed by the principal's identity policies, the endpoint policy and the
// API's resource policy (a request with the endpoint's aws:SourceVpce and aws:SourceVpc,
// over TLS, without session or node keys).
func picturesOf(spec *config.Spec, now time.Time) *pictures {
	p := &pictures{}
	l := newLayout("Users and roles", "Endpoints (security group)", "APIs", "Backends")
	for _, u := range spec.Users {
		l.add(0, u.ARN, "user", "user "+u.Name, tagLine(u.Tags))
	}
	for _, r := range spec.Roles {
		l.add(0, r.ARN, "role", "role "+r.Name, tagLine(r.Tags))
	}
	for _, ep := range spec.Endpoints {
		lines := []string{ep.ID, "vpc " + ep.VPC}
		for _, in := range ep.Ingress {
			lines = append(lines, "in "+in.Protocol+" "+portRange(in.Ports)+" from "+prefixes(in.CIDRs))
		}
		for _, a := range ep.Listen {
			lines = append(lines, "listen "+a.String())
		}
		l.add(1, "ep:"+ep.ID, "endpoint", lines...)
	}
	backends := map[string]bool{}
	for _, a := range spec.APIs {
		lines := []string{a.Name + " (" + a.ID + ")", "stages " + strings.Join(a.Stages, ", ")}
		for _, rt := range a.Routes {
			auth := ""
			if rt.Authorization == config.AuthNone {
				auth = " (no auth)"
			}
			lines = append(lines, strings.Join(rt.Methods, ",")+" "+rt.Path+auth)
		}
		l.add(2, "api:"+a.ID, "api", lines...)
		names := make([]string, 0, len(a.Backends))
		for n := range a.Backends {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			b := a.Backends[n]
			key := "be:" + a.ID + "/" + n
			if !backends[key] {
				backends[key] = true
				u := ""
				if b.URL != nil {
					u = b.URL.Redacted()
				}
				l.add(3, key, "backend", n, u, "timeout "+b.Timeout.String())
			}
			l.link("api:"+a.ID, key, "flow", "")
		}
	}
	for _, ep := range spec.Endpoints {
		for _, id := range ep.APIs {
			l.link("ep:"+ep.ID, "api:"+id, "flow", "mTLS to the gateway")
		}
	}
	type who struct {
		arn string
		u   *config.User
		r   *config.Role
	}
	var principals []who
	for _, u := range spec.Users {
		principals = append(principals, who{u.ARN, u, nil})
	}
	for _, r := range spec.Roles {
		principals = append(principals, who{r.ARN, nil, r})
	}
	for _, w := range principals {
		reached := false
		for _, ep := range spec.Endpoints {
			if apis := reachable(spec, w.u, w.r, ep, now); len(apis) > 0 {
				reached = true
				l.link(w.arn, "ep:"+ep.ID, "allow", "allowed to "+strings.Join(apis, ", "))
			}
		}
		if !reached {
			p.Unreached = append(p.Unreached, w.arn)
		}
	}
	p.Access = l.g

	e := newLayout("Nodes", "Roles", "Egress proxy", "Allowed destinations")
	for _, n := range spec.Nodes {
		ip := ""
		if n.PrivateIP.IsValid() {
			ip = n.PrivateIP.String()
		}
		e.add(0, "node:"+n.Name, "node", "node "+n.Name, "vpc "+n.VPC+" "+ip, "endpoint "+orNone(n.Endpoint))
	}
	roles := map[string]bool{}
	for _, n := range spec.Nodes {
		if !roles[n.Role] {
			roles[n.Role] = true
			e.add(1, "role:"+n.Role, "role", "role "+n.Role)
		}
		e.link("node:"+n.Name, "role:"+n.Role, "flow", "credentials from the agent")
	}
	for _, eg := range spec.Egress {
		if !roles[eg.Role] {
			roles[eg.Role] = true
			e.add(1, "role:"+eg.Role, "role", "role "+eg.Role)
		}
	}
	if len(roles) > 0 {
		e.add(2, "proxy", "proxy", "egress proxy", "default deny", "SSRF guards, every decision audited")
	}
	names := make([]string, 0, len(roles))
	for r := range roles {
		names = append(names, r)
	}
	slices.Sort(names)
	for _, r := range names {
		eg, ok := spec.EgressFor(r)
		if !ok || len(eg.Allow) == 0 {
			e.link("role:"+r, "proxy", "deny", "no egress rules: every destination denied")
			continue
		}
		e.link("role:"+r, "proxy", "flow", "")
		for _, a := range eg.Allow {
			var key, label, sub string
			switch {
			case a.API != "":
				key, label = "dst:api:"+a.API, "API "+a.API
				var via []string
				for _, ep := range spec.Endpoints {
					if slices.Contains(ep.APIs, a.API) {
						via = append(via, ep.ID)
					}
				}
				sub = "through " + orNone(strings.Join(via, ", "))
			case a.Host != "":
				key, label, sub = "dst:host:"+a.Host, a.Host, "ports "+portList(a.Ports)
			default:
				key, label, sub = "dst:cidr:"+a.CIDR.String(), a.CIDR.String(), "ports "+portList(a.Ports)
			}
			if _, ok := e.pos[key]; !ok {
				e.add(3, key, "destination", label, sub)
			}
			e.link("proxy", key, "allow", "role "+r+" may send to "+label)
		}
	}
	p.Egress = e.g
	p.Counts = []kv{
		{"users", strconv.Itoa(len(spec.Users))}, {"roles", strconv.Itoa(len(spec.Roles))},
		{"endpoints", strconv.Itoa(len(spec.Endpoints))}, {"APIs", strconv.Itoa(len(spec.APIs))},
		{"nodes", strconv.Itoa(len(spec.Nodes))},
	}
	return p
}

// reachable lists the APIs of ep that the principal may call through it (any route and
// method of the API's first stage).
func reachable(spec *config.Spec, u *config.User, r *config.Role, ep *config.Endpoint, now time.Time) []string {
	var out []string
	arn := ""
	switch {
	case u != nil:
		arn = u.ARN
	case r != nil:
		arn = r.ARN
	}
	m := map[string][]string{}
	requestKeys(m, spec, now, "", "")
	principalKeys(m, spec.Account, u, r, nil)
	m["aws:SourceVpce"] = []string{ep.ID}
	if ep.VPC != "" {
		m["aws:SourceVpc"] = []string{ep.VPC}
	}
	ctx := policy.NewContext(m)
	for _, id := range ep.APIs {
		a, ok := spec.API(id)
		if !ok {
			continue
		}
		ls := identityEntries(spec, u, r, nil)
		if a.ResourcePolicy != nil {
			ls = append(ls, labelled{policy.Entry{Kind: policy.Resource, Policy: a.ResourcePolicy.Compiled}, ""})
		}
		if ep.Policy != nil {
			ls = append(ls, labelled{policy.Entry{Kind: policy.Endpoint, Policy: ep.Policy.Compiled}, ""})
		}
		entries := make([]policy.Entry, len(ls))
		for i, l := range ls {
			entries[i] = l.entry
		}
		set := policy.NewSet(entries...)
		allowed := false
	routes:
		for _, stage := range a.Stages {
			for _, rt := range a.Routes {
				if rt.Authorization == config.AuthNone {
					continue
				}
				for _, m := range rt.Methods {
					if m == "ANY" {
						m = "GET"
					}
					res := a.ARN(spec) + "/" + stage + "/" + m + samplePath(rt)
					req := policy.Request{Principal: arn, Action: "execute-api:Invoke", Resource: res, ResourceAccount: spec.Account, Context: ctx}
					if set.Evaluate(&req).Effect == policy.Allow {
						allowed = true
						break routes
					}
				}
			}
		}
		if allowed {
			out = append(out, a.ID)
		}
	}
	return out
}

// samplePath is a concrete path a route template matches.
func samplePath(rt *config.Route) string {
	var b strings.Builder
	for _, s := range rt.Segments {
		b.WriteByte('/')
		switch s.Kind {
		case config.Literal:
			b.WriteString(s.Value)
		default:
			b.WriteString("x")
		}
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

func tagLine(tags map[string]string) string {
	if len(tags) == 0 {
		return "no tags"
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + tags[k]
	}
	return strings.Join(parts, " ")
}

func portRange(p config.PortRange) string {
	if p.From == p.To {
		return strconv.Itoa(int(p.From))
	}
	return strconv.Itoa(int(p.From)) + "-" + strconv.Itoa(int(p.To))
}

func portList(ps []config.PortRange) string {
	if len(ps) == 0 {
		return "any"
	}
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = portRange(p)
	}
	return strings.Join(parts, ",")
}

func prefixes[T fmt.Stringer](ps []T) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// picturesFor returns the spec's pictures, drawn once per spec.
func (h *Handler) picturesFor(spec *config.Spec, now time.Time) *pictures {
	h.graphMu.Lock()
	defer h.graphMu.Unlock()
	if h.graphSpec != spec || h.graphs == nil {
		h.graphSpec, h.graphs = spec, picturesOf(spec, now)
	}
	return h.graphs
}

type overviewData struct {
	P       *pictures
	Account string
	Region  string
}

// overview is the perimeter as a picture.
func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	rq, ok := h.signedIn(w, r, false)
	if !ok {
		return
	}
	if !h.authorize(rq, "GetAccountAuthorizationDetails",
		check{ActionGetAccountAuthorizationDetails, "*"},
		check{ActionDescribeVpcEndpoints, "*"},
		check{ActionAPIGatewayGET, "arn:aws:apigateway:" + rq.spec.Region + "::/restapis"}) {
		return
	}
	h.render(w, r, http.StatusOK, "overview", rq, "Perimeter", overviewData{P: h.picturesFor(rq.spec, rq.now), Account: rq.spec.Account, Region: rq.spec.Region})
}
