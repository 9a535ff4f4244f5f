package perimeter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// EgressConfig is the egress proxy's own settings (validated by the caller): see
// egress.Config for the bounds.
type EgressConfig struct {
	// TLSListen is the TLS listener's address ("": none); ProcessConfig.Listen the plain one.
	TLSListen string
	// Deny are addresses never dialled (port 0: every port).
	Deny                                               []netip.AddrPort
	MaxTunnels, MaxTunnelsPerNode, MaxTunnelsPerSource int
	MaxConnections, MaxConnectionsPerSource            int
	IdleTimeout                                        time.Duration
}

// RunEgress runs an egress proxy until ctx ends, then closes its tunnels gracefully.
func RunEgress(ctx context.Context, cfg ProcessConfig, e EgressConfig) error {
	c, err := openProcess(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.shutdown()
	key, err := c.p.Keys.Key(keys.EgressPasswordsPublic)
	if err != nil {
		return err
	}
	risk, fresh, err := c.riskLevels(ctx, cfg)
	if err != nil {
		return err
	}
	c.ops.identityMetrics(c.p, fresh)
	px, err := egress.New(egress.Config{
		Spec:                    c.w.Current,
		PasswordKey:             key,
		Verifier:                c.p.CA.Verifier(),
		Standing:                c.p.IDs,
		Risk:                    risk,
		Fresh:                   fresh,
		Auditor:                 c.logs.Get(cfg.Chain),
		Logger:                  c.log,
		Deny:                    e.Deny,
		MaxTunnels:              e.MaxTunnels,
		MaxTunnelsPerNode:       e.MaxTunnelsPerNode,
		MaxTunnelsPerSource:     e.MaxTunnelsPerSource,
		MaxConnections:          e.MaxConnections,
		MaxConnectionsPerSource: e.MaxConnectionsPerSource,
		IdleTimeout:             e.IdleTimeout,
		Metrics:                 c.ops.egressMetrics(),
	})
	if err != nil {
		return err
	}
	if cfg.Listen == "" && e.TLSListen == "" {
		return &UsageError{Err: errors.New("give --listen, --tls-listen or both")}
	}
	done := make(chan error, 2)
	serving := 0
	// Serve's context only bounds requests; the signal context starts a graceful shutdown.
	serveCtx := context.WithoutCancel(ctx)
	serve := func(run func() error) {
		serving++
		go func() { done <- run() }()
	}
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
			c.log.Warn("--listen is not a loopback address: proxy passwords travel in clear text on it; serve nodes on other hosts with --tls-listen", "component", "egress", "listen", ln.Addr().String())
		}
		serve(func() error { return px.Serve(serveCtx, ln) })
		fmt.Fprintf(cfg.Stderr, "phantom egress: listening on http://%s\n", ln.Addr())
	}
	if e.TLSListen != "" {
		ln, err := net.Listen("tcp", e.TLSListen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", e.TLSListen, err)
		}
		certs, err := newCertSource(c.p.Issuer, serverRequest(pki.Identity{Account: c.w.Current().Account, Kind: pki.KindGateway, Name: "egress"}, []net.Addr{ln.Addr()}))
		if err != nil {
			ln.Close()
			return err
		}
		serve(func() error { return px.ServeTLS(serveCtx, ln, certs.getServer) })
		fmt.Fprintf(cfg.Stderr, "phantom egress: listening on https://%s\n", ln.Addr())
	}
	c.serving(readyCheck{Name: "perimeter state", Check: fresh})
	select {
	case err := <-done:
		return fmt.Errorf("serve egress: %w", err)
	case <-ctx.Done():
	}
	c.log.Info("shutting down; finishing open tunnels", "component", "egress")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = px.Shutdown(shutdownCtx)
	for range serving {
		if serr := <-done; serr != nil && err == nil {
			err = serr
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		c.log.Warn("tunnels still open at the shutdown deadline were closed", "component", "egress")
		err = nil
	}
	return err
}
