package perimeter

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/console"
	"github.com/phantom-perimeter/phantom/internal/login"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// DefaultConsoleListen is where phantom console listens without --listen: the demo's
// port base (8443) + 9.
const DefaultConsoleListen = "127.0.0.1:8452"

// RunConsole runs the web console until ctx ends.
func RunConsole(ctx context.Context, cfg ProcessConfig) error {
	c, err := openProcess(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.shutdown()
	spec := c.w.Current()
	stsURL := cmp.Or(cfg.STS, "https://"+listenAddr("", spec.STS.Listen, DefaultSTSListen))
	h, err := newConsole(c.w.Current, c.p, AuditDir(cfg.DataDir, spec), c.logs.Get(cfg.Chain), stsURL, c.log)
	if err != nil {
		return err
	}
	listen := listenAddr(cfg.Listen, netip.AddrPort{}, DefaultConsoleListen)
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
	fmt.Fprintf(cfg.Stderr, "phantom console: listening on https://%s\n", ln.Addr())
	c.serving(c.freshCheck())
	return waitAndShutdown(ctx, c.log, "console", srv)
}

// newConsole builds the web console over the perimeter's store and identity service; its
// own events go to auditor (the "console" chain) and its decisions page reads every chain
// in auditDir. Single sign-on exchanges ID tokens at the STS at stsURL, whose certificate
// is the perimeter CA's.
func newConsole(current func() *config.Spec, p *Perimeter, auditDir string, auditor console.Auditor, stsURL string, log *slog.Logger) (http.Handler, error) {
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
func consoleTLSConfig(p *Perimeter, spec *config.Spec, ln net.Listener) (*tls.Config, error) {
	certs, err := newCertSource(p.Issuer, serverRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: "console"}, []net.Addr{ln.Addr()}))
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.getServer}, nil
}
