package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/phantom-perimeter/phantom/internal/perimeter"
	"github.com/spf13/cobra"
)

func newEndpointCmd() *cobra.Command {
	var f componentFlags
	var id string
	var gateways []string
	cmd := &cobra.Command{
		Use:   "endpoint --config FILE --data-dir DIR --id VPCE_ID [--gateway ADDR]...",
		Short: "Run one network endpoint of the perimeter spec: TLS only, security-group rules, mTLS to the gateway",
		Long: `endpoint runs the spec's endpoint VPCE_ID on its listen addresses: TLS 1.2 or later only
(plaintext is refused), each connection checked against the endpoint's security-group
ingress rules before the handshake, each refusal audited. Requests for the APIs it lists go
to the gateway over mutual TLS with a certificate from the perimeter CA naming the endpoint,
which is how the gateway knows the call came through it (aws:SourceVpce). With several
--gateway addresses it spreads calls over them and skips one that is down.

When it is ready it prints "phantom endpoint: listening on https://ADDR" on stderr, once per
listener.`,
		Example: `  phantom endpoint --config perimeter.yaml --data-dir /var/lib/phantom --id vpce-0123456789abcdef0

  # forwarding to two gateway replicas (round robin, a replica that cannot be reached is skipped)
  phantom endpoint --config perimeter.yaml --data-dir /var/lib/phantom --store "$PHANTOM_STORE" \
      --id vpce-0123456789abcdef0 --audit-chain endpoint-a --gateway 10.0.1.10:8445 --gateway 10.0.1.11:8445`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f.log = logFlagsOf(cmd)
			return runEndpoint(ctx, cmd.ErrOrStderr(), f, id, gateways)
		},
	}
	f.register(cmd, "")
	cmd.Flags().StringVar(&id, "id", "", "the endpoint's id in the spec (vpce-...)")
	cmd.Flags().StringArrayVar(&gateways, "gateway", nil, "gateway address host:port (repeat for replicas; default: the spec's gateway.listen)")
	cmd.MarkFlagRequired("id")
	return cmd
}

func runEndpoint(ctx context.Context, stderr io.Writer, f componentFlags, id string, gateways []string) error {
	if f.chain == "" {
		f.chain = "endpoint-" + id
	}
	c, err := openComponent(ctx, stderr, "endpoint", f)
	if err != nil {
		return err
	}
	defer c.shutdown()
	spec := c.w.Current()
	ep, ok := spec.Endpoint(id)
	if !ok {
		return &exitError{code: 2, err: fmt.Errorf("the spec has no endpoint %q", id)}
	}
	if len(gateways) == 0 {
		gateways = []string{perimeter.ListenAddr("", spec.Gateway.Listen, perimeter.DefaultGatewayListen)}
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
	e, err := perimeter.NewEndpoint(c.w.Current, c.p, ep, gateways, c.logs.Get(f.chain), lns, c.ops.EndpointMetrics()(id), c.log)
	if err != nil {
		return err
	}
	serveErr := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { serveErr <- e.Serve(ctx, ln) }()
		fmt.Fprintf(stderr, "phantom endpoint: listening on https://%s\n", ln.Addr())
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
