package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
)

// defaultEgressListen is the conventional forward-proxy port, on loopback: a workload
// reaches the proxy on its own host.
const defaultEgressListen = "127.0.0.1:3128"

type egressFlags struct {
	componentFlags
	tlsListen string
	deny      []string
	idle      time.Duration
	// The bounds of egress.Config: tunnels (in all, per node, per source address) and
	// connections (in all, per source address).
	maxTunnels, maxTunnelsPerNode, maxTunnelsPerSource int
	maxConns, maxConnsPerSource                        int
}

func newEgressCmd() *cobra.Command {
	var f egressFlags
	cmd := &cobra.Command{
		Use:   "egress --config FILE --data-dir DIR [--listen ADDR] [--tls-listen ADDR]",
		Short: "Run the egress proxy: workloads reach only the destinations their role's egress rules name",
		Long: `egress is the HTTP forward proxy (CONNECT, and absolute-form http:// requests) a node's
workloads must use. A node authenticates in one of two ways:

  - on --tls-listen (HTTPS), with its node certificate from the perimeter CA, the one its
    agent holds: the way for nodes on other hosts. The agent relays its workloads'
    connections there with that certificate (phantom agent --egress-tls ADDR
    --egress-listen 127.0.0.1:8171; workloads use HTTPS_PROXY=http://127.0.0.1:8171).
  - with Proxy-Authorization: Basic NODE:PASSWORD (the password its agent received from
    STS with its role session; the proxy URL http://NODE:PASSWORD@ADDR works as
    HTTPS_PROXY/HTTP_PROXY). The password is bound to the node's address (privateIp in
    the spec): it is refused from anywhere else. It lives as long as the role session it
    came with, and is refused once the role's sessions are revoked (phantom iam
    revoke-sessions, a detection response): the agent fetches a new one at once (IMDS
    /latest/meta-data/phantom/egress-proxy). On --listen it travels in clear text, so
    keep --listen on loopback, for workloads on the proxy's own host.

Every request is decided on the node's current standing, as the gateway decides calls: a
node removed with phantom node revoke is refused either way and its open tunnels are
closed within a second; while the perimeter state has not been confirmed by the store
for --max-stale every request is refused (503 PerimeterStateStale). The node's role's
egress rules in the spec decide where it may go: APIs, host names on listed ports,
CIDRs, each rule up to a maxRiskLevel of the node's phantom:RiskLevel if it names one
(tunnels it opened are closed when the level rises above). Everything else is refused,
or, for a rule set or node in mode: report, forwarded and audited as what would have
been refused. Tunnels and forwarded requests are bounded in all, per node and per source
address; connections in all and per source address. Refusals are audited in full up to
10 per source, code and minute, the rest counted into a summary event. An api: rule opens that API, not the endpoint serving it: a
tunnel to an endpoint must start with a TLS ClientHello whose server name (SNI) names the
allowed API (API_ID.execute-api.REGION.amazonaws.com, resolved by the proxy to the
endpoint, or the endpoint's private DNS name when it serves that one API), and the
endpoint binds every request of the connection to that API; no server name, or another
API's, is refused and audited. Host names are resolved once and the checked address is
what gets dialled; loopback, link-local and metadata, private and reserved addresses are
refused in every spelling unless a rule names them. Every decision is one CloudTrail event
(eventSource egress.phantom.amazonaws.com) in the audit chain --audit-chain under the
spec's audit.dir. Rules follow the spec file when it changes.

When it is ready it prints "phantom egress: listening on http://ADDR" (and "https://ADDR"
for --tls-listen) on stderr.`,
		Example: `  phantom egress --config perimeter.yaml --data-dir /var/lib/phantom --listen 127.0.0.1:3128 \
    --deny 127.0.0.1:8169
  # nodes on other hosts: TLS with node certificates
  phantom egress --config perimeter.yaml --data-dir /var/lib/phantom --listen "" --tls-listen 10.0.2.5:3129`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f.log = logFlagsOf(cmd)
			return runEgress(ctx, cmd.ErrOrStderr(), f)
		},
	}
	f.register(cmd, "egress")
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", defaultEgressListen, "plain proxy listen address (password authentication; \"\" for none)")
	fl.StringVar(&f.tlsListen, "tls-listen", "", "HTTPS proxy listen address: nodes authenticate with their certificate (the agent's --egress-tls)")
	fl.StringArrayVar(&f.deny, "deny", nil, "ADDR:PORT refused whatever the rules say, e.g. the agent's IMDS listener (repeatable; port 0 = every port)")
	fl.IntVar(&f.maxTunnels, "max-tunnels", egress.DefaultMaxTunnels, "concurrent tunnels and forwarded requests")
	fl.IntVar(&f.maxTunnelsPerNode, "max-tunnels-per-node", egress.DefaultMaxTunnelsPerNode, "concurrent tunnels and forwarded requests of one node")
	fl.IntVar(&f.maxTunnelsPerSource, "max-tunnels-per-source", egress.DefaultMaxTunnelsPerSource, "concurrent tunnels and forwarded requests from one source address")
	fl.IntVar(&f.maxConns, "max-connections", egress.DefaultMaxConnections, "open client connections (idle keep-alive ones included)")
	fl.IntVar(&f.maxConnsPerSource, "max-connections-per-source", egress.DefaultMaxConnectionsPerSource, "open client connections from one source address")
	fl.DurationVar(&f.idle, "idle-timeout", egress.DefaultIdleTimeout, "close a tunnel after this long without traffic either way")
	return cmd
}

func runEgress(ctx context.Context, stderr io.Writer, f egressFlags) error {
	var deny []netip.AddrPort
	for _, d := range f.deny {
		ap, err := netip.ParseAddrPort(d)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--deny %q: want ADDR:PORT (port 0 for every port)", d)}
		}
		deny = append(deny, ap)
	}
	if min(f.maxTunnels, f.maxTunnelsPerNode, f.maxTunnelsPerSource, f.maxConns, f.maxConnsPerSource) <= 0 || f.idle <= 0 {
		return &exitError{code: 2, err: errors.New("--max-tunnels*, --max-connections* and --idle-timeout must be positive")}
	}
	cfg, err := f.process("egress", stderr)
	if err != nil {
		return err
	}
	return perimeter.RunEgress(ctx, cfg, perimeter.EgressConfig{
		TLSListen:               f.tlsListen,
		Deny:                    deny,
		MaxTunnels:              f.maxTunnels,
		MaxTunnelsPerNode:       f.maxTunnelsPerNode,
		MaxTunnelsPerSource:     f.maxTunnelsPerSource,
		MaxConnections:          f.maxConns,
		MaxConnectionsPerSource: f.maxConnsPerSource,
		IdleTimeout:             f.idle,
	})
}
