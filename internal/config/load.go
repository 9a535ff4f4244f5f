package config

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a spec file. A perimeter with thousands of roles and APIs fits in a
// few megabytes; anything larger is a mistake or an attack on the loader.
const MaxFileSize = 8 << 20

// Load reads and validates the spec at path. An invalid spec returns *Error listing every
// problem; other errors (the file cannot be read) are wrapped as usual.
func Load(path string) (*Spec, error) {
	data, err := readSpec(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse validates a spec held in memory; file names it in problems and is the base for
// relative paths inside the spec (threat lists).
func Parse(file string, data []byte) (*Spec, error) {
	d := &decoder{file: file}
	s := newSpec(file, data)
	if len(data) > MaxFileSize {
		d.problem(nil, "", fmt.Sprintf("the file is larger than %d bytes", MaxFileSize), "split policies into managed policies or trim the file")
		return nil, &Error{Problems: d.problems}
	}
	root := d.document(data)
	if root != nil {
		d.spec(root, s, filepath.Dir(file))
	}
	if len(d.problems) > 0 {
		sortProblems(d.problems)
		if d.dropped > 0 {
			d.problems = append(d.problems, Problem{File: file,
				Msg: fmt.Sprintf("%d more problems not shown", d.dropped), Fix: "fix the ones above and validate again"})
		}
		return nil, &Error{Problems: d.problems}
	}
	return s, nil
}

func newSpec(file string, data []byte) *Spec {
	return &Spec{
		File:            file,
		Digest:          sha256.Sum256(data),
		managedPolicies: map[string]*ManagedPolicy{},
		groups:          map[string]*Group{},
		users:           map[string]*User{},
		roles:           map[string]*Role{},
		oidcProviders:   map[string]*OIDCProvider{},
		apis:            map[string]*API{},
		endpoints:       map[string]*Endpoint{},
		nodes:           map[string]*Node{},
		egress:          map[string]*Egress{},
		byARN:           map[string]any{},
		dnsNames:        map[string]*Endpoint{},
	}
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses the YAML text into its single document's root node.
func (d *decoder) document(data []byte) *yaml.Node {
	d.data = data
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.problem(nil, "", "the file is empty", "start it with version: 1")
			return nil
		}
		d.syntax(err)
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntax(err)
		return nil
	default:
		d.problem(&extra, "", "the file holds more than one YAML document", "keep one perimeter per file and remove the --- line")
		return nil
	}
	if len(doc.Content) == 0 {
		d.problem(nil, "", "the file is empty", "start it with version: 1")
		return nil
	}
	return doc.Content[0]
}

// syntax turns a YAML parser error into a located problem.
func (d *decoder) syntax(err error) {
	msg := err.Error()
	p := Problem{File: d.file, Msg: "invalid YAML: " + msg,
		Fix: "fix the syntax; quote values that start with * & ! | > % @ or `"}
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = "invalid YAML: " + m[2]
	}
	d.problems = append(d.problems, p)
}

// spec decodes the root mapping. Sections are decoded in dependency order (managed
// policies before the users and roles that attach them, APIs before the endpoints that
// serve them, ...) so each reference is checked where it is written.
func (d *decoder) spec(n *yaml.Node, s *Spec, dir string) {
	root := d.object(n, "", "version", "account", "region", "gateway", "sts", "console", "audit", "events", "detection",
		"managedPolicies", "groups", "users", "roles", "oidcProviders", "apis", "endpoints", "nodes", "egress")
	if !root.ok {
		return
	}
	if root.require("version", "version: 1") {
		v, _ := root.get("version")
		if v != nil && (v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Value != "1") {
			d.problem(v, "version", fmt.Sprintf("unsupported version %q", v.Value), "this phantom reads version: 1")
		} else {
			s.Version = 1
		}
	}
	if root.require("account", `account: "123456789012"`) {
		s.Account, _, _ = root.match("account", accountRe, accountWhat)
	}
	if root.require("region", "region: us-east-1") {
		s.Region, _, _ = root.match("region", regionRe, regionWhat)
	}
	l := &listeners{d: d}
	d.gateway(root, s, l)
	d.sts(root, s, l)
	d.audit(root, s)
	d.events(root, s, dir)
	d.detection(root, s, dir)
	d.managedPolicies(root, s)
	d.groups(root, s)
	d.users(root, s)
	d.roles(root, s)
	d.oidcProviders(root, s)
	d.console(root, s)
	d.apis(root, s, dir)
	d.endpoints(root, s, l)
	d.nodes(root, s)
	d.egressRules(root, s)
	d.checkPrincipalRefs(s)
}
