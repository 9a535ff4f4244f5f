package egress

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/admission"
	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/requestid"
)

// Resolver looks up a host name's addresses; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Dialer opens connections; *net.Dialer satisfies it. The proxy only ever passes it a
// literal IP:port it has checked.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// NodeVerifier verifies a node's client certificate chain and names its identity;
// *pki.Verifier satisfies it.
type NodeVerifier interface {
	Verify(chain []*x509.Certificate, usage x509.ExtKeyUsage) (pki.Identity, error)
}

// Standing tells the perimeter's current view of a node's credentials (the identity
// service's snapshots, refreshed from the store); *identity.Service satisfies it.
type Standing interface {
	// NodeRevoked reports a node removed (`phantom node revoke`) and not enrolled again.
	NodeRevoked(node string) bool
	// SessionRevoked reports whether credentials issued at issued with a session of role
	// to node are revoked: the role's sessions or the node's revoked after they were
	// issued, or the node removed.
	SessionRevoked(role, node string, issued time.Time) bool
}

// RiskSource reports a principal's phantom:RiskLevel, as the detector's responses raise
// it (on the principal or its role); respond.Responder satisfies it.
type RiskSource interface {
	RiskLevel(principalARN string) string
}

// Auditor records one decision; an error refuses the request (fail closed).
type Auditor interface {
	Record(ctx context.Context, ev *audit.Event) error
}

// Metrics observes the proxy's decisions (internal/metrics). Labels stay bounded: method
// is connect or forward; result allow, report (forwarded in report mode though the rules
// would refuse), deny or error; reason the audit errorCode (one of the Code constants,
// "" when allowed, the code that would have refused when reported); role the node's role
// in the spec ("" before a node is identified). Never the node, host or address.
type Metrics interface {
	Decision(method, result, reason, role string, d time.Duration)
}

// Defaults of the Config limits.
const (
	DefaultMaxHeaderBytes    = 16 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 5 * time.Minute
	DefaultDialTimeout       = 10 * time.Second
	DefaultResolveTimeout    = 5 * time.Second
	DefaultResponseTimeout   = 60 * time.Second
	DefaultMaxTunnels        = 1024
	// DefaultMaxTunnelsPerNode and DefaultMaxTunnelsPerSource bound one node's, and one
	// source address's, share of the tunnels and forwarded requests.
	DefaultMaxTunnelsPerNode   = 256
	DefaultMaxTunnelsPerSource = 512
	// DefaultMaxConnections and DefaultMaxConnectionsPerSource bound the TCP connections
	// the listeners hold open (idle keep-alive ones included), in all and from one address.
	DefaultMaxConnections          = 4096
	DefaultMaxConnectionsPerSource = 1024
	// DefaultRefusalWindow is how long refusals of one source and code are counted into
	// one summary after the first DefaultRefusalBurst are recorded in full.
	DefaultRefusalWindow = time.Minute
	DefaultRefusalBurst  = 10
	// DefaultRecheckInterval is how often open tunnels are checked against their node's
	// current standing.
	DefaultRecheckInterval = 250 * time.Millisecond
)

// Config configures a Proxy. Spec, Key and Auditor are required.
type Config struct {
	// Spec returns the current perimeter spec (config.Watcher.Current); rules follow
	// reloads.
	Spec func() *config.Spec
	// PasswordKey checks the nodes' proxy passwords: the public half of the key STS signs
	// them with (keys.EgressPasswordsPublic). The proxy cannot make a password.
	PasswordKey ed25519.PublicKey
	// Resolver resolves host names once per request; default net.DefaultResolver.
	Resolver Resolver
	// Dialer dials checked addresses; default a net.Dialer with DialTimeout.
	Dialer  Dialer
	Auditor Auditor
	Logger  *slog.Logger
	// Now stamps audit events; default time.Now.
	Now func() time.Time
	// Verifier, when set, lets a node authenticate with its perimeter-CA client
	// certificate (kind node) on a TLS listener (see TLSConfig) instead of, or together
	// with, its proxy password.
	Verifier NodeVerifier
	// Deny lists addresses refused whatever the rules say: the agent's loopback IMDS and
	// container-credentials listeners. Port 0 denies every port of the address.
	Deny []netip.AddrPort
	// Standing, when set, decides every request on the node's current standing: a
	// removed node is refused, by certificate or password, and a password issued before
	// its role's sessions (or the node's) were revoked is refused; open tunnels of such a
	// node are closed. Without it passwords are judged by their expiry alone.
	Standing Standing
	// Risk, when set, supplies the node's phantom:RiskLevel, which rules' maxRiskLevel
	// compare with; without it every node's level is none.
	Risk RiskSource
	// Fresh, when set, is asked before every decision whether the state Standing and
	// Risk read is current: while it returns an error every request is refused (503
	// PerimeterStateStale), as the gateway refuses calls (--max-stale).
	Fresh func() error
	// Metrics, when set, observes every decision.
	Metrics Metrics

	MaxHeaderBytes    int           // request line and headers; default 16 KiB
	ReadHeaderTimeout time.Duration // default 10 s
	IdleTimeout       time.Duration // tunnel without traffic either way, idle keep-alive; default 5 min
	DialTimeout       time.Duration // default 10 s
	ResolveTimeout    time.Duration // default 5 s
	ResponseTimeout   time.Duration // absolute-form: wait for the response header; default 60 s
	// Open tunnels and forwarded requests: in all, of one node, from one source address.
	MaxTunnels          int // default 1024
	MaxTunnelsPerNode   int // default 256
	MaxTunnelsPerSource int // default 512
	// TCP connections the listeners of Serve and ServeTLS hold open.
	MaxConnections          int // default 4096
	MaxConnectionsPerSource int // default 1024
	// RefusalWindow, RefusalBurst and MaxRefusalSources bound the audit records of
	// refusals: per source address, error code and method, the first RefusalBurst
	// refusals of a window are recorded in full and the rest counted into one summary
	// (admission.Recorder). Defaults: a minute, 10, 4096 sources.
	RefusalWindow     time.Duration
	RefusalBurst      int
	MaxRefusalSources int
	// RecheckInterval is how often open tunnels are checked against their node's standing
	// and risk level; default 250 ms.
	RecheckInterval time.Duration
}

// Proxy is the egress proxy. It is an http.Handler (serve it with Serve or ServeTLS, or
// on a server of the caller's own with the same limits).
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	compiled atomic.Pointer[compiled]
	forward  *http.Transport
	self     atomic.Pointer[[]netip.AddrPort] // the listeners Serve accepts on
	buffers  sync.Pool                        // relay buffers of finished tunnels
	slots    *slots                           // tunnels and forwarded requests in flight
	conns    *admission.Tracker               // connections the listeners hold
	refusals *admission.Recorder              // refusals: in full once a window, then counted

	mu      sync.Mutex
	srv     *http.Server
	tunnels map[*tunnel]struct{}
	shut    bool
	wg      sync.WaitGroup
	quit    chan struct{} // closed by Close and Shutdown: the recheck loop ends
	checker bool          // the recheck loop runs
}

// compiled is the rules of one spec, per role and risk level, built on first use after a
// reload, and the listen addresses of its endpoints.
type compiled struct {
	spec      *config.Spec
	endpoints map[netip.AddrPort]*config.Endpoint
	mu        sync.Mutex
	roles     map[roleRisk]*ruleSet
}

// roleRisk names the rules of a role that apply at a risk rank (config.RiskRank).
type roleRisk struct {
	role string
	risk int
}

// New validates cfg and returns a proxy.
func New(cfg Config) (*Proxy, error) {
	switch {
	case cfg.Spec == nil:
		return nil, errors.New("egress: Config.Spec is required")
	case len(cfg.PasswordKey) != ed25519.PublicKeySize:
		return nil, errors.New("egress: Config.PasswordKey must be an Ed25519 public key")
	case cfg.Auditor == nil:
		return nil, errors.New("egress: Config.Auditor is required: every decision is audited")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.DialTimeout, DefaultDialTimeout)
	def(&cfg.ResolveTimeout, DefaultResolveTimeout)
	def(&cfg.ResponseTimeout, DefaultResponseTimeout)
	def(&cfg.RefusalWindow, DefaultRefusalWindow)
	def(&cfg.RecheckInterval, DefaultRecheckInterval)
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&cfg.MaxHeaderBytes, DefaultMaxHeaderBytes)
	defInt(&cfg.MaxTunnels, DefaultMaxTunnels)
	defInt(&cfg.MaxTunnelsPerNode, DefaultMaxTunnelsPerNode)
	defInt(&cfg.MaxTunnelsPerSource, DefaultMaxTunnelsPerSource)
	defInt(&cfg.MaxConnections, DefaultMaxConnections)
	defInt(&cfg.MaxConnectionsPerSource, DefaultMaxConnectionsPerSource)
	defInt(&cfg.RefusalBurst, DefaultRefusalBurst)
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for i, d := range cfg.Deny {
		cfg.Deny[i] = netip.AddrPortFrom(d.Addr().Unmap(), d.Port())
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, now: cfg.Now, tunnels: map[*tunnel]struct{}{}, quit: make(chan struct{}),
		slots: newSlots(cfg.MaxTunnels, cfg.MaxTunnelsPerNode, cfg.MaxTunnelsPerSource), conns: admission.NewTracker()}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "egress")
	p.refusals = admission.NewRecorder(admission.RecorderConfig{
		Auditor:    cfg.Auditor,
		Event:      p.refusalEvent,
		Window:     cfg.RefusalWindow,
		Burst:      cfg.RefusalBurst,
		MaxSources: cfg.MaxRefusalSources,
		Logger:     p.log,
		Now:        cfg.Now,
	})
	p.buffers.New = newRelayBuffer
	p.forward = &http.Transport{
		Proxy:                  nil, // never a proxy from the environment
		DialContext:            p.dialChecked,
		DisableKeepAlives:      true, // a pooled connection would skip the next request's check
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
		ResponseHeaderTimeout:  cfg.ResponseTimeout,
	}
	return p, nil
}

// compiledFor returns what is compiled of spec s.
func (p *Proxy) compiledFor(s *config.Spec) *compiled {
	c := p.compiled.Load()
	if c == nil || c.spec != s {
		c = &compiled{spec: s, roles: map[roleRisk]*ruleSet{}, endpoints: endpointListeners(s)}
		p.compiled.Store(c)
	}
	return c
}

// rules returns the compiled rules of role under spec s that apply at risk rank risk:
// those whose maxRiskLevel is at least that.
func (p *Proxy) rules(s *config.Spec, role string, risk int) *ruleSet {
	c := p.compiledFor(s)
	k := roleRisk{role, risk}
	c.mu.Lock()
	defer c.mu.Unlock()
	rs, ok := c.roles[k]
	if !ok {
		rs = compileRules(s, role, risk)
		c.roles[k] = rs
	}
	return rs
}

// Serve accepts proxy connections on ln until Shutdown or Close; cancelling ctx closes
// the proxy at once. It may be called for several listeners (a plain one on loopback and
// a TLS one for other hosts, say), concurrently. Each connection counts against
// MaxConnections and MaxConnectionsPerSource from its accept. ln is a plain listener:
// for TLS use ServeTLS (a connection Serve counts is no *tls.Conn to the HTTP server, so
// a certificate on it would go unseen).
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	return p.serve(ctx, ln, nil)
}

// ServeTLS is Serve over TLS (TLSConfig with getCert): nodes may authenticate with their
// perimeter-CA client certificate. ln is a plain TCP listener: connections are counted
// before their handshake.
func (p *Proxy) ServeTLS(ctx context.Context, ln net.Listener, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) error {
	return p.serve(ctx, ln, p.TLSConfig(getCert))
}

func (p *Proxy) serve(ctx context.Context, ln net.Listener, tlsCfg *tls.Config) error {
	p.mu.Lock()
	if p.shut {
		p.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	if p.srv == nil {
		p.srv = &http.Server{
			Handler:           p,
			MaxHeaderBytes:    p.cfg.MaxHeaderBytes,
			ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
			IdleTimeout:       p.cfg.IdleTimeout,
			BaseContext:       func(net.Listener) context.Context { return ctx },
			ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		}
	}
	srv := p.srv
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil {
		var self []netip.AddrPort
		if cur := p.self.Load(); cur != nil {
			self = append(self, *cur...)
		}
		self = append(self, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		p.self.Store(&self)
	}
	p.startRecheck()
	p.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()
	var l net.Listener = &admitListener{Listener: ln, p: p}
	if tlsCfg != nil {
		l = tls.NewListener(l, tlsCfg)
	}
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting, lets in-flight requests and open tunnels finish until ctx
// ends, then closes what is left, and records the pending refusal summaries.
func (p *Proxy) Shutdown(ctx context.Context) error {
	srv := p.stop()
	var err error
	if srv != nil {
		err = srv.Shutdown(ctx)
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		p.closeTunnels()
		<-done
		if err == nil {
			err = ctx.Err()
		}
	}
	p.refusals.Stop(ctx)
	return err
}

// Close closes the listener, every connection and every tunnel at once, and records the
// pending refusal summaries.
func (p *Proxy) Close() error {
	srv := p.stop()
	var err error
	if srv != nil {
		err = srv.Close()
	}
	p.closeTunnels()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.refusals.Stop(ctx)
	return err
}

// stop marks the proxy shut and ends the recheck loop; it returns the server to stop.
func (p *Proxy) stop() *http.Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.shut {
		p.shut = true
		close(p.quit)
	}
	return p.srv
}

func (p *Proxy) closeTunnels() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t := range p.tunnels {
		t.close()
	}
}

// request is one proxy request being decided.
type request struct {
	r    *http.Request
	ev   *audit.Event
	spec *config.Spec
	src  netip.AddrPort // the client's address, IPv4-mapped unmapped
	node *config.Node
	// rules are the role's rules that apply at the node's risk level; all are every rule
	// of the role (what a RiskLevelTooHigh refusal and report mode consult).
	rules, all *ruleSet
	// issued is when the password's session was issued; zero for a certificate.
	issued time.Time
	risk   int // the node's phantom:RiskLevel, ranked (config.RiskRank)
	// report names why the node's requests are in report mode ("role" or "node"); ""
	// when the rules are enforced. would is the refusal report mode let through.
	report string
	would  *refusal
	// bound is the risk rank above which the rules that allowed the request no longer
	// apply (noRiskBound when none of them has a maxRiskLevel).
	bound   int
	rawHost string
	host    Host
	port    uint16
	rule    string
	addrs   []netip.AddrPort
	// resolved is what the host name resolved to, once it has been.
	resolved []netip.Addr
	// endpoints are the endpoints whose listeners q.addrs are: a tunnel to one carries
	// only a TLS connection whose server name binds an API the node may reach.
	endpoints []*config.Endpoint
	status    int
	code      string
	reason    string
	start     time.Time // for the metrics
	// recorded: the decision's event is written (a forward records it once connected).
	recorded bool
}

// refusal is a refusal's answer.
type refusal struct {
	status       int
	code, reason string
}

// deny records a refusal; nothing is left to dial.
func (q *request) deny(status int, code, reason string) {
	q.status, q.code, q.reason, q.addrs = status, code, reason, nil
}

// role is the identified node's role, "" before.
func (q *request) role() string {
	if q.node == nil {
		return ""
	}
	return q.node.Role
}

// ServeHTTP decides one proxy request, audits the decision and carries it out.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := &request{r: r, spec: p.cfg.Spec(), bound: noRiskBound}
	if p.cfg.Metrics != nil {
		q.start = time.Now()
	}
	name := "Forward"
	if r.Method == http.MethodConnect {
		name = "Connect"
	}
	q.ev = p.newEvent(q.spec, name, r)
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		q.src = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	p.decide(r.Context(), q)
	if q.code == "" {
		p.checkEndpoints(q)
	}
	if q.code != "" {
		p.explainRisk(q)
		if !p.reportInstead(r.Context(), q) {
			p.refuse(w, q)
			return
		}
	}
	release, reason := p.slots.acquire(q.node.Name, q.src.Addr())
	if release == nil {
		q.deny(http.StatusServiceUnavailable, CodeTooManyTunnels, reason)
		p.refuse(w, q)
		return
	}
	defer release()
	switch {
	case len(q.endpoints) > 0:
		p.connectEndpoint(w, q)
	case r.Method == http.MethodConnect:
		p.connect(w, q)
	default:
		p.forwardRequest(w, q)
	}
}

// decide authenticates the node, reads the target and checks it against the node's
// role's rules and the guards, resolving a name at most once. It leaves q.addrs, the
// only addresses that may be dialled, or a refusal.
func (p *Proxy) decide(ctx context.Context, q *request) {
	if !p.authenticate(q) {
		// Record where the refused caller wanted to go, keeping the refusal.
		status, code, reason := q.status, q.code, q.reason
		if p.target(q) {
			q.ev.RequestParameters["host"] = q.host.String()
			q.ev.RequestParameters["port"] = int(q.port)
		}
		q.deny(status, code, reason)
		return
	}
	if !p.target(q) {
		return
	}
	q.ev.RequestParameters["host"] = q.host.String()
	q.ev.RequestParameters["port"] = int(q.port)
	rs := q.rules
	if q.host.IsAddr() {
		// The deny list first: its reason is the true one whatever the rules say.
		if q.addrs = []netip.AddrPort{netip.AddrPortFrom(q.host.Addr, q.port)}; !p.checkDeny(q) {
			return
		}
		v := rs.checkAddr(q.host.Addr, q.port, "")
		if v.code != "" {
			q.deny(http.StatusForbidden, v.code, v.reason)
			return
		}
		q.rule, q.bound = v.rule, min(q.bound, v.bound)
		return
	}
	// A private DNS name of an endpoint serving an allowed API resolves to the endpoint's
	// listen addresses, as Route 53 private hosted zones would; no DNS query.
	if an, ok := rs.apiNames[q.host.Name]; ok {
		for _, a := range an.addrs {
			if a.Port() == q.port {
				q.addrs = append(q.addrs, a)
			}
		}
		if len(q.addrs) == 0 {
			q.deny(http.StatusForbidden, CodePortNotAllowed, fmt.Sprintf("%s serves its APIs on other ports than %d", q.host.Name, q.port))
			return
		}
		q.rule = an.desc
		q.ev.RequestParameters["resolvedAddresses"] = addrStrings(q.addrs)
		p.checkDeny(q)
		return
	}
	named := rs.nameRules(q.host.Name)
	if len(named) == 0 {
		q.deny(http.StatusForbidden, CodeDestinationNotAllow, "no egress rule of role "+q.node.Role+" names "+q.host.Name)
		return
	}
	var nameRule *portRule
	for i := range named {
		if named[i].allows(q.port) {
			nameRule = &named[i]
			break
		}
	}
	if nameRule == nil {
		q.deny(http.StatusForbidden, CodePortNotAllowed, fmt.Sprintf("the rules naming %s do not allow port %d", q.host.Name, q.port))
		return
	}
	ips, ok := p.resolve(ctx, q)
	if !ok {
		return
	}
	rules := map[string]bool{}
	q.bound = min(q.bound, nameRule.bound)
	for _, ip := range ips {
		v := rs.checkAddr(ip, q.port, nameRule.desc)
		if v.code != "" {
			q.deny(http.StatusForbidden, CodeAddressNotAllowed, q.host.Name+" resolves to "+ip.String()+": "+v.reason)
			return
		}
		rules[v.rule] = true
		q.bound = min(q.bound, v.bound)
		q.addrs = append(q.addrs, netip.AddrPortFrom(ip, q.port))
	}
	q.rule = nameRule.desc
	for r := range rules {
		if r != nameRule.desc {
			q.rule = nameRule.desc + "; " + r
		}
	}
	p.checkDeny(q)
}

// resolve looks q's host name up, once: what is checked afterwards is exactly what gets
// dialled, so an answer that changes afterwards (DNS rebinding) changes nothing. The
// addresses come back unmapped, without zones, as the guards and the audit event read
// them.
func (p *Proxy) resolve(ctx context.Context, q *request) ([]netip.Addr, bool) {
	if q.resolved != nil {
		return q.resolved, true
	}
	rctx, cancel := context.WithTimeout(ctx, p.cfg.ResolveTimeout)
	// Rooted (trailing dot): no resolv.conf search domain turns the name into another.
	ips, err := p.cfg.Resolver.LookupNetIP(rctx, "ip", q.host.Name+".")
	cancel()
	if err != nil || len(ips) == 0 {
		if err == nil {
			err = errors.New("no addresses")
		}
		q.deny(http.StatusBadGateway, CodeDNSFailed, "resolve "+q.host.Name+": "+err.Error())
		return nil, false
	}
	resolved := make([]string, len(ips))
	for i, ip := range ips {
		ips[i] = ip.Unmap().WithZone("")
		resolved[i] = ips[i].String()
	}
	q.resolved = ips
	q.ev.RequestParameters["resolvedAddresses"] = resolved
	return ips, true
}

// checkDeny refuses q when any address it would dial is on the always-denied list.
// It also refuses the proxy's own listener, so no rule turns the proxy into a loop.
// It reports whether q may go on.
func (p *Proxy) checkDeny(q *request) bool {
	var selves []netip.AddrPort
	if s := p.self.Load(); s != nil {
		selves = *s
	}
	for _, a := range q.addrs {
		for _, d := range p.cfg.Deny {
			if d.Addr() == a.Addr() && (d.Port() == 0 || d.Port() == a.Port()) {
				q.deny(http.StatusForbidden, CodeAddressNotAllowed, a.String()+" is the credential agent's metadata service")
				return false
			}
		}
		for _, self := range selves {
			if a.Port() == self.Port() && (a.Addr() == self.Addr() || self.Addr().IsUnspecified() && a.Addr().IsLoopback()) {
				q.deny(http.StatusForbidden, CodeAddressNotAllowed, a.String()+" is this proxy")
				return false
			}
		}
	}
	return true
}

func addrStrings(as []netip.AddrPort) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Addr().String()
	}
	return out
}

// TLSConfig is the configuration of a TLS proxy listener (tls.NewListener(ln, cfg), then
// Serve): TLS 1.2 or later, HTTP/1.1 (CONNECT needs it), and a client certificate
// requested but not required — the handler verifies it with Config.Verifier, so a
// certificate from another CA is refused with an audited 407 rather than a handshake
// error, and nodes without one still authenticate with their password.
func (p *Proxy) TLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: getCert,
		ClientAuth:     tls.RequestClientCert,
		NextProtos:     []string{"http/1.1"},
	}
}

// authenticate identifies the node: by its client certificate (TLS listener with a
// Verifier) and/or Proxy-Authorization: Basic NODE:PASSWORD. Every credential presented
// must be valid and all must name the same node.
func (p *Proxy) authenticate(q *request) bool {
	fail := func(reason string) bool {
		q.deny(http.StatusProxyAuthRequired, CodeAuthRequired, reason)
		return false
	}
	certNode := ""
	if q.r.TLS != nil {
		q.ev.TLSDetails = &audit.TLSDetails{TLSVersion: audit.TLSVersionName(q.r.TLS.Version), CipherSuite: audit.CipherSuiteName(q.r.TLS.CipherSuite),
			ClientProvidedHostHeader: truncate(q.r.Host, 256)}
		if len(q.r.TLS.PeerCertificates) > 0 {
			if p.cfg.Verifier == nil {
				return fail("client certificates are not accepted here; use the proxy password")
			}
			id, err := p.cfg.Verifier.Verify(q.r.TLS.PeerCertificates, x509.ExtKeyUsageClientAuth)
			if err != nil {
				return fail("client certificate: " + err.Error())
			}
			if id.Kind != pki.KindNode || id.Account != q.spec.Account {
				return fail("client certificate names " + id.String() + ", not a node of this perimeter")
			}
			certNode = id.Name
		}
	}
	vals := q.r.Header.Values("Proxy-Authorization")
	switch {
	case len(vals) == 0 && certNode != "":
		return p.identify(q, certNode, "certificate", time.Time{})
	case len(vals) == 0:
		return fail("the request has no Proxy-Authorization header")
	case len(vals) > 1:
		return fail("the request has more than one Proxy-Authorization header")
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return fail("Proxy-Authorization is not Basic")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return fail("Proxy-Authorization is not base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || user == "" {
		return fail("Proxy-Authorization has no node name")
	}
	q.ev.RequestParameters["proxyUser"] = truncate(user, 128)
	n, known := q.spec.Node(user)
	var addr netip.Addr
	if known {
		addr = n.PrivateIP
	}
	issued, expires, good := checkPassword(p.cfg.PasswordKey, user, addr, pass) // computed for unknown nodes too: same cost
	if !known || !good {
		return fail("the node name or proxy password is wrong")
	}
	if !p.now().Before(expires) {
		return fail("the proxy password of node " + truncate(user, 128) + " expired at " + expires.UTC().Format(time.RFC3339) +
			": the agent hands a new one with every role session (IMDS /latest/meta-data/phantom/egress-proxy)")
	}
	// The password is the node's only where the node is: a copy used from anywhere else
	// is refused (the TLS listener's client certificate is the way for nodes whose
	// address the proxy does not see as theirs).
	if src, err := netip.ParseAddr(q.ev.SourceIPAddress); err != nil || !addr.IsValid() || src.Unmap() != addr.Unmap() {
		return fail("the proxy password of node " + truncate(user, 128) + " is not accepted from " + q.ev.SourceIPAddress + ": it is bound to the node's address")
	}
	if certNode != "" && certNode != user {
		return fail("the client certificate names node " + certNode + " but Proxy-Authorization names " + truncate(user, 128))
	}
	how := "password"
	if certNode != "" {
		how = "certificate+password"
	}
	return p.identify(q, user, how, issued)
}

// identify makes an authenticated node the request's principal, and judges its current
// standing: the perimeter state fresh enough to judge by, the node not removed, the
// password's session (issued; zero for a certificate) not revoked. It takes the node's
// risk level, the rules that apply at it, and whether the node's rules are enforced or
// reported.
func (p *Proxy) identify(q *request, node, how string, issued time.Time) bool {
	n, ok := q.spec.Node(node)
	if !ok {
		q.deny(http.StatusProxyAuthRequired, CodeAuthRequired, "node "+truncate(node, 128)+" is not in the perimeter spec")
		return false
	}
	q.node, q.issued = n, issued
	q.all = p.rules(q.spec, n.Role, 0)
	q.ev.UserIdentity = nodeIdentity(q.spec, q.all, n)
	q.ev.AdditionalEventData = map[string]any{"node": n.Name, "vpc": n.VPC, "authentication": how}
	if !issued.IsZero() {
		q.ev.AdditionalEventData["credentialsIssued"] = issued.UTC().Format(time.RFC3339Nano)
	}
	if p.cfg.Fresh != nil {
		if err := p.cfg.Fresh(); err != nil {
			q.deny(http.StatusServiceUnavailable, CodeStateStale, "the perimeter state is too old to decide on: "+err.Error())
			return false
		}
	}
	if code, reason := p.standing(n, issued); code != "" {
		q.deny(http.StatusProxyAuthRequired, code, reason)
		return false
	}
	if p.cfg.Risk != nil {
		if level := p.cfg.Risk.RiskLevel(q.ev.UserIdentity.ARN); level != "" {
			q.risk = config.RiskRank(level)
			q.ev.AdditionalEventData["riskLevel"] = level
		}
	}
	q.rules = p.rules(q.spec, n.Role, q.risk)
	if n.EgressMode == config.ModeReport {
		q.report = "node"
	} else if eg, ok := q.spec.EgressFor(n.Role); ok && eg.Mode == config.ModeReport {
		q.report = "role"
	}
	return true
}

// target reads the destination from the raw request target: authority-form for CONNECT,
// absolute-form http:// otherwise. It never trusts net/http's parsed URL host, which
// percent-decodes.
func (p *Proxy) target(q *request) bool {
	bad := func(reason string) bool {
		q.deny(http.StatusBadRequest, CodeInvalidRequest, reason)
		return false
	}
	uri := q.r.RequestURI
	var authority string
	defPort := ""
	if q.r.Method == http.MethodConnect {
		authority = uri
	} else {
		scheme, rest, ok := strings.Cut(uri, "://")
		switch {
		case !ok || strings.HasPrefix(uri, "/"):
			return bad("not a proxy request: the request target is not absolute-form")
		case strings.EqualFold(scheme, "https"):
			return bad("absolute-form https:// is not forwarded: use CONNECT for TLS")
		case !strings.EqualFold(scheme, "http"):
			return bad("scheme " + truncate(scheme, 16) + " is not forwarded")
		}
		authority = rest
		if i := strings.IndexAny(authority, "/?#"); i >= 0 {
			authority = authority[:i]
		}
		defPort = "80"
		q.ev.RequestParameters["method"] = truncate(q.r.Method, 16)
	}
	host, port, err := SplitHostPort(authority, defPort)
	q.rawHost = host
	if err != nil {
		q.ev.RequestParameters["target"] = truncate(authority, 256)
		return bad(err.Error())
	}
	h, err := ParseHost(host)
	if err != nil {
		q.ev.RequestParameters["target"] = truncate(authority, 256)
		return bad(err.Error())
	}
	q.host, q.port = h, port
	if host != h.String() && "["+h.String()+"]" != host {
		q.ev.RequestParameters["hostAsWritten"] = truncate(host, 256)
	}
	return true
}

// SplitHostPort splits an authority (host:port, [v6]:port) strictly: no userinfo, a
// decimal port 1-65535, defPort when the port is absent ("" makes it required).
func SplitHostPort(authority, defPort string) (string, uint16, error) {
	if strings.ContainsAny(authority, "@ \t\\") {
		return "", 0, fmt.Errorf("authority %q holds userinfo or spaces", truncate(authority, 64))
	}
	host, port := authority, ""
	if strings.HasPrefix(authority, "[") {
		i := strings.IndexByte(authority, ']')
		if i < 0 {
			return "", 0, fmt.Errorf("authority %q has an unclosed bracket", truncate(authority, 64))
		}
		host, port = authority[:i+1], authority[i+1:]
		if port != "" {
			if port[0] != ':' {
				return "", 0, fmt.Errorf("authority %q has text after the bracket", truncate(authority, 64))
			}
			port = port[1:]
			if port == "" {
				return "", 0, fmt.Errorf("authority %q has an empty port", truncate(authority, 64))
			}
		}
	} else if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		host, port = authority[:i], authority[i+1:]
		if strings.IndexByte(host, ':') >= 0 {
			return "", 0, fmt.Errorf("authority %q: an IPv6 host must be bracketed", truncate(authority, 64))
		}
		if port == "" {
			return "", 0, fmt.Errorf("authority %q has an empty port", truncate(authority, 64))
		}
	}
	if port == "" {
		port = defPort
	}
	if port == "" {
		return "", 0, fmt.Errorf("authority %q has no port", truncate(authority, 64))
	}
	if len(port) > 5 || strings.TrimLeft(port, "0123456789") != "" {
		return "", 0, fmt.Errorf("port %q is not a number", truncate(port, 16))
	}
	n, _ := strconv.Atoi(port)
	if n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("port %d is outside 1 to 65535", n)
	}
	if host == "" {
		return "", 0, errors.New("the authority has no host")
	}
	return host, uint16(n), nil
}

// refuse audits a refusal and answers it.
func (p *Proxy) refuse(w http.ResponseWriter, q *request) {
	status, code, reason := q.status, q.code, q.reason
	if err := p.recordRefusal(q); err != nil {
		status, code, reason = http.StatusInternalServerError, CodeAuditFailed, "the decision could not be audited"
	}
	h := w.Header()
	if status == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", `Basic realm="phantom-egress"`)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Phantom-Egress-Error", code)
	h.Set("Connection", "close")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%s: %s\n", code, reason)
}

// recordRefusal audits a refusal (or a failed forward) without letting a flood of them
// flood the audit log: per source address, error code and method, the first of a window
// is recorded in full, the rest are counted into the window's summary event, which
// carries their count (admission.Recorder), so the records always add up to the
// refusals.
func (p *Proxy) recordRefusal(q *request) error {
	localPort := uint16(0)
	if la, ok := q.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			localPort = ap.Port()
		}
	}
	if p.refusals.Count(admission.Refusal{Code: q.code, Name: q.ev.EventName, Src: q.src, LocalPort: localPort, Detail: map[string]any{"reason": truncate(q.reason, 512)}}) {
		return p.record(q, nil)
	}
	if m := p.cfg.Metrics; m != nil {
		p.observe(m, q, nil)
	}
	p.log.Debug("egress refusal counted into its summary", "event", q.ev.EventName, "source_ip", q.ev.SourceIPAddress, "error_code", q.code)
	return nil
}

// record writes the decision's audit event; the refusal fields come from q.
func (p *Proxy) record(q *request, resp map[string]any) error {
	ev := q.ev
	ev.ErrorCode, ev.ErrorMessage = q.code, q.reason
	if q.rule != "" {
		ev.RequestParameters["rule"] = q.rule
	}
	if len(q.addrs) > 0 && ev.RequestParameters["resolvedAddresses"] == nil && !q.host.IsAddr() {
		ev.RequestParameters["resolvedAddresses"] = addrStrings(q.addrs)
	}
	if q.would != nil {
		// Report mode: what the rules would have done, and that they did not.
		if ev.AdditionalEventData == nil {
			ev.AdditionalEventData = map[string]any{}
		}
		ev.AdditionalEventData["report"] = map[string]any{"mode": q.report, "errorCode": q.would.code, "errorMessage": q.would.reason}
	}
	if q.status != 0 {
		if resp == nil {
			resp = map[string]any{}
		}
		resp["status"] = q.status
	}
	ev.ResponseElements = resp
	err := p.cfg.Auditor.Record(q.r.Context(), ev)
	q.recorded = err == nil
	if m := p.cfg.Metrics; m != nil {
		p.observe(m, q, err)
	}
	p.log.Log(q.r.Context(), slogLevel(err), "egress decision", "event", ev.EventName, "node", ev.AdditionalEventData["node"],
		"host", q.host.String(), "port", q.port, "rule", q.rule, "error_code", q.code, "reason", q.reason, "audit_error", err)
	return err
}

// observe reports a decision: allow, report (forwarded though the rules would refuse),
// deny (a 4xx refusal) or error (a 5xx: the destination unreachable, DNS, no tunnel
// slot, stale state, or the record itself failed).
func (p *Proxy) observe(m Metrics, q *request, auditErr error) {
	code, status := q.code, q.status
	if auditErr != nil {
		code, status = CodeAuditFailed, http.StatusInternalServerError
	}
	result := "allow"
	switch {
	case code != "" && status >= http.StatusInternalServerError:
		result = "error"
	case code != "":
		result = "deny"
	case q.would != nil:
		result, code = "report", q.would.code
	}
	method := "forward"
	if q.r.Method == http.MethodConnect {
		method = "connect"
	}
	m.Decision(method, result, code, q.role(), time.Since(q.start))
}

// Audit vocabulary.
const (
	eventSource   = "egress.phantom.amazonaws.com"
	eventType     = "AwsVpceEvent"
	eventCategory = "NetworkActivity"
)

func (p *Proxy) newEvent(s *config.Spec, name string, r *http.Request) *audit.Event {
	ev := p.baseEvent(s, name, requestid.New())
	ev.UserAgent = truncate(r.UserAgent(), 256)
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		ev.SourceIPAddress = ap.Addr().Unmap().String()
	}
	return ev
}

func (p *Proxy) baseEvent(s *config.Spec, name, requestID string) *audit.Event {
	ev := &audit.Event{
		EventVersion:      audit.EventVersion,
		EventTime:         p.now().UTC(),
		EventSource:       eventSource,
		EventName:         name,
		RequestParameters: map[string]any{},
		RequestID:         requestID,
		EventID:           requestid.New(),
		ReadOnly:          false,
		EventType:         eventType,
		EventCategory:     eventCategory,
	}
	if s != nil {
		ev.AWSRegion, ev.RecipientAccountID = s.Region, s.Account
	}
	return ev
}

// refusalEvent is the event of a refusal summary (and of a refused connection): the
// recorder fills additionalEventData (count, firstSeen, lastSeen, reason); Refusal.Name
// names it after the requests it counts.
func (p *Proxy) refusalEvent(code string, src netip.Addr, id string) *audit.Event {
	ev := p.baseEvent(p.cfg.Spec(), "Accept", id)
	if src.IsValid() {
		ev.SourceIPAddress = src.String()
	}
	ev.ErrorCode = code
	ev.ErrorMessage = "refused; additionalEventData counts the refusals of this source and code"
	return ev
}

// nodeIdentity is the node as CloudTrail names a role session: the node's role, session
// name the node (the session the node's agent holds, arn:aws:sts::ACCT:assumed-role/ROLE/NODE).
// The role's unique id is computed once per spec, with its rules.
func nodeIdentity(s *config.Spec, rs *ruleSet, n *config.Node) audit.UserIdentity {
	ui := audit.UserIdentity{
		Type:      "AssumedRole",
		ARN:       "arn:aws:sts::" + s.Account + ":assumed-role/" + n.Role + "/" + n.Name,
		AccountID: s.Account,
	}
	if role, ok := s.Role(n.Role); ok {
		rid := rs.roleID
		ui.PrincipalID = rid + ":" + n.Name
		ui.SessionContext = &audit.SessionContext{
			SessionIssuer: &audit.SessionIssuer{Type: "Role", PrincipalID: rid, ARN: role.ARN, AccountID: s.Account, UserName: role.Name},
			Attributes:    map[string]string{"mfaAuthenticated": "false"},
		}
	}
	return ui
}

// slogLevel is the level of a log line about an audit record: error when it failed.
func slogLevel(err error) slog.Level {
	if err != nil {
		return slog.LevelError
	}
	return slog.LevelDebug
}

func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "?")
}
