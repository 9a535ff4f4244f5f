package iamimport

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/config"
)

// Options are the import's settings.
type Options struct {
	// Region is the spec's region; IAM is global, so the input does not say. Default
	// us-east-1.
	Region string
	// Account overrides the account id found in the input's ARNs.
	Account string
	// Source names the input in the spec's header comment.
	Source string
	// OIDCProviders are written to the spec, so that trust policies naming them load:
	// the input names providers by ARN but does not describe them.
	OIDCProviders []OIDCProvider
}

// OIDCProvider is an OpenID Connect provider of the account: its issuer URL and client
// ids (aws iam get-open-id-connect-provider).
type OIDCProvider struct {
	URL       string
	ClientIDs []string
}

// Result is an imported spec.
type Result struct {
	// YAML is the spec's text; Spec is that text as internal/config loaded it.
	YAML []byte
	Spec *config.Spec
	// Notes list everything of the input the spec does not carry as it was.
	Notes []Note
}

// maxRounds bounds the validate-and-leave-out rounds; each round takes at least one item
// out, so an account needs at most as many rounds as it has items.
const maxRounds = 100000

// Import converts authorization details into a spec that internal/config accepts. The
// loader is the judge: the account is written out, loaded, and every item the loader
// refuses is left out (failing closed, see model.go), until the text loads.
func Import(d *Details, opts Options) (*Result, error) {
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	a, err := build(d, opts.Account)
	if err != nil {
		return nil, err
	}
	for round := 0; round < maxRounds; round++ {
		r, err := a.render(opts.Region, opts.OIDCProviders, a.header(opts.Source))
		if err != nil {
			return nil, err
		}
		spec, err := config.Parse("imported.yaml", r.text)
		if err == nil {
			return &Result{YAML: r.text, Spec: spec, Notes: a.notes}, nil
		}
		var cerr *config.Error
		if !errors.As(err, &cerr) {
			return nil, err
		}
		if !a.leaveOutRefused(r, cerr.Problems) {
			return nil, fmt.Errorf("the spec written for this account does not load, and the problem is not one the import can leave out:\n%w", err)
		}
	}
	return nil, errors.New("the import did not settle: too many items refused")
}

// leaveOutRefused acts on the problems the loader reported, one per item per round:
// taking something out of an item shifts the indices of its later parts, which later
// problems of the same round name. It reports whether anything was taken out.
func (a *account) leaveOutRefused(r *rendered, problems []config.Problem) bool {
	touched := map[any]bool{}
	acted := false
	for _, p := range problems {
		kind, i, rest, ok := splitPath(p.Path)
		if !ok {
			continue
		}
		why := p.Msg
		if kind == "managedPolicies" {
			if i >= len(r.policies) || touched[r.policies[i]] {
				continue
			}
			mp := r.policies[i]
			touched[mp] = true
			for _, h := range a.principals() {
				if h.boundary == mp || slices.Contains(h.managed, mp) {
					touched[h] = true
				}
			}
			a.dropPolicy(mp, "the spec refuses it: "+why)
			acted = true
			continue
		}
		list := map[string][]*principal{"groups": r.groups, "users": r.users, "roles": r.roles}[kind]
		if i >= len(list) || touched[list[i]] || list[i].dropped {
			continue
		}
		h := list[i]
		touched[h] = true
		a.refusedPart(h, rest, why)
		acted = true
	}
	return acted
}

// refusedPart leaves out the part of a principal a problem's path names (rest is the
// path after "users[3]"), or the principal.
func (a *account) refusedPart(h *principal, rest, why string) {
	field, sub, _ := strings.Cut(strings.TrimPrefix(rest, "."), ".")
	name, index := field, -1
	if open := strings.IndexByte(field, '['); open >= 0 && strings.HasSuffix(field, "]") {
		name = field[:open]
		if n, err := strconv.Atoi(field[open+1 : len(field)-1]); err == nil {
			index = n
		}
	}
	switch {
	case name == "policies" && index >= 0 && index < len(h.inline):
		a.dropInline(h, h.inline[index], "the spec refuses it: "+why)
	case name == "managedPolicies" && index >= 0 && index < len(h.managed):
		mp := h.managed[index]
		if mp.restrictive {
			a.leaveOut(h, "its managed policy %s cannot be attached (%s) and could deny", mp.arn, why)
			return
		}
		h.managed = slices.Delete(h.managed, index, index+1)
		a.note(h.label(), "managed policy %s not attached: %s (it only allows)", mp.arn, why)
	case name == "tags" && sub != "":
		a.dropTag(h, sub, why)
	case name == "trustPolicy" && strings.HasPrefix(sub, "Statement["):
		if strings.Contains(why, ":oidc-provider/") {
			why += " (give the provider with --oidc-provider URL=CLIENT_ID,... from aws iam get-open-id-connect-provider)"
		}
		m := trustPathRe.FindStringSubmatch(sub)
		if m == nil {
			a.leaveOut(h, "the spec refuses its trust policy: %s", why)
			return
		}
		k, _ := strconv.Atoi(m[1])
		if m[2] != "" {
			j, _ := strconv.Atoi(m[4])
			if a.dropTrustPrincipal(h, k, m[3], j, "the spec refuses it: "+why) {
				return
			}
		}
		a.dropTrustStatement(h, k, "the spec refuses it: "+why)
	default:
		a.leaveOut(h, "the spec refuses it (%s): %s", strings.TrimPrefix(rest, "."), why)
	}
}

// trustPathRe reads the statement, and the principal in a list of them, that a problem
// of a trust policy names: Statement[0] or Statement[0].Principal.AWS[2]....
var trustPathRe = regexp.MustCompile(`^Statement\[(\d{1,6})\](\.Principal\.(AWS|Federated|Service)\[(\d{1,6})\])?`)

// splitPath splits a problem path such as roles[2].trustPolicy.Statement[0] into the
// section, the index and the rest.
func splitPath(path string) (kind string, index int, rest string, ok bool) {
	kind, after, found := strings.Cut(path, "[")
	if !found {
		return "", 0, "", false
	}
	switch kind {
	case "managedPolicies", "groups", "users", "roles":
	default:
		return "", 0, "", false
	}
	num, rest, found := strings.Cut(after, "]")
	if !found {
		return "", 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return "", 0, "", false
	}
	return kind, n, rest, true
}

// header is the spec's opening comment: where it came from, what it carries, and every
// note.
func (a *account) header(source string) []string {
	count := func(ps []*principal) int {
		n := 0
		for _, p := range ps {
			if !p.dropped {
				n++
			}
		}
		return n
	}
	pols := 0
	for _, mp := range a.policies {
		if !mp.dropped {
			pols++
		}
	}
	if source == "" {
		source = "its input"
	}
	lines := []string{
		fmt.Sprintf("Imported by `phantom import aws-iam` from %s: the IAM of account %s.", source, a.id),
		fmt.Sprintf("Carried: %d managed policies, %d groups, %d users, %d roles; every policy document as the", pols, count(a.groups), count(a.users), count(a.roles)),
		"input holds it unless a note below says otherwise. `phantom config validate` accepts this file.",
		"Not in the input, so not here: access keys and their secrets (create new ones with",
		"`phantom iam create-access-key`), OIDC and SAML providers, unique ids (AIDA.../AROA...:",
		"Phantom derives its own), APIs, endpoints and nodes. Nor are roles' descriptions and",
		"maximum session durations (RoleDetail has neither): roles without them get the spec's 1h.",
	}
	if a.skippedAWS > 0 {
		lines = append(lines, fmt.Sprintf("%d AWS managed policies in the input are attached to nothing here: AWS's catalogue, not imported.", a.skippedAWS))
	}
	if len(a.notes) == 0 {
		return append(lines, "Everything else of the input is carried.")
	}
	lines = append(lines, fmt.Sprintf("Not carried as it was (%d; the same list is printed on stderr):", len(a.notes)))
	for _, n := range a.notes {
		lines = append(lines, "- "+n.String())
	}
	return lines
}
