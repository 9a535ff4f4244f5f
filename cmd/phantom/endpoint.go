package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/phantom-perimeter/phantom/internal/perimeter"
	"github.com/spf13/cobra"
)

func newEndpointCmd() *cobra.Command {
	var f componentFlags
	var id string
	var gateways []string
	cmd := &cobra.Command{
		Use:   "endpoint --config FILE --data-dir DIR --id VPCE_ID [--handoff http|fd|tunnel] [--gateway ADDR]...",
		Short: "Run one network endpoint of the perimeter spec: TLS only, security-group rules, mTLS to the gateway",
		Long: `endpoint runs the spec's endpoint VPCE_ID on its listen addresses: TLS 1.2 or later only
(plaintext is refused), each connection checked against the endpoint's security-group
ingress rules before the handshake, each refusal audited. Requests for the APIs it lists go
to the gateway over mutual TLS with a certificate from the perimeter CA naming the endpoint,
which is how the gateway knows the call came through it (aws:SourceVpce). With several
--gateway addresses it spreads calls over them and skips one that is down.

That is --handoff http, the default: the endpoint terminates the caller's TLS and is a second
proxy in front of the gateway. With --handoff fd or tunnel it is a network boundary only:
it applies the security group at accept and refuses plaintext on the first byte (both
audited in its chain), then hands the caller's connection, its TLS bytes untouched, to a
gateway run with --handoff-endpoint VPCE_ID, which terminates TLS with the endpoint's
certificate and makes every per-request check. fd passes the connection itself to the
gateway on this host over the Unix socket --handoff-dir/VPCE_ID.sock (both processes
check the other's uid); tunnel splices it through a mutual TLS connection, dialed ahead of
callers, to the gateways' --tunnel-listen addresses given as --gateway: the caller's
ClientHello inside the tunnel's TLS and, for a TLS 1.3 caller, the rest of its bytes
outside it, raw on the same socket, spliced in the kernel (what TLS 1.3 already protects
is not encrypted twice; a TLS 1.2 caller's bytes stay inside). These save the
endpoint's TLS termination and HTTP proxying (bench/gateway, README Performance); they need
a gateway that holds the CA's issuing key (it serves the endpoint's certificate).

When it is ready it prints "phantom endpoint: listening on https://ADDR" on stderr, once per
listener.`,
		Example: `  phantom endpoint --config perimeter.yaml --data-dir /var/lib/phantom --id vpce-0123456789abcdef0

  # forwarding to two gateway replicas (round robin, a replica that cannot be reached is skipped)
  phantom endpoint --config perimeter.yaml --data-dir /var/lib/phantom --store "$PHANTOM_STORE" \
      --id vpce-0123456789abcdef0 --audit-chain endpoint-a --gateway 10.0.1.10:8445 --gateway 10.0.1.11:8445

  # a boundary only: connections handed to the gateway on this host (gateway --handoff-endpoint)
  phantom endpoint --config perimeter.yaml --data-dir /var/lib/phantom --id vpce-0123456789abcdef0 --handoff fd

  # or tunneled to gateways on other hosts (gateway --handoff-endpoint ... --tunnel-listen)
  phantom endpoint --config perimeter.yaml --data-dir /var/lib/phantom --id vpce-0123456789abcdef0 \
      --handoff tunnel --gateway 10.0.1.10:8446 --gateway 10.0.1.11:8446`,
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
	cmd.Flags().StringArrayVar(&gateways, "gateway", nil, "gateway address host:port (repeat for replicas; default: the spec's gateway.listen); with --handoff tunnel, the gateways' --tunnel-listen addresses")
	cmd.Flags().StringVar(&f.handoff.mode, "handoff", "http", "how callers reach the gateway: http (this process terminates TLS and forwards requests over mTLS), fd (connections passed to the gateway on this host) or tunnel (connections spliced through mTLS tunnels to --gateway)")
	cmd.Flags().StringVar(&f.handoff.dir, "handoff-dir", "", handoffDirHelp)
	cmd.Flags().UintSliceVar(&f.handoff.peerUIDs, "handoff-peer-uid", nil, handoffUIDHelp)
	cmd.MarkFlagRequired("id")
	return cmd
}

func runEndpoint(ctx context.Context, stderr io.Writer, f componentFlags, id string, gateways []string) error {
	if f.chain == "" {
		f.chain = "endpoint-" + id
	}
	cfg, err := f.process("endpoint", stderr)
	if err != nil {
		return err
	}
	return perimeter.RunEndpoint(ctx, cfg, id, gateways)
}
