package detect

import (
	"fmt"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/detect/sigma"
)

// loadedSigma is a loaded rule set with what each rule's findings carry worked out once
// (type, key, metadata): a rule that matches most events (SigmaHQ's
// aws_sts_assumerole_misuse matches every role session's call) costs a lookup per
// match, not a rebuild. Immutable, swapped whole.
type loadedSigma struct {
	set  *sigma.Set
	meta map[*sigma.Rule]*sigmaMeta
}

type sigmaMeta struct {
	typ, key    string
	info        map[string]any // read-only, shared by the rule's findings
	attribution string
	description string
}

func newLoadedSigma(s *sigma.Set) *loadedSigma {
	l := &loadedSigma{set: s, meta: make(map[*sigma.Rule]*sigmaMeta, len(s.Rules))}
	for _, r := range s.Rules {
		tactics := r.Tactics()
		tactic := ""
		if len(tactics) > 0 {
			tactic = tactics[0]
		}
		key := r.ID
		if key == "" {
			key = r.File
		}
		info := map[string]any{
			"sigmaRule": map[string]any{
				"id": r.ID, "title": r.Title, "level": r.Level, "status": r.Status, "author": r.Author,
				"tags": r.Tags, "references": r.References, "file": r.File, "license": r.License, "source": r.Source,
			},
		}
		if tactic != "" {
			info["tactic"] = tactic
		}
		l.meta[r] = &sigmaMeta{typ: sigmaType(tactic, key), key: "sigma:" + key, info: info,
			attribution: attribution(r), description: withStop(r.Description)}
	}
	return l
}

// ruleSigma turns every loaded Sigma rule the event matches into a finding, keyed by the
// rule: its title, its level as the severity, its first ATT&CK tactic tag as the tactic,
// and the attribution the rules' licence asks for (SigmaHQ's Detection Rule License 1.1:
// the rule's author and its source wherever a match is shown).
func (d *Detector) ruleSigma(c *call, emit func(hit)) {
	l := d.sigma.Load()
	if l == nil || len(l.set.Rules) == 0 {
		return
	}
	d.sigmaMatch.Match(l.set, c.ev, func(r *sigma.Rule) {
		m := l.meta[r]
		emit(hit{typ: m.typ, severity: r.Severity(), key: m.key, title: r.Title, info: m.info, sigma: m})
	})
}

// describe is a new finding's description: the call, the rule's description, and the
// attribution.
func (m *sigmaMeta) describe(c *call) string {
	return c.principal + " invoked " + c.ev.EventName + ". " + m.description + m.attribution
}

// sigmaType is a GuardDuty-shaped type naming the rule:
// ThreatPurpose:ResourceTypeAffected/ThreatFamilyName!Artifact, e.g.
// DefenseEvasion:IAMUser/Sigma!4db60cc0-36fb-42b7-9b58-a5b53019fb74, so a response can
// select one rule ("*:IAMUser/Sigma!4db60cc0-*") or all of them ("*/Sigma!*").
func sigmaType(tactic, id string) string {
	if tactic == "" {
		tactic = "Policy"
	}
	var b strings.Builder
	for _, r := range id {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 80 {
			break
		}
	}
	return tactic + ":IAMUser/Sigma!" + b.String()
}

func withStop(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s != "" && !strings.HasSuffix(s, ".") {
		s += "."
	}
	if s != "" {
		s += " "
	}
	return s
}

// attribution names the rule, its author, source and licence.
func attribution(r *sigma.Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Sigma rule %q", r.Title)
	if r.ID != "" {
		fmt.Fprintf(&b, " (%s)", r.ID)
	}
	if r.Author != "" {
		fmt.Fprintf(&b, " by %s", r.Author)
	}
	if r.Source != "" {
		fmt.Fprintf(&b, ", from %s", r.Source)
	}
	if r.License != "" {
		fmt.Fprintf(&b, ", licensed %s", r.License)
	}
	b.WriteByte('.')
	return b.String()
}
