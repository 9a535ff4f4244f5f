package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/mfa"
	"github.com/phantom-perimeter/phantom/internal/oidc"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/sts"
)

// defaultSTSListen is where the STS listens when neither --listen nor the spec's
// sts.listen says.
const defaultSTSListen = "127.0.0.1:8444"

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
	cmd.Flags().StringVar(&f.listen, "listen", "", "TLS listen address (default: the spec's sts.listen, else "+defaultSTSListen+")")
	f.pkcs11.register(cmd.Flags(), "the issuing CAs' keys (phantom ca rotate --pkcs11-issuing)")
	return cmd
}

func runSTS(ctx context.Context, stderr io.Writer, f componentFlags) error {
	c, err := openComponent(ctx, stderr, "sts", f)
	if err != nil {
		return err
	}
	defer c.shutdown()
	spec := c.w.Current()
	listen := perimeter.ListenAddr(f.listen, spec.STS.Listen, defaultSTSListen)
	c.ops.IdentityMetrics(c.p, c.p.IDs.Fresh)
	h, err := newSTSHandler(c.w.Current, c.p, c.logs.Get(f.chain), c.ops.StsMetrics(), c.log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	certs, err := perimeter.NewCertSource(c.p.Issuer, perimeter.ServerRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: "sts"}, []net.Addr{ln.Addr()}))
	if err != nil {
		ln.Close()
		return err
	}
	srv := perimeter.ServeHTTPS("sts", ln, h, stsTLSConfig(certs.GetServer), c.log)
	bundle := filepath.Join(f.dataDir, "ca.pem")
	fmt.Fprintf(stderr, "phantom sts: listening on https://%s (CA bundle %s)\n", ln.Addr(), bundle)
	c.log.Info("serving", "component", "sts", "addr", ln.Addr().String(), "account", spec.Account, "region", spec.Region, "ca_bundle", bundle)
	c.serving(c.freshCheck())
	return waitAndShutdown(ctx, c.log, "sts", srv)
}

// newSTSHandler is the STS query API over the perimeter's identity service, the current
// spec and auditor.
func newSTSHandler(current func() *config.Spec, p *perimeter.Perimeter, auditor sts.Auditor, m sts.Metrics, log *slog.Logger) (*sts.Handler, error) {
	spec := current()
	adapter := sts.NewIdentity(p.IDs)
	egressKey, err := p.Keys.Ed25519(keys.EgressPasswords)
	if err != nil {
		return nil, err
	}
	tokens := pki.NewTokens(pki.TokensConfig{}, p.Store)
	return sts.New(sts.Config{
		Account:   spec.Account,
		Region:    spec.Region,
		MaxSkew:   spec.Gateway.ClockSkew,
		Directory: func() sts.Directory { return current() },
		Logger:    log,
		Metrics:   m,
		Messages:  p.Messages,
		// Rebuilt when a reload swaps in a new spec: the providers may have changed.
		WebIdentity: webIdentityVerifier(current, log),
		// Users' virtual MFA devices, in the store every replica shares: a code is taken
		// once whichever replica sees it.
		MFA: mfa.NewVerifier(p.Store, nil),
		// The workload agent's node API: enrollment with join tokens from the store,
		// certificate renewal and node-bound credentials (mTLS, verified in the handler).
		Nodes: &sts.NodeConfig{
			CA:            p.CA,
			Tokens:        tokens,
			Verifier:      p.CA.Verifier(), // follows the CA's rotations and revocations (syncCA)
			Issuer:        adapter,
			Registry:      p.Store,
			Sessions:      adapter,
			ProxyPassword: egress.Passwords(egressKey),
		},
		// The component API: gateways, endpoints and the other components whose hosts hold
		// no CA key enroll with a join token (phantom ca join-token) and renew here.
		Components: &sts.ComponentConfig{CA: p.CA, Tokens: tokens, Verifier: p.CA.Verifier()},
	}, adapter, adapter, auditor)
}

// stsTLSConfig is the STS listener's TLS: it requests, without requiring, a client
// certificate, so the workload agent can present its node certificate to the node API
// (which verifies it against the perimeter CA itself) while SDK callers of the query API
// present none.
func stsTLSConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCert, ClientAuth: tls.RequestClientCert}
}

// webIdentityVerifier returns the AssumeRoleWithWebIdentity verifier for the current spec's
// OIDC providers, built anew (keys fetched afresh) whenever the watcher has swapped in a
// new spec. A provider set oidc refuses leaves no verifier: every token is refused.
func webIdentityVerifier(current func() *config.Spec, log *slog.Logger) func() sts.WebIdentityVerifier {
	type built struct {
		spec *config.Spec
		v    *oidc.Verifier
	}
	var cur atomic.Pointer[built]
	return func() sts.WebIdentityVerifier {
		spec := current()
		b := cur.Load()
		if b == nil || b.spec != spec {
			// The spec admits http issuers on loopback only (config.httpsURL): a provider on
			// the same host, as the tests and local development run one.
			v, err := oidc.New(oidc.Config{Providers: spec.OIDCProviders, Logger: log, AllowInsecureLoopback: true})
			if err != nil {
				log.Error("oidc providers unusable; refusing web identity tokens", "component", "sts", "error", err)
				v = nil
			}
			b = &built{spec: spec, v: v}
			cur.Store(b)
		}
		if b.v == nil {
			return nil // not a typed nil: the handler refuses
		}
		return b.v
	}
}
