package keys

import (
	"fmt"
	"slices"
)

// Component is a kind of process, named as its subcommand. Each holds the purposes its
// job needs (Purposes); threat-model.md says why each is there.
type Component string

const (
	// Operator holds the master key: the admin commands and `phantom up`.
	Operator Component = "operator"
	// STS issues sessions (it seals and signs tokens), enrolls nodes, decodes
	// authorization messages and signs proxy passwords.
	STS Component = "sts"
	// Gateway verifies SigV4 (users' secret keys), opens session tokens (it cannot sign
	// them), signs identity assertions and seals authorization messages.
	Gateway Component = "gateway"
	// Endpoint forwards over mutual TLS: it decides on the spec alone and derives nothing.
	Endpoint Component = "endpoint"
	// Egress checks proxy passwords with the public key only.
	Egress Component = "egress"
	// Detector reads audit chains and writes findings and responses: no secret.
	Detector Component = "detector"
	// Console signs people in with access keys or sessions.
	Console Component = "console"
)

// components lists every component and the purposes it holds.
var components = map[Component][]Purpose{
	Operator: nil, // the master key: every purpose
	STS:      {StoreAccessKeys, StoreTokenKeys, StoreTokenSigning, StoreMFA, StoreCA, AuthzMessages, EgressPasswords},
	Gateway:  {StoreAccessKeys, StoreTokenKeys, Assertion, AuthzMessages},
	Endpoint: {},
	Egress:   {EgressPasswordsPublic},
	Detector: {},
	Console:  {StoreAccessKeys, StoreTokenKeys},
}

// Components lists the components, sorted by name.
func Components() []Component {
	out := make([]Component, 0, len(components))
	for c := range components {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// ParseComponent returns the component named s.
func ParseComponent(s string) (Component, error) {
	c := Component(s)
	if _, ok := components[c]; !ok {
		return "", fmt.Errorf("unknown component %q (one of %v)", s, Components())
	}
	return c, nil
}

// Purposes returns the purposes c holds; the operator's are every purpose.
func (c Component) Purposes() ([]Purpose, error) {
	ps, ok := components[c]
	if !ok {
		return nil, fmt.Errorf("unknown component %q", c)
	}
	if c == Operator {
		return Purposes(), nil
	}
	return slices.Clone(ps), nil
}

func (c Component) String() string { return string(c) }
