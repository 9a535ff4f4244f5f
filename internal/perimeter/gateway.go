package perimeter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"

	"github.com/phantom-perimeter/phantom/internal/endpoint"
	"github.com/phantom-perimeter/phantom/internal/gateway"
	"github.com/phantom-perimeter/phantom/internal/handoff"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// RunGateway runs a gateway process until ctx ends, and in it the endpoints
// cfg.Endpoints names, which hand their requests to the gateway in memory.
func RunGateway(ctx context.Context, cfg ProcessConfig) error {
	c, err := openProcess(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.shutdown()
	spec := c.w.Current()
	listen := listenAddr(cfg.Listen, spec.Gateway.Listen, DefaultGatewayListen)
	risk, fresh, err := c.riskLevels(ctx, cfg)
	if err != nil {
		return err
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.p.sweepSignatures(c.runCtx, c.log)
	}()
	c.ops.identityMetrics(c.p, fresh)
	gw, err := newGateway(c.w.Current, c.p, c.logs.Get(cfg.Chain), risk, fresh, c.ops.gatewayMetrics(), c.log)
	if err != nil {
		return err
	}
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	lns = append(lns, ln)
	certs, err := newCertSource(c.p.Issuer, serverRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: spec.Gateway.Name}, []net.Addr{ln.Addr()}))
	if err != nil {
		closeAll()
		return err
	}
	var eps []served
	for _, id := range cfg.Endpoints {
		ep, ok := spec.Endpoint(id)
		if !ok {
			closeAll()
			return &UsageError{Err: fmt.Errorf("the spec has no endpoint %q", id)}
		}
		s := served{id: id}
		for _, a := range ep.Listen {
			l, err := net.Listen("tcp", a.String())
			if err != nil {
				closeAll()
				return fmt.Errorf("listen for endpoint %s on %s: %w", id, a, err)
			}
			lns = append(lns, l)
			s.lns = append(s.lns, l)
		}
		if s.e, err = newEndpoint(c.w.Current, c.p, ep, gw, nil, c.logs.Get(EndpointChain(cfg.Chain, id)), listenAddrs(s.lns), c.ops.endpointMetrics()(id), c.log); err != nil {
			closeAll()
			return err
		}
		eps = append(eps, s)
	}
	handed, closeHandoff, err := c.handoffEndpoints(cfg, gw, certs)
	if err != nil {
		closeAll()
		return err
	}
	defer closeHandoff()
	for _, h := range handed {
		lns = append(lns, h.lns...)
		eps = append(eps, served{h.id, h.e, h.lns})
	}
	tlsCfg := gw.TLSConfig(certs.getServer)
	srv := startServer("gateway", func() error {
		// The first of the gateway's and the endpoints' listeners to stop ends the process.
		done := make(chan error, len(lns))
		go func() { done <- gw.Serve(ln, tlsCfg) }()
		for _, s := range eps {
			for _, l := range s.lns {
				go func() { done <- s.e.Serve(context.Background(), l) }()
			}
		}
		return <-done
	}, func(ctx context.Context) error {
		// Outside in: the endpoints finish their calls through the gateway first.
		var errs []error
		for _, s := range eps {
			errs = append(errs, s.e.Shutdown(ctx))
		}
		return errors.Join(append(errs, gw.Shutdown(ctx))...)
	})
	fmt.Fprintf(cfg.Stderr, "phantom gateway: listening on https://%s\n", ln.Addr())
	for _, s := range eps[:len(eps)-len(handed)] {
		for _, l := range s.lns {
			fmt.Fprintf(cfg.Stderr, "phantom gateway: endpoint %s (in process) listening on https://%s\n", s.id, l.Addr())
		}
	}
	for _, h := range handed {
		for _, w := range h.where {
			fmt.Fprintf(cfg.Stderr, "phantom gateway: endpoint %s (handed off) on %s\n", h.id, w)
		}
	}
	c.serving(readyCheck{Name: "perimeter state", Check: fresh})
	return waitAndShutdown(ctx, c.log, "gateway", srv)
}

// served is an endpoint a gateway process runs, on its listeners.
type served struct {
	id  string
	e   *endpoint.Endpoint
	lns []net.Listener
}

// handedOff is an endpoint whose own process hands the gateway its callers' connections:
// its listeners deliver them, and where says where they arrive, for the start lines.
type handedOff struct {
	id    string
	e     *endpoint.Endpoint
	lns   []net.Listener
	where []string
}

// handoffEndpoints builds the gateway's part of each endpoint of cfg.Handoff.Endpoints:
// an endpoint instance with the gateway in process (as --endpoint runs one), terminating
// TLS with the endpoint's certificate, fed by a Unix socket in cfg.Handoff.Dir (its
// process on this host passes descriptors) and, with cfg.Handoff.TunnelListen, by mTLS
// tunnels (its process on another host). Its audit chain is HandoffChain.
// The returned func closes the tunnel listener, after the endpoints' Shutdown.
func (c *process) handoffEndpoints(cfg ProcessConfig, gw *gateway.Gateway, gwCerts *certSource) ([]handedOff, func(), error) {
	if len(cfg.Handoff.Endpoints) == 0 {
		if cfg.Handoff.TunnelListen != "" {
			return nil, nil, &UsageError{Err: errors.New("--tunnel-listen needs --handoff-endpoint: the endpoints whose tunnels it accepts")}
		}
		return nil, func() {}, nil
	}
	spec := c.w.Current()
	var out []handedOff
	var closers []func()
	closeAll := func() {
		for _, f := range closers {
			f()
		}
	}
	fail := func(err error) ([]handedOff, func(), error) {
		closeAll()
		return nil, nil, err
	}
	dir := cfg.Handoff.SocketDir(cfg.DataDir)
	dirMode, sockMode := os.FileMode(0o700), os.FileMode(0o600)
	if cfg.Handoff.othersAllowed() {
		// Endpoint processes of the other uids allowed (each checked by its uid on
		// connecting) reach the sockets through the group.
		dirMode, sockMode = 0o750, 0o660
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fail(fmt.Errorf("handoff socket directory: %w", err))
	}
	if err := checkHandoffDir(dir); err != nil {
		return fail(err)
	}
	var tunnels *handoff.TunnelServer
	if cfg.Handoff.TunnelListen != "" {
		tl, err := net.Listen("tcp", cfg.Handoff.TunnelListen)
		if err != nil {
			return fail(fmt.Errorf("listen for handoff tunnels on %s: %w", cfg.Handoff.TunnelListen, err))
		}
		if tunnels, err = handoff.ServeTunnels(tl, handoff.TunnelServerConfig{
			Certificate: gwCerts.getServer, Peer: handoff.VerifyEndpoint(c.p.CA.Verifier()),
			Endpoints: cfg.Handoff.Endpoints, Delivered: c.ops.handoffMetrics(), Logger: c.log,
		}); err != nil {
			tl.Close()
			return fail(err)
		}
		closers = append(closers, func() { tunnels.Close() })
	}
	for _, id := range cfg.Handoff.Endpoints {
		ep, ok := spec.Endpoint(id)
		if !ok {
			return fail(&UsageError{Err: fmt.Errorf("--handoff-endpoint: the spec has no endpoint %q", id)})
		}
		if slices.Contains(cfg.Endpoints, id) {
			return fail(&UsageError{Err: fmt.Errorf("endpoint %s is given to both --endpoint and --handoff-endpoint: it runs in this process or in its own", id)})
		}
		addrs := make([]net.Addr, 0, len(ep.Listen))
		for _, a := range ep.Listen {
			addrs = append(addrs, net.TCPAddrFromAddrPort(a))
		}
		e, err := newEndpoint(c.w.Current, c.p, ep, gw, nil, c.logs.Get(HandoffChain(cfg.Chain, id)), addrs, c.ops.endpointMetrics()(id), c.log)
		if err != nil {
			return fail(err)
		}
		path := HandoffSocket(dir, id)
		fl, err := handoff.ListenFD(handoff.FDConfig{Path: path, UIDs: cfg.Handoff.PeerUIDs, Mode: sockMode, Logger: c.log})
		if err != nil {
			return fail(err)
		}
		closers = append(closers, func() { fl.Close() })
		h := handedOff{id: id, e: e, lns: []net.Listener{fl}, where: []string{"unix:" + path}}
		if tunnels != nil {
			h.lns = append(h.lns, tunnels.Listener(id))
			h.where = append(h.where, "tunnels at "+tunnels.Addr().String())
		}
		out = append(out, h)
	}
	return out, func() {
		if tunnels != nil {
			tunnels.Close()
		}
	}, nil
}

// checkHandoffDir refuses a socket directory others could write: whoever can write it can
// put a socket of their own where an endpoint process looks for the gateway's (the
// endpoint checks the listener's uid too).
func checkHandoffDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("handoff socket directory: %w", err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("handoff socket directory %s must be a directory only its owner can write (it is %v)", dir, fi.Mode())
	}
	return nil
}
