package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// defaultEgressListen is the conventional forward-proxy port, on loopback: a workload
// reaches the proxy on its own host.
const defaultEgressListen = "127.0.0.1:3128"

type egressFlags struct {
	componentFlags
	tlsListen  string
	deny       []string
	maxTunnels int
	idle       time.Duration
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
    STS; the proxy URL http://NODE:PASSWORD@ADDR works as HTTPS_PROXY/HTTP_PROXY). The
    password is bound to the node's address (privateIp in the spec): it is refused from
    anywhere else. On --listen it travels in clear text, so keep --listen on loopback,
    for workloads on the proxy's own host.

A node removed with phantom node revoke is refused either way. The node's role's egress
rules in the spec decide where it may go: APIs, host names on listed ports, CIDRs.
Everything else is refused. An api: rule opens that API, not the endpoint serving it: a
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
	if f.maxTunnels <= 0 || f.idle <= 0 {
		return &exitError{code: 2, err: errors.New("--max-tunnels and --idle-timeout must be positive")}
	}
	c, err := openComponent(ctx, stderr, "egress", f.componentFlags)
	if err != nil {
		return err
	}
	defer c.shutdown()
	key, err := c.p.keys.Key(keys.EgressPasswordsPublic)
	if err != nil {
		return err
	}
	px, err := egress.New(egress.Config{
		Spec:        c.w.Current,
		PasswordKey: key,
		Verifier:    c.p.ca.Verifier(),
		Nodes:       c.p.ids,
		Auditor:     c.logs.get(f.chain),
		Logger:      c.log,
		Deny:        deny,
		MaxTunnels:  f.maxTunnels,
		IdleTimeout: f.idle,
		Metrics:     c.ops.egressMetrics(),
	})
	if err != nil {
		return err
	}
	if f.listen == "" && f.tlsListen == "" {
		return &exitError{code: 2, err: errors.New("give --listen, --tls-listen or both")}
	}
	done := make(chan error, 2)
	serving := 0
	serve := func(ln net.Listener) {
		// Serve's context only bounds requests; the signal context starts a graceful shutdown.
		serving++
		go func() { done <- px.Serve(context.WithoutCancel(ctx), ln) }()
	}
	if f.listen != "" {
		ln, err := net.Listen("tcp", f.listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", f.listen, err)
		}
		if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() {
			c.log.Warn("egress: --listen is not a loopback address: proxy passwords travel in clear text on it; serve nodes on other hosts with --tls-listen", "listen", ln.Addr().String())
		}
		serve(ln)
		fmt.Fprintf(stderr, "phantom egress: listening on http://%s\n", ln.Addr())
	}
	if f.tlsListen != "" {
		ln, err := net.Listen("tcp", f.tlsListen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", f.tlsListen, err)
		}
		certs, err := newCertSource(c.p.issuer, serverRequest(pki.Identity{Account: c.w.Current().Account, Kind: pki.KindGateway, Name: "egress"}, []net.Addr{ln.Addr()}))
		if err != nil {
			ln.Close()
			return err
		}
		serve(tls.NewListener(ln, px.TLSConfig(certs.getServer)))
		fmt.Fprintf(stderr, "phantom egress: listening on https://%s\n", ln.Addr())
	}
	c.serving() // the rules are the spec's and the node passwords derive from the master key
	select {
	case err := <-done:
		return fmt.Errorf("serve egress: %w", err)
	case <-ctx.Done():
	}
	c.log.Info("egress: shutting down; finishing open tunnels")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = px.Shutdown(shutdownCtx)
	for range serving {
		if serr := <-done; serr != nil && err == nil {
			err = serr
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		c.log.Warn("egress: tunnels still open at the shutdown deadline were closed")
		err = nil
	}
	return err
}
