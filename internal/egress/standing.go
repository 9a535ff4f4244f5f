package egress

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
)

// A node's standing. The proxy decides every request on the perimeter's current view of
// the node, as the gateway decides every call on its caller's: the node must not be
// removed (`phantom node revoke`), and a password must not predate a revocation of its
// role's sessions (`phantom iam revoke-sessions`, a detector response) or of the node's —
// the password is issued with the node's role session and shares its fate. The node's
// phantom:RiskLevel picks the rules that apply (maxRiskLevel). Tunnels already open are
// checked again every RecheckInterval: those of a removed node, of a revoked password, or
// opened by a rule that no longer applies at the node's risk level are closed, as are all
// of them while the state is stale (Fresh); the closing is audited (eventName
// CloseTunnel, with the tunnel's requestID).

// standing refuses a node removed, or credentials issued at issued (zero: a
// certificate) whose session was revoked since; it returns the refusal's code and reason.
func (p *Proxy) standing(n *config.Node, issued time.Time) (string, string) {
	st := p.cfg.Standing
	if st == nil {
		return "", ""
	}
	if st.NodeRevoked(n.Name) {
		return CodeNodeRevoked, "node " + n.Name + " has been revoked (phantom node revoke)"
	}
	if !issued.IsZero() && st.SessionRevoked(n.Role, n.Name, issued) {
		return CodeCredentialsRevoked, "the proxy password of node " + n.Name + " was issued at " + issued.UTC().Format(time.RFC3339) +
			", before the sessions of role " + n.Role + " were revoked: the agent has a new one"
	}
	return "", ""
}

// explainRisk turns a refusal of the rules that apply at the node's risk level into
// RiskLevelTooHigh when a rule left out for its maxRiskLevel would have allowed the
// destination, so the event says why.
func (p *Proxy) explainRisk(q *request) {
	if q.rules == nil || !q.rules.limited || !riskReportable(q.code) || q.host == (Host{}) {
		return
	}
	all, allowed := q.all, false
	switch {
	case q.code == CodeServerNameNotAllow:
		api, _ := q.ev.RequestParameters["apiId"].(string)
		_, allowed = all.apis[api]
	case len(q.endpoints) > 0:
		for _, e := range q.endpoints {
			for _, api := range e.APIs {
				_, ok := all.apis[api]
				allowed = allowed || ok
			}
		}
	case q.host.IsAddr():
		allowed = all.checkAddr(q.host.Addr, q.port, "").code == ""
	default:
		if an, ok := all.apiNames[q.host.Name]; ok {
			for _, a := range an.addrs {
				allowed = allowed || a.Port() == q.port
			}
			break
		}
		for _, r := range all.nameRules(q.host.Name) {
			if r.allows(q.port) {
				// Every address the name resolved to (if it was) must pass as well.
				allowed = true
				for _, ip := range q.resolved {
					allowed = allowed && all.checkAddr(ip, q.port, r.desc).code == ""
				}
				break
			}
		}
	}
	if allowed {
		level, _ := q.ev.AdditionalEventData["riskLevel"].(string)
		q.deny(http.StatusForbidden, CodeRiskLevelTooHigh, "node "+q.node.Name+"'s phantom:RiskLevel is "+level+
			": the rules that would allow "+q.host.String()+" apply only up to a lower level ("+q.reason+")")
	}
}

// riskReportable reports whether a refusal is the rules' (what a risk level or report
// mode can change), not a guard's, an authentication's or a failure's.
func riskReportable(code string) bool {
	switch code {
	case CodeDestinationNotAllow, CodePortNotAllowed, CodeRiskLevelTooHigh, CodeServerNameNotAllow, CodeAddressNotAllowed:
		return true
	}
	return false
}

// reportInstead lets a refusal of the rules through when the node's requests are in
// report mode (nodes[].egressMode or egress[].mode): the refusal is kept in q.would for
// the event, and q.addrs become the addresses the guards allow. It reports whether the
// request goes on. The SSRF guards, the deny list and the proxy's own listeners are
// enforced whatever the mode: report mode relaxes the allow list, nothing else.
func (p *Proxy) reportInstead(ctx context.Context, q *request) bool {
	if q.report == "" || q.node == nil || q.code == CodeAddressNotAllowed || !riskReportable(q.code) {
		return false
	}
	would := &refusal{q.status, q.code, q.reason}
	var ips []netip.Addr
	if q.host.IsAddr() {
		ips = []netip.Addr{q.host.Addr}
	} else if an, ok := q.all.apiNames[q.host.Name]; ok {
		for _, a := range an.addrs {
			ips = append(ips, a.Addr())
		}
	} else {
		var ok bool
		if ips, ok = p.resolve(ctx, q); !ok {
			return false
		}
	}
	q.addrs = q.addrs[:0]
	for _, ip := range ips {
		if !q.all.guardLifted(ip) {
			_, why, _ := Guard(ip)
			q.deny(http.StatusForbidden, CodeAddressNotAllowed, q.host.String()+" is "+ip.String()+", which is "+why+
				" and no rule names it (report mode does not lift the guards; the rules would also refuse: "+would.reason+")")
			return false
		}
		a := netip.AddrPortFrom(ip, q.port)
		if !containsAddr(q.addrs, a) {
			q.addrs = append(q.addrs, a)
		}
	}
	if !p.checkDeny(q) {
		return false
	}
	q.would = would
	q.status, q.code, q.reason = 0, "", ""
	q.rule = "none: forwarded in report mode (" + q.report + ")"
	// A tunnel forwarded in report mode carries whatever it carries: no server name is
	// checked, as none would be without the proxy.
	q.endpoints = nil
	return true
}

func containsAddr(as []netip.AddrPort, a netip.AddrPort) bool {
	for _, b := range as {
		if a == b {
			return true
		}
	}
	return false
}

// tunnel is an open tunnel: its connections, and what its node's standing is judged on.
type tunnel struct {
	node      *config.Node
	issued    time.Time // the password's session; zero for a certificate
	bound     int       // the risk rank above which the rules that opened it stop applying
	report    bool      // opened in report mode: the rules' risk bounds are reported, not enforced
	principal string
	ev        *audit.Event // the decision's event: the closing event shares its requestID

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func newTunnel(q *request) *tunnel {
	return &tunnel{node: q.node, issued: q.issued, bound: q.bound, report: q.report != "", principal: q.ev.UserIdentity.ARN, ev: q.ev}
}

// add adds a connection to the tunnel; false when the tunnel is already closed.
func (t *tunnel) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns = append(t.conns, c)
	return true
}

// close closes the tunnel's connections; it reports whether this call closed it.
func (t *tunnel) close() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.closed = true
	for _, c := range t.conns {
		c.Close()
	}
	return true
}

// track registers an open tunnel whose first connection is c (Close and the recheck
// close it); false when the proxy is shutting down.
func (p *Proxy) track(t *tunnel, c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut || !t.add(c) {
		return false
	}
	p.tunnels[t] = struct{}{}
	p.wg.Add(1)
	return true
}

// untrack closes a tunnel and forgets it.
func (p *Proxy) untrack(t *tunnel) {
	t.close()
	p.mu.Lock()
	delete(p.tunnels, t)
	p.mu.Unlock()
	p.wg.Done()
}

// startRecheck starts the loop that judges open tunnels again, once; p.mu is held. The
// loop ends when the proxy is closed or shut down.
func (p *Proxy) startRecheck() {
	if p.checker || (p.cfg.Standing == nil && p.cfg.Risk == nil) {
		return
	}
	p.checker = true
	go func() {
		t := time.NewTicker(p.cfg.RecheckInterval)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.recheckTunnels()
			}
		}
	}()
}

// recheckTunnels closes the open tunnels whose node no longer stands: removed from the
// spec or revoked, its password revoked, or its risk level now above the bound of the
// rules that opened the tunnel — and every tunnel while the perimeter state is stale.
// Each closing is audited.
func (p *Proxy) recheckTunnels() {
	p.mu.Lock()
	open := make([]*tunnel, 0, len(p.tunnels))
	for t := range p.tunnels {
		open = append(open, t)
	}
	p.mu.Unlock()
	if len(open) == 0 {
		return
	}
	spec := p.cfg.Spec()
	// A revocation made while the state is stale may not have reached this proxy: its
	// tunnels close as its new requests are refused (fail closed), and the agents reopen
	// them once the store answers again.
	var stale error
	if p.cfg.Fresh != nil {
		stale = p.cfg.Fresh()
	}
	for _, t := range open {
		code, reason := "", ""
		if stale != nil {
			code, reason = CodeStateStale, "the perimeter state is too old to decide on: "+stale.Error()
		} else if n, ok := spec.Node(t.node.Name); !ok || n.Role != t.node.Role {
			code, reason = CodeAuthRequired, "node "+t.node.Name+" is no longer in the perimeter spec with role "+t.node.Role
		} else {
			code, reason = p.standing(n, t.issued)
		}
		if code == "" && p.cfg.Risk != nil && !t.report {
			if level := p.cfg.Risk.RiskLevel(t.principal); config.RiskRank(level) > t.bound {
				code, reason = CodeRiskLevelTooHigh, "node "+t.node.Name+"'s phantom:RiskLevel rose to "+level+", above the maxRiskLevel of the rule that opened the tunnel"
			}
		}
		if code != "" && t.close() {
			p.recordClose(spec, t, code, reason)
		}
	}
}

// recordClose audits the closing of a tunnel the node's standing no longer allows.
func (p *Proxy) recordClose(spec *config.Spec, t *tunnel, code, reason string) {
	ev := p.baseEvent(spec, "CloseTunnel", t.ev.RequestID)
	ev.UserIdentity, ev.SourceIPAddress, ev.UserAgent = t.ev.UserIdentity, t.ev.SourceIPAddress, t.ev.UserAgent
	for _, k := range []string{"host", "port", "serverName", "apiId"} {
		if v, ok := t.ev.RequestParameters[k]; ok {
			ev.RequestParameters[k] = v
		}
	}
	ev.ErrorCode, ev.ErrorMessage = code, "the open tunnel was closed: "+reason
	ev.AdditionalEventData = map[string]any{"node": t.node.Name, "connectEventId": t.ev.EventID}
	err := p.cfg.Auditor.Record(context.Background(), ev)
	lvl := slogLevel(err)
	p.log.Log(context.Background(), lvl, "egress closed a tunnel", "node", t.node.Name, "error_code", code, "reason", reason, "audit_error", err)
}
