package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// IAM quotas (IAM User Guide, "IAM and AWS STS quotas"), at their adjustable maximum where
// AWS allows an increase. A spec beyond them could not be exported to AWS as it is.
const (
	maxTags                 = 50
	maxAttachedPolicies     = 20
	maxUserInlineChars      = 2048
	maxGroupInlineChars     = 5120
	maxGroupsPerUser        = 10
	maxRoleInlineChars      = 10240
	maxManagedPolicyChars   = 6144
	maxTrustPolicyChars     = 4096
	maxRoleDescription      = 1000
	minMaxSessionDuration   = time.Hour
	maxMaxSessionDuration   = 12 * time.Hour
	defaultSessionDuration  = time.Hour
	maxOIDCClientIDs        = 100
	maxOIDCClientIDLength   = 255
	maxOIDCURLLength        = 255
	maxPolicyDescriptionLen = 1000
)

// uniqueFold records name (case-insensitively, as IAM compares user, role and policy
// names) and reports a second definition.
func (d *decoder) uniqueFold(seen map[string]*yaml.Node, name string, n *yaml.Node, path, what string) bool {
	return d.unique(seen, strings.ToLower(name), n, path, what)
}

func (d *decoder) unique(seen map[string]*yaml.Node, key string, n *yaml.Node, path, what string) bool {
	if first, ok := seen[key]; ok {
		d.problem(n, path, fmt.Sprintf("%s %q is defined twice (first at line %d)", what, n.Value, first.Line),
			"rename or remove one of them")
		return false
	}
	seen[key] = n
	return true
}

// reference reports a name that does not resolve, suggesting a near miss.
func (d *decoder) reference(n *yaml.Node, path, what, section string, known []string) {
	slices.Sort(known)
	msg := fmt.Sprintf("no %s named %q", what, n.Value)
	if s := suggest(n.Value, known); s != "" {
		d.problem(n, path, msg, fmt.Sprintf("did you mean %q?", s))
		return
	}
	d.problem(n, path, msg, "define it under "+section+" or fix the name")
}

func (d *decoder) managedPolicies(root *object, s *Spec) {
	items, path := root.list("managedPolicies")
	seen := map[string]*yaml.Node{}
	for i, n := range items {
		p := indexPath(path, i)
		o := d.object(n, p, "name", "path", "description", "document")
		if !o.ok {
			continue
		}
		mp := &ManagedPolicy{Path: "/"}
		o.require("name", "name: ReadOnly")
		name, nameNode, _ := o.match("name", policyNameRe, policyNameWhat)
		mp.Path = d.iamPath(o)
		mp.Description, _, _ = o.str("description")
		if utf8.RuneCountInString(mp.Description) > maxPolicyDescriptionLen {
			dn, dp := o.get("description")
			d.problem(dn, dp, fmt.Sprintf("is longer than IAM's %d characters", maxPolicyDescriptionLen), "shorten it")
		}
		if o.require("document", "document: {Version: \"2012-10-17\", Statement: [...]}") {
			dn, dp := o.get("document")
			mp.Policy = d.policy(dn, dp, identityPolicy, name)
			d.policySize(mp.Policy, dn, dp, maxManagedPolicyChars, "a managed policy")
		}
		if nameNode == nil || !d.uniqueFold(seen, name, nameNode, joinPath(p, "name"), "managed policy") {
			continue
		}
		mp.Name = name
		mp.ARN = "arn:aws:iam::" + s.Account + ":policy" + mp.Path + name
		s.ManagedPolicies = append(s.ManagedPolicies, mp)
		s.managedPolicies[name] = mp
		s.byARN[mp.ARN] = mp
	}
}

// groups decodes IAM groups: users list the groups they belong to, and a group's
// policies apply to each member as if attached to it.
func (d *decoder) groups(root *object, s *Spec) {
	items, path := root.list("groups")
	seen := map[string]*yaml.Node{}
	for i, n := range items {
		p := indexPath(path, i)
		o := d.object(n, p, "name", "path", "policies", "managedPolicies")
		if !o.ok {
			continue
		}
		g := &Group{}
		o.require("name", "name: developers")
		name, nameNode, _ := o.match("name", groupNameRe, groupWhat)
		g.Path = d.iamPath(o)
		g.Policies = d.inlinePolicies(o, maxGroupInlineChars, "a group")
		g.ManagedPolicies = d.attached(o, s)
		if nameNode == nil || !d.uniqueFold(seen, name, nameNode, joinPath(p, "name"), "group") {
			continue
		}
		g.Name = name
		g.ARN = "arn:aws:iam::" + s.Account + ":group" + g.Path + name
		s.Groups = append(s.Groups, g)
		s.groups[name] = g
	}
}

// memberOf resolves a user's groups: a list of group names, at most IAM's 10.
func (d *decoder) memberOf(o *object, s *Spec) []*Group {
	names, nodes := o.strs("groups", groupNameRe, groupWhat)
	n, path := o.get("groups")
	if len(names) > maxGroupsPerUser {
		d.problem(n, path, fmt.Sprintf("lists %d groups; IAM allows a user in %d", len(names), maxGroupsPerUser), "remove the user from some groups")
	}
	return resolveNames(d, names, nodes, path, s.groups, "group", "groups")
}

// resolveNames looks up a list of names written at path in a section's definitions,
// reporting each that is not defined there.
func resolveNames[T any](d *decoder, names []string, nodes []*yaml.Node, path string, defined map[string]T, what, section string) []T {
	var out []T
	for i, name := range names {
		v, ok := defined[name]
		if !ok {
			d.reference(nodes[i], indexPath(path, i), what, section, slices.Collect(maps.Keys(defined)))
			continue
		}
		out = append(out, v)
	}
	return out
}

func (d *decoder) users(root *object, s *Spec) {
	items, path := root.list("users")
	seen := map[string]*yaml.Node{}
	for i, n := range items {
		p := indexPath(path, i)
		o := d.object(n, p, "name", "path", "tags", "policies", "managedPolicies", "permissionsBoundary", "groups")
		if !o.ok {
			continue
		}
		u := &User{}
		o.require("name", "name: alice")
		name, nameNode, _ := o.match("name", principalNameRe, principalWhat)
		u.Path = d.iamPath(o)
		u.Tags = d.tags(o)
		u.Policies = d.inlinePolicies(o, maxUserInlineChars, "a user")
		u.ManagedPolicies = d.attached(o, s)
		u.PermissionsBoundary = d.boundary(o, s)
		u.Groups = d.memberOf(o, s)
		if nameNode == nil || !d.uniqueFold(seen, name, nameNode, joinPath(p, "name"), "user") {
			continue
		}
		u.Name = name
		u.identity = identityPolicies("user "+name, u.Policies, u.ManagedPolicies, u.Groups)
		u.ARN = "arn:aws:iam::" + s.Account + ":user" + u.Path + name
		s.Users = append(s.Users, u)
		s.users[name] = u
		s.byARN[u.ARN] = u
	}
}

func (d *decoder) roles(root *object, s *Spec) {
	items, path := root.list("roles")
	seen := map[string]*yaml.Node{}
	for i, n := range items {
		p := indexPath(path, i)
		o := d.object(n, p, "name", "path", "description", "trustPolicy", "policies", "managedPolicies",
			"permissionsBoundary", "maxSessionDuration", "tags")
		if !o.ok {
			continue
		}
		r := &Role{MaxSessionDuration: defaultSessionDuration}
		o.require("name", "name: app")
		name, nameNode, _ := o.match("name", principalNameRe, principalWhat)
		r.Path = d.iamPath(o)
		r.Description, _, _ = o.str("description")
		if utf8.RuneCountInString(r.Description) > maxRoleDescription {
			dn, dp := o.get("description")
			d.problem(dn, dp, fmt.Sprintf("is longer than IAM's %d characters", maxRoleDescription), "shorten it")
		}
		if o.require("trustPolicy", "trustPolicy: a policy naming who may assume the role") {
			tn, tp := o.get("trustPolicy")
			r.TrustPolicy = d.policy(tn, tp, trustPolicy, "")
			d.policySize(r.TrustPolicy, tn, tp, maxTrustPolicyChars, "a trust policy")
		}
		r.Policies = d.inlinePolicies(o, maxRoleInlineChars, "a role")
		r.ManagedPolicies = d.attached(o, s)
		r.PermissionsBoundary = d.boundary(o, s)
		if dur, dn, dp := o.duration("maxSessionDuration"); dn != nil {
			// CreateRole MaxSessionDuration: 3600 to 43200 seconds.
			if dur < minMaxSessionDuration || dur > maxMaxSessionDuration {
				d.problem(dn, dp, fmt.Sprintf("%s is outside AWS's range for a role (1h to 12h)", dn.Value), "use a value from 1h to 12h")
			} else {
				r.MaxSessionDuration = dur
			}
		}
		r.Tags = d.tags(o)
		if nameNode == nil || !d.uniqueFold(seen, name, nameNode, joinPath(p, "name"), "role") {
			continue
		}
		r.Name = name
		r.identity = identityPolicies("role "+name, r.Policies, r.ManagedPolicies, nil)
		r.ARN = "arn:aws:iam::" + s.Account + ":role" + r.Path + name
		s.Roles = append(s.Roles, r)
		s.roles[name] = r
		s.byARN[r.ARN] = r
	}
}

func (d *decoder) iamPath(o *object) string {
	p, n, _ := o.match("path", iamPathRe, iamPathWhat)
	if n == nil {
		return "/"
	}
	return p
}

// tags decodes an IAM tag map. Keys are compared case-insensitively, as IAM does, and
// the aws: prefix is reserved for AWS.
func (d *decoder) tags(o *object) map[string]string {
	n, path := o.get("tags")
	if n == nil {
		return map[string]string{}
	}
	out := map[string]string{}
	entries := d.entries(n, path)
	if len(entries) > maxTags {
		d.problem(n, path, fmt.Sprintf("has %d tags; IAM allows %d", len(entries), maxTags), "remove some tags")
	}
	seen := map[string]*yaml.Node{}
	for _, e := range entries {
		p := joinPath(path, e.key.Value)
		switch {
		case !tagKeyRe.MatchString(e.key.Value):
			d.problem(e.key, p, fmt.Sprintf("tag key %q is not 1 to 128 letters, digits, spaces and _.:/=+-@", e.key.Value), "rename the tag")
			continue
		case strings.HasPrefix(strings.ToLower(e.key.Value), "aws:"):
			d.problem(e.key, p, "tag keys starting with aws: are reserved for AWS", "rename the tag")
			continue
		}
		if !d.uniqueFold(seen, e.key.Value, e.key, p, "tag") {
			continue
		}
		if e.val.Kind != yaml.ScalarNode || e.val.ShortTag() != "!!str" {
			d.problem(e.val, p, "tag value must be a string, not "+describe(e.val), fmt.Sprintf("quote it: %q", e.val.Value))
			continue
		}
		if !tagValueRe.MatchString(e.val.Value) {
			d.problem(e.val, p, fmt.Sprintf("tag value %q is not 0 to 256 letters, digits, spaces and _.:/=+-@", e.val.Value), "change the value")
			continue
		}
		out[e.key.Value] = e.val.Value
	}
	return out
}

type entry struct{ key, val *yaml.Node }

// entries returns a mapping's user-named entries (tags, backends), keys checked for
// type and duplicates.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	if n.Kind != yaml.MappingNode {
		d.problem(n, path, "must be a mapping, not "+describe(n), "write name: value lines")
		return nil
	}
	var out []entry
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if !d.visit(v) {
			break
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
			d.problem(k, path, "a key must be a plain name", "write name: value")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.problem(k, joinPath(path, k.Value), fmt.Sprintf("duplicate key (first set at line %d)", first.Line), "keep one of them")
			continue
		}
		seen[k.Value] = k
		out = append(out, entry{k, v})
	}
	return out
}

// inlinePolicies decodes a principal's inline policies; IAM limits their total size.
func (d *decoder) inlinePolicies(o *object, maxChars int, what string) []*Policy {
	items, path := o.list("policies")
	var out []*Policy
	seen := map[string]*yaml.Node{}
	total := 0
	for i, n := range items {
		p := indexPath(path, i)
		po := d.object(n, p, "name", "document")
		if !po.ok {
			continue
		}
		po.require("name", "name: read-orders")
		name, nameNode, _ := po.match("name", policyNameRe, policyNameWhat)
		if nameNode != nil {
			d.uniqueFold(seen, name, nameNode, joinPath(p, "name"), "inline policy")
		}
		if !po.require("document", "document: {Version: \"2012-10-17\", Statement: [...]}") {
			continue
		}
		dn, dp := po.get("document")
		pol := d.policy(dn, dp, identityPolicy, name)
		if pol == nil {
			continue
		}
		total += policyChars(pol.Document)
		if total > maxChars {
			d.problem(dn, dp, fmt.Sprintf("the inline policies of %s add up to %d characters; IAM allows %d", what, total, maxChars),
				"move some statements to a managed policy")
		}
		out = append(out, pol)
	}
	return out
}

// attached resolves managedPolicies: a list of managed policy names.
func (d *decoder) attached(o *object, s *Spec) []*ManagedPolicy {
	names, nodes := o.strs("managedPolicies", nil, "")
	if len(names) > maxAttachedPolicies {
		n, p := o.get("managedPolicies")
		d.problem(n, p, fmt.Sprintf("attaches %d managed policies; IAM allows %d", len(names), maxAttachedPolicies),
			"combine policies")
	}
	_, path := o.get("managedPolicies")
	return resolveNames(d, names, nodes, path, s.managedPolicies, "managed policy", "managedPolicies")
}

// boundary resolves permissionsBoundary: the name of a managed policy.
func (d *decoder) boundary(o *object, s *Spec) *ManagedPolicy {
	name, n, path := o.str("permissionsBoundary")
	if n == nil {
		return nil
	}
	mp, ok := s.managedPolicies[name]
	if !ok {
		d.reference(n, path, "managed policy", "managedPolicies", slices.Collect(maps.Keys(s.managedPolicies)))
		return nil
	}
	return mp
}

func (d *decoder) oidcProviders(root *object, s *Spec) {
	items, path := root.list("oidcProviders")
	seen := map[string]*yaml.Node{}
	signInSeen := &signInFirst{}
	for i, n := range items {
		p := indexPath(path, i)
		o := d.object(n, p, "url", "clientIds", "jwksUrl", "signIn")
		if !o.ok {
			continue
		}
		op := &OIDCProvider{}
		o.require("url", "url: https://issuer.example")
		o.require("clientIds", "clientIds: [my-app]")
		raw, un, up := o.str("url")
		issuer, ok := d.httpsURL(raw, un, up, "an issuer", maxOIDCURLLength)
		if ok && issuer.Path != "" && issuer.Path != "/" && strings.HasSuffix(issuer.Path, "/") {
			d.problem(un, up, "the issuer URL ends in /", "remove the trailing /; tokens' iss claim must match it exactly")
			ok = false
		}
		ids, idNodes := o.strs("clientIds", nil, "")
		if n, ip := o.get("clientIds"); n != nil && n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
			d.problem(n, ip, "is empty", "list the audiences (client ids) the provider issues tokens for")
		}
		if len(ids) > maxOIDCClientIDs {
			n, ip := o.get("clientIds")
			d.problem(n, ip, fmt.Sprintf("has %d client ids; IAM allows %d", len(ids), maxOIDCClientIDs), "remove some")
		}
		for j, id := range ids {
			if id == "" || len(id) > maxOIDCClientIDLength {
				_, ip := o.get("clientIds")
				d.problem(idNodes[j], indexPath(ip, j), "a client id must be 1 to 255 characters", "fix the client id")
			}
		}
		op.ClientIDs = ids
		if jraw, jn, jp := o.str("jwksUrl"); jn != nil {
			if ju, ok := d.httpsURL(jraw, jn, jp, "a JWKS", 2048); ok {
				op.JWKSURL = ju.String()
			}
		}
		op.SignIn = d.signIn(o, ids, signInSeen)
		if !ok {
			continue
		}
		op.URL = strings.TrimSuffix(issuer.String(), "/")
		op.Name = issuer.Host + strings.TrimSuffix(issuer.Path, "/")
		if !d.unique(seen, op.Name, un, up, "OIDC provider") {
			continue
		}
		op.ARN = "arn:aws:iam::" + s.Account + ":oidc-provider/" + op.Name
		s.OIDCProviders = append(s.OIDCProviders, op)
		s.oidcProviders[op.URL] = op
	}
}

// Defaults and bounds of oidcProviders[].signIn.
var defaultSignInScopes = []string{"openid", "profile", "email", "offline_access"}

const maxClaimName = 256

// signInFirst remembers the first provider with signIn: people sign in through one.
type signInFirst struct{ line int }

// signIn reads oidcProviders[].signIn.
func (d *decoder) signIn(o *object, clientIDs []string, first *signInFirst) *SignIn {
	n, path := o.get("signIn")
	if n == nil {
		return nil
	}
	so := d.object(n, path, "clientId", "scopes", "roleClaim")
	if !so.ok {
		return nil
	}
	if first.line != 0 {
		d.problem(n, path, fmt.Sprintf("people already sign in through the provider at line %d", first.line), "keep signIn on one provider")
		return nil
	}
	first.line = n.Line
	si := &SignIn{Scopes: defaultSignInScopes}
	so.require("clientId", "clientId: phantom")
	if id, in, ip := so.str("clientId"); in != nil {
		if !slices.Contains(clientIDs, id) {
			d.problem(in, ip, fmt.Sprintf("%q is not one of the provider's clientIds", id), "add it to clientIds: STS accepts only tokens for those audiences")
		} else {
			si.ClientID = id
		}
	}
	if _, sp := so.get("scopes"); so.has("scopes") {
		scopes, _ := so.strs("scopes", scopeRe, "an OAuth scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)")
		if !slices.Contains(scopes, "openid") {
			sn, _ := so.get("scopes")
			d.problem(sn, sp, "does not include openid", "add openid: sign-in needs an ID token")
		}
		si.Scopes = scopes
	}
	if claim, cn, cp := so.str("roleClaim"); cn != nil {
		if claim == "" || len(claim) > maxClaimName || strings.ContainsFunc(claim, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
			d.problem(cn, cp, "a claim name is 1 to 256 characters without spaces or control characters", "name the claim the provider lists roles in, e.g. phantom_roles")
		} else {
			si.RoleClaim = claim
		}
	}
	if si.ClientID == "" {
		return nil
	}
	return si
}

// console reads the console section; it needs the OIDC providers (single sign-on).
func (d *decoder) console(root *object, s *Spec) {
	s.Console.KeySignIn = KeySignInAllow
	n, path := root.get("console")
	o := d.object(n, path, "keySignIn")
	v, kn, kp := o.str("keySignIn")
	if kn == nil {
		return
	}
	switch k := KeySignIn(v); k {
	case KeySignInAllow:
	case KeySignInRefuse:
		if _, ok := s.SignInProvider(); !ok {
			d.problem(kn, kp, "no one could sign in to the console: no OIDC provider has signIn", "add signIn to an OIDC provider, or allow key sign-in")
			return
		}
		s.Console.KeySignIn = k
	default:
		d.problem(kn, kp, fmt.Sprintf("%q is not allow or refuse", v), "write keySignIn: refuse to allow single sign-on only, or allow")
	}
}

// httpsURL checks a URL Phantom fetches secrets-bearing data from: https, or http to a
// loopback address (a test issuer on the same machine), never with credentials, query or
// fragment.
func (d *decoder) httpsURL(raw string, n *yaml.Node, path, what string, maxLen int) (*url.URL, bool) {
	if n == nil {
		return nil, false
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || !u.IsAbs():
		d.problem(n, path, fmt.Sprintf("%q is not an absolute URL", raw), "write https://host/path")
	case len(raw) > maxLen:
		d.problem(n, path, fmt.Sprintf("is longer than %d characters", maxLen), "shorten it")
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
		d.problem(n, path, what+" URL must use https", "use https:// (plain http is allowed only to a loopback address)")
	case u.Scheme != "https" && u.Scheme != "http":
		d.problem(n, path, fmt.Sprintf("scheme %q is not https", u.Scheme), "use https://")
	case u.User != nil:
		d.problem(n, path, "the URL holds credentials", "remove user:password@; secrets do not belong in the spec")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		d.problem(n, path, "the URL has a query or fragment", "remove everything from ? or #")
	default:
		return u, true
	}
	return nil, false
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// hostName checks and normalises a DNS host name (RFC 1123 §2.1): lower case, no trailing
// dot. wildcard allows a leading *. label.
func hostName(s string, wildcard bool) (string, error) {
	h := strings.ToLower(strings.TrimSuffix(s, "."))
	rest := h
	if wildcard && strings.HasPrefix(h, "*.") {
		rest = h[2:]
		if strings.Count(rest, ".") < 1 {
			return "", fmt.Errorf("%q would match a whole top-level domain", s)
		}
	}
	if rest == "" || len(rest) > 253 {
		return "", fmt.Errorf("%q is not a host name", s)
	}
	labels := strings.Split(rest, ".")
	for _, l := range labels {
		if !labelRe.MatchString(l) {
			return "", fmt.Errorf("%q is not a host name (label %q)", s, l)
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" || net.ParseIP(rest) != nil {
		return "", fmt.Errorf("%q looks like an IP address, not a host name", s)
	}
	return h, nil
}
