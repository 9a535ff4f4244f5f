package detect

import (
	"fmt"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/detect/sigma"
)

// ruleSigma turns every loaded Sigma rule the event matches into a finding, keyed by the
// rule: its title, its level as the severity, its first ATT&CK tactic tag as the tactic,
// and the attribution the rules' licence asks for (SigmaHQ's Detection Rule License 1.1:
// the rule's author and its source wherever a match is shown).
func (d *Detector) ruleSigma(c *call, emit func(hit)) {
	s := d.sigma.Load()
	if s == nil || len(s.Rules) == 0 {
		return
	}
	s.Match(c.ev, func(r *sigma.Rule) {
		emit(sigmaHit(c, r))
	})
}

func sigmaHit(c *call, r *sigma.Rule) hit {
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
	return hit{typ: sigmaType(tactic, key), severity: r.Severity(), key: "sigma:" + key, title: r.Title,
		desc: fmt.Sprintf("%s invoked %s. %s%s", c.principal, c.ev.EventName, withStop(r.Description), attribution(r)),
		info: info}
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
