package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/console"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// defaultConsoleListen is where phantom console listens without --listen: the demo's
// port base (8443) + 9.
const defaultConsoleListen = "127.0.0.1:8452"

func newConsoleCmd() *cobra.Command {
	var f componentFlags
	cmd := &cobra.Command{
		Use:   "console --config FILE --data-dir DIR [--store URL] [--listen ADDR]",
		Short: "Serve the web console: the perimeter as a picture, live decisions, findings, a policy simulator",
		Long: `console serves the web console over HTTPS (TLS 1.2 or later, certificate from the perimeter
CA in DIR/ca; browsers need DIR/ca.pem trusted). People sign in with a Phantom access key
(and session token for ASIA keys); every page is authorized with the IAM policies of the
perimeter spec for the signed-in principal:

  perimeter picture     iam:GetAccountAuthorizationDetails, ec2:DescribeVpcEndpoints, apigateway:GET
  decisions             cloudtrail:LookupEvents
  findings              guardduty:ListFindings, guardduty:GetFindings
  archive / unarchive   guardduty:ArchiveFindings, guardduty:UnarchiveFindings
  revoke role sessions  iam:PutRolePolicy on the role
  policy simulator      iam:SimulatePrincipalPolicy on the simulated principal

Sign-ins, sign-outs, denials and actions are CloudTrail events (eventSource
console.phantom.amazonaws.com) in the audit chain --audit-chain; the decisions page shows
the latest events of every chain in the spec's audit.dir.

When it is ready it prints "phantom console: listening on https://ADDR" on stderr.`,
		Example: `  phantom console --config perimeter.yaml --data-dir /var/lib/phantom --listen 127.0.0.1:8452`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f.log = logFlagsOf(cmd)
			return runConsole(ctx, cmd.ErrOrStderr(), f)
		},
	}
	f.register(cmd, "console")
	cmd.Flags().StringVar(&f.listen, "listen", "", "TLS listen address (default "+defaultConsoleListen+")")
	return cmd
}

func runConsole(ctx context.Context, stderr io.Writer, f componentFlags) error {
	c, err := openComponent(ctx, stderr, "console", f)
	if err != nil {
		return err
	}
	defer c.shutdown()
	spec := c.w.Current()
	h, err := newConsole(c.w.Current, c.p, specAuditDir(f.dataDir, spec), c.logs.get(f.chain), c.log)
	if err != nil {
		return err
	}
	listen := listenAddr(f.listen, netip.AddrPort{}, defaultConsoleListen)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	tlsCfg, err := consoleTLSConfig(c.p, spec, ln)
	if err != nil {
		ln.Close()
		return err
	}
	srv := serveHTTPS("console", ln, h, tlsCfg, c.log)
	fmt.Fprintf(stderr, "phantom console: listening on https://%s\n", ln.Addr())
	c.serving(c.freshCheck())
	return waitAndShutdown(ctx, c.log, "console", srv)
}

// newConsole builds the web console over the perimeter's store and identity service; its
// own events go to auditor (the "console" chain) and its decisions page reads every chain
// in auditDir.
func newConsole(current func() *config.Spec, p *perimeter, auditDir string, auditor console.Auditor, log *slog.Logger) (http.Handler, error) {
	return console.New(console.Config{
		Spec:     current,
		Store:    p.store,
		Identity: p.ids,
		AuditDir: auditDir,
		Auditor:  auditor,
		Logger:   log,
	})
}

// consoleTLSConfig is the console's server TLS: TLS 1.2 or later, a certificate from the
// perimeter CA naming the listener (renewed before it expires).
func consoleTLSConfig(p *perimeter, spec *config.Spec, ln net.Listener) (*tls.Config, error) {
	certs, err := newCertSource(p.ca, serverRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: "console"}, []net.Addr{ln.Addr()}))
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.getServer}, nil
}
