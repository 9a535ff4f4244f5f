package perimeter

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/mfa"
	"github.com/phantom-perimeter/phantom/internal/oidc"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/sts"
)

// DefaultSTSListen is where the STS listens when neither --listen nor the spec's
// sts.listen says.
const DefaultSTSListen = "127.0.0.1:8444"

// RunSTS runs an STS process until ctx ends.
func RunSTS(ctx context.Context, cfg ProcessConfig) error {
	c, err := openProcess(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.shutdown()
	spec := c.w.Current()
	listen := listenAddr(cfg.Listen, spec.STS.Listen, DefaultSTSListen)
	c.ops.identityMetrics(c.p, c.p.IDs.Fresh)
	h, err := newSTSHandler(c.w.Current, c.p, c.logs.Get(cfg.Chain), c.ops.stsMetrics(), c.log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	certs, err := newCertSource(c.p.Issuer, serverRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: "sts"}, []net.Addr{ln.Addr()}))
	if err != nil {
		ln.Close()
		return err
	}
	srv := serveHTTPS("sts", ln, h, stsTLSConfig(certs.getServer), c.log)
	bundle := filepath.Join(cfg.DataDir, "ca.pem")
	fmt.Fprintf(cfg.Stderr, "phantom sts: listening on https://%s (CA bundle %s)\n", ln.Addr(), bundle)
	c.log.Info("serving", "component", "sts", "addr", ln.Addr().String(), "account", spec.Account, "region", spec.Region, "ca_bundle", bundle)
	c.serving(c.freshCheck())
	return waitAndShutdown(ctx, c.log, "sts", srv)
}

// newSTSHandler is the STS query API over the perimeter's identity service, the current
// spec and auditor.
func newSTSHandler(current func() *config.Spec, p *Perimeter, auditor sts.Auditor, m sts.Metrics, log *slog.Logger) (*sts.Handler, error) {
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
