package policy

import (
	"bytes"
	"encoding/json"
	"slices"
)

// MarshalJSON prints the policy in canonical form: elements in the order of the IAM
// JSON policy element reference (Version, Id, Statement; Sid, Effect, Principal,
// Action, Resource, Condition), Statement always an array, a list of one value as a
// plain string, principal types sorted, condition values as strings (IAM compares them
// as strings, so 10 and "10" are the same value). Parse(print(p)) prints the same again.
func (p *Policy) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	comma := false
	field := func(name string) {
		if comma {
			b.WriteByte(',')
		}
		comma = true
		writeString(&b, name)
		b.WriteByte(':')
	}
	if p.hasVersion {
		field("Version")
		writeString(&b, p.version)
	}
	if p.hasID {
		field("Id")
		writeString(&b, p.id)
	}
	field("Statement")
	b.WriteByte('[')
	for i, s := range p.stmts {
		if i > 0 {
			b.WriteByte(',')
		}
		s.print(&b)
	}
	b.WriteString("]}")
	return b.Bytes(), nil
}

func writeString(b *bytes.Buffer, s string) {
	out, _ := json.Marshal(s) // a string always marshals
	b.Write(out)
}

func writeList(b *bytes.Buffer, vals []string) {
	if len(vals) == 1 {
		writeString(b, vals[0])
		return
	}
	b.WriteByte('[')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(b, v)
	}
	b.WriteByte(']')
}

func (s *statement) print(b *bytes.Buffer) {
	b.WriteByte('{')
	if s.hasSid {
		b.WriteString(`"Sid":`)
		writeString(b, s.sid)
		b.WriteByte(',')
	}
	if s.deny {
		b.WriteString(`"Effect":"Deny"`)
	} else {
		b.WriteString(`"Effect":"Allow"`)
	}
	if s.hasPrincipal {
		if s.notPrincipal {
			b.WriteString(`,"NotPrincipal":`)
		} else {
			b.WriteString(`,"Principal":`)
		}
		s.principal.print(b)
	}
	if s.notAction {
		b.WriteString(`,"NotAction":`)
	} else {
		b.WriteString(`,"Action":`)
	}
	acts := make([]string, len(s.actions))
	for i, a := range s.actions {
		acts[i] = a.raw
	}
	writeList(b, acts)
	if s.hasResource {
		if s.notResource {
			b.WriteString(`,"NotResource":`)
		} else {
			b.WriteString(`,"Resource":`)
		}
		writeList(b, s.resourcesRaw)
	}
	if len(s.conds) > 0 {
		b.WriteString(`,"Condition":{`)
		// Conditions are stored flat; regroup them by operator in first-seen order.
		var ops []string
		for _, c := range s.conds {
			if !slices.Contains(ops, c.op) {
				ops = append(ops, c.op)
			}
		}
		for i, op := range ops {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, op)
			b.WriteString(":{")
			first := true
			for _, c := range s.conds {
				if c.op != op {
					continue
				}
				if !first {
					b.WriteByte(',')
				}
				first = false
				writeString(b, c.key)
				b.WriteByte(':')
				vals := make([]string, len(c.values))
				for j := range c.values {
					vals[j] = c.values[j].raw
				}
				writeList(b, vals)
			}
			b.WriteByte('}')
		}
		b.WriteByte('}')
	}
	b.WriteByte('}')
}

func (p *principals) print(b *bytes.Buffer) {
	if p.star {
		b.WriteString(`"*"`)
		return
	}
	groups := slices.Clone(p.groups)
	slices.SortStableFunc(groups, func(x, y principalGroup) int {
		switch {
		case x.typ < y.typ:
			return -1
		case x.typ > y.typ:
			return 1
		}
		return 0
	})
	b.WriteByte('{')
	for i, g := range groups {
		if i > 0 {
			b.WriteByte(',')
		}
		writeString(b, g.typ)
		b.WriteByte(':')
		writeList(b, g.values)
	}
	b.WriteByte('}')
}
