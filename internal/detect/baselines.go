package detect

import (
	"fmt"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// Bounds of the group baselines: a peer group's and an account's remembered APIs.
const (
	maxGroupActions   = 4096
	maxAccountActions = 8192
)

// groupBaseline is what a peer group (principals with the same managed policies, or the
// same IAM path) or an account has done: when it was first seen, and per API how many
// of its principals called it.
type groupBaseline struct {
	first   time.Time
	actions map[action]uint32
}

func newGroupBaseline() *groupBaseline { return &groupBaseline{actions: map[action]uint32{}} }

// add records that one more principal of the group called a, when newToPrincipal; it
// returns how many had before.
func (g *groupBaseline) add(a action, t time.Time, newToPrincipal bool, max int) uint32 {
	if g.first.IsZero() || t.Before(g.first) {
		g.first = t
	}
	n, ok := g.actions[a]
	if !ok && len(g.actions) >= max {
		return n
	}
	if newToPrincipal || !ok {
		g.actions[a] = n + 1
	}
	return n
}

// history is one call set against the baselines of every level.
type history struct {
	newOwn, newPeer bool
	peerName        string
	peerFirst       time.Time
	account         string
	accountFirst    time.Time
	accountUsers    uint32 // principals of the account that called the API before
}

func (h *history) peerLearnt(t time.Time, lp time.Duration) bool {
	return !h.peerFirst.IsZero() && !t.Before(h.peerFirst.Add(lp))
}

func (h *history) accountLearnt(t time.Time, lp time.Duration) bool {
	return !h.accountFirst.IsZero() && !t.Before(h.accountFirst.Add(lp))
}

// standing updates the principal's peer group's and account's baselines with the call
// (newOwn: the API is new to the principal) and returns where the call stands.
func standing(b *baseline, a action, newOwn bool, t time.Time) history {
	h := history{newOwn: newOwn, peerName: b.peer, account: b.account}
	h.newPeer = b.peerGroup.add(a, t, newOwn, maxGroupActions) == 0
	h.peerFirst = b.peerGroup.first
	h.accountUsers = b.acctGroup.add(a, t, newOwn, maxAccountActions)
	h.accountFirst = b.acctGroup.first
	return h
}

// peerGroup names the principal's peer group: the operator's (Config.PeerGroups: the
// spec's users and roles with the same managed policies), else the principal's kind and
// IAM path in its account ("123456789012 user /engineering/"): IAM paths are how
// organisations file people and workloads by function.
func (d *Detector) peerGroup(own string) string {
	if g, ok := d.cfg.PeerGroups[own]; ok {
		return "policies " + g
	}
	return arnGroup(own)
}

// arnGroup is "<account> <kind> <path>" of an IAM ARN, "<account> root" for root, and
// "other" for what is not an ARN (a bare access key).
func arnGroup(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return "other"
	}
	account, res := parts[4], parts[5]
	if res == "root" {
		return account + " root"
	}
	kind, rest, _ := strings.Cut(res, "/")
	path := "/"
	if i := strings.LastIndexByte(rest, '/'); i >= 0 && kind != "assumed-role" {
		path = "/" + rest[:i+1]
	}
	if kind == "assumed-role" {
		kind = "role"
	}
	return fmt.Sprintf("%s %s %s", account, kind, path)
}

// emitSensitive reports a sensitive API's first use by a principal whose peer group had
// never made it: more severe when nobody in the account ever had, less when refused.
func (d *Detector) emitSensitive(c *call, emit func(hit), s *sensitiveAPI, h history) {
	ev := c.ev
	sev := s.severity
	why := []string{"first call by this principal", "no principal of its peer group " + h.peerName + " has called it"}
	if h.accountUsers == 0 {
		sev += 0.5
		why = append(why, "never called in account "+h.account)
	} else {
		why = append(why, fmt.Sprintf("%d principals of account %s have called it", h.accountUsers, h.account))
	}
	if ev.ErrorCode != "" {
		sev -= 1
		why = append(why, "refused: "+ev.ErrorCode)
	}
	api := ev.EventSource + ":" + ev.EventName
	info := map[string]any{"tactic": s.tactic, "newAction": api, "reasons": why, "sensitiveApi": s.ref}
	if t := targetOf(ev); t != "" {
		info["target"] = t
	}
	emit(hit{typ: s.tactic + anomalySuffix, severity: sev, key: api,
		title: "A sensitive " + s.tactic + " API was invoked by a principal whose peers never call it",
		desc:  fmt.Sprintf("%s invoked %s%s: %s.", c.principal, ev.EventName, on(info), strings.Join(why, "; ")),
		info:  info})
}

// emitUnattributed reports a sensitive call the record names no principal for: there is
// no baseline to consult, and AWS records an identity for every authenticated call.
func (d *Detector) emitUnattributed(c *call, emit func(hit), s *sensitiveAPI) {
	ev := c.ev
	api := ev.EventSource + ":" + ev.EventName
	info := map[string]any{"tactic": s.tactic, "newAction": api, "reasons": []string{"no principal in the record"}, "sensitiveApi": s.ref}
	if t := targetOf(ev); t != "" {
		info["target"] = t
	}
	emit(hit{typ: s.tactic + anomalySuffix, severity: s.severity, key: api,
		title: "A sensitive " + s.tactic + " API was invoked with no principal recorded",
		desc:  fmt.Sprintf("%s was invoked%s from %s with no principal in the record.", ev.EventName, on(info), ev.SourceIPAddress),
		info:  info})
}

// targetParams are the request parameters that name what a sensitive call acts on,
// most specific first.
var targetParams = []string{"userName", "roleName", "groupName", "functionName", "snapshotId", "imageId",
	"dBSnapshotIdentifier", "dBInstanceIdentifier", "bucketName", "secretId", "keyId", "instanceId", "groupId", "trailName", "name"}

// targetOf names the resource a call acts on ("" when it names none: CreateAccessKey
// without a user name is the caller's own key).
func targetOf(ev *audit.Event) string {
	for _, k := range targetParams {
		if v, ok := ev.RequestParameters[k].(string); ok && v != "" {
			return k + "=" + v
		}
	}
	return ""
}

func on(info map[string]any) string {
	if t, ok := info["target"].(string); ok {
		return " (" + t + ")"
	}
	return ""
}

// bulkRead counts the secret or parameter names a read names into the principal's
// window and returns s once bulkDistinct different ones were read within it.
func (d *Detector) bulkRead(c *call, s *sensitiveAPI) *sensitiveAPI {
	p := c.ev.RequestParameters
	w := d.bulk.getOrAdd(c.principal, newWindow)
	add := func(v any) {
		if name, ok := v.(string); ok && name != "" {
			w.add(c.ev.EventTime, name)
		}
	}
	add(p["secretId"])
	add(p["name"])
	add(p["path"])
	if names, ok := p["names"].([]any); ok {
		for _, n := range names {
			add(n)
		}
	}
	if !w.distinctAtLeast(bulkDistinct) {
		return nil
	}
	return s
}
