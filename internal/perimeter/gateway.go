package perimeter

import (
	"context"
	"fmt"
	"net"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

// RunGateway runs a gateway process until ctx ends.
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
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	certs, err := newCertSource(c.p.Issuer, serverRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: spec.Gateway.Name}, []net.Addr{ln.Addr()}))
	if err != nil {
		ln.Close()
		return err
	}
	srv := serveGateway(ln, gw, gw.TLSConfig(certs.getServer))
	fmt.Fprintf(cfg.Stderr, "phantom gateway: listening on https://%s\n", ln.Addr())
	c.serving(readyCheck{Name: "perimeter state", Check: fresh})
	return waitAndShutdown(ctx, c.log, "gateway", srv)
}
