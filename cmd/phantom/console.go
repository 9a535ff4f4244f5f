package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/console"
	"github.com/phantom-perimeter/phantom/internal/login"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
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

When an OIDC provider of the spec has signIn, the sign-in page also offers single sign-on
through it: the provider signs the person in (authorization code with PKCE, redirect URI
https://HOST:PORT/sso/callback), and STS (--sts) exchanges the ID token for a session of
the role the token's role claim names; the console session ends with that session.
console.keySignIn: refuse leaves single sign-on the only way in.

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
	stsURL := cmp.Or(f.sts, "https://"+perimeter.ListenAddr("", spec.STS.Listen, defaultSTSListen))
	h, err := newConsole(c.w.Current, c.p, perimeter.AuditDir(f.dataDir, spec), c.logs.Get(f.chain), stsURL, c.log)
	if err != nil {
		return err
	}
	listen := perimeter.ListenAddr(f.listen, netip.AddrPort{}, defaultConsoleListen)
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	tlsCfg, err := consoleTLSConfig(c.p, spec, ln)
	if err != nil {
		ln.Close()
		return err
	}
	srv := perimeter.ServeHTTPS("console", ln, h, tlsCfg, c.log)
	fmt.Fprintf(stderr, "phantom console: listening on https://%s\n", ln.Addr())
	c.serving(c.freshCheck())
	return waitAndShutdown(ctx, c.log, "console", srv)
}

// newConsole builds the web console over the perimeter's store and identity service; its
// own events go to auditor (the "console" chain) and its decisions page reads every chain
// in auditDir. Single sign-on exchanges ID tokens at the STS at stsURL, whose certificate
// is the perimeter CA's.
func newConsole(current func() *config.Spec, p *perimeter.Perimeter, auditDir string, auditor console.Auditor, stsURL string, log *slog.Logger) (http.Handler, error) {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(p.CA.BundlePEM())
	verifier := webIdentityVerifier(current, log)
	return console.New(console.Config{
		Spec:     current,
		Store:    p.Store,
		Identity: p.IDs,
		AuditDir: auditDir,
		Auditor:  auditor,
		Logger:   log,
		STS:      consoleSTS{&login.STS{URL: stsURL, Region: current().Region, HTTP: login.NewSTSHTTPClient(roots)}},
		IDTokens: func() console.IDTokenVerifier {
			if v := verifier(); v != nil {
				return v
			}
			return nil
		},
	})
}

// consoleSTS adapts login.STS to the console's WebIdentitySTS.
type consoleSTS struct{ s *login.STS }

func (c consoleSTS) AssumeRoleWithWebIdentity(ctx context.Context, role, session, token string, d time.Duration) (string, string, string, error) {
	cr, _, err := c.s.AssumeRoleWithWebIdentity(ctx, role, session, token, d)
	if err != nil {
		return "", "", "", err
	}
	return cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken, nil
}

// consoleTLSConfig is the console's server TLS: TLS 1.2 or later, a certificate from the
// perimeter CA naming the listener (renewed before it expires).
func consoleTLSConfig(p *perimeter.Perimeter, spec *config.Spec, ln net.Listener) (*tls.Config, error) {
	certs, err := perimeter.NewCertSource(p.Issuer, perimeter.ServerRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: "console"}, []net.Addr{ln.Addr()}))
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetServer}, nil
}
