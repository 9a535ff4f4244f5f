package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/perimeter"
)

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
	cmd.Flags().StringVar(&f.listen, "listen", "", "TLS listen address (default "+perimeter.DefaultConsoleListen+")")
	return cmd
}

func runConsole(ctx context.Context, stderr io.Writer, f componentFlags) error {
	cfg, err := f.process("console", stderr)
	if err != nil {
		return err
	}
	return perimeter.RunConsole(ctx, cfg)
}
