package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/enroll"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

type componentFlags struct {
	config   string
	dataDir  string
	store    string
	listen   string
	poll     time.Duration
	maxStale time.Duration
	chain    string
	// opsListen is --ops-listen ("": no metrics, health or readiness listener); log the
	// root's --log-format and --log-level, set from the command before it runs.
	opsListen string
	log       logFlags
	// anchors are --audit-anchors: more anchor stores than the store.
	anchors []string
	// keys is --keys, the component key file ("": the master key); sts and joinToken
	// are where and how a process without the CA's issuing key enrolls.
	keys      string
	sts       string
	joinToken string
	// pkcs11 is STS's token holding the issuing CAs' keys (phantom ca --pkcs11-issuing).
	pkcs11 pkcs11Flags
}

func (f *componentFlags) register(cmd *cobra.Command, chainDefault string) {
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "perimeter spec file (required)")
	fl.StringVar(&f.dataDir, "data-dir", "", "data directory: master key, audit chains, CA bundle, and the store and CA unless --store is shared (required)")
	fl.StringVar(&f.store, "store", os.Getenv("PHANTOM_STORE"), "store URL: empty for SQLite in the data directory, or postgres://… (also the CA's home) shared by replicas (default $PHANTOM_STORE)")
	fl.DurationVar(&f.poll, "poll", identity.DefaultRefreshInterval, "how often to resync keys, revocations, sealing keys and risk levels from the store (changes are also pushed by PostgreSQL)")
	fl.DurationVar(&f.maxStale, "max-stale", perimeter.DefaultMaxStale, "refuse every call once the store has not confirmed the state for this long (0: never)")
	fl.StringVar(&f.chain, "audit-chain", chainDefault, "name of this process's audit chain (one per replica)")
	fl.StringVar(&f.opsListen, "ops-listen", "", opsListenHelp)
	fl.StringArrayVar(&f.anchors, "audit-anchors", nil, auditAnchorsHelp)
	fl.StringVar(&f.keys, "keys", os.Getenv(keys.FileEnv), "component key file (phantom keys export): the keys of this kind of process only, instead of the master key (default $"+keys.FileEnv+")")
	fl.StringVar(&f.sts, "sts", os.Getenv("PHANTOM_STS_URL"), "STS URL: where a process holding no CA key enrolls and renews its certificate, and where the console's single sign-on exchanges ID tokens (default $PHANTOM_STS_URL, else https:// and the spec's sts.listen)")
	fl.StringVar(&f.joinToken, "join-token", os.Getenv("PHANTOM_JOIN_TOKEN"), "join token (phantom ca join-token) a process holding no CA key enrolls with, once (default $PHANTOM_JOIN_TOKEN)")
	for _, name := range []string{"config", "data-dir"} {
		cmd.MarkFlagRequired(name)
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
}

// component is what a standalone component process opens: the spec watcher, the
// perimeter's identity service and CA, and its audit chain.
type component struct {
	w    *config.Watcher
	p    *perimeter.Perimeter
	logs *perimeter.Chains
	spec *perimeter.SpecTracker
	log  *slog.Logger
	ops  *perimeter.Ops // nil without --ops-listen
	name string
	stop context.CancelFunc
	// runCtx ends when the component shuts down: its background loops run under it.
	runCtx context.Context
	wg     sync.WaitGroup
	close  []func()
}

func openComponent(ctx context.Context, stderr io.Writer, name string, f componentFlags) (*component, error) {
	if f.poll <= 0 {
		return nil, &exitError{code: 2, err: fmt.Errorf("--poll %s is not positive", f.poll)}
	}
	if f.maxStale < 0 || (f.maxStale > 0 && f.maxStale <= f.poll) {
		return nil, &exitError{code: 2, err: fmt.Errorf("--max-stale %s must be 0 or longer than --poll %s", f.maxStale, f.poll)}
	}
	if !audit.ValidChain(f.chain) {
		return nil, &exitError{code: 2, err: fmt.Errorf("--audit-chain %q: use lower-case letters, digits and dashes", f.chain)}
	}
	log, err := newLogger(stderr, f.log)
	if err != nil {
		return nil, err
	}
	c := &component{log: log, name: name, spec: perimeter.NewSpecTracker(name, f.config, log)}
	w, err := config.NewWatcher(ctx, config.WatchConfig{Path: f.config, Logger: c.log, OnReload: c.spec.Watch})
	if err != nil {
		return nil, fmt.Errorf("load perimeter spec: %w", err)
	}
	c.w = w
	c.close = append(c.close, func() { w.Close() })
	spec := w.Current()
	c.spec.Loaded(spec)
	tok, err := f.pkcs11.open()
	if err != nil {
		c.shutdown()
		return nil, err
	}
	o := perimeter.Options{DataDir: f.dataDir, StoreURL: f.store, Account: spec.Account, Poll: f.poll, MaxStale: f.maxStale,
		Component: keys.Component(name), KeysFile: f.keys}
	if tok != nil {
		c.close = append(c.close, func() { tok.Close() })
		o.IssuingKeys = tok
	}
	c.p, err = perimeter.Open(ctx, o, c.log)
	if err != nil {
		c.shutdown()
		return nil, err
	}
	c.close = append(c.close, func() { c.p.Store.Close() })
	if c.p.Issuer == nil {
		// A host without the CA's issuing key: its certificate comes from STS.
		cl, err := enrollComponent(ctx, f, name, spec, c.p, c.log)
		if err != nil {
			c.shutdown()
			return nil, err
		}
		c.close = append(c.close, cl.Close)
		c.p.Issuer = cl
	}
	if err := c.p.CA.WriteBundle(filepath.Join(f.dataDir, "ca.pem")); err != nil {
		c.shutdown()
		return nil, fmt.Errorf("write CA bundle: %w", err)
	}
	sinks, closeSinks, err := perimeter.OpenAnchorSinks(ctx, auditAnchorURLs(f.anchors))
	if err != nil {
		c.shutdown()
		return nil, err
	}
	c.close = append(c.close, closeSinks)
	if c.logs, err = perimeter.OpenChains(perimeter.AuditDir(f.dataDir, spec), []string{f.chain}, c.p, spec.Account, sinks, c.log); err != nil {
		c.shutdown()
		return nil, err
	}
	c.close = append(c.close, func() { c.logs.CloseAll(c.log) })
	c.spec.Attach(c.logs)
	if f.opsListen != "" {
		c.ops = perimeter.NewOps(name)
		if err := c.ops.Start(f.opsListen, c.p.Issuer, spec.Account, stderr, c.log); err != nil {
			c.shutdown()
			return nil, err
		}
		c.close = append(c.close, c.ops.Close)
		// /readyz turns 503 as soon as a signal starts the graceful shutdown.
		context.AfterFunc(ctx, c.ops.Drain)
	}
	c.spec.Serve(c.ops)
	runCtx, stop := context.WithCancel(ctx)
	c.stop, c.runCtx = stop, runCtx
	c.wg.Add(4)
	go func() {
		defer c.wg.Done()
		_ = c.p.IDs.Run(runCtx) // returns when runCtx ends; failures are logged by identity
	}()
	go func() {
		defer c.wg.Done()
		c.p.SyncCA(runCtx, filepath.Join(f.dataDir, "ca.pem"), c.log)
	}()
	go func() {
		defer c.wg.Done()
		c.spec.Run(runCtx, c.p.Store, f.poll, perimeter.ReloadInterval(f.poll))
	}()
	go func() {
		defer c.wg.Done()
		c.logs.RenewWriters(runCtx, time.Hour, c.log)
	}()
	return c, nil
}

// componentKinds are the certificate identities of the components that enroll.
var componentKinds = map[string]pki.Kind{
	"gateway": pki.KindGateway, "endpoint": pki.KindEndpoint, "egress": pki.KindEgress,
	"detector": pki.KindDetector, "console": pki.KindConsole,
}

// enrollComponent opens the component's certificate from STS's component API: the one in
// its state directory (DATA_DIR/component/CHAIN), else enrolled with the join token.
// STS's certificate is checked against the CA bundle the store holds.
func enrollComponent(ctx context.Context, f componentFlags, name string, spec *config.Spec, p *perimeter.Perimeter, log *slog.Logger) (*enroll.Client, error) {
	kind, ok := componentKinds[name]
	if !ok {
		return nil, fmt.Errorf("%s: this process holds no CA issuing key (store-ca) and cannot enroll: give it a key file that holds one, or the master key", name)
	}
	stsURL := cmp.Or(f.sts, "https://"+perimeter.ListenAddr("", spec.STS.Listen, defaultSTSListen))
	cl, err := enroll.Open(ctx, enroll.Config{
		STS:       stsURL,
		CABundle:  p.CA.BundlePEM(),
		StateDir:  filepath.Join(f.dataDir, "component", f.chain),
		JoinToken: f.joinToken,
		Kind:      kind,
		Logger:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("%s certificate from STS %s: %w", name, stsURL, err)
	}
	log.Info(name+": certificate from STS", "identity", cl.Identity().String(), "sts", stsURL)
	return cl, nil
}

// serving tells /readyz that the component's listeners serve: ready while checks hold
// and its audit chains can be written.
func (c *component) serving(checks ...perimeter.ReadyCheck) {
	c.ops.Serving(append(checks, c.logs.ReadyCheck())...)
}

// freshCheck is the readiness check of a component that decides on the identity
// service's state.
func (c *component) freshCheck() perimeter.ReadyCheck {
	return perimeter.ReadyCheck{Name: "perimeter state", Check: c.p.IDs.Fresh}
}

// riskLevels gives the component the risk levels the detector raised (phantom:RiskLevel):
// loaded now, then kept current from the store until the component shuts down; and its
// freshness hook, which fails once credentials or risk levels have not been confirmed by
// the store within --max-stale. The component handles no findings: its responder only
// reads risk levels.
func (c *component) riskLevels(ctx context.Context, f componentFlags) (*respond.Responder, func() error, error) {
	risk, err := perimeter.NewResponder(c.w.Current, c.p, c.logs.Get(f.chain), c.log)
	if err != nil {
		return nil, nil, err
	}
	if err := risk.Refresh(ctx); err != nil {
		return nil, nil, err
	}
	fresh := &perimeter.Freshness{MaxStale: f.maxStale}
	fresh.Mark(time.Now())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.p.SyncRisk(c.runCtx, risk, fresh, c.log)
	}()
	return risk, c.p.GatewayFreshness(fresh), nil
}

// shutdown stops the refresh loop and closes what was opened, newest first.
func (c *component) shutdown() {
	c.ops.Drain()
	if c.stop != nil {
		c.stop()
		c.wg.Wait()
	}
	for i := len(c.close) - 1; i >= 0; i-- {
		c.close[i]()
	}
}

func newGatewayCmd() *cobra.Command {
	var f componentFlags
	cmd := &cobra.Command{
		Use:   "gateway --config FILE --data-dir DIR [--listen ADDR]",
		Short: "Serve the APIs of the perimeter spec: SigV4 and IAM on every call, then the backend",
		Long: `gateway serves the spec's APIs over HTTPS (TLS 1.2 or later, certificate from the perimeter
CA in DIR/ca). Every call is authorized in one decision: SigV4, the session token, revocation,
the caller's identity policies, permissions boundary and session policy, the API's resource
policy and, for calls that come through an endpoint (known only from the endpoint's mTLS
certificate), that endpoint's policy. Allowed calls reach the route's backend with a signed
identity assertion (X-Phantom-Identity; keys at /.well-known/phantom/jwks.json). Every call
is one CloudTrail event in the audit chain --audit-chain under the spec's audit.dir.

When it is ready it prints "phantom gateway: listening on https://ADDR" on stderr.`,
		Example: `  phantom gateway --config perimeter.yaml --data-dir /var/lib/phantom

  # two replicas on one shared PostgreSQL store, each with its own audit chain
  export PHANTOM_STORE='postgres://phantom:…@db.internal:5432/phantom?sslmode=verify-full' PHANTOM_MASTER_KEY=…
  phantom gateway --config perimeter.yaml --data-dir /var/lib/phantom --audit-chain gateway-1 --listen 10.0.1.10:8445
  phantom gateway --config perimeter.yaml --data-dir /var/lib/phantom --audit-chain gateway-2 --listen 10.0.1.11:8445`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f.log = logFlagsOf(cmd)
			return runGateway(ctx, cmd.ErrOrStderr(), f)
		},
	}
	f.register(cmd, "gateway")
	cmd.Flags().StringVar(&f.listen, "listen", "", "TLS listen address (default: the spec's gateway.listen, else "+perimeter.DefaultGatewayListen+")")
	return cmd
}

func runGateway(ctx context.Context, stderr io.Writer, f componentFlags) error {
	c, err := openComponent(ctx, stderr, "gateway", f)
	if err != nil {
		return err
	}
	defer c.shutdown()
	spec := c.w.Current()
	listen := perimeter.ListenAddr(f.listen, spec.Gateway.Listen, perimeter.DefaultGatewayListen)
	risk, fresh, err := c.riskLevels(ctx, f)
	if err != nil {
		return err
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.p.SweepSignatures(c.runCtx, c.log)
	}()
	c.ops.IdentityMetrics(c.p, fresh)
	gw, err := perimeter.NewGateway(c.w.Current, c.p, c.logs.Get(f.chain), risk, fresh, c.ops.GatewayMetrics(), c.log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	certs, err := perimeter.NewCertSource(c.p.Issuer, perimeter.ServerRequest(pki.Identity{Account: spec.Account, Kind: pki.KindGateway, Name: spec.Gateway.Name}, []net.Addr{ln.Addr()}))
	if err != nil {
		ln.Close()
		return err
	}
	srv := perimeter.ServeGateway(ln, gw, gw.TLSConfig(certs.GetServer))
	fmt.Fprintf(stderr, "phantom gateway: listening on https://%s\n", ln.Addr())
	c.serving(perimeter.ReadyCheck{Name: "perimeter state", Check: fresh})
	return waitAndShutdown(ctx, c.log, "gateway", srv)
}

// waitAndShutdown serves until ctx ends or the server fails, then shuts down gracefully.
func waitAndShutdown(ctx context.Context, log *slog.Logger, name string, srv *perimeter.HTTPSServer) error {
	select {
	case err := <-srv.Done:
		return fmt.Errorf("serve %s: %w", name, err)
	case <-ctx.Done():
	}
	log.Info(name + ": shutting down; finishing in-flight requests")
	shutdownCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
	defer done()
	return srv.Shutdown(shutdownCtx)
}
