package iamimport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// account is what the import carries, as the spec will hold it. Items the spec cannot
// hold are taken out of it, each with a note.
type account struct {
	id       string
	policies []*managed
	groups   []*principal
	users    []*principal
	roles    []*principal
	notes    []Note
	// skippedAWS counts AWS managed policies in the input that nothing here uses.
	skippedAWS int
}

// managed is a managed policy: the account's own or one of AWS's that something here
// attaches.
type managed struct {
	name, path, desc string
	// arn is the policy's ARN in the input (arn:aws:iam::aws:policy/... for AWS's).
	arn string
	doc json.RawMessage
	// restrictive: some statement does not simply allow, so leaving the policy out
	// could grant more than AWS does.
	restrictive bool
	dropped     bool
}

// inline is an inline policy.
type inline struct {
	name        string
	doc         json.RawMessage
	restrictive bool
}

// principal is a user, group or role.
type principal struct {
	kind, name, path string
	inline           []*inline
	managed          []*managed
	boundary         *managed
	tags             []Tag
	groups           []*principal // a user's groups
	members          []*principal // a group's users
	// Roles only.
	desc       string
	trust      json.RawMessage
	maxSession int
	dropped    bool
}

func (p *principal) label() string { return p.kind + " " + p.name }

// Note is one thing of the input the spec does not carry as it was: what, and why.
type Note struct {
	// Subject is what the note is about: "role app", "managed policy arn:...".
	Subject string
	// Text says what happened to it and why.
	Text string
}

func (n Note) String() string { return n.Subject + ": " + n.Text }

func (a *account) note(subject, format string, args ...any) {
	a.notes = append(a.notes, Note{Subject: subject, Text: fmt.Sprintf(format, args...)})
}

// restrictive reports whether a document has a statement that is not a plain Allow: a
// Deny, or anything malformed, which could only be judged by evaluating it. Leaving such
// a policy out could widen access, so its holder is left out instead.
func restrictive(doc json.RawMessage) bool {
	var d struct{ Statement json.RawMessage }
	if json.Unmarshal(doc, &d) != nil {
		return true
	}
	var stmts []json.RawMessage
	if json.Unmarshal(d.Statement, &stmts) != nil {
		stmts = []json.RawMessage{d.Statement}
	}
	for _, s := range stmts {
		var st struct{ Effect string }
		if json.Unmarshal(s, &st) != nil || st.Effect != "Allow" {
			return true
		}
	}
	return false
}

// leaveOut takes a principal out of the import. A group's members go with it: without
// the group they would keep its allows' absence but lose its denies too.
func (a *account) leaveOut(p *principal, format string, args ...any) {
	if p.dropped {
		return
	}
	p.dropped = true
	a.note(p.label(), "left out: "+format, args...)
	for _, u := range p.members {
		a.leaveOut(u, "a member of group %s, which is left out", p.name)
	}
}

// dropPolicy takes a managed policy out. Each holder loses the attachment when the
// policy only allows; when it could deny, or is a boundary, the holder is left out.
func (a *account) dropPolicy(mp *managed, why string) {
	if mp.dropped {
		return
	}
	mp.dropped = true
	a.note("managed policy "+mp.arn, "not carried: %s", why)
	for _, p := range a.principals() {
		if p.dropped {
			continue
		}
		if p.boundary == mp {
			a.leaveOut(p, "its permissions boundary %s is not carried", mp.arn)
			continue
		}
		if !slices.Contains(p.managed, mp) {
			continue
		}
		if mp.restrictive {
			a.leaveOut(p, "its managed policy %s is not carried and could deny (a statement is not a plain Allow)", mp.arn)
			continue
		}
		p.managed = slices.DeleteFunc(p.managed, func(m *managed) bool { return m == mp })
		a.note(p.label(), "managed policy %s not attached (it only allows, so %s has less access here than on AWS)", mp.arn, p.name)
	}
}

// dropInline takes an inline policy out, or its holder when the policy could deny.
func (a *account) dropInline(p *principal, in *inline, why string) {
	if in.restrictive {
		a.leaveOut(p, "its inline policy %s is not carried (%s) and could deny", in.name, why)
		return
	}
	p.inline = slices.DeleteFunc(p.inline, func(x *inline) bool { return x == in })
	a.note(p.label(), "inline policy %s not carried: %s (it only allows, so %s has less access here than on AWS)", in.name, why, p.name)
}

// dropTag takes a tag out. A tag some policy of the account could test (aws:PrincipalTag/
// KEY, aws:ResourceTag/KEY or iam:ResourceTag/KEY of a role) could decide either way,
// so then the principal is left out instead.
func (a *account) dropTag(p *principal, key, why string) {
	if a.tagTested(key) {
		a.leaveOut(p, "its tag %s is not carried (%s) and a policy tests a tag of that key", key, why)
		return
	}
	p.tags = slices.DeleteFunc(p.tags, func(t Tag) bool { return t.Key == key })
	a.note(p.label(), "tag %s not carried: %s (no policy here tests it)", key, why)
}

func (a *account) tagTested(key string) bool {
	needle := []byte(strings.ToLower("Tag/" + key))
	test := func(doc json.RawMessage) bool { return bytes.Contains(bytes.ToLower(doc), needle) }
	for _, mp := range a.policies {
		if test(mp.doc) {
			return true
		}
	}
	for _, p := range a.principals() {
		if test(p.trust) {
			return true
		}
		for _, in := range p.inline {
			if test(in.doc) {
				return true
			}
		}
	}
	return false
}

// dropTrustStatement takes one statement out of a role's trust policy when it allows
// (fewer principals may assume the role); a role whose trust would deny less, or would
// trust nobody, is left out.
func (a *account) dropTrustStatement(r *principal, index int, why string) {
	var doc map[string]json.RawMessage
	var stmts []json.RawMessage
	if json.Unmarshal(r.trust, &doc) != nil || json.Unmarshal(doc["Statement"], &stmts) != nil || index >= len(stmts) {
		a.leaveOut(r, "its trust policy is not carried: %s", why)
		return
	}
	if restrictive(json.RawMessage(`{"Statement":[` + string(stmts[index]) + `]}`)) {
		a.leaveOut(r, "its trust policy's statement %d is not carried (%s) and could deny", index, why)
		return
	}
	if len(stmts) == 1 {
		a.leaveOut(r, "its trust policy's only statement is not carried (%s): nobody could assume it", why)
		return
	}
	removed := stmts[index]
	stmts = slices.Delete(stmts, index, index+1)
	doc["Statement"], _ = json.Marshal(stmts)
	r.trust, _ = json.Marshal(doc)
	a.note(r.label(), "trust policy statement %d not carried: %s (fewer principals may assume the role); it was %s", index, why, removed)
}

// dropTrustPrincipal takes one principal out of a list of them in an allowing trust
// statement (one fewer may assume the role), keeping the statement's others. It reports
// false when that is not the case, for the caller to take out the whole statement.
func (a *account) dropTrustPrincipal(r *principal, index int, typ string, j int, why string) bool {
	var doc map[string]json.RawMessage
	var stmts []json.RawMessage
	if json.Unmarshal(r.trust, &doc) != nil || json.Unmarshal(doc["Statement"], &stmts) != nil || index >= len(stmts) {
		return false
	}
	var st map[string]json.RawMessage
	var pr map[string]json.RawMessage
	var list []json.RawMessage
	if json.Unmarshal(stmts[index], &st) != nil || restrictive(json.RawMessage(`{"Statement":[`+string(stmts[index])+`]}`)) ||
		json.Unmarshal(st["Principal"], &pr) != nil || json.Unmarshal(pr[typ], &list) != nil || j >= len(list) || len(list) < 2 {
		return false
	}
	removed := list[j]
	pr[typ], _ = json.Marshal(slices.Delete(list, j, j+1))
	st["Principal"], _ = json.Marshal(pr)
	stmts[index], _ = json.Marshal(st)
	doc["Statement"], _ = json.Marshal(stmts)
	r.trust, _ = json.Marshal(doc)
	a.note(r.label(), "principal %s taken out of trust policy statement %d: %s (one fewer may assume the role)", removed, index, why)
	return true
}

func (a *account) principals() []*principal {
	out := make([]*principal, 0, len(a.groups)+len(a.users)+len(a.roles))
	out = append(out, a.groups...)
	out = append(out, a.users...)
	return append(out, a.roles...)
}
