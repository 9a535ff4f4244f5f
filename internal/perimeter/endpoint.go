package perimeter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// RunEndpoint runs endpoint id, forwarding to gateways (none: the spec's gateway), until
// ctx ends.
func RunEndpoint(ctx context.Context, cfg ProcessConfig, id string, gateways []string) error {
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
	e, err := newEndpoint(c.w.Current, c.p, ep, nil, gateways, c.logs.Get(cfg.Chain), lns, c.ops.endpointMetrics()(id), c.log)
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
	return errors.Join(runErr, e.Shutdown(shutdownCtx))
}
