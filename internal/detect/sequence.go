package detect

import (
	"fmt"
	"strings"
	"time"
)

// A discovery burst followed by a foothold: within seqWindow, at least seqMinDiscovery
// discovery calls over seqMinDistinct APIs by one principal or session, then a
// persistence, privilege-escalation or exfiltration call new to it and to its peer
// group; at least seqMinNew of the discovery calls were the principal's first of their
// API (infrastructure-as-code reads everything daily before it writes: routine). Attackers holding fresh credentials look around first (ATT&CK's Discovery
// precedes its Persistence and Exfiltration in every CloudTrail intrusion the Stratus
// and OTRF sets replay); a workload repeating one List call before its reads is not a
// burst (one API), and a principal repeating its own routine is not new to itself.
const (
	seqWindow      = 30 * time.Minute
	seqMinCalls    = 5
	seqMinDistinct = 2
	seqMinNew      = 2 // discovery calls new to the principal: not its daily routine
	maxTrailSteps  = 64
	sevSequence    = 8.5
	// TypeSequence is GuardDuty's Extended Threat Detection type for a chain of
	// suspicious calls by one identity.
	TypeSequence = "AttackSequence:IAM/CompromisedCredentials"
)

// trail is a principal's recent discovery calls.
type trail struct {
	t   []time.Time
	api []string
	new []bool // the call was the principal's first of that API
}

func newTrail() *trail { return &trail{} }

// prune drops the calls older than the window before now, and the oldest past the cap.
// Calls arrive in time order (files are sorted, chains are written in order): the old
// ones are at the front, so it stops at the first recent one.
func (tr *trail) prune(now time.Time) {
	cut := now.Add(-seqWindow)
	i := 0
	for i < len(tr.t) && tr.t[i].Before(cut) {
		i++
	}
	if n := len(tr.t) - i - maxTrailSteps; n > 0 {
		i += n
	}
	if i == 0 {
		return
	}
	if i > cap(tr.t)/2 { // copy down rather than let the arrays grow from the front
		n := copy(tr.t, tr.t[i:])
		copy(tr.api, tr.api[i:])
		copy(tr.new, tr.new[i:])
		tr.t, tr.api, tr.new = tr.t[:n], tr.api[:n], tr.new[:n]
		return
	}
	tr.t, tr.api, tr.new = tr.t[i:], tr.api[i:], tr.new[i:]
}

// isFoothold: the tactics whose call ends a sequence.
func isFoothold(tactic string) bool {
	return tactic == "Persistence" || tactic == "PrivilegeEscalation" || tactic == "Exfiltration"
}

// ruleSequence records discovery calls and reports a foothold that follows a burst of
// them as one finding listing the steps; it reports whether it did.
func (d *Detector) ruleSequence(c *call, emit func(hit), tactic string, sens *sensitiveAPI, h history) bool {
	ev := c.ev
	t := ev.EventTime
	if tactic == "Discovery" {
		// A trail starts at a discovery call new to the principal (a burst needs
		// seqMinNew of them): routine reads of a principal with no trail cost a lookup.
		tr, ok := d.trails.peek(c.principal)
		if !ok {
			if !h.newOwn {
				return false
			}
			tr = newTrail()
			d.trails.put(c.principal, tr)
		}
		tr.t = append(tr.t, t)
		tr.api = append(tr.api, ev.EventName)
		tr.new = append(tr.new, h.newOwn)
		tr.prune(t)
		return false
	}
	if !isFoothold(tactic) || !h.newOwn || !h.newPeer {
		return false
	}
	tr, ok := d.trails.get(c.principal)
	if !ok {
		return false
	}
	tr.prune(t)
	counts := map[string]int{}
	var order []string
	fresh := 0
	for i, api := range tr.api {
		if tr.t[i].After(t) {
			continue
		}
		if tr.new[i] {
			fresh++
		}
		if counts[api] == 0 {
			order = append(order, api)
		}
		counts[api]++
	}
	n := 0
	for _, k := range counts {
		n += k
	}
	if n < seqMinCalls || len(order) < seqMinDistinct || fresh < seqMinNew {
		return false
	}
	steps := make([]string, 0, len(order)+1)
	for _, api := range order {
		steps = append(steps, fmt.Sprintf("%s x%d", api, counts[api]))
	}
	steps = append(steps, ev.EventName+" ("+tactic+")")
	sev := sevSequence
	if h.accountUsers == 0 {
		sev = 8.9
	}
	info := map[string]any{"tactic": tactic, "steps": steps, "discoveryCalls": n, "newDiscoveryCalls": fresh, "window": seqWindow.String()}
	if sens != nil {
		info["sensitiveApi"] = sens.ref
	}
	// One finding per identity: later footholds add their step to it (record).
	emit(hit{typ: TypeSequence, severity: sev, key: "",
		title: "Discovery followed by " + tactic + " by one identity",
		desc: fmt.Sprintf("%s made %d discovery calls (%s) within %s, then %s, which neither it nor its peer group %s had called.",
			c.principal, n, strings.Join(steps[:len(steps)-1], ", "), seqWindow, ev.EventName, h.peerName),
		info: info})
	return true
}
