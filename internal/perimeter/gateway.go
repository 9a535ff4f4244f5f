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
	listen := ListenAddr(cfg.Listen, spec.Gateway.Listen, DefaultGatewayListen)
	risk, fresh, err := c.riskLevels(ctx, cfg)
	if err != nil {
		return err
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.p.SweepSignatures(c.runCtx, c.log)
	}()
	c.ops.IdentityMetrics(c.p, fresh)
	gw, err := NewGateway(c.w.Current, c.p, c.logs.Get(cfg.Chain), risk, fresh, c.ops.GatewayMetrics(), c.log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	certs, err := NewCertSource(c.p.Issuer, ServerRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: spec.Gateway.Name}, []net.Addr{ln.Addr()}))
	if err != nil {
		ln.Close()
		return err
	}
	srv := ServeGateway(ln, gw, gw.TLSConfig(certs.GetServer))
	fmt.Fprintf(cfg.Stderr, "phantom gateway: listening on https://%s\n", ln.Addr())
	c.serving(ReadyCheck{Name: "perimeter state", Check: fresh})
	return waitAndShutdown(ctx, c.log, "gateway", srv)
}
