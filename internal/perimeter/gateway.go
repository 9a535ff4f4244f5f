package perimeter

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/phantom-perimeter/phantom/internal/endpoint"
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
	type served struct {
		id  string
		e   *endpoint.Endpoint
		lns []net.Listener
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
		if s.e, err = newEndpoint(c.w.Current, c.p, ep, gw, nil, c.logs.Get(EndpointChain(cfg.Chain, id)), s.lns, c.ops.endpointMetrics()(id), c.log); err != nil {
			closeAll()
			return err
		}
		eps = append(eps, s)
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
	for _, s := range eps {
		for _, l := range s.lns {
			fmt.Fprintf(cfg.Stderr, "phantom gateway: endpoint %s (in process) listening on https://%s\n", s.id, l.Addr())
		}
	}
	c.serving(readyCheck{Name: "perimeter state", Check: fresh})
	return waitAndShutdown(ctx, c.log, "gateway", srv)
}
