package iamimport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// rendered is one spec text and where each item of the account sits in it, so that a
// problem the loader reports at a path can be traced to the item.
type rendered struct {
	text     []byte
	policies []*managed
	groups   []*principal
	users    []*principal
	roles    []*principal
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func mapping(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		v, ok := kv[i+1].(*yaml.Node)
		if !ok {
			v = str(kv[i+1].(string))
		}
		n.Content = append(n.Content, str(kv[i].(string)), v)
	}
	return n
}

func seq(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Content: items}
}

func flowNames(names []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, s := range names {
		n.Content = append(n.Content, str(s))
	}
	return n
}

// document writes a policy as its JSON, indented, in a literal block: the spec reads a
// string holding JSON as the AWS CLI does, so the text is the input's document itself.
func document(doc json.RawMessage) *yaml.Node {
	var b bytes.Buffer
	if err := json.Indent(&b, doc, "", "  "); err != nil {
		// Not JSON: written as it is, for the loader to refuse at this path.
		return str(string(doc))
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.LiteralStyle, Value: b.String()}
}

// render writes the account as a spec.
func (a *account) render(region string, oidc []OIDCProvider, header []string) (*rendered, error) {
	r := &rendered{}
	root := mapping("version", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: "1"}, "account", a.id, "region", region)
	root.HeadComment = comment(header)

	var pols []*yaml.Node
	for _, mp := range a.policies {
		if mp.dropped {
			continue
		}
		n := mapping("name", mp.name)
		if mp.path != "/" && mp.path != "" {
			n.Content = append(n.Content, str("path"), str(mp.path))
		}
		if mp.desc != "" {
			n.Content = append(n.Content, str("description"), str(mp.desc))
		}
		n.Content = append(n.Content, str("document"), document(mp.doc))
		pols = append(pols, n)
		r.policies = append(r.policies, mp)
	}
	section(root, "managedPolicies", pols)

	var groups, users, roles []*yaml.Node
	for _, g := range a.groups {
		if !g.dropped {
			groups = append(groups, principalNode(g))
			r.groups = append(r.groups, g)
		}
	}
	for _, u := range a.users {
		if !u.dropped {
			users = append(users, principalNode(u))
			r.users = append(r.users, u)
		}
	}
	for _, ro := range a.roles {
		if !ro.dropped {
			roles = append(roles, principalNode(ro))
			r.roles = append(r.roles, ro)
		}
	}
	section(root, "groups", groups)
	section(root, "users", users)
	section(root, "roles", roles)
	var providers []*yaml.Node
	for _, p := range oidc {
		providers = append(providers, mapping("url", p.URL, "clientIds", flowNames(p.ClientIDs)))
	}
	section(root, "oidcProviders", providers)

	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, fmt.Errorf("write spec: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("write spec: %w", err)
	}
	r.text = b.Bytes()
	return r, nil
}

func section(root *yaml.Node, key string, items []*yaml.Node) {
	if len(items) > 0 {
		root.Content = append(root.Content, str(key), seq(items...))
	}
}

// principalNode writes a user, group or role in the order the spec's reference lists
// the fields.
func principalNode(p *principal) *yaml.Node {
	n := mapping("name", p.name)
	add := func(k string, v *yaml.Node) { n.Content = append(n.Content, str(k), v) }
	if p.path != "/" && p.path != "" {
		add("path", str(p.path))
	}
	if p.desc != "" {
		add("description", str(p.desc))
	}
	if p.trust != nil {
		add("trustPolicy", document(p.trust))
	}
	if p.maxSession > 0 {
		add("maxSessionDuration", str(fmt.Sprintf("%ds", p.maxSession)))
	}
	if len(p.groups) > 0 {
		names := make([]string, len(p.groups))
		for i, g := range p.groups {
			names[i] = g.name
		}
		add("groups", flowNames(names))
	}
	if len(p.tags) > 0 {
		tags := &yaml.Node{Kind: yaml.MappingNode}
		for _, t := range p.tags {
			tags.Content = append(tags.Content, str(t.Key), str(t.Value))
		}
		add("tags", tags)
	}
	if len(p.managed) > 0 {
		names := make([]string, len(p.managed))
		for i, mp := range p.managed {
			names[i] = mp.name
		}
		add("managedPolicies", flowNames(names))
	}
	if p.boundary != nil {
		add("permissionsBoundary", str(p.boundary.name))
	}
	if len(p.inline) > 0 {
		var pols []*yaml.Node
		for _, in := range p.inline {
			pols = append(pols, mapping("name", in.name, "document", document(in.doc)))
		}
		add("policies", seq(pols...))
	}
	return n
}

// comment turns lines into a YAML comment. Names and documents from the input reach
// these lines: every character that could end the comment line (a line break of any
// kind) or hide text is replaced, so nothing in the input can write YAML of its own.
func comment(lines []string) string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = "# " + cleanLine(l)
	}
	return strings.Join(out, "\n")
}

func cleanLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || (unicode.IsGraphic(r) && !unicode.Is(unicode.Zl, r) && !unicode.Is(unicode.Zp, r)) {
			return r
		}
		return '\uFFFD'
	}, s)
}
