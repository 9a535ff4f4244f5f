package perimeter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/endpoint"
	"github.com/phantom-perimeter/phantom/internal/handoff"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// RunEndpoint runs endpoint id until ctx ends, passing its callers to gateways as
// cfg.Handoff.Mode says: requests re-proxied over mTLS to gateways (none: the spec's
// gateway), connections passed to the gateway on this host, or connections tunneled to
// gateways' tunnel listeners.
func RunEndpoint(ctx context.Context, cfg ProcessConfig, id string, gateways []string) error {
	switch cfg.Handoff.Mode {
	case "", HandoffHTTP, HandoffFD:
	case HandoffTunnel:
		if len(gateways) == 0 {
			return &UsageError{Err: errors.New("--handoff tunnel needs --gateway: the gateways' --tunnel-listen addresses")}
		}
	default:
		return &UsageError{Err: fmt.Errorf("--handoff %q: http, fd or tunnel", cfg.Handoff.Mode)}
	}
	c, err := openProcess(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.shutdown()
	spec := c.w.Current()
	ep, ok := spec.Endpoint(id)
	if !ok {
		return &UsageError{Err: fmt.Errorf("the spec has no endpoint %q", id)}
	}
	if len(gateways) == 0 {
		gateways = []string{listenAddr("", spec.Gateway.Listen, DefaultGatewayListen)}
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, a := range ep.Listen {
		ln, err := net.Listen("tcp", a.String())
		if err != nil {
			return fmt.Errorf("listen on %s: %w", a, err)
		}
		lns = append(lns, ln)
	}
	var e *endpoint.Endpoint
	closeHandoff := func(context.Context) error { return nil }
	switch cfg.Handoff.Mode {
	case HandoffFD, HandoffTunnel:
		e, closeHandoff, err = c.newBoundary(cfg, ep, gateways)
	default:
		e, err = newEndpoint(c.w.Current, c.p, ep, nil, gateways, c.logs.Get(cfg.Chain), listenAddrs(lns), c.ops.endpointMetrics()(id), c.log)
	}
	if err != nil {
		return err
	}
	serveErr := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { serveErr <- e.Serve(ctx, ln) }()
		fmt.Fprintf(cfg.Stderr, "phantom endpoint: listening on https://%s\n", ln.Addr())
	}
	// The endpoint decides on its spec alone (no store state): serving is ready.
	c.serving()
	var runErr error
	select {
	case err := <-serveErr:
		if err != nil && !errors.Is(err, context.Canceled) {
			runErr = fmt.Errorf("serve endpoint %s: %w", id, err)
		}
	case <-ctx.Done():
	}
	c.log.Info("shutting down; finishing in-flight requests", "component", "endpoint")
	shutdownCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
	defer done()
	err = e.Shutdown(shutdownCtx)
	return errors.Join(runErr, err, closeHandoff(shutdownCtx))
}

// newBoundary builds endpoint ep as a network boundary only (--handoff fd or tunnel): the
// security group at accept, TLS only on the first byte, then the connection to the
// gateway, which terminates TLS with the endpoint's certificate (gateway
// --handoff-endpoint). It holds no serving certificate. The func returned stops the
// transport, waiting for tunneled connections until its context ends.
func (c *process) newBoundary(cfg ProcessConfig, ep *config.Endpoint, gateways []string) (*endpoint.Endpoint, func(context.Context) error, error) {
	ecfg := endpoint.Config{ID: ep.ID, Spec: c.w.Current, Auditor: c.logs.Get(cfg.Chain), Metrics: c.ops.endpointMetrics()(ep.ID), Logger: c.log}
	var stop func(context.Context) error
	switch cfg.Handoff.Mode {
	case HandoffFD:
		path := HandoffSocket(cfg.Handoff.SocketDir(cfg.DataDir), ep.ID)
		s := handoff.NewFDSender(handoff.FDConfig{Path: path, UIDs: cfg.Handoff.PeerUIDs, Logger: c.log})
		if err := s.Connect(); err != nil {
			// The gateway may start after the endpoint: each connection tries again.
			c.log.Warn("the gateway's handoff socket is not ready; connections are refused until it is", "socket", path, "error", err)
		}
		ecfg.Handoff, stop = endpoint.PassFD(s), func(context.Context) error { return s.Close() }
	case HandoffTunnel:
		spec := c.w.Current()
		certs, err := newCertSource(c.p.Issuer, pki.Request{Identity: pki.Identity{Account: spec.Account, Kind: pki.KindEndpoint, Name: ep.ID}, Client: true})
		if err != nil {
			return nil, nil, err
		}
		d, err := handoff.NewTunnelDialer(handoff.TunnelDialerConfig{
			Gateways: gateways, ClientCert: certs.getClient,
			VerifyGateway: endpoint.VerifyGateway(c.p.CA.Verifier(), c.w.Current), Logger: c.log,
		})
		if err != nil {
			return nil, nil, err
		}
		ecfg.Handoff, stop = d.Handoff, d.Close
	}
	e, err := endpoint.New(ecfg)
	if err != nil {
		stop(context.Background())
		return nil, nil, err
	}
	return e, stop, nil
}
