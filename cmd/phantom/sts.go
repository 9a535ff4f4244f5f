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

func newSTSCmd() *cobra.Command {
	var f componentFlags
	cmd := &cobra.Command{
		Use:   "sts --config FILE --data-dir DIR [--listen ADDR]",
		Short: "Serve the AWS STS query API over HTTPS for the perimeter",
		Long: `sts serves AssumeRole, GetSessionToken, GetCallerIdentity and DecodeAuthorizationMessage
(SigV4 service "sts") and AssumeRoleWithWebIdentity (unsigned: the OIDC token is the
credential) over HTTPS (TLS 1.2 or later) with a server certificate from the perimeter CA
in DIR/ca. It writes the CA certificate to DIR/ca.pem: point the AWS CLI and SDKs at it
with AWS_CA_BUNDLE, and at the STS with --endpoint-url https://ADDR.

GetSessionToken and AssumeRole take SerialNumber and TokenCode of a user's virtual MFA
device (phantom iam create-virtual-mfa-device): the session then has
aws:MultiFactorAuthPresent and aws:MultiFactorAuthAge, and each code is accepted once
across every replica sharing the store. The spec's sign-in provider
(oidcProviders[].signIn) is published at https://ADDR/.well-known/phantom/sign-in for
phantom login.

Users' access keys, token-sealing keys and revocations come from the store in DIR
(shared with the phantom iam and keys commands); changes reach this process within
--poll. The spec is reloaded on SIGHUP or when the file changes; a spec that does not
validate is rejected and the running one stays. Every call is recorded as one CloudTrail
event in the tamper-evident audit chain "sts" under the spec's audit.dir (DIR/audit by
default; check it with phantom audit verify). SIGINT or SIGTERM stops it gracefully.

With --pkcs11-module, --pkcs11-token and --pkcs11-pin-file, --pkcs11-keys names the keys
kept in that PKCS#11 token, made there non-extractable and used there: issuing (the issuing
CAs' keys: phantom ca rotate --pkcs11-issuing; the default), token-signing (session tokens
are signed there; the store holds the public key only; without the token STS refuses to
start once the current key is there) and audit (this chain's writer key).

When it is ready it prints "phantom sts: listening on https://ADDR" on stderr (ADDR is
the bound address, so --listen 127.0.0.1:0 picks a free port).`,
		Example: `  phantom sts --config perimeter.yaml --data-dir /var/lib/phantom
  AWS_CA_BUNDLE=/var/lib/phantom/ca.pem aws sts get-caller-identity --endpoint-url https://127.0.0.1:8444`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f.log = logFlagsOf(cmd)
			return runSTS(ctx, cmd.ErrOrStderr(), f)
		},
	}
	f.register(cmd, "sts")
	cmd.Flags().StringVar(&f.listen, "listen", "", "TLS listen address (default: the spec's sts.listen, else "+perimeter.DefaultSTSListen+")")
	return cmd
}

func runSTS(ctx context.Context, stderr io.Writer, f componentFlags) error {
	cfg, err := f.process("sts", stderr)
	if err != nil {
		return err
	}
	return perimeter.RunSTS(ctx, cfg)
}
