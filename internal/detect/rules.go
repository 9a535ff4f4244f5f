package detect

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
)

// The rules, their finding types and severities (GuardDuty: low < 4 <= medium < 7 <= high).
// Every finding is deduplicated on (type, principal, the rule's key below): a repeat
// raises Count and EventLastSeen and keeps the id (32 hex characters of SHA-256 of the three).
//
//   - UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS / .InsideAWS, 8.0,
//     key access key. Instance credentials (an AssumedRole session with
//     sessionContext.ec2RoleDelivery, or named after an instance id i-…, AWS's own test)
//     used (a) from another address than the session's first, (b) by a macOS client
//     (Darwin/Macintosh user agent), or (c) from a public address a long-term-key IAM user
//     or root also calls from (the Stratus steal-credentials detonation). Phantom gateway
//     events with additionalEventData.sessionBinding: sourceIPAddress != privateIp, or
//     vpcEndpointId != the bound endpoint. InsideAWS when the call came through a VPC
//     endpoint or from a private address, else OutsideAWS.
//   - UnauthorizedAccess:IAMUser/TorIPCaller / MaliciousIPCaller.Custom, 5.0, key address:
//     sourceIPAddress on a threat list (a list whose name contains "tor" is a Tor list).
//   - Policy:IAMUser/RootCredentialUsage, 2.0, key source address: userIdentity.type Root or
//     an ARN ending :root (a second network is a second finding).
//   - Policy:IAMUser/AdminLongTermKeyUsage (Phantom), 3.0, key access key: an AKIA key of an
//     IAM user in Config.AdminUsers (CloudTrail carries no policy; the list is the operator's).
//   - Stealth:IAMUser/CloudTrailLoggingDisabled, 5.0 (2.0 when refused), key API:
//     cloudtrail StopLogging, DeleteTrail, UpdateTrail; PutEventSelectors and
//     PutInsightSelectors that log less (reducesLogging).
//   - Stealth:IAMUser/AuditLogTampered (Phantom), 8.0, key chain:segment: an audit chain
//     was found damaged (cut short, emptied, rewritten, deleted): an AuditChainDamaged
//     event, which the writer records where it continues the chain and the streaming
//     detector feeds in itself when it finds the damage (audit.DamageEvent); 5.0, key
//     event name: the chain (eventSource audit.phantom.internal or phantom-audit)
//     recorded AuditLogRecovered (a torn tail cut), a refused audit operation or a
//     *Tamper* event.
//   - Policy:IAMUser/PerimeterSpecMismatch (Phantom), 5.0, key the digests: a process
//     recorded that live replicas have enforced different perimeter specs for longer
//     than a reload interval (config.EventSpecMismatch).
//   - Recon:IAMUser/AccessDeniedSweep (Phantom), 5.0, one per principal: >= 10 refusals
//     (AccessDenied, AccessDeniedException, UnauthorizedOperation, Forbidden, …) within 60 s
//     over >= 5 distinct (API, request parameters). A client retrying one refused call
//     does not fire; the Stratus GetPasswordData (30 refusals, distinct instance ids in
//     11 s) and DescribeInstanceAttribute (15) detonations do.
//   - UnauthorizedAccess:IAMUser/SignatureBruteForce (Phantom), 5.0, key "k:"+key or
//     "ip:"+address: >= 10 SignatureDoesNotMatch / InvalidSignatureException /
//     IncompleteSignature within 60 s from one access key or one address.
//   - UnauthorizedAccess:IAMUser/InvalidCredentials (Phantom), 5.0 (3.0 for expired), key
//     access key + address: InvalidClientTokenId, UnrecognizedClientException,
//     InvalidAccessKeyId, InvalidToken (unknown or inactive); ExpiredToken(Exception) only
//     from the 5th within 60 s on one key (one expired call is an SDK refreshing).
//   - Exfiltration:IAMUser/EgressDenied (Phantom), 5.0, key host: Phantom's egress proxy
//     (egress.phantom.amazonaws.com) refused DestinationNotAllowed, PortNotAllowed or
//     AddressNotAllowed.
//   - PenTest:IAMUser/AttackToolUserAgent (Phantom; GuardDuty's PenTest:IAMUser/KaliLinux
//     family), 5.0, key tool: a user agent naming an offensive tool or pentest distribution.
//   - <Tactic>:IAMUser/AnomalousBehavior, key API, from three rules that share one
//     history per call (anomaly.go, baselines.go): the principal's own baseline (a role's
//     sessions share the role's), its peer group's (PeerGroups: same managed policies in
//     the spec, else the same kind and IAM path) and its account's (how many principals
//     called each API).
//     Sensitive-API first use (sensitive.go, a table by tactic with the ATT&CK technique
//     and Stratus technique behind each entry): while the principal is within its own
//     learning period, a table API (in its dangerous form: a snapshot shared with an
//     account, a trust policy opened outside the account, secrets read in bulk…) that
//     neither it nor any principal of its peer group has called; the table's severity
//     (4 to 7), +0.5 when nobody in the account ever called it, -1 when refused.
//     Anomaly: past its learning period, a never-seen tactic API (tacticOf) that its peer
//     group has not called either, from a new network, agent family or an unusual hour
//     (8.0 for CredentialAccess, Exfiltration, DefenseEvasion, PrivilegeEscalation,
//     Impact, else 5.0; at least the table's severity); before that, one no principal of
//     its established peer group called, or failing that one never called in its
//     established account (5.0). A network or agent first seen after learning stays
//     "new" for 72 h.
//   - AttackSequence:IAM/CompromisedCredentials, 8.5 (8.9 for an API the account never
//     saw), one per principal (sequence.go): >= 5 discovery calls over >= 2 APIs, >= 2 of
//     them the principal's first, within 30 min, then a persistence, privilege-escalation
//     or exfiltration call new to it and its peer group; lists the steps, later
//     footholds join it; it stands for the first-use finding of its last call.
//   - <Tactic>:IAMUser/Sigma!<rule id> (sigmarule.go), the rule's level as severity, key
//     the rule: a loaded Sigma rule matched (Config.SigmaRules).
//
// Every rule states its false-positive budget (fpBudget) and TestBenignSoak holds it.
//
// Evaluation on ../shared/datasets/cloudtrail (TestEvaluation, -v prints the per-technique
// table), default 7-day learning period. As recorded: 35/35 Stratus techniques, 44/45
// malicious units. With every user agent replaced by the AWS CLI's (what a real attacker
// sends): 35/35 techniques, each with a finding carrying its Stratus tactic, 40/45
// units; the OTRF stolen session and both Panther root compromises flagged; 0 of 4
// benign principals flagged with threat findings (2 of 4 when SigmaHQ's rules are
// loaded too: their root-account and login-without-MFA rules fire on the owner's own
// root logins, as they say they do). Before this table, baselines and sequences: 6/35
// with the user agents replaced. Panther's labelled tests of the rules whose intent
// Phantom shares: 79/83 agree (TestPantherRuleTests).

// Finding types. GuardDuty's names where GuardDuty has the finding; Phantom's own
// (same Tactic:Resource/Name grammar) where it does not.
const (
	TypeExfilOutside   = "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS"
	TypeExfilInside    = "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS"
	TypeTor            = "UnauthorizedAccess:IAMUser/TorIPCaller"
	TypeMaliciousIP    = "UnauthorizedAccess:IAMUser/MaliciousIPCaller.Custom"
	TypeRoot           = "Policy:IAMUser/RootCredentialUsage"
	TypeLoggingOff     = "Stealth:IAMUser/CloudTrailLoggingDisabled"
	TypeAuditTampered  = "Stealth:IAMUser/AuditLogTampered"               // Phantom's own audit log
	TypeSpecMismatch   = "Policy:IAMUser/PerimeterSpecMismatch"           // Phantom: replicas enforce different specs
	TypeAdminKey       = "Policy:IAMUser/AdminLongTermKeyUsage"           // Phantom
	TypeAccessDenied   = "Recon:IAMUser/AccessDeniedSweep"                // Phantom
	TypeBruteForce     = "UnauthorizedAccess:IAMUser/SignatureBruteForce" // Phantom
	TypeBadCredentials = "UnauthorizedAccess:IAMUser/InvalidCredentials"  // Phantom
	TypeEgressDenied   = "Exfiltration:IAMUser/EgressDenied"              // Phantom
	TypePenTest        = "PenTest:IAMUser/AttackToolUserAgent"            // Phantom (GuardDuty: PenTest:IAMUser/KaliLinux...)
	// <Tactic>:IAMUser/AnomalousBehavior, see tacticOf.
	anomalySuffix = ":IAMUser/AnomalousBehavior"
)

// Burst windows, tuned on the evaluation set (see detect_eval_test.go): the Stratus
// GetPasswordData detonation makes 30 denied calls over distinct instance ids in 11 s,
// DescribeInstanceAttribute 15; a client with a stale policy retries one call, which
// stays under the distinct-target bar.
const (
	burstWindow      = 60 * time.Second
	deniedThreshold  = 10
	deniedDistinct   = 5
	sigFailThreshold = 10
	expiredThreshold = 5
	windowCap        = 64
	phantomEgressSrc = "egress.phantom.amazonaws.com"
	phantomAuditSrc  = "audit.phantom.internal"
	phantomAuditSrc2 = "phantom-audit"
	sevHigh          = 8.0
	sevMedium        = 5.0
	sevLow           = 2.0
)

// fpBudget is every rule's false-positive budget: the benign findings per 10,000 events
// it may raise on the benign soak (soak_test.go: two weeks of one account, 50+ people,
// workloads, CI and integrations with new-but-normal behaviour), held by TestBenignSoak.
// Rules whose evidence is unambiguous (a threat-listed address, root, logging off, a
// session used off its instance, an attack tool) have none: a benign finding from them
// is a bug. The first-use rules pay for their day-one coverage with a small budget.
// Sigma rules are the operator's: their rate is what their own falsepositives say.
// Measured over eight seeds of the soak (about 137,000 events each): 0.58 to 0.80
// findings per 10,000 in all, every one on the account's first two days (the first of
// each peer group to use a sensitive API, alone or after browsing): sensitive-API first
// use 0.29 to 0.73, sequences 0.07 to 0.37, every other rule 0.
var fpBudget = map[string]float64{
	"instance-credential-exfiltration": 0,
	"threat-list":                      0,
	"root-credential-usage":            0,
	"admin-long-term-key":              0,
	"cloudtrail-logging-disabled":      0,
	"audit-log-tampered":               0,
	"access-denied-sweep":              0.05,
	"signature-brute-force":            0,
	"invalid-credentials":              0.05,
	"egress-denied":                    0,
	"attack-tool-user-agent":           0,
	"anomalous-behavior":               0.2,
	"sensitive-api-first-use":          0.75,
	"attack-sequence":                  0.4,
}

// ruleOf names the rule behind a finding (fpBudget's keys; "sigma" for Sigma rules).
func ruleOf(f Finding) string {
	switch f.Type {
	case TypeExfilOutside, TypeExfilInside:
		return "instance-credential-exfiltration"
	case TypeTor, TypeMaliciousIP:
		return "threat-list"
	case TypeRoot:
		return "root-credential-usage"
	case TypeAdminKey:
		return "admin-long-term-key"
	case TypeLoggingOff:
		return "cloudtrail-logging-disabled"
	case TypeAuditTampered:
		return "audit-log-tampered"
	case TypeAccessDenied:
		return "access-denied-sweep"
	case TypeBruteForce:
		return "signature-brute-force"
	case TypeBadCredentials:
		return "invalid-credentials"
	case TypeEgressDenied:
		return "egress-denied"
	case TypePenTest:
		return "attack-tool-user-agent"
	case TypeSequence:
		return "attack-sequence"
	}
	if strings.Contains(f.Type, "/Sigma!") {
		return "sigma"
	}
	if _, ok := f.Service.AdditionalInfo["sensitiveApi"]; ok {
		return "sensitive-api-first-use"
	}
	return "anomalous-behavior"
}

// call is one event with what every rule needs parsed once.
type call struct {
	ev        *audit.Event
	principal string // finding principal: ARN, else access key, else principal id
	addr      netip.Addr
	// claimed: the event names its principal only as the caller claimed it (no ARN, or
	// the authentication failed), not as a verified signature established it.
	claimed bool
}

func newCall(ev *audit.Event) call {
	c := call{ev: ev}
	u := &ev.UserIdentity
	switch {
	case u.ARN != "":
		c.principal = u.ARN
	case u.AccessKeyID != "":
		c.principal = u.AccessKeyID
	case u.PrincipalID != "":
		c.principal = u.PrincipalID
	default:
		c.principal = "anonymous"
	}
	if a, err := netip.ParseAddr(ev.SourceIPAddress); err == nil {
		c.addr = a.Unmap()
	}
	c.claimed = u.ARN == "" || authFailed(ev.ErrorCode)
	return c
}

// authFailed reports whether an errorCode says the caller was not authenticated (a bad
// or expired signature, an unknown, inactive, revoked or malformed credential): the
// event's identity is then only what the request claimed. CloudTrail records such
// events with the ARN of the key the request named; Phantom's components record no ARN.
func authFailed(code string) bool {
	switch code {
	case "SignatureDoesNotMatch", "InvalidSignatureException", "IncompleteSignature", "IncompleteSignatureException",
		"InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId", "InvalidToken",
		"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "RequestExpired",
		"MissingAuthenticationToken", "MissingAuthenticationTokenException", "AuthFailure",
		"InvalidClientCertificate", "ProxyAuthenticationRequired", "Failed authentication":
		return true
	}
	return false
}

func (c *call) userName() string {
	u := &c.ev.UserIdentity
	if u.UserName != "" {
		return u.UserName
	}
	if u.SessionContext != nil && u.SessionContext.SessionIssuer != nil {
		return u.SessionContext.SessionIssuer.UserName
	}
	if i := strings.LastIndexByte(u.ARN, '/'); i >= 0 {
		return u.ARN[i+1:]
	}
	return ""
}

// baselineKey is whose habits the call is compared with: a role's sessions share the
// role's baseline (session names are often per-process), everyone else is their own.
func (c *call) baselineKey() string {
	u := &c.ev.UserIdentity
	if u.SessionContext != nil && u.SessionContext.SessionIssuer != nil && u.SessionContext.SessionIssuer.ARN != "" {
		return u.SessionContext.SessionIssuer.ARN
	}
	return c.principal
}

// PartitionKey is the principal whose state the detector keeps for ev: the key its
// baselines and findings of that principal are under (a role's sessions share the
// role's). Detector replicas split the work by it (package events), so that a
// principal's state is in one replica.
func PartitionKey(ev *audit.Event) string {
	c := newCall(ev)
	return c.baselineKey()
}

func (c *call) isRoot() bool {
	u := &c.ev.UserIdentity
	return u.Type == "Root" || strings.HasSuffix(u.ARN, ":root")
}

// rules runs every rule on c.
func (d *Detector) rules(c *call, emit func(hit)) {
	ev := c.ev
	// A service acting on its own (AwsServiceEvent, e.g. ec2.amazonaws.com delivering
	// instance credentials) is not a principal's call.
	service := ev.UserIdentity.Type == "AWSService"

	d.ruleAuditTampering(c, emit)
	d.ruleSigma(c, emit) // the rules say themselves whether service events count
	if service {
		return
	}
	d.ruleThreatList(c, emit)
	d.ruleRoot(c, emit)
	d.ruleAdminKey(c, emit)
	d.ruleCredentials(c, emit)
	d.ruleDenied(c, emit)
	d.ruleExfiltration(c, emit)
	d.ruleEgress(c, emit)
	d.rulePenTest(c, emit)
	d.ruleAnomaly(c, emit)
}

func (d *Detector) ruleAuditTampering(c *call, emit func(hit)) {
	ev := c.ev
	switch {
	case ev.EventSource == audit.EventSourceAudit && ev.EventName == audit.EventChainDamaged:
		dmg, ok := audit.DamageOf(ev)
		if !ok {
			return
		}
		what := dmg.Detail
		if r := dmg.Range(); r != "" {
			what += "; " + r + " are missing or altered"
		}
		info := map[string]any{"chain": dmg.Chain, "kind": string(dmg.Kind), "detail": dmg.Detail}
		if dmg.Segment > 0 {
			info["segment"] = dmg.Segment
		}
		if dmg.From > 0 {
			info["fromSeq"], info["toSeq"] = dmg.From, max(dmg.To, dmg.From)
		}
		emit(hit{typ: TypeAuditTampered, severity: sevHigh, key: fmt.Sprintf("%s:%d", dmg.Chain, dmg.Segment),
			title: fmt.Sprintf("Phantom's audit chain %s was damaged: evidence is missing", dmg.Chain),
			desc:  fmt.Sprintf("Audit chain %s: %s. The detector reads the chain on from where it continues.", dmg.Chain, what),
			info:  info})
	case ev.EventSource == config.EventSource && ev.EventName == config.EventSpecMismatch:
		digests, _ := ev.AdditionalEventData["digests"].(map[string]any)
		keys := make([]string, 0, len(digests))
		for k := range digests {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		emit(hit{typ: TypeSpecMismatch, severity: sevMedium, key: strings.Join(keys, ","),
			title: "Replicas of the perimeter enforce different specs",
			desc:  fmt.Sprintf("%d different perimeter specs are in force on live replicas, for longer than a reload interval: a change that did not reach every replica, or one replica's spec edited alone.", len(keys)),
			info:  ev.AdditionalEventData})
	case ev.EventSource == phantomAuditSrc || ev.EventSource == phantomAuditSrc2:
		if ev.EventName == "AuditLogRecovered" || ev.ErrorCode != "" || strings.Contains(ev.EventName, "Tamper") {
			emit(hit{typ: TypeAuditTampered, severity: sevMedium, key: ev.EventName,
				title: "Phantom's audit log was cut or altered",
				desc:  fmt.Sprintf("The audit chain recorded %s: records at its tail were lost or changed.", ev.EventName),
				info:  ev.AdditionalEventData})
		}
	case ev.EventSource == "cloudtrail.amazonaws.com":
		switch ev.EventName {
		case "StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors", "PutInsightSelectors":
			if !reducesLogging(ev) {
				return
			}
			sev := sevMedium
			if ev.ErrorCode != "" {
				sev = sevLow
			}
			emit(hit{typ: TypeLoggingOff, severity: sev, key: ev.EventName,
				title: "AWS CloudTrail trail was disabled or changed",
				desc:  fmt.Sprintf("%s called %s%s.", c.principal, ev.EventName, denied(ev))})
		}
	}
}

// reducesLogging: event selectors that leave some management events unlogged
// (includeManagementEvents false, readWriteType not All, sources excluded, advanced
// selectors without a plain Management one), insight selectors emptied; every stop,
// delete or trail update.
func reducesLogging(ev *audit.Event) bool {
	p := ev.RequestParameters
	switch ev.EventName {
	case "PutEventSelectors":
		if adv, ok := p["advancedEventSelectors"].([]any); ok {
			for _, a := range adv {
				a, _ := a.(map[string]any)
				fs, _ := a["fieldSelectors"].([]any)
				if len(fs) == 1 {
					f, _ := fs[0].(map[string]any)
					eq, _ := f["equals"].([]any)
					if f["field"] == "eventCategory" && len(eq) == 1 && eq[0] == "Management" {
						return false
					}
				}
			}
			return true
		}
		sels, _ := p["eventSelectors"].([]any)
		for _, x := range sels {
			sel, _ := x.(map[string]any)
			excl, _ := sel["excludeManagementEventSources"].([]any)
			if sel["includeManagementEvents"] == true && sel["readWriteType"] == "All" && len(excl) == 0 {
				return false
			}
		}
		return true
	case "PutInsightSelectors":
		sels, _ := p["insightSelectors"].([]any)
		return len(sels) == 0
	}
	return true
}

func denied(ev *audit.Event) string {
	if ev.ErrorCode != "" {
		return " (refused: " + ev.ErrorCode + ")"
	}
	return ""
}

func (d *Detector) ruleThreatList(c *call, emit func(hit)) {
	l := d.threats.Load().lookup(c.addr)
	if l == nil {
		return
	}
	typ, title := TypeMaliciousIP, "An API was invoked from an IP address on a custom threat list"
	if l.tor {
		typ, title = TypeTor, "An API was invoked from a Tor exit node IP address"
	}
	emit(hit{typ: typ, severity: sevMedium, key: c.addr.String(), title: title,
		desc: fmt.Sprintf("%s invoked %s from %s, on threat list %q.", c.principal, c.ev.EventName, c.addr, l.name),
		info: map[string]any{"threatListName": l.name}})
}

func (d *Detector) ruleRoot(c *call, emit func(hit)) {
	if !c.isRoot() || c.ev.UserIdentity.Type == "AWSService" {
		return
	}
	// Keyed by source address: the same root from a second network is a second finding.
	emit(hit{typ: TypeRoot, severity: sevLow, key: c.ev.SourceIPAddress,
		title: "API was invoked using root credentials",
		desc:  fmt.Sprintf("The root credentials of account %s invoked %s from %s.", c.ev.UserIdentity.AccountID, c.ev.EventName, c.ev.SourceIPAddress)})
}

func (d *Detector) ruleAdminKey(c *call, emit func(hit)) {
	u := &c.ev.UserIdentity
	if u.Type != "IAMUser" || !strings.HasPrefix(u.AccessKeyID, "AKIA") {
		return
	}
	if !d.admins[u.UserName] && !d.admins[u.ARN] {
		return
	}
	emit(hit{typ: TypeAdminKey, severity: sevLow + 1, key: u.AccessKeyID,
		title: "An administrator's long-term access key was used",
		desc:  fmt.Sprintf("Administrator %s used long-term access key %s (%s).", u.UserName, u.AccessKeyID, c.ev.EventName)})
}

// isSignatureError and friends classify errorCodes (AWS's and Phantom's sigv4's, which
// use the same names).
func isSignatureError(code string) bool {
	switch code {
	case "SignatureDoesNotMatch", "InvalidSignatureException", "IncompleteSignature", "IncompleteSignatureException":
		return true
	}
	return false
}

func isCredentialError(code string) bool {
	switch code {
	case "InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException",
		"InvalidAccessKeyId", "InvalidToken", "TokenRefreshRequired":
		return true
	}
	return false
}

func isDeniedError(code string) bool {
	switch code {
	case "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Client.UnauthorizedOperation",
		"Forbidden", "UnauthorizedAccess", "AuthorizationError":
		return true
	}
	return false
}

func (d *Detector) ruleCredentials(c *call, emit func(hit)) {
	code := c.ev.ErrorCode
	if code == "" {
		return
	}
	key := c.ev.UserIdentity.AccessKeyID
	if isCredentialError(code) {
		sev := sevMedium
		what := "an unknown or inactive"
		if strings.HasPrefix(code, "Expired") {
			// SDKs use a session until it expires and retry after refreshing: one
			// expired call is routine (the benign soak has dozens a day). Repeated use
			// of an expired token from one key is not: something replays it.
			w := d.sigFail.getOrAdd("x:"+key, newWindow)
			w.add(c.ev.EventTime, "")
			if w.count() < expiredThreshold {
				return
			}
			sev, what = sevLow+1, "an expired"
		}
		emit(hit{typ: TypeBadCredentials, severity: sev, key: key + "|" + c.ev.SourceIPAddress,
			title: "API calls were made with unknown, inactive or expired credentials",
			desc:  fmt.Sprintf("A caller at %s used %s access key %s (%s).", c.ev.SourceIPAddress, what, key, code),
			info:  map[string]any{"errorCode": code}})
		return
	}
	if !isSignatureError(code) {
		return
	}
	t := c.ev.EventTime
	for _, k := range [2]string{"k:" + key, "ip:" + c.ev.SourceIPAddress} {
		if k == "k:" || k == "ip:" {
			continue
		}
		w := d.sigFail.getOrAdd(k, newWindow)
		w.add(t, "")
		if n := w.count(); n >= sigFailThreshold {
			emit(hit{typ: TypeBruteForce, severity: sevMedium, key: k,
				title: "Repeated requests with bad signatures",
				desc:  fmt.Sprintf("%d requests with bad signatures within %s (%s), a guess at a secret key.", n, burstWindow, k),
				info:  map[string]any{"failures": n}})
			return
		}
	}
}

func (d *Detector) ruleDenied(c *call, emit func(hit)) {
	if !isDeniedError(c.ev.ErrorCode) {
		return
	}
	w := d.denied.getOrAdd(c.principal, newWindow)
	w.add(c.ev.EventTime, c.ev.EventName+"|"+resourceOf(c.ev))
	if n, distinct := w.count(), w.distinct(); n >= deniedThreshold && distinct >= deniedDistinct {
		emit(hit{typ: TypeAccessDenied, severity: sevMedium, key: "",
			title: "A principal was denied access to many resources or actions",
			desc:  fmt.Sprintf("%s was refused %d times within %s over %d distinct actions or resources.", c.principal, n, burstWindow, distinct),
			info:  map[string]any{"denied": n, "distinct": distinct}})
	}
}

// resourceOf is a short, stable identification of what a request was about: the values
// of its requestParameters' common identifying keys.
func resourceOf(ev *audit.Event) string {
	var b strings.Builder
	for k, v := range ev.RequestParameters {
		switch v := v.(type) {
		case string:
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(v)
			b.WriteByte(';')
		case float64, bool:
			fmt.Fprintf(&b, "%s=%v;", k, v)
		}
	}
	// Map order is random: sort-free by hashing into an order-independent sum.
	return orderFree(b.String())
}

// orderFree makes resourceOf independent of map iteration order: the sum of the
// FNV hashes of its ';'-separated parts.
func orderFree(s string) string {
	var sum uint64
	for len(s) > 0 {
		i := strings.IndexByte(s, ';')
		if i < 0 {
			i = len(s) - 1
		}
		var h uint64 = 14695981039346656037
		for j := 0; j < i; j++ {
			h ^= uint64(s[j])
			h *= 1099511628211
		}
		sum += h
		s = s[i+1:]
	}
	return fmt.Sprintf("%x", sum)
}

// instSession is where an instance's session was first used.
type instSession struct {
	addr string
	ua   string
}

// instanceSession reports whether the event's credentials are an instance's (EC2 role
// delivery, or an assumed-role session named after an instance id, AWS's own test) and
// the session's key.
func instanceSession(ev *audit.Event) bool {
	u := &ev.UserIdentity
	if u.Type != "AssumedRole" {
		return false
	}
	if u.SessionContext != nil && u.SessionContext.EC2RoleDelivery != "" {
		return true
	}
	i := strings.LastIndexByte(u.ARN, '/')
	return i >= 0 && isInstanceID(u.ARN[i+1:])
}

func isInstanceID(s string) bool {
	if !strings.HasPrefix(s, "i-") || (len(s) != 10 && len(s) != 19) {
		return false
	}
	for _, r := range s[2:] {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
			return false
		}
	}
	return true
}

// desktopAgent reports a user agent of a workstation SDK or CLI (macOS): instance
// credentials are used by software on the instance, which does not run macOS except on
// mac1/mac2 instances. Windows is left out: Windows instances are common.
func desktopAgent(ua string) bool {
	return strings.Contains(ua, "Darwin/") || strings.Contains(ua, "Macintosh")
}

func (d *Detector) ruleExfiltration(c *call, emit func(hit)) {
	ev := c.ev
	// Phantom's gateway: the session carries where it was issued.
	if b, ok := ev.AdditionalEventData["sessionBinding"].(map[string]any); ok {
		ip, _ := b["privateIp"].(string)
		vpce, _ := b["vpcEndpointId"].(string)
		var why string
		switch {
		case ip != "" && ev.SourceIPAddress != ip:
			why = fmt.Sprintf("from %s, not the node's address %s", ev.SourceIPAddress, ip)
		case vpce != "" && ev.VPCEndpointID != vpce:
			why = fmt.Sprintf("through endpoint %q, not the node's endpoint %s", ev.VPCEndpointID, vpce)
		}
		if why != "" {
			node, _ := b["node"].(string)
			d.emitExfil(c, emit, why, map[string]any{"node": node, "boundPrivateIp": ip, "boundVpcEndpointId": vpce})
		}
		return
	}
	u := &ev.UserIdentity
	if u.Type == "IAMUser" || u.Type == "Root" {
		if c.addr.IsValid() && !c.addr.IsPrivate() {
			d.ipUsers.put(ev.SourceIPAddress, c.principal)
		}
		return
	}
	if !instanceSession(ev) || ev.SourceIPAddress == "" {
		return
	}
	s, seen := d.instances.get(u.ARN)
	if !seen {
		s = &instSession{addr: ev.SourceIPAddress, ua: uaFamily(ev.UserAgent)}
		d.instances.put(u.ARN, s)
	}
	switch {
	case s.addr != ev.SourceIPAddress && c.addr.IsValid():
		d.emitExfil(c, emit, fmt.Sprintf("from %s; it was first used from %s", ev.SourceIPAddress, s.addr), nil)
	case desktopAgent(ev.UserAgent):
		d.emitExfil(c, emit, fmt.Sprintf("by a workstation client (%s)", ev.UserAgent), nil)
	default:
		if user, ok := d.ipUsers.get(ev.SourceIPAddress); ok {
			d.emitExfil(c, emit, fmt.Sprintf("from %s, an address IAM user %s calls from", ev.SourceIPAddress, user), map[string]any{"sharedWith": user})
		}
	}
}

func (d *Detector) emitExfil(c *call, emit func(hit), why string, info map[string]any) {
	typ := TypeExfilOutside
	if c.ev.VPCEndpointID != "" || (c.addr.IsValid() && (c.addr.IsPrivate() || c.addr.IsLoopback())) {
		typ = TypeExfilInside
	}
	emit(hit{typ: typ, severity: sevHigh, key: c.ev.UserIdentity.AccessKeyID,
		title: "Credentials issued to an instance were used elsewhere",
		desc:  fmt.Sprintf("Session %s, issued to an instance, was used %s.", c.principal, why),
		info:  info})
}

func (d *Detector) ruleEgress(c *call, emit func(hit)) {
	ev := c.ev
	if ev.EventSource != phantomEgressSrc {
		return
	}
	switch ev.ErrorCode {
	case "DestinationNotAllowed", "PortNotAllowed", "AddressNotAllowed":
	default:
		return
	}
	host, _ := ev.RequestParameters["host"].(string)
	emit(hit{typ: TypeEgressDenied, severity: sevMedium, key: host,
		title: "A workload tried to reach a destination its egress rules do not allow",
		desc:  fmt.Sprintf("%s was refused a connection to %s (%s).", c.principal, host, ev.ErrorCode),
		info:  map[string]any{"host": host, "port": ev.RequestParameters["port"]}})
}

// attackTools are user agent markers of offensive tools and penetration-testing
// distributions (GuardDuty flags Kali, Parrot and Pentoo the same way).
var attackTools = []string{"stratus-red-team", "pacu", "kali", "parrot", "pentoo", "cloudgoat", "weirdAAL", "cloudfox"}

func (d *Detector) rulePenTest(c *call, emit func(hit)) {
	// User agents are few: remember each one's verdict (bounded; cleared when full).
	t, ok := d.uaTools[c.ev.UserAgent]
	if !ok {
		ua := strings.ToLower(c.ev.UserAgent)
		for _, tool := range attackTools {
			if strings.Contains(ua, strings.ToLower(tool)) {
				t = tool
				break
			}
		}
		if len(d.uaTools) >= 4096 {
			clear(d.uaTools)
		}
		d.uaTools[c.ev.UserAgent] = t
	}
	if t != "" {
		{
			emit(hit{typ: TypePenTest, severity: sevMedium, key: t,
				title: "An API was invoked by an offensive security tool",
				desc:  fmt.Sprintf("%s invoked %s with user agent %q (%s).", c.principal, c.ev.EventName, c.ev.UserAgent, t)})
			return
		}
	}
}

// window is a sliding burst window: the times (and targets) of the last windowCap
// events within burstWindow of the newest.
type window struct {
	t   []time.Time
	tag []string
}

func newWindow() *window { return &window{} }

func (w *window) add(t time.Time, tag string) {
	w.t = append(w.t, t)
	w.tag = append(w.tag, tag)
	// Drop what fell out of the window (events can arrive a little out of order: keep
	// anything within the window of the newest).
	newest := t
	for _, x := range w.t {
		if x.After(newest) {
			newest = x
		}
	}
	j := 0
	for i := range w.t {
		if newest.Sub(w.t[i]) <= burstWindow {
			w.t[j], w.tag[j] = w.t[i], w.tag[i]
			j++
		}
	}
	w.t, w.tag = w.t[:j], w.tag[:j]
	if len(w.t) > windowCap {
		n := len(w.t) - windowCap
		w.t, w.tag = w.t[n:], w.tag[n:]
	}
}

func (w *window) count() int { return len(w.t) }

func (w *window) distinct() int {
	seen := make(map[string]struct{}, len(w.tag))
	for _, s := range w.tag {
		seen[s] = struct{}{}
	}
	return len(seen)
}

// distinctAtLeast reports whether the window holds n different tags, without a map: it
// runs on every bulk-sensitive read (a workload fetching its one secret), where n is
// small and the window mostly one tag.
func (w *window) distinctAtLeast(n int) bool {
	var found [16]string
	if n > len(found) {
		return w.distinct() >= n
	}
	k := 0
	for _, s := range w.tag {
		if !slices.Contains(found[:k], s) {
			found[k] = s
			if k++; k >= n {
				return true
			}
		}
	}
	return n <= 0
}
