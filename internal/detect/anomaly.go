package detect

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Baseline bounds: a principal's remembered actions, networks and agents.
const (
	maxBaselineActions  = 512
	maxBaselineNetworks = 64
	maxBaselineAgents   = 32
	// noveltyWindow: a network or agent first seen after the learning period stays new
	// this long, so an intruder's first harmless call (a console login from the new
	// network) does not make the new network known before the calls that matter (the
	// Panther compromised-root scenario: login, then 33 h later CreateAccessKey).
	noveltyWindow = 72 * time.Hour
)

// baseline is one principal's habits: the actions it calls, the networks (/24, /48 for
// IPv6, or the service name) and user agent families it calls from, and the UTC hours.
type baseline struct {
	first    time.Time
	actions  map[action]struct{}
	networks map[netKey]time.Time // first seen
	agents   map[string]time.Time
	hours    uint32 // bit h set: seen at UTC hour h
	// peer is the principal's peer group, worked out once per peerGen (the operator's
	// groups change with the spec), with its baseline and the account's: looked up once,
	// not per call.
	peer      string
	peerGen   uint64
	peerGroup *groupBaseline
	account   string
	acctGroup *groupBaseline
}

func newBaseline() *baseline {
	return &baseline{
		actions:  make(map[action]struct{}),
		networks: make(map[netKey]time.Time),
		agents:   make(map[string]time.Time),
	}
}

// action is an API: event source and name (a struct key: no string to build per event).
type action struct{ source, name string }

func learn(m map[action]struct{}, k action, max int) bool {
	if _, ok := m[k]; ok {
		return false
	}
	if len(m) < max {
		m[k] = struct{}{}
	}
	return true
}

// novel reports whether k is new for a baseline whose learning ended at learnt: never
// seen, or first seen after learning and within noveltyWindow of t. It records k.
func novel[K comparable](m map[K]time.Time, k K, t, learnt time.Time, max int) bool {
	first, ok := m[k]
	if !ok {
		if len(m) < max {
			m[k] = t
		}
		return true
	}
	if t.Before(first) {
		m[k] = t
		first = t
	}
	return first.After(learnt) && t.Sub(first) < noveltyWindow
}

// netKey is a source network: the /24 (IPv4) or /48 (IPv6) of an address, or the
// source as written when it is not one (a service name such as ec2.amazonaws.com).
type netKey struct {
	p   netip.Prefix
	src string
}

func network(addr netip.Addr, src string) netKey {
	if !addr.IsValid() {
		return netKey{src: src}
	}
	bits := 24
	if addr.Is6() {
		bits = 48
	}
	p, _ := addr.Prefix(bits)
	return netKey{p: p}
}

func (k netKey) String() string {
	if k.p.IsValid() {
		return k.p.String()
	}
	return k.src
}

// uaFamily is a user agent reduced to its product: "aws-cli/2.15.0 Python/3.11 …" ->
// "aws-cli", "[aws-sdk-go-v2/1.30 …]" -> "aws-sdk-go-v2", so upgrades are not news.
func uaFamily(ua string) string {
	ua = strings.TrimLeft(ua, "[ ")
	if i := strings.IndexAny(ua, "/ "); i >= 0 {
		ua = ua[:i]
	}
	if len(ua) > 64 {
		ua = ua[:64]
	}
	return ua
}

// ruleAnomaly keeps the principal's baseline (its role's, for a session) and those it
// is compared with when its own is too young: its peer group's and its account's. It
// runs the sensitive-API and sequence rules, which need the same history, and the
// anomaly rule itself: a tactic's API new to the principal, called from a new network,
// user agent or hour, once the principal's learning period is over; before that, new to
// its peer group (past the group's learning period) or, failing that, to the account.
func (d *Detector) ruleAnomaly(c *call, emit func(hit)) {
	ev := c.ev
	// Unauthenticated calls have no principal whose habits could be learnt (they would all
	// share one "anonymous" baseline); the credential and signature rules cover them.
	if ev.EventName == "" || ev.EventTime.IsZero() {
		return
	}
	if ev.UserIdentity.ARN == "" && ev.UserIdentity.Type == "" {
		if s := d.sensitive.lookup(ev); s != nil && !s.bulk && ev.ErrorCode == "" && ev.UserIdentity.AccessKeyID == "" {
			d.emitUnattributed(c, emit, s)
		}
		return
	}
	key := c.baselineKey()
	b := d.baselines.getOrAdd(key, newBaseline)
	t := ev.EventTime.UTC()
	if b.first.IsZero() || t.Before(b.first) {
		b.first = t
	}
	a := action{ev.EventSource, ev.EventName}
	newAction := learn(b.actions, a, maxBaselineActions)
	if b.peerGroup == nil || b.peerGen != d.peerGen {
		b.peer, b.peerGen = d.peerGroup(key), d.peerGen
		b.peerGroup = d.peers.getOrAdd(b.peer, newGroupBaseline)
		b.account = ev.UserIdentity.AccountID
		if b.account == "" {
			b.account = ev.RecipientAccountID
		}
		b.acctGroup = d.accounts.getOrAdd(b.account, newGroupBaseline)
	}
	h := standing(b, a, newAction, t)
	learnt := b.first.Add(d.cfg.LearningPeriod)
	net := network(c.addr, ev.SourceIPAddress)
	newNet := novel(b.networks, net, t, learnt, maxBaselineNetworks)
	fam := uaFamily(ev.UserAgent)
	newAgent := novel(b.agents, fam, t, learnt, maxBaselineAgents)
	hour := uint32(1) << t.Hour()
	newHour := b.hours != 0 && b.hours&hour == 0 && b.hours&(hour<<1|hour>>1) == 0
	b.hours |= hour

	sens := d.sensitive.lookup(ev)
	if sens != nil && sens.bulk {
		// A bulk read is its own pattern in the baselines: reading one's own secret is
		// not new, dumping many is.
		if sens = d.bulkRead(c, sens); sens != nil {
			pa := action{ev.EventSource, "bulk:" + ev.EventName}
			newAction = learn(b.actions, pa, maxBaselineActions)
			h = standing(b, pa, newAction, t)
		}
	}
	tactic := tacticOf(ev.EventSource, ev.EventName)
	if sens != nil {
		tactic = sens.tactic
	}
	if d.ruleSequence(c, emit, tactic, sens, h) {
		return // the sequence's finding names this call as its last step
	}
	if sens != nil && h.newOwn && h.newPeer && t.Before(learnt) {
		// Day one: the principal has no history of its own yet; its peers' stands in.
		d.emitSensitive(c, emit, sens, h)
		return
	}
	if tactic == "" || !newAction || !h.newPeer {
		return
	}
	api := ev.EventSource + ":" + ev.EventName
	var why []string
	sev := anomalySeverity(tactic)
	if sens != nil {
		sev = max(sev, sens.severity)
	}
	switch {
	case !t.Before(learnt):
		if !(newNet || newAgent || newHour) {
			return
		}
		if newNet {
			why = append(why, "new network "+net.String())
		}
		if newAgent {
			why = append(why, "new user agent "+fam)
		}
		if newHour {
			why = append(why, fmt.Sprintf("unusual hour %02d UTC", t.Hour()))
		}
	case h.peerLearnt(t, d.cfg.LearningPeriod):
		// A new principal (or a new role) compared with its established peers.
		why = append(why, "no principal of its peer group "+h.peerName+" has called it")
		sev = min(sev, sevMedium)
	case h.accountLearnt(t, d.cfg.LearningPeriod) && h.accountUsers == 0:
		why = append(why, "never called in account "+h.account)
		sev = min(sev, sevMedium)
	default:
		return
	}
	emit(hit{typ: tactic + anomalySuffix, severity: sev, key: api,
		title: "An API commonly used in " + tactic + " tactics was invoked in an unusual way",
		desc:  fmt.Sprintf("%s invoked %s for the first time, with %s.", c.principal, ev.EventName, strings.Join(why, ", ")),
		info:  map[string]any{"tactic": tactic, "newAction": api, "reasons": why}})
}

func anomalySeverity(tactic string) float64 {
	switch tactic {
	case "CredentialAccess", "Exfiltration", "DefenseEvasion", "Stealth", "PrivilegeEscalation", "Impact":
		return sevHigh
	}
	return sevMedium
}

// tacticOf maps an API to the MITRE ATT&CK tactic GuardDuty files it under, or "" for
// APIs no tactic claims (they are learnt, never scored). Order matters: the first match wins.
func tacticOf(source, name string) string {
	svc := strings.TrimSuffix(source, ".amazonaws.com")
	has := func(s string) bool { return strings.Contains(name, s) }
	pre := func(s string) bool { return strings.HasPrefix(name, s) }
	switch {
	// Defense evasion / stealth: logging and monitoring off.
	case svc == "cloudtrail" && (pre("Stop") || pre("Delete") || pre("Update") || pre("Put")),
		svc == "guardduty" && (pre("Delete") || pre("Disassociate") || pre("Update") || pre("Stop")),
		(svc == "config" || svc == "securityhub" || svc == "access-analyzer" || svc == "macie2") && (pre("Delete") || pre("Stop") || pre("Disable")),
		pre("DeleteFlowLogs"), pre("DeleteResolverQueryLog"), pre("DisassociateResolverQueryLog"),
		name == "LeaveOrganization", name == "DeleteLogGroup", name == "DeleteLogStream", pre("PutBucketLogging"):
		return "DefenseEvasion"
	// Credential access.
	case has("Secret") && (pre("Get") || pre("BatchGet")), name == "GetPasswordData",
		svc == "ssm" && (name == "GetParameters" || name == "GetParameter" || name == "GetParametersByPath"),
		name == "GetSessionToken" && svc != "sts", svc == "kms" && name == "Decrypt",
		name == "GetFederationToken", name == "GetAuthorizationToken":
		return "CredentialAccess"
	// Privilege escalation.
	case pre("Attach") && has("Policy"), pre("Put") && (has("UserPolicy") || has("RolePolicy") || has("GroupPolicy")),
		name == "PassRole", name == "UpdateLoginProfile", name == "AddUserToGroup", pre("CreatePolicyVersion"),
		name == "SetDefaultPolicyVersion":
		return "PrivilegeEscalation"
	// Persistence.
	case svc == "iam" && (name == "CreateUser" || name == "CreateAccessKey" || name == "CreateLoginProfile" ||
		name == "CreateRole" || name == "UpdateAssumeRolePolicy" || name == "UploadSSHPublicKey"),
		svc == "rolesanywhere" && pre("Create"), svc == "lambda" && (pre("AddPermission") || pre("UpdateFunctionCode") || pre("UpdateFunctionConfiguration")),
		name == "ModifyInstanceAttribute":
		return "Persistence"
	// Exfiltration: sharing data with someone else, copying it out.
	case name == "ModifySnapshotAttribute", name == "ModifyImageAttribute", name == "ModifyDBSnapshotAttribute",
		name == "ModifyDBClusterSnapshotAttribute", svc == "s3" && (name == "GetObject" || name == "PutBucketPolicy" || name == "PutBucketAcl" || name == "PutBucketReplication"),
		source == phantomEgressSrc, name == "AuthorizeSecurityGroupIngress", name == "CreateSnapshot":
		return "Exfiltration"
	// Execution and lateral movement on instances.
	case name == "SendCommand", name == "StartSession", pre("SendSSHPublicKey"), pre("SendSerialConsoleSSHPublicKey"), name == "RunInstances":
		return "Execution"
	// Impact: destruction, paid resource abuse.
	case svc == "bedrock" && (pre("Invoke") || pre("PutFoundationModel") || pre("CreateFoundationModel")),
		pre("Terminate"), name == "DeleteBucket", name == "DeleteDBInstance", name == "StopInstances":
		return "Impact"
	// Initial access.
	case name == "ConsoleLogin":
		return "InitialAccess"
	// Discovery.
	case pre("List") || pre("Describe") || name == "GetCallerIdentity" || name == "GetAccountAuthorizationDetails" ||
		(pre("Get") && (svc == "iam" || svc == "organizations" || svc == "sts")):
		return "Discovery"
	}
	return ""
}
