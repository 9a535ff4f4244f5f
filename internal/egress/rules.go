package egress

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/phantom-perimeter/phantom/internal/arn"
	"github.com/phantom-perimeter/phantom/internal/config"
)

// Error codes of refused decisions (errorCode in the audit event, and the first word of
// the refusal's body).
const (
	CodeAuthRequired        = "ProxyAuthenticationRequired"
	CodeDestinationNotAllow = "DestinationNotAllowed"
	CodePortNotAllowed      = "PortNotAllowed"
	CodeAddressNotAllowed   = "AddressNotAllowed"
	CodeDNSFailed           = "DNSResolutionFailed"
	CodeInvalidRequest      = "InvalidRequest"
	CodeTooManyTunnels      = "TooManyTunnels"
	CodeConnectFailed       = "ConnectFailed"
	CodeAuditFailed         = "AuditFailed"
	CodeServerNameNotAllow  = "ServerNameNotAllowed"
	// CodeRiskLevelTooHigh: a rule would allow the destination, but only up to a
	// phantom:RiskLevel below the node's.
	CodeRiskLevelTooHigh = "RiskLevelTooHigh"
	// CodeNodeRevoked: the node was removed (`phantom node revoke`).
	CodeNodeRevoked = "NodeRevoked"
	// CodeCredentialsRevoked: the password was issued before its role's sessions were
	// revoked (`phantom iam revoke-sessions`, a detection response).
	CodeCredentialsRevoked = "ProxyCredentialsRevoked"
	// CodeStateStale: the perimeter state has not been confirmed by the store for too
	// long to decide on (--max-stale).
	CodeStateStale = "PerimeterStateStale"
)

// noRiskBound is the risk bound of a rule without maxRiskLevel: above every rank.
const noRiskBound = 1 << 30

// defaultPorts are the ports of a host or CIDR rule that lists none.
var defaultPorts = []config.PortRange{{From: 443, To: 443}}

// ruleSet is one role's egress rules, compiled for lookup.
type ruleSet struct {
	exact    map[string][]portRule // host name -> rules naming it
	wildcard []wildRule            // *.domain rules
	prefixes []prefixRule          // cidr rules and IP host rules
	apiAddrs map[netip.AddrPort]apiAddr
	apiNames map[string]apiName // private DNS name of an endpoint serving an allowed API
	// apis are the APIs the role's api rules allow, each with its risk bound.
	apis   map[string]int
	roleID string // the role's IAM unique id (AROA…), for audit events
	// limited: rules of the role were left out for their maxRiskLevel.
	limited bool
}

type portRule struct {
	ports []config.PortRange
	desc  string
	bound int // the risk rank above which the rule does not apply
}

// apiAddr is an endpoint listener an api rule opens.
type apiAddr struct {
	desc  string
	bound int
}

type wildRule struct {
	suffix string // ".example.com"
	portRule
}

type prefixRule struct {
	prefix netip.Prefix
	portRule
}

type apiName struct {
	addrs []netip.AddrPort
	desc  string
	bound int
}

// allowsAPI reports whether an api rule allows the API.
func (rs *ruleSet) allowsAPI(api string) bool { _, ok := rs.apis[api]; return ok }

func (r portRule) allows(port uint16) bool {
	return slices.ContainsFunc(r.ports, func(pr config.PortRange) bool { return pr.Contains(port) })
}

// compileRules compiles the egress rules of a role that apply at risk rank risk (those
// without maxRiskLevel, or whose maxRiskLevel ranks at least risk); a role without rules
// gets an empty set, which allows nothing.
func compileRules(s *config.Spec, role string, risk int) *ruleSet {
	rs := &ruleSet{exact: map[string][]portRule{}, apiAddrs: map[netip.AddrPort]apiAddr{}, apiNames: map[string]apiName{}, apis: map[string]int{}}
	if r, ok := s.Role(role); ok {
		rs.roleID = arn.RoleID(r.ARN)
	}
	eg, ok := s.EgressFor(role)
	if !ok {
		return rs
	}
	for _, a := range eg.Allow {
		bound := noRiskBound
		if a.MaxRiskLevel != "" {
			bound = config.RiskRank(a.MaxRiskLevel)
		}
		if risk > bound {
			rs.limited = true
			continue
		}
		ports := a.Ports
		if len(ports) == 0 {
			ports = defaultPorts
		}
		riskDesc := ""
		if a.MaxRiskLevel != "" {
			riskDesc = " (maxRiskLevel " + a.MaxRiskLevel + ")"
		}
		switch {
		case a.API != "":
			rs.apis[a.API] = max(rs.apis[a.API], bound)
			for _, e := range s.Endpoints {
				if !slices.Contains(e.APIs, a.API) {
					continue
				}
				desc := "api:" + a.API + " via " + e.ID + riskDesc
				addrs := listenAddrs(e)
				for _, ap := range addrs {
					if cur, ok := rs.apiAddrs[ap]; !ok || cur.bound < bound {
						rs.apiAddrs[ap] = apiAddr{desc, bound}
					}
				}
				// The names the API is reached by through this endpoint: the endpoint's
				// private DNS names (Route 53 private hosted zones) and the API's
				// execute-api names (the endpoint's private DNS for execute-api), all
				// resolved to the endpoint's listeners by the proxy itself.
				names := append([]string{config.ExecuteAPIName(a.API, s.Region), strings.Replace(config.ExecuteAPIName(a.API, s.Region), ".", "-"+e.ID+".", 1)}, e.PrivateDNSNames...)
				for _, n := range names {
					n = strings.ToLower(strings.TrimSuffix(n, "."))
					an := rs.apiNames[n]
					an.addrs = append(an.addrs, addrs...)
					if an.desc == "" || an.bound < bound {
						an.desc, an.bound = desc, bound
					}
					rs.apiNames[n] = an
				}
			}
		case a.Host != "":
			pr := portRule{ports: ports, desc: "host:" + a.Host + ":" + portsString(ports) + riskDesc, bound: bound}
			if addr, err := netip.ParseAddr(a.Host); err == nil {
				addr = addr.Unmap()
				rs.prefixes = append(rs.prefixes, prefixRule{netip.PrefixFrom(addr, addr.BitLen()), pr})
			} else if strings.HasPrefix(a.Host, "*.") {
				rs.wildcard = append(rs.wildcard, wildRule{strings.ToLower(a.Host[1:]), pr})
			} else {
				h := strings.ToLower(strings.TrimSuffix(a.Host, "."))
				rs.exact[h] = append(rs.exact[h], pr)
			}
		case a.CIDR.IsValid():
			p := a.CIDR.Masked()
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			rs.prefixes = append(rs.prefixes, prefixRule{p, portRule{ports: ports, desc: "cidr:" + p.String() + ":" + portsString(ports) + riskDesc, bound: bound}})
		}
	}
	return rs
}

// listenAddrs are the addresses an endpoint is dialled at: its listen addresses, a
// wildcard listener standing for this host's loopback (the endpoint's private DNS names
// point there, as they do for `phantom up`).
func listenAddrs(e *config.Endpoint) []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range e.Listen {
		ap := netip.AddrPortFrom(l.Addr().Unmap(), l.Port())
		if ap.Addr().IsUnspecified() {
			lo := netip.IPv6Loopback()
			if ap.Addr().Is4() {
				lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
			ap = netip.AddrPortFrom(lo, ap.Port())
		}
		out = append(out, ap)
	}
	return out
}

// endpointListeners maps every endpoint's listen addresses to it.
func endpointListeners(s *config.Spec) map[netip.AddrPort]*config.Endpoint {
	m := map[netip.AddrPort]*config.Endpoint{}
	for _, e := range s.Endpoints {
		for _, ap := range listenAddrs(e) {
			m[ap] = e
		}
	}
	return m
}

func portsString(ports []config.PortRange) string {
	var b strings.Builder
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p.From)))
		if p.To != p.From {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(p.To)))
		}
	}
	return b.String()
}

// nameRules returns the host rules naming a DNS name: exact first, then wildcards, which
// match one or more leading labels (*.example.com matches a.example.com and
// a.b.example.com, not example.com).
func (rs *ruleSet) nameRules(name string) []portRule {
	out := rs.exact[name]
	for _, w := range rs.wildcard {
		if len(name) > len(w.suffix) && strings.HasSuffix(name, w.suffix) {
			out = append(out[:len(out):len(out)], w.portRule)
		}
	}
	return out
}

// verdict is the outcome of checking one address.
type verdict struct {
	rule   string // the rule that allowed it
	bound  int    // that rule's risk bound
	code   string // refusal code; empty when allowed
	reason string
}

// checkAddr decides whether addr:port may be dialled on the strength of an address rule:
// an API endpoint's listen address, or a CIDR/IP rule listing the port whose prefix lifts
// any guard on addr. nameRule is the host rule that matched the name addr was resolved
// from ("" for an IP literal): it allows ordinary global addresses on its own.
func (rs *ruleSet) checkAddr(addr netip.Addr, port uint16, nameRule string) verdict {
	ap := netip.AddrPortFrom(addr, port)
	if d, ok := rs.apiAddrs[ap]; ok {
		return verdict{rule: d.desc, bound: d.bound}
	}
	rng, why, guarded := Guard(addr)
	fixed := absolute(addr)
	portOnly := false // a rule names the address, but on other ports
	for _, p := range rs.prefixes {
		if !p.prefix.Contains(addr) {
			continue
		}
		liftsGuard := !guarded || (!fixed && lifts(p.prefix, rng))
		if !liftsGuard {
			continue
		}
		if p.allows(port) {
			return verdict{rule: p.desc, bound: p.bound}
		}
		portOnly = true
	}
	if !guarded && nameRule != "" {
		return verdict{rule: nameRule, bound: noRiskBound}
	}
	for a := range rs.apiAddrs {
		portOnly = portOnly || (a.Addr() == addr && !fixed)
	}
	switch {
	case guarded && !portOnly:
		return verdict{code: CodeAddressNotAllowed, reason: addr.String() + " is " + why + " and no rule names it"}
	case portOnly:
		return verdict{code: CodePortNotAllowed, reason: "no rule allows port " + strconv.Itoa(int(port)) + " on " + addr.String()}
	}
	return verdict{code: CodeDestinationNotAllow, reason: "no egress rule of the role names " + addr.String()}
}

// guardLifted reports whether the SSRF guards let addr be dialled at all for the role,
// whatever the port: an ordinary global address, or one a rule of the role names (an
// API's endpoint listener, or a CIDR or IP rule that lifts its guard). Report mode
// forwards what the rules would refuse only where this holds: it relaxes the allow
// list, never the guards.
func (rs *ruleSet) guardLifted(addr netip.Addr) bool {
	rng, _, guarded := Guard(addr)
	if !guarded {
		return true
	}
	if absolute(addr) {
		return false
	}
	for a := range rs.apiAddrs {
		if a.Addr() == addr {
			return true
		}
	}
	for _, p := range rs.prefixes {
		if p.prefix.Contains(addr) && lifts(p.prefix, rng) {
			return true
		}
	}
	return false
}
