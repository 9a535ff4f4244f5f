package perimeter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/agent"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/demo"
	"github.com/phantom-perimeter/phantom/internal/detect/findingsapi"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/endpoint"
	"github.com/phantom-perimeter/phantom/internal/gateway"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// UpConfig is what phantom up runs with: its flags, validated, and its log.
type UpConfig struct {
	DataDir string
	// Config is the user's spec; "": the demo perimeter's, DataDir/perimeter.yaml.
	Config string
	// PortBase is the first of the demo's DemoPorts consecutive loopback ports (0: free
	// ports); PortBaseSet says it was asked for (else the demo spec's own ports decide).
	PortBase    int
	PortBaseSet bool
	// RegenerateSpec replaces an existing demo spec (kept beside it) with a fresh one.
	RegenerateSpec bool
	Poll           time.Duration
	// NodeSession is the demo agent's credential lifetime (0: STS's default).
	NodeSession time.Duration
	OpsListen   string   // "": 127.0.0.1, port base + 8
	Anchors     []string // more audit anchor stores (postgres:// URLs)
	Stdout      io.Writer
	Stderr      io.Writer
	Log         *slog.Logger
}

// opsPort is the offset from --port-base of the metrics, health and readiness listener.
const opsPort = 8

// upListeners are the sockets `up` serves on, opened before the spec is written so the
// demo spec names the ports actually bound.
type upListeners struct {
	sts, gateway, backend net.Listener
	endpoints             map[string][]net.Listener // endpoint id -> its listeners
	// The demo node's agent: IMDS, container credentials and its egress relay (what the
	// node's workloads use as their proxy).
	imds, container, egress net.Listener
	// The egress proxy itself, on free loopback ports: for passwords, and for the
	// agent's relay (TLS, the node's certificate).
	egressDirect, egressTLS net.Listener
	findings                net.Listener
	ops                     net.Listener // metrics, health, readiness
	console                 net.Listener
}

func (l *upListeners) closeAll() {
	for _, ln := range []net.Listener{l.sts, l.gateway, l.backend, l.imds, l.container, l.egress, l.egressDirect, l.egressTLS, l.findings, l.console} {
		if ln != nil {
			ln.Close()
		}
	}
	for _, lns := range l.endpoints {
		for _, ln := range lns {
			ln.Close()
		}
	}
}

// Up runs the whole perimeter in one process (phantom up) until ctx ends, then shuts it
// down gracefully: the demo perimeter in cfg.DataDir, or the spec cfg.Config.
func Up(ctx context.Context, cfg UpConfig) error {
	if cfg.RegenerateSpec && cfg.Config != "" {
		return &UsageError{Err: errors.New("--regenerate-spec rewrites the demo spec; it does not apply to --config")}
	}
	u := &up{cfg: cfg, log: cfg.Log, lns: &upListeners{endpoints: map[string][]net.Listener{}}, epErr: make(chan error, 8)}
	defer u.close()
	if err := u.open(ctx); err != nil {
		return err
	}
	u.startLoops(ctx)
	if err := u.startServers(ctx); err != nil {
		return err
	}
	if err := u.startDetector(); err != nil {
		return err
	}
	if u.d != nil {
		if err := u.startDemo(ctx); err != nil {
			return err
		}
	} else {
		u.printSpec()
	}
	u.o.serving(readyCheck{Name: "perimeter state", Check: u.fresh}, u.logs.readyCheck())
	u.log.Info("serving", "component", "up", "data_dir", cfg.DataDir, "spec", u.specPath)
	return u.wait(ctx)
}

// up is one phantom up: what it opened, in the order it is closed again (closers, newest
// first), and what it serves.
type up struct {
	cfg      UpConfig
	log      *slog.Logger
	lns      *upListeners
	specPath string
	d        *demo.Perimeter // nil with --config
	w        *config.Watcher
	tracker  *specTracker
	p        *Perimeter
	bundle   string
	o        *ops
	logs     *Chains
	closers  []func()

	runCtx context.Context
	wg     sync.WaitGroup

	responder *respond.Responder
	riskFresh *freshness
	fresh     func() error
	gw        *gateway.Gateway
	servers   []*httpsServer
	endpoints []*endpoint.Endpoint
	epErr     chan error
	backend   *http.Server
	proxy     *egress.Proxy
}

// onClose runs fn when up closes, before what was opened earlier.
func (u *up) onClose(fn func()) { u.closers = append(u.closers, fn) }

func (u *up) close() {
	for i := len(u.closers) - 1; i >= 0; i-- {
		u.closers[i]()
	}
}

// open takes the data directory (up.lock first: a second up on it stops before it writes
// anything), binds the listeners, loads the spec (the demo's, written on first start),
// opens the perimeter and the ops listener, and opens every component's audit chain.
func (u *up) open(ctx context.Context) error {
	cfg, log := u.cfg, u.log
	if err := datadir.Prepare(cfg.DataDir); err != nil {
		return err
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	u.onClose(lock.release)
	u.onClose(u.lns.closeAll)
	u.specPath = cfg.Config
	if u.specPath == "" {
		u.specPath = filepath.Join(cfg.DataDir, demoSpecFile)
		if u.d, u.cfg.PortBase, err = openDemoSpec(cfg.Stdout, u.lns, cfg, u.specPath); err != nil {
			return err
		}
	}

	u.tracker = newSpecTracker("up", u.specPath, log)
	w, err := config.NewWatcher(ctx, config.WatchConfig{Path: u.specPath, Logger: log, OnReload: u.tracker.watch})
	if err != nil {
		return fmt.Errorf("load perimeter spec: %w", err)
	}
	u.w = w
	u.onClose(func() { w.Close() })
	spec := w.Current()
	u.tracker.loaded(spec)
	if u.d == nil {
		if err := openSpecListeners(u.lns, spec); err != nil {
			return err
		}
	}

	p, err := Open(ctx, Options{DataDir: cfg.DataDir, Account: spec.Account, Poll: cfg.Poll, MaxStale: DefaultMaxStale}, log)
	if err != nil {
		return err
	}
	u.p = p
	u.onClose(func() { p.Store.Close() })
	u.bundle = filepath.Join(cfg.DataDir, "ca.pem")
	if err := p.CA.WriteBundle(u.bundle); err != nil {
		return fmt.Errorf("write CA bundle: %w", err)
	}
	// One registry for every component of this process, served with /healthz and /readyz.
	u.o = newOps("up")
	if u.lns.ops, err = listenOps(u.cfg); err != nil {
		return err
	}
	if err := u.o.serve(u.lns.ops, p.Issuer, spec.Account, cfg.Stderr, log); err != nil {
		return err
	}
	u.onClose(u.o.close)
	context.AfterFunc(ctx, u.o.drain)

	sinks, closeSinks, err := openAnchorSinks(ctx, cfg.Anchors)
	if err != nil {
		return err
	}
	u.onClose(closeSinks)
	if u.logs, err = openAuditLogs(cfg.DataDir, spec, p, sinks, log); err != nil {
		return err
	}
	u.onClose(func() { u.logs.CloseAll(log) })
	u.tracker.attach(u.logs)
	u.tracker.serve(u.o)
	return nil
}

// startLoops starts what keeps the process's state current (credentials, the CA, the
// spec replicas agree on, audit writers' certificates) under a context that ends, and
// is waited for, before anything opened is closed.
func (u *up) startLoops(ctx context.Context) {
	runCtx, cancel := context.WithCancel(ctx)
	u.runCtx = runCtx
	u.onClose(func() {
		cancel()
		u.wg.Wait()
	})
	p, log := u.p, u.log
	u.wg.Add(4)
	go func() {
		defer u.wg.Done()
		_ = p.IDs.Run(runCtx) // returns when runCtx ends; failures are logged by identity
	}()
	go func() {
		defer u.wg.Done()
		p.syncCA(runCtx, u.bundle, log)
	}()
	go func() {
		defer u.wg.Done()
		u.tracker.run(runCtx, p.Store, u.cfg.Poll, reloadInterval(u.cfg.Poll))
	}()
	go func() {
		defer u.wg.Done()
		u.logs.renewWriters(runCtx, writerCheckInterval(u.cfg.Poll), log)
	}()
}

// startServers builds and starts STS, the gateway (over the responder's risk levels),
// the console and every endpoint of the spec.
func (u *up) startServers(ctx context.Context) error {
	p, w, log, lns, o := u.p, u.w, u.log, u.lns, u.o
	spec := w.Current()
	logs := u.logs
	stsH, err := newSTSHandler(w.Current, p, logs.Get("sts"), o.stsMetrics(), log)
	if err != nil {
		return err
	}
	stsCerts, err := newCertSource(p.Issuer, serverRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: "sts"}, []net.Addr{lns.sts.Addr()}))
	if err != nil {
		return err
	}
	u.responder, err = newResponder(w.Current, p, logs.Get("detector"), log)
	if err != nil {
		return err
	}
	if err := u.responder.Refresh(ctx); err != nil {
		return err
	}
	u.riskFresh = &freshness{MaxStale: DefaultMaxStale}
	u.riskFresh.mark(time.Now())
	u.fresh = p.gatewayFreshness(u.riskFresh)
	o.identityMetrics(p, u.fresh)
	u.gw, err = newGateway(w.Current, p, logs.Get("gateway"), u.responder, u.fresh, o.gatewayMetrics(), log)
	if err != nil {
		return err
	}
	gwCerts, err := newCertSource(p.Issuer, serverRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: spec.Gateway.Name}, []net.Addr{lns.gateway.Addr()}))
	if err != nil {
		return err
	}

	u.servers = append(u.servers,
		serveHTTPS("sts", lns.sts, stsH, stsTLSConfig(stsCerts.getServer), log),
		serveGateway(lns.gateway, u.gw, u.gw.TLSConfig(gwCerts.getServer)))

	// The web console, behind sign-in with the perimeter's own credentials.
	consoleH, err := newConsole(w.Current, p, logs.Dir, logs.Get("console"), "https://"+lns.sts.Addr().String(), log)
	if err != nil {
		return err
	}
	consoleTLS, err := consoleTLSConfig(p, spec, lns.console)
	if err != nil {
		return err
	}
	u.servers = append(u.servers, serveHTTPS("console", lns.console, consoleH, consoleTLS, log))

	epMetrics := o.endpointMetrics()
	for _, ep := range spec.Endpoints {
		e, err := newEndpoint(w.Current, p, ep, u.gw, nil, logs.Get("endpoint-"+ep.ID), listenAddrs(lns.endpoints[ep.ID]), epMetrics(ep.ID), log)
		if err != nil {
			return err
		}
		u.endpoints = append(u.endpoints, e)
		for _, ln := range lns.endpoints[ep.ID] {
			go func() { u.epErr <- e.Serve(u.runCtx, ln) }()
		}
	}
	return nil
}

// startDetector starts the streaming detector and the loops that keep risk levels and
// the replay guard current.
func (u *up) startDetector() error {
	p, w, log, o, logs, runCtx, responder, spec := u.p, u.w, u.log, u.o, u.logs, u.runCtx, u.responder, u.w.Current()
	// The streaming detector follows every chain but its own (its events are the
	// responses to findings) and hands findings to the responder, which applies them to
	// the identity service and risk levels this process's gateway reads: immediately.
	det, err := newDetector(spec)
	if err != nil {
		return err
	}
	logSigma(detectorLog(log), det.SigmaRules())
	consumer, err := newStreamDetector(logs.Dir, []string{DetectorChain}, det, responder, p.Store, o.detectorMetrics(), log, nil)
	if err != nil {
		return err
	}
	serveDetector(o, consumer)
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		if err := consumer.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			detectorLog(log).Error("the streaming detector stopped", "error", err)
		}
	}()
	u.wg.Add(2)
	go func() {
		defer u.wg.Done()
		p.syncRisk(runCtx, responder, u.riskFresh, log) // picks up risk levels set by other processes
	}()
	go func() {
		defer u.wg.Done()
		p.sweepSignatures(runCtx, log)
	}()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		followDetection(runCtx, w, det, detectorLog(log))
	}()

	return nil
}

// startDemo serves the demo perimeter's parts: the orders backend, the findings API, the
// egress proxy and the demo node's agent; then writes demo.env and aws-config and prints
// what to try.
func (u *up) startDemo(ctx context.Context) error {
	p, w, log, o, logs, lns, d, spec := u.p, u.w, u.log, u.o, u.logs, u.lns, u.d, u.w.Current()
	var err error
	if u.backend, err = serveDemoBackend(lns.backend, p, spec, u.gw, d.APIID, log); err != nil {
		return err
	}
	fapi, err := findingsapi.New(findingsapi.Config{Spec: w.Current, Store: p.Store, Credentials: p.IDs,
		Auditor: logs.Get("findings"), Risk: u.responder, MaxSkew: spec.Gateway.ClockSkew, Logger: log})
	if err != nil {
		return err
	}
	fCerts, err := newCertSource(p.Issuer, serverRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: "findings"}, []net.Addr{lns.findings.Addr()}))
	if err != nil {
		return err
	}
	u.servers = append(u.servers, serveHTTPS("findings", lns.findings, fapi, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: fCerts.getServer}, log))
	if u.proxy, err = startDemoEgress(u.runCtx, w.Current, p, logs.Get("egress"), lns, u.responder, u.fresh, o.egressMetrics(), log); err != nil {
		return err
	}
	var served atomic.Pointer[agent.Agent]
	am := o.agentMetrics(func() time.Time {
		if a := served.Load(); a != nil {
			return a.Expiration()
		}
		return time.Time{}
	})
	node, err := startDemoAgent(u.runCtx, u.cfg, p, d, lns, &u.wg, am, log)
	if err != nil {
		return err
	}
	served.Store(node)
	if err := writeDemoEnv(ctx, u.cfg.DataDir, u.bundle, d, p.IDs, lns, node); err != nil {
		return err
	}
	printDemo(u.cfg.Stdout, u.cfg.DataDir, d, lns)
	return nil
}

// printSpec prints where a perimeter run from --config serves.
func (u *up) printSpec() {
	fmt.Fprintf(u.cfg.Stdout, "phantom up: perimeter %s running: sts https://%s, gateway https://%s\n", u.specPath, u.lns.sts.Addr(), u.lns.gateway.Addr())
	for id, l := range u.lns.endpoints {
		for _, ln := range l {
			fmt.Fprintf(u.cfg.Stdout, "  endpoint %s on https://%s\n", id, ln.Addr())
		}
	}
	fmt.Fprintf(u.cfg.Stdout, "  metrics https://%s/metrics (/healthz, /readyz)\n", u.lns.ops.Addr())
}

// wait serves until ctx ends or a server fails, then shuts down gracefully.
func (u *up) wait(ctx context.Context) error {
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-u.epErr:
		runErr = fmt.Errorf("serve endpoint: %w", err)
	case err := <-firstDone(u.servers):
		runErr = err
	}
	u.log.Info("shutting down; finishing in-flight requests", "component", "up")
	shutdownCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
	defer done()
	// Outside in: the endpoints stop taking calls and finish theirs through the gateway,
	// then the gateway, STS and backend finish what is left.
	for _, e := range u.endpoints {
		if err := e.Shutdown(shutdownCtx); err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	for _, s := range u.servers {
		if err := s.shutdown(shutdownCtx); err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	if err := u.responder.Close(shutdownCtx); err != nil { // webhook deliveries in flight
		runErr = errors.Join(runErr, fmt.Errorf("finish webhook notifications: %w", err))
	}
	if u.proxy != nil {
		if err := u.proxy.Shutdown(shutdownCtx); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("shut down egress proxy: %w", err))
		}
	}
	if u.backend != nil {
		if err := u.backend.Shutdown(shutdownCtx); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("shut down demo backend: %w", err))
		}
	}
	return runErr
}

// listenOps binds up's metrics, health and readiness listener: --ops-listen, else
// 127.0.0.1 at port base + opsPort (a free port with --port-base 0).
func listenOps(cfg UpConfig) (net.Listener, error) {
	addr := cfg.OpsListen
	if addr == "" {
		addr = "127.0.0.1:0"
		if cfg.PortBase != 0 {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.PortBase+opsPort))
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics and health on %s: %w (is another phantom up running? try --port-base or --ops-listen)", addr, err)
	}
	return ln, nil
}

// firstDone reports the first server that stopped on its own (an error: a server only
// stops by itself when serving fails).
func firstDone(servers []*httpsServer) <-chan error {
	ch := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			if err := <-s.Done; err != nil {
				ch <- fmt.Errorf("serve %s: %w", s.Name, err)
			}
		}()
	}
	return ch
}

// openDemo binds the demo's loopback ports and sets d's addresses to those bound. With
// fixed, the endpoint, STS, gateway and backend listen where d already says (its spec's
// addresses); the other listeners, and all of them otherwise, take ports from base (free
// ports with base 0).
func openDemo(lns *upListeners, d *demo.Perimeter, base int, fixed bool) error {
	port := func(i int) string {
		if base == 0 {
			return "127.0.0.1:0"
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i))
	}
	// Where a bind fails says what to try: another port base, or what holds the address
	// the spec names.
	busy := "is another phantom up running? try --port-base"
	specBusy := busy
	spec := func(i int, a netip.AddrPort) string {
		if fixed {
			return a.String()
		}
		return port(i)
	}
	listen := func(addr, what, hint string) (net.Listener, netip.AddrPort, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, netip.AddrPort{}, fmt.Errorf("listen for the demo %s: %w (%s)", what, err, hint)
		}
		return ln, ln.Addr().(*net.TCPAddr).AddrPort(), nil
	}
	var backend netip.AddrPort
	if fixed {
		specBusy = "the demo spec names this address: is another program using it?"
		var err error
		if backend, err = d.BackendAddr(); err != nil {
			return fmt.Errorf("the demo backend URL %q: %w", d.BackendURL, err)
		}
	}
	var err error
	var ep net.Listener
	if ep, d.EndpointAddr, err = listen(spec(0, d.EndpointAddr), "endpoint", specBusy); err != nil {
		return err
	}
	lns.endpoints[d.Endpoint] = []net.Listener{ep}
	if lns.sts, d.STSAddr, err = listen(spec(1, d.STSAddr), "STS", specBusy); err != nil {
		return err
	}
	if lns.gateway, d.GatewayAddr, err = listen(spec(2, d.GatewayAddr), "gateway", specBusy); err != nil {
		return err
	}
	if lns.backend, backend, err = listen(spec(3, backend), "backend", specBusy); err != nil {
		return err
	}
	d.BackendURL = "https://" + backend.String()
	if lns.imds, _, err = listen(port(4), "agent's IMDS", busy); err != nil {
		return err
	}
	if lns.container, _, err = listen(port(5), "agent's container credentials", busy); err != nil {
		return err
	}
	if lns.egress, _, err = listen(port(6), "egress proxy", busy); err != nil {
		return err
	}
	if lns.findings, _, err = listen(port(7), "findings API", busy); err != nil {
		return err
	}
	if lns.console, _, err = listen(port(9), "web console", busy); err != nil {
		return err
	}
	return nil
}

// openSpecListeners binds what a spec of the user's names.
func openSpecListeners(lns *upListeners, spec *config.Spec) error {
	var err error
	if lns.sts, err = net.Listen("tcp", listenAddr("", spec.STS.Listen, DefaultSTSListen)); err != nil {
		return fmt.Errorf("listen for the STS: %w", err)
	}
	if lns.gateway, err = net.Listen("tcp", listenAddr("", spec.Gateway.Listen, DefaultGatewayListen)); err != nil {
		return fmt.Errorf("listen for the gateway: %w", err)
	}
	for _, ep := range spec.Endpoints {
		for _, a := range ep.Listen {
			ln, err := net.Listen("tcp", a.String())
			if err != nil {
				return fmt.Errorf("listen for endpoint %s: %w", ep.ID, err)
			}
			lns.endpoints[ep.ID] = append(lns.endpoints[ep.ID], ln)
		}
	}
	if lns.console, err = net.Listen("tcp", DefaultConsoleListen); err != nil {
		return fmt.Errorf("listen for the web console: %w", err)
	}
	return nil
}

// serveDemoBackend serves the demo orders service as a backend author should: over TLS
// with a certificate from the perimeter CA, requiring the gateway's client certificate
// (mutual TLS: nothing but the perimeter's gateway gets a connection), and trusting only
// the gateway's assertion, checked under the API's key (the key file `phantom keys backend`
// writes; the JWKS for an API with assertion: eddsa), bound to the request and used once
// (docs/backends.md).
func serveDemoBackend(ln net.Listener, p *Perimeter, spec *config.Spec, gw *gateway.Gateway, apiID string, log *slog.Logger) (*http.Server, error) {
	vc := gateway.AssertionVerifierConfig{Audience: apiID}
	if api, ok := spec.API(apiID); ok && api.Assertion == config.AssertionEdDSA {
		vc.JWKS = gw.JWKS()
	} else {
		key, err := gw.BackendKey(apiID)
		if err != nil {
			return nil, err
		}
		vc.Key = key
	}
	v, err := gateway.NewAssertionVerifier(vc)
	if err != nil {
		return nil, err
	}
	b := &demo.Backend{Verify: func(r *http.Request) (demo.Caller, error) {
		a, err := v.VerifyRequest(r)
		if err != nil {
			return demo.Caller{}, err
		}
		return demo.Caller{Principal: a.Principal, Endpoint: a.VPCEndpoint, SourceIP: a.SourceIP, RequestID: a.RequestID}, nil
	}}
	certs, err := newCertSource(p.Issuer, serverRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: "orders-backend"}, []net.Addr{ln.Addr()}))
	if err != nil {
		return nil, err
	}
	peers := p.CA.Verifier()
	gatewayName := spec.Gateway.Name
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: certs.getServer,
			ClientAuth:     tls.RequireAnyClientCert,
			// The client certificate must be the perimeter CA's and name the gateway.
			VerifyConnection: func(cs tls.ConnectionState) error {
				id, err := peers.Verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
				if err != nil {
					return err
				}
				if id.Kind != pki.KindGateway || id.Name != gatewayName {
					return fmt.Errorf("client certificate names %s, not the gateway", id)
				}
				return nil
			},
		},
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo backend stopped", "component", "up", "error", err)
		}
	}()
	return srv, nil
}

// demoCredentials returns the demo user's active access key, creating one on first start.
func demoCredentials(ctx context.Context, ids *identity.Service, user string) (id, secret string, err error) {
	keys, err := ids.ListAccessKeys(ctx, user)
	if err != nil {
		return "", "", fmt.Errorf("list the demo user's keys: %w", err)
	}
	for _, k := range keys {
		if k.Status != identity.StatusActive {
			continue
		}
		c, err := ids.LookupCredential(ctx, k.ID, "")
		if err == nil {
			return c.AccessKeyID, c.SecretAccessKey, nil
		}
	}
	k, err := ids.CreateAccessKey(ctx, user)
	if err != nil {
		return "", "", fmt.Errorf("create the demo user's access key: %w", err)
	}
	return k.ID, k.Secret, nil
}

// writeDemoEnv writes demo.env and the AWS config file beside it, both with absolute
// paths so they work from any directory.
func writeDemoEnv(ctx context.Context, dataDir, bundle string, d *demo.Perimeter, ids *identity.Service, lns *upListeners, node *agent.Agent) error {
	id, secret, err := demoCredentials(ctx, ids, d.User)
	if err != nil {
		return err
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	// credential_process runs this very binary: under `go run` a temporary one that lives
	// as long as this process, which is as long as the demo STS it calls.
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("the AWS config's credential_process: %w", err)
	}
	awsConfig := abs(filepath.Join(dataDir, demoAWSFile))
	if err := d.WriteAWSConfig(awsConfig, demo.AWSConfigFile{Phantom: exe, CABundle: abs(bundle), AccessKeyID: id, SecretAccessKey: secret}); err != nil {
		return err
	}
	return demo.WriteEnv(filepath.Join(dataDir, demoEnvFile), []demo.EnvVar{
		// The admin commands (phantom iam, keys, node, findings, audit) find the perimeter
		// through these two.
		{Name: "PHANTOM_DATA_DIR", Value: abs(dataDir)},
		{Name: "PHANTOM_CONFIG", Value: abs(filepath.Join(dataDir, demoSpecFile))},
		{Name: "AWS_ACCESS_KEY_ID", Value: id},
		{Name: "AWS_SECRET_ACCESS_KEY", Value: secret},
		{Name: "AWS_REGION", Value: d.Region},
		{Name: "AWS_DEFAULT_REGION", Value: d.Region}, // the AWS CLI v1 reads only this one
		{Name: "AWS_CA_BUNDLE", Value: abs(bundle)},
		{Name: "PHANTOM_STS_URL", Value: "https://" + d.STSAddr.String()},
		{Name: "PHANTOM_API_URL", Value: d.InvokeURL("/orders")},
		{Name: "PHANTOM_ENDPOINT_ADDR", Value: d.EndpointAddr.String()},
		{Name: "PHANTOM_GATEWAY_ADDR", Value: d.GatewayAddr.String()},
		{Name: "PHANTOM_DEMO_ROLE_ARN", Value: d.RoleARN()},
		{Name: "PHANTOM_DEMO_BACKEND_URL", Value: d.BackendURL},
		{Name: "PHANTOM_AUDIT_DIR", Value: abs(filepath.Join(dataDir, "audit"))},
		// AWS profiles: AWS_CONFIG_FILE="$PHANTOM_AWS_CONFIG" aws ... --profile phantom-demo
		{Name: "PHANTOM_AWS_CONFIG", Value: awsConfig},
		// The demo Service A node: its agent (for AWS_EC2_METADATA_SERVICE_ENDPOINT, or
		// AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN) and the
		// egress proxy it must send everything through (HTTPS_PROXY): the agent's relay,
		// which carries each connection to the proxy with the node's current credentials.
		{Name: "PHANTOM_IMDS_ENDPOINT", Value: "http://" + lns.imds.Addr().String() + "/"},
		{Name: "PHANTOM_CONTAINER_CREDENTIALS_URI", Value: "http://" + lns.container.Addr().String() + agent.ContainerPath},
		{Name: "PHANTOM_CONTAINER_AUTH_TOKEN", Value: node.ContainerToken()},
		{Name: "PHANTOM_EGRESS_PROXY", Value: "http://" + lns.egress.Addr().String()},
		// The proxy itself, where the node's password (from STS with each role session)
		// authenticates it: http://NODE:PASSWORD@this address.
		{Name: "PHANTOM_EGRESS_DIRECT", Value: lns.egressDirect.Addr().String()},
		// The orders API as the node's workloads call it, through the egress proxy: by the
		// API's private DNS name, which the proxy resolves and which binds the tunnel to it.
		{Name: "PHANTOM_NODE_API_URL", Value: d.NodeInvokeURL("/orders")},
		{Name: "PHANTOM_DEMO_NODE", Value: d.Node},
		// The findings API (GuardDuty's REST routes and /findings), for the demo user.
		{Name: "PHANTOM_FINDINGS_URL", Value: "https://" + lns.findings.Addr().String()},
		// Prometheus metrics of every component (scrape with ca_file: AWS_CA_BUNDLE).
		{Name: "PHANTOM_METRICS_URL", Value: "https://" + lns.ops.Addr().String() + "/metrics"},
		// The web console; sign in with the demo user's access key and secret above.
		{Name: "PHANTOM_CONSOLE_URL", Value: "https://" + lns.console.Addr().String() + "/"},
	}, "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")
}

func printDemo(out io.Writer, dataDir string, d *demo.Perimeter, lns *upListeners) {
	env := filepath.Join(dataDir, "demo.env")
	fmt.Fprintf(out, `phantom up: the demo perimeter is running (data in %[1]s, spec %[2]s: yours to edit, kept across restarts)
  endpoint %[3]s  https://%[4]s  (TLS only; security group: tcp %[5]d from %[11]s, 10.0.0.0/16)
  gateway           https://%[6]s  (direct: the orders API's resource policy refuses calls around the endpoint)
  sts               https://%[7]s
  orders backend    %[8]s  (mutual TLS with the gateway; answers only requests carrying its signed assertion)
  node %[12]s  agent IMDS http://%[13]s/, container credentials http://%[14]s%[15]s; egress proxy http://%[16]s
                    (the agent's relay to the proxy, which checks the node's certificate, revocations and risk)
  metrics           https://%[19]s/metrics  (Prometheus, ca_file %[20]s; /healthz, /readyz)
  audit log         %[9]s  (check it: phantom audit verify %[9]s)
  detector          streams every audit chain; findings: phantom findings list --data-dir %[1]s, or
                    aws guardduty list-findings --detector-id phantom --endpoint-url "$PHANTOM_FINDINGS_URL"
  web console       https://%[18]s/  (sign in with the demo user's access key id and secret from %[10]s)
  AWS profiles      %[21]s  (AWS_CONFIG_FILE="$PHANTOM_AWS_CONFIG" aws sts get-caller-identity --profile phantom-demo)
  examples          examples/clients/ in the repository: curl, the AWS CLI, boto3, aws-sdk-go-v2

Try it (the variables come from %[10]s):
  source %[10]s

  # allowed: the demo user through the endpoint
  curl --cacert "$AWS_CA_BUNDLE" --aws-sigv4 "aws:amz:$AWS_REGION:execute-api" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$PHANTOM_API_URL"

  # who am I, then assume the Service-A role
  aws sts get-caller-identity --endpoint-url "$PHANTOM_STS_URL"
  aws sts assume-role --role-arn "$PHANTOM_DEMO_ROLE_ARN" --role-session-name demo --endpoint-url "$PHANTOM_STS_URL"

  # denied: the same credentials straight to the gateway, around the endpoint
  curl --cacert "$AWS_CA_BUNDLE" --aws-sigv4 "aws:amz:$AWS_REGION:execute-api" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "https://$PHANTOM_GATEWAY_ADDR/prod/orders"

  # Service A's view: the node's credentials from its agent (IMDSv2, as on EC2)...
  TOKEN=$(curl -s -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "${PHANTOM_IMDS_ENDPOINT}latest/api/token")
  curl -s -H "X-aws-ec2-metadata-token: $TOKEN" "${PHANTOM_IMDS_ENDPOINT}latest/meta-data/iam/security-credentials/%[17]s"
  # ...and an egress proxy that reaches the orders API (by its name, $PHANTOM_NODE_API_URL) and
  # nothing else (403)
  curl --cacert "$AWS_CA_BUNDLE" -x "$PHANTOM_EGRESS_PROXY" https://example.com
  # an unmodified SDK needs only AWS_EC2_METADATA_SERVICE_ENDPOINT="$PHANTOM_IMDS_ENDPOINT" (or
  # AWS_CONTAINER_CREDENTIALS_FULL_URI / AWS_CONTAINER_AUTHORIZATION_TOKEN) and HTTPS_PROXY="$PHANTOM_EGRESS_PROXY",
  # calling "$PHANTOM_NODE_API_URL"

  # denied: a path the demo user's policy does not allow
  curl --cacert "$AWS_CA_BUNDLE" --aws-sigv4 "aws:amz:$AWS_REGION:execute-api" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "https://$PHANTOM_ENDPOINT_ADDR/prod/admin/users"

Ctrl-C stops the perimeter.
`, dataDir, filepath.Join(dataDir, "perimeter.yaml"), d.Endpoint, d.EndpointAddr, d.EndpointPort(),
		d.GatewayAddr, d.STSAddr, d.BackendURL, filepath.Join(dataDir, "audit"), env, d.IngressCIDR,
		d.Node, lns.imds.Addr(), lns.container.Addr(), agent.ContainerPath, lns.egress.Addr(), d.Role, lns.console.Addr(), lns.ops.Addr(), filepath.Join(dataDir, "ca.pem"), filepath.Join(dataDir, demoAWSFile))
}

// startDemoEgress serves the egress proxy the demo node must use, on two free loopback
// ports: a plain one where the node's password authenticates it, and a TLS one where its
// certificate does, which the node's agent relays its workloads to. It decides on the
// perimeter's state as the gateway does (revocations, risk levels, freshness). The
// agent's own addresses are refused whatever a rule says.
func startDemoEgress(ctx context.Context, current func() *config.Spec, p *Perimeter, auditor egress.Auditor, lns *upListeners, risk egress.RiskSource, fresh func() error, m egress.Metrics, log *slog.Logger) (*egress.Proxy, error) {
	key, err := p.Keys.Key(keys.EgressPasswordsPublic)
	if err != nil {
		return nil, err
	}
	px, err := egress.New(egress.Config{
		Spec:        current,
		PasswordKey: key,
		Auditor:     auditor,
		Logger:      log,
		Deny:        []netip.AddrPort{addrPort(lns.imds), addrPort(lns.container), addrPort(lns.egress)},
		Metrics:     m,
		Verifier:    p.CA.Verifier(),
		Standing:    p.IDs,
		Risk:        risk,
		Fresh:       fresh,
	})
	if err != nil {
		return nil, err
	}
	if lns.egressDirect, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("listen for the demo egress proxy: %w", err)
	}
	if lns.egressTLS, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("listen for the demo egress proxy: %w", err)
	}
	certs, err := newCertSource(p.Issuer, serverRequest(pki.Identity{Account: current().Account, Kind: pki.KindGateway, Name: "egress"}, []net.Addr{lns.egressTLS.Addr()}))
	if err != nil {
		return nil, err
	}
	for _, serve := range []func() error{
		func() error { return px.Serve(ctx, lns.egressDirect) },
		func() error { return px.ServeTLS(ctx, lns.egressTLS, certs.getServer) },
	} {
		go func() {
			if err := serve(); err != nil {
				log.Error("egress proxy stopped", "component", "up", "error", err)
			}
		}()
	}
	return px, nil
}

func addrPort(ln net.Listener) netip.AddrPort { return ln.Addr().(*net.TCPAddr).AddrPort() }

// startDemoAgent runs the demo node's credential agent: on first start it enrolls over
// the STS node API with a join token made for it here, as an operator would hand one to
// a new host; later starts reuse the certificate in DATA_DIR/agent.
func startDemoAgent(ctx context.Context, cfg UpConfig, p *Perimeter, d *demo.Perimeter, lns *upListeners, wg *sync.WaitGroup, m agent.Metrics, log *slog.Logger) (*agent.Agent, error) {
	stateDir := filepath.Join(cfg.DataDir, "agent")
	var token string
	if _, err := os.Stat(filepath.Join(stateDir, "node.crt")); err != nil {
		if token, _, err = pki.NewTokens(pki.TokensConfig{}, p.Store).Create(ctx, d.Node, 10*time.Minute); err != nil {
			return nil, fmt.Errorf("join token for the demo node: %w", err)
		}
	}
	a, err := agent.New(agent.Config{
		STS:             "https://" + d.STSAddr.String(),
		CABundle:        p.CA.BundlePEM(),
		StateDir:        stateDir,
		JoinToken:       token,
		SessionDuration: cfg.NodeSession,
		EgressProxy:     lns.egressDirect.Addr().String(),
		EgressTLS:       lns.egressTLS.Addr().String(),
		Metrics:         m,
		Logger:          log,
	})
	if err != nil {
		return nil, err
	}
	if err := a.Start(ctx); err != nil {
		return nil, fmt.Errorf("start the demo node's agent: %w", err)
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := a.Serve(ctx, lns.imds, lns.container); err != nil {
			log.Error("agent stopped", "component", "up", "error", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := a.ServeEgress(ctx, lns.egress); err != nil {
			log.Error("the agent's egress relay stopped", "component", "up", "error", err)
		}
	}()
	return a, nil
}
