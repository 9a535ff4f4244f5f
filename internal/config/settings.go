package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

const (
	defaultGatewayName    = "gateway"
	defaultClockSkew      = 5 * time.Minute // SigV4's documented tolerance
	maxClockSkew          = 15 * time.Minute
	defaultAuditDir       = "audit"
	defaultLearningPeriod = 7 * 24 * time.Hour
	maxLearningPeriod     = 90 * 24 * time.Hour
	minSeverity           = 1.0 // GuardDuty severities run from 1.0 to 8.9
	maxSeverity           = 8.9
)

// Defaults of the gateway's and endpoints' limits (docs/spec.md says why each).
const (
	DefaultMaxBodyBytes            = 10 << 20  // API Gateway's payload limit, 10 MB
	DefaultBodyBufferBytes         = 256 << 20 // 25 maximum-size bodies, thousands of small ones
	DefaultHeaderTimeout           = 10 * time.Second
	DefaultBodyTimeout             = 20 * time.Second
	DefaultMinBodyRate             = 4 << 10 // bytes per second: 32 kbit/s
	DefaultMaxConnections          = 4096
	DefaultMaxConnectionsPerSource = 256
	DefaultMaxInFlight             = 1024
)

// DefaultReplayMethods are the methods the replay guard covers unless it names others:
// those that change something.
var DefaultReplayMethods = []string{"POST", "PUT", "PATCH", "DELETE"}

// defaultConnectionLimits are a listener's limits unless the spec says otherwise.
func defaultConnectionLimits() ConnectionLimits {
	return ConnectionLimits{MaxConnections: DefaultMaxConnections, MaxConnectionsPerSource: DefaultMaxConnectionsPerSource}
}

var (
	actions    = []Action{ActionRevokeSessions, ActionDisableAccessKey, ActionRaiseRiskLevel, ActionNotify}
	riskLevels = []string{"low", "medium", "high"}
)

func (d *decoder) gateway(root *object, s *Spec, l *listeners) {
	s.Gateway = Gateway{Name: defaultGatewayName, ClockSkew: defaultClockSkew}
	n, path := root.get("gateway")
	o := d.object(n, path, "name", "listen", "clockSkew", "limits", "replayProtection", "longTermKeys")
	s.Gateway.LongTermKeys = d.longTermKeys(o, LongTermKeysAllow)
	if name, nn, _ := o.match("name", labelRe, labelWhat); nn != nil {
		s.Gateway.Name = name
	}
	if raw, ln, lp := o.str("listen"); ln != nil {
		if ap, ok := d.listenAddr(raw, ln, lp); ok {
			l.add(ap, ln, lp)
			s.Gateway.Listen = ap
		}
	}
	if skew, sn, sp := o.duration("clockSkew"); sn != nil {
		if skew < time.Second || skew > maxClockSkew {
			d.problem(sn, sp, fmt.Sprintf("%s is outside 1s to 15m", sn.Value), "SigV4 uses 5m; stay near it")
		} else {
			s.Gateway.ClockSkew = skew
		}
	}
	s.Gateway.Limits = d.gatewayLimits(o)
	s.Gateway.ReplayProtection = d.replayProtection(o)
}

// gatewayLimits decodes gateway.limits, every key optional.
func (d *decoder) gatewayLimits(parent *object) Limits {
	lim := Limits{
		ConnectionLimits: defaultConnectionLimits(),
		MaxBodyBytes:     DefaultMaxBodyBytes,
		BodyBufferBytes:  DefaultBodyBufferBytes,
		HeaderTimeout:    DefaultHeaderTimeout,
		BodyTimeout:      DefaultBodyTimeout,
		MinBodyRate:      DefaultMinBodyRate,
		MaxInFlight:      DefaultMaxInFlight,
	}
	n, path := parent.get("limits")
	o := d.object(n, path, "maxBodyBytes", "bodyBufferBytes", "headerTimeout", "bodyTimeout", "minBodyRate",
		"maxConnections", "maxConnectionsPerSource", "maxInFlight")
	if v, vn, _ := o.integer("maxBodyBytes", 1, 1<<30); vn != nil {
		lim.MaxBodyBytes = v
	}
	if v, vn, _ := o.integer("bodyBufferBytes", 1<<20, 1<<40); vn != nil {
		lim.BodyBufferBytes = v
	}
	if lim.BodyBufferBytes < lim.MaxBodyBytes {
		bn, bp := o.get("bodyBufferBytes")
		if bn == nil {
			bn, bp = o.get("maxBodyBytes")
		}
		d.problem(bn, bp, fmt.Sprintf("bodyBufferBytes %d is below maxBodyBytes %d: a body of the maximum size could never be read", lim.BodyBufferBytes, lim.MaxBodyBytes),
			"raise bodyBufferBytes or lower maxBodyBytes")
	}
	lim.HeaderTimeout = d.boundedDuration(o, "headerTimeout", lim.HeaderTimeout, time.Second, 5*time.Minute)
	lim.BodyTimeout = d.boundedDuration(o, "bodyTimeout", lim.BodyTimeout, time.Second, time.Hour)
	if v, vn, _ := o.integer("minBodyRate", 1, 1<<30); vn != nil {
		lim.MinBodyRate = v
	}
	lim.ConnectionLimits = d.connectionLimits(o, lim.ConnectionLimits)
	if v, vn, _ := o.integer("maxInFlight", 1, 1<<20); vn != nil {
		lim.MaxInFlight = int(v)
	}
	return lim
}

// connectionLimits decodes maxConnections and maxConnectionsPerSource of o over def.
func (d *decoder) connectionLimits(o *object, def ConnectionLimits) ConnectionLimits {
	if v, vn, _ := o.integer("maxConnections", 1, 1<<20); vn != nil {
		def.MaxConnections = int(v)
	}
	if v, vn, vp := o.integer("maxConnectionsPerSource", 1, 1<<20); vn != nil {
		def.MaxConnectionsPerSource = int(v)
		if def.MaxConnectionsPerSource > def.MaxConnections {
			d.problem(vn, vp, fmt.Sprintf("%d is more than maxConnections %d", v, def.MaxConnections), "keep it at most maxConnections")
		}
	} else {
		// The default per source never exceeds a smaller total written alone.
		def.MaxConnectionsPerSource = min(def.MaxConnectionsPerSource, def.MaxConnections)
	}
	return def
}

// boundedDuration decodes an optional duration within [lo, hi], def when absent.
func (d *decoder) boundedDuration(o *object, key string, def, lo, hi time.Duration) time.Duration {
	v, vn, vp := o.duration(key)
	if vn == nil {
		return def
	}
	if v < lo || v > hi {
		d.problem(vn, vp, fmt.Sprintf("%s is outside %s to %s", vn.Value, lo, hi), "choose a duration in that range")
		return def
	}
	return v
}

// replayProtection decodes gateway.replayProtection: off unless enabled.
func (d *decoder) replayProtection(parent *object) ReplayProtection {
	rp := ReplayProtection{Methods: DefaultReplayMethods}
	n, path := parent.get("replayProtection")
	o := d.object(n, path, "enabled", "methods")
	rp.Enabled, _, _ = o.boolean("enabled")
	if o.has("methods") {
		ms, mnodes := o.strs("methods", nil, "")
		_, mp := o.get("methods")
		var out []string
		for j, m := range ms {
			if m == "ANY" || !slices.Contains(methods, m) {
				d.problem(mnodes[j], indexPath(mp, j), fmt.Sprintf("%q is not an HTTP method", m), "use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS")
				continue
			}
			out = append(out, m)
		}
		if mn, _ := o.get("methods"); mn != nil && mn.Kind == yaml.SequenceNode && len(mn.Content) == 0 {
			d.problem(mn, mp, "is empty", "list the methods to guard, e.g. [POST, PUT, PATCH, DELETE], or remove it for those")
		}
		rp.Methods = out
	}
	return rp
}

func (d *decoder) sts(root *object, s *Spec, l *listeners) {
	n, path := root.get("sts")
	o := d.object(n, path, "listen")
	if raw, ln, lp := o.str("listen"); ln != nil {
		if ap, ok := d.listenAddr(raw, ln, lp); ok {
			l.add(ap, ln, lp)
			s.STS.Listen = ap
		}
	}
}

func (d *decoder) audit(root *object, s *Spec) {
	s.Audit.Dir = defaultAuditDir
	n, path := root.get("audit")
	o := d.object(n, path, "dir")
	if dir, dn, dp := o.str("dir"); dn != nil {
		if dir == "" {
			d.problem(dn, dp, "is empty", "remove it for the default (audit, in the data directory) or name a directory")
		} else {
			s.Audit.Dir = dir
		}
	}
}

// eventURLRe is one NATS server URL of events.urls.
var eventURLRe = regexp.MustCompile(`^(nats|tls)://[^/@\s]+$`)

func (d *decoder) events(root *object, s *Spec, dir string) {
	n, path := root.get("events")
	o := d.object(n, path, "urls", "creds", "nkey", "ca", "cert", "key", "stream", "replicas")
	urls, _ := o.strs("urls", eventURLRe, "a NATS server URL without credentials (nats://HOST:PORT or tls://HOST:PORT; credentials go in creds or nkey)")
	s.Events.URLs = urls
	var nkeyNode *yaml.Node
	var nkeyPath string
	file := func(key string) string {
		v, vn, vp := o.str(key)
		if key == "nkey" {
			nkeyNode, nkeyPath = vn, vp
		}
		if vn == nil {
			return ""
		}
		if v == "" {
			d.problem(vn, vp, "is empty", "remove it, or name the file")
			return ""
		}
		if !filepath.IsAbs(v) {
			v = filepath.Join(dir, v)
		}
		return v
	}
	s.Events.Creds, s.Events.NKey, s.Events.CA, s.Events.Cert, s.Events.Key = file("creds"), file("nkey"), file("ca"), file("cert"), file("key")
	if s.Events.Creds != "" && s.Events.NKey != "" {
		d.problem(nkeyNode, nkeyPath, "is set with creds", "give a creds file or an nkey seed file, not both")
	}
	if (s.Events.Cert == "") != (s.Events.Key == "") {
		d.problem(n, path, "has a client cert without its key, or a key without its cert", "set both cert and key, or neither")
	}
	if st, sn, sp := o.str("stream"); sn != nil {
		if !streamRe.MatchString(st) {
			d.problem(sn, sp, fmt.Sprintf("%q is not a stream name", st), "letters, digits, - and _, at most 64")
		} else {
			s.Events.Stream = st
		}
	}
	if r, rn, _ := o.integer("replicas", 1, 5); rn != nil {
		s.Events.Replicas = int(r)
	}
	if len(s.Events.URLs) == 0 && (s.Events.Creds != "" || s.Events.NKey != "" || s.Events.CA != "" || s.Events.Stream != "" || s.Events.Replicas != 0) {
		d.problem(n, path, "has settings but no urls", "name the NATS servers in urls, or remove events")
	}
}

// streamRe is a JetStream stream name events.stream may take.
var streamRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (d *decoder) detection(root *object, s *Spec, dir string) {
	s.Detection.LearningPeriod = defaultLearningPeriod
	n, path := root.get("detection")
	o := d.object(n, path, "learningPeriod", "threatLists", "sigmaRules", "responses", "protectedPrincipals")
	if lp, ln, lpath := o.duration("learningPeriod"); ln != nil {
		if lp > maxLearningPeriod {
			d.problem(ln, lpath, fmt.Sprintf("%s is longer than 90 days", ln.Value), "use at most 2160h (90 days)")
		} else {
			s.Detection.LearningPeriod = lp
		}
	}
	items, tp := o.list("threatLists")
	seen := map[string]*yaml.Node{}
	for i, tn := range items {
		p := indexPath(tp, i)
		to := d.object(tn, p, "name", "file")
		if !to.ok {
			continue
		}
		to.require("name", "name: tor-exits")
		to.require("file", "file: threat/tor-exits.txt")
		name, nn, np := to.match("name", listNameRe, listNameWhat)
		file, fn, fp := to.str("file")
		if fn != nil {
			if !filepath.IsAbs(file) {
				file = filepath.Join(dir, file)
			}
			// A missing list would silently switch its detection off; fail closed.
			if st, err := os.Stat(file); err != nil || !st.Mode().IsRegular() {
				d.problem(fn, fp, fmt.Sprintf("threat list %s is not a readable file", file), "create it (one address or CIDR a line) or fix the path")
				fn = nil
			}
		}
		if nn == nil || fn == nil || !d.unique(seen, name, nn, np, "threat list") {
			continue
		}
		s.Detection.ThreatLists = append(s.Detection.ThreatLists, ThreatList{Name: name, File: file})
	}
	if rules, rn, rp := o.str("sigmaRules"); rn != nil {
		if rules == "" {
			d.problem(rn, rp, "is empty", "remove it, or name the directory of Sigma rules for AWS CloudTrail")
		} else {
			if !filepath.IsAbs(rules) {
				rules = filepath.Join(dir, rules)
			}
			// A missing directory would silently switch the rules off; fail closed.
			if st, err := os.Stat(rules); err != nil || !st.IsDir() {
				d.problem(rn, rp, fmt.Sprintf("Sigma rules directory %s is not a readable directory", rules), "create it (Sigma rules, *.yml) or fix the path")
			} else {
				s.Detection.SigmaRules = rules
			}
		}
	}
	d.responses(o, s)
	names, nodes := o.strs("protectedPrincipals", protectedRe, protectedWhat)
	for i, name := range names {
		if !strings.HasPrefix(name, "arn:aws:iam::"+s.Account+":") && !strings.HasPrefix(name, "arn:aws:sts::"+s.Account+":") && s.Account != "" {
			d.problem(nodes[i], indexPath(joinPath(path, "protectedPrincipals"), i), fmt.Sprintf("%q is not a principal of account %s", name, s.Account), "name a user or role ARN of this perimeter, e.g. arn:aws:iam::"+s.Account+":role/break-glass")
			continue
		}
		s.Detection.ProtectedPrincipals = append(s.Detection.ProtectedPrincipals, name)
	}
}

// enforcement reads a mode member (enforce or report; enforce when absent) and reports
// whether it was valid.
func (d *decoder) enforcement(o *object, key, what string) (ResponseMode, bool) {
	mode, mn, mp := o.str(key)
	switch {
	case mn == nil:
		return ModeEnforce, true
	case mode == string(ModeEnforce) || mode == string(ModeReport):
		return ResponseMode(mode), true
	}
	d.problem(mn, mp, fmt.Sprintf("%q is not %s", mode, what), "use enforce (act) or report (record what would have been done)")
	return ModeEnforce, false
}

func (d *decoder) responses(o *object, s *Spec) {
	items, path := o.list("responses")
	for i, n := range items {
		p := indexPath(path, i)
		ro := d.object(n, p, "findingType", "minSeverity", "actions", "riskLevel", "webhook", "mode", "maxPerHour")
		if !ro.ok {
			continue
		}
		r := Response{MinSeverity: minSeverity, Mode: ModeEnforce, MaxPerHour: DefaultMaxPerHour}
		ro.require("findingType", `findingType: "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.*"`)
		ro.require("actions", "actions: [revokeSessions]")
		ft, fn, _ := ro.match("findingType", findingTypeRe, findingTypeWhat)
		ok := fn != nil
		r.FindingType = ft
		if sn, sp := ro.get("minSeverity"); sn != nil {
			v, err := strconv.ParseFloat(sn.Value, 64)
			if sn.Kind != yaml.ScalarNode || (sn.ShortTag() != "!!int" && sn.ShortTag() != "!!float") || err != nil {
				d.problem(sn, sp, "must be a number, not "+describe(sn), "write a severity like 7")
				ok = false
			} else if v < minSeverity || v > maxSeverity {
				d.problem(sn, sp, fmt.Sprintf("%s is outside GuardDuty's severities 1 to 8.9", sn.Value), "use 1-3.9 low, 4-6.9 medium, 7-8.9 high")
				ok = false
			} else {
				r.MinSeverity = v
			}
		}
		names, anodes := ro.strs("actions", nil, "")
		an, ap := ro.get("actions")
		if an != nil && an.Kind == yaml.SequenceNode && len(an.Content) == 0 {
			d.problem(an, ap, "is empty", "list what to do, e.g. [revokeSessions]")
			ok = false
		}
		for j, name := range names {
			a := Action(name)
			if !slices.Contains(actions, a) {
				fix := "use revokeSessions, disableAccessKey, raiseRiskLevel or notify"
				if sg := suggest(name, []string{"revokeSessions", "disableAccessKey", "raiseRiskLevel", "notify"}); sg != "" {
					fix = fmt.Sprintf("did you mean %q?", sg)
				}
				d.problem(anodes[j], indexPath(ap, j), fmt.Sprintf("%q is not a response action", name), fix)
				ok = false
				continue
			}
			r.Actions = append(r.Actions, a)
		}
		level, ln, lp := ro.str("riskLevel")
		switch {
		case ln != nil && !slices.Contains(riskLevels, level):
			d.problem(ln, lp, fmt.Sprintf("%q is not a risk level", level), "use low, medium or high")
			ok = false
		case ln != nil && !slices.Contains(r.Actions, ActionRaiseRiskLevel):
			d.problem(ln, lp, "riskLevel is set but the actions do not raise it", "add raiseRiskLevel to actions or remove riskLevel")
			ok = false
		case ln == nil && slices.Contains(r.Actions, ActionRaiseRiskLevel):
			d.problem(ro.n, p, "raiseRiskLevel needs a level", "add riskLevel: high (or low, medium)")
			ok = false
		}
		r.RiskLevel = level
		raw, wn, wp := ro.str("webhook")
		if wn != nil {
			if u, valid := d.httpsURL(raw, wn, wp, "a webhook", 2048); valid {
				r.Webhook = u.String()
			} else {
				ok = false
			}
			if !slices.Contains(r.Actions, ActionNotify) {
				d.problem(wn, wp, "webhook is set but the actions do not notify", "add notify to actions or remove webhook")
				ok = false
			}
		} else if slices.Contains(r.Actions, ActionNotify) {
			d.problem(ro.n, p, "notify needs a webhook", "add webhook: https://hooks.example/phantom")
			ok = false
		}
		mode, valid := d.enforcement(ro, "mode", "a response mode")
		r.Mode = mode
		ok = ok && valid
		if mn, mp := ro.get("maxPerHour"); mn != nil {
			v, err := strconv.Atoi(mn.Value)
			switch {
			case mn.Kind != yaml.ScalarNode || mn.ShortTag() != "!!int" || err != nil:
				d.problem(mn, mp, "must be a whole number, not "+describe(mn), "write how many findings the response may act on per hour, e.g. 60")
				ok = false
			case v < 1 || v > 100000:
				d.problem(mn, mp, fmt.Sprintf("%d is outside 1 to 100000", v), "write how many findings the response may act on per hour, e.g. 60")
				ok = false
			default:
				r.MaxPerHour = v
			}
		}
		if ok {
			s.Detection.Responses = append(s.Detection.Responses, r)
		}
	}
}

// assertionKind reads an API's assertion setting: hs256 or eddsa, hs256 when absent.
func (d *decoder) assertionKind(o *object) AssertionKind {
	v, n, p := o.str("assertion")
	if n == nil {
		return AssertionHS256
	}
	switch k := AssertionKind(v); k {
	case AssertionHS256, AssertionEdDSA:
		return k
	}
	d.problem(n, p, fmt.Sprintf("%q is not hs256 or eddsa", v), "write assertion: hs256 (backends hold the API's key: phantom keys backend), or eddsa (backends verify with the gateway's JWKS)")
	return AssertionHS256
}

// longTermKeys reads a longTermKeys setting: allow or refuse, def when absent.
func (d *decoder) longTermKeys(o *object, def LongTermKeys) LongTermKeys {
	v, n, p := o.str("longTermKeys")
	if n == nil {
		return def
	}
	switch k := LongTermKeys(v); k {
	case LongTermKeysAllow, LongTermKeysRefuse:
		return k
	}
	d.problem(n, p, fmt.Sprintf("%q is not allow or refuse", v), "write longTermKeys: refuse to accept only STS sessions, or allow")
	return def
}
