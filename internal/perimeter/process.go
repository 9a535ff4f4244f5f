package perimeter

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/enroll"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// ProcessConfig is what a standalone component process runs with: cmd/phantom's flags,
// validated, and its logger.
type ProcessConfig struct {
	// Name is the kind of process: gateway, sts, endpoint, egress, detector or console.
	Name string
	// Config is the perimeter spec's path; DataDir the data directory; StoreURL "" for
	// SQLite in it, or a postgres:// URL of a store shared by replicas.
	Config, DataDir, StoreURL string
	// Listen is the listen address ("": the spec's, else the component's default).
	Listen string
	// Poll is how often state is resynced from the store; MaxStale how long the process
	// decides on state the store has not confirmed (0: unbounded).
	Poll, MaxStale time.Duration
	// Chain is this process's audit chain; Anchors more anchor stores (postgres:// URLs).
	Chain   string
	Anchors []string
	// Events is --events: the NATS broker the process publishes its audit records to
	// (and a detector reads them from), over the spec's events setting.
	Events EventsFlags
	// OpsListen is the ops listener's address ("": none).
	OpsListen string
	// Endpoints are endpoints a gateway process runs in process, handing their requests
	// to its gateway in memory (gateway --endpoint); each writes the chain
	// EndpointChain(Chain, id).
	Endpoints []string
	// Handoff is how callers' connections pass between an endpoint process and the
	// gateway process that terminates their TLS.
	Handoff HandoffConfig
	// KeysFile is the component key file ("": the master key); STS and JoinToken are
	// where and how a process without the CA's issuing key enrolls.
	KeysFile, STS, JoinToken string
	// OpenKeyToken opens the PKCS#11 token (--pkcs11-module) holding the keys InToken
	// names; nil, or a nil token: none (the store and memory).
	OpenKeyToken func() (KeyToken, error)
	InToken      TokenKeys
	// Stderr receives the "listening on" lines; Log the process's log.
	Stderr io.Writer
	Log    *slog.Logger
}

// Handoff modes of an endpoint process (endpoint --handoff).
const (
	// HandoffHTTP: the endpoint terminates the caller's TLS and re-proxies each request
	// to the gateway over pooled mTLS connections (the endpoint holds its serving key).
	HandoffHTTP = "http"
	// HandoffFD: the endpoint passes each admitted connection's descriptor to the gateway
	// on the same host over a Unix socket; the gateway terminates TLS.
	HandoffFD = "fd"
	// HandoffTunnel: the endpoint splices each admitted connection through a pre-dialed
	// mTLS tunnel to the gateway's --tunnel-listen; the gateway terminates TLS.
	HandoffTunnel = "tunnel"
)

// HandoffConfig is the handoff of callers' connections from endpoint processes to
// gateway processes, as either side runs it.
type HandoffConfig struct {
	// Mode is the endpoint process's: HandoffHTTP ("" too), HandoffFD or HandoffTunnel.
	Mode string
	// Endpoints are the endpoints a gateway process terminates TLS for on behalf of
	// their own processes (gateway --handoff-endpoint).
	Endpoints []string
	// Dir holds the Unix sockets, one per endpoint (HandoffSocket); "" is
	// DATA_DIR/handoff.
	Dir string
	// TunnelListen is where a gateway accepts tunnels ("": none).
	TunnelListen string
	// PeerUIDs are the uids the process at the other end of a Unix socket may run as;
	// empty is this process's own.
	PeerUIDs []uint32
}

// SocketDir is the directory of the handoff sockets.
func (h HandoffConfig) SocketDir(dataDir string) string {
	if h.Dir != "" {
		return h.Dir
	}
	return filepath.Join(dataDir, "handoff")
}

func (h HandoffConfig) othersAllowed() bool {
	for _, u := range h.PeerUIDs {
		if int(u) != os.Getuid() {
			return true
		}
	}
	return false
}

// KeyToken is a key provider (hsm.Token) holding some of a process's keys, closed when
// the process stops.
type KeyToken interface {
	IssuingKeys
	identity.TokenSigningKeys
	AuditKeys
	Close() error
}

// TokenKeys say which of a process's keys are in its KeyToken.
type TokenKeys struct {
	Issuing      bool // the issuing CAs' keys (STS): it signs certificates there
	TokenSigning bool // the session-token signing keys (STS)
	Audit        bool // the audit writers' keys (any component)
}

// process is what a standalone component process opens: the spec watcher, the
// perimeter's identity service and CA, and its audit chain.
type process struct {
	w    *config.Watcher
	p    *Perimeter
	logs *Chains
	spec *specTracker
	log  *slog.Logger
	ops  *ops // nil without --ops-listen
	// events is the connection to the event broker; nil without one.
	events *eventsConn
	name   string
	stop   context.CancelFunc
	// runCtx ends when the process shuts down: its background loops run under it.
	runCtx context.Context
	wg     sync.WaitGroup
	close  []func()
}

// openProcess opens what every component process runs on and starts its background
// loops; shutdown stops them and closes what it opened, newest first.
func openProcess(ctx context.Context, cfg ProcessConfig) (*process, error) {
	name, stderr := cfg.Name, cfg.Stderr
	log := cfg.Log
	c := &process{log: log, name: name, spec: newSpecTracker(name, cfg.Config, log)}
	w, err := config.NewWatcher(ctx, config.WatchConfig{Path: cfg.Config, Logger: c.log, OnReload: c.spec.watch})
	if err != nil {
		return nil, fmt.Errorf("load perimeter spec: %w", err)
	}
	c.w = w
	c.close = append(c.close, func() { w.Close() })
	spec := w.Current()
	c.spec.loaded(spec)
	var tok KeyToken
	if cfg.OpenKeyToken != nil {
		if tok, err = cfg.OpenKeyToken(); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	o := Options{DataDir: cfg.DataDir, StoreURL: cfg.StoreURL, Account: spec.Account, Poll: cfg.Poll, MaxStale: cfg.MaxStale,
		Component: keys.Component(name), KeysFile: cfg.KeysFile}
	if tok != nil {
		c.close = append(c.close, func() { tok.Close() })
		if cfg.InToken.Issuing {
			o.IssuingKeys = tok
		}
		if cfg.InToken.TokenSigning {
			o.TokenSigningKeys = tok
		}
		if cfg.InToken.Audit {
			o.AuditKeys = tok
		}
	}
	c.p, err = Open(ctx, o, c.log)
	if err != nil {
		c.shutdown()
		return nil, err
	}
	c.close = append(c.close, func() { c.p.Store.Close() })
	if c.p.Issuer == nil {
		// A host without the CA's issuing key: its certificate comes from STS.
		if ids := append(append([]string(nil), cfg.Endpoints...), cfg.Handoff.Endpoints...); len(ids) > 0 {
			// Enrolled, the process holds one certificate, its own: none naming an endpoint
			// for callers, nor the endpoint's audit chain. Refuse rather than serve callers
			// the gateway's certificate.
			c.shutdown()
			flag := "--endpoint"
			if len(cfg.Endpoints) == 0 {
				flag = "--handoff-endpoint"
			}
			return nil, &UsageError{Err: fmt.Errorf("%s needs the CA's issuing key on this host (an enrolled %s holds only its own certificate, none naming an endpoint to serve callers with): run phantom endpoint for %s with --handoff http instead", flag, name, strings.Join(ids, ", "))}
		}
		cl, err := enrollComponent(ctx, cfg, spec, c.p, c.log)
		if err != nil {
			c.shutdown()
			return nil, err
		}
		c.close = append(c.close, cl.Close)
		c.p.Issuer = cl
	}
	if err := c.p.CA.WriteBundle(filepath.Join(cfg.DataDir, "ca.pem")); err != nil {
		c.shutdown()
		return nil, fmt.Errorf("write CA bundle: %w", err)
	}
	sinks, closeSinks, err := openAnchorSinks(ctx, cfg.Anchors)
	if err != nil {
		c.shutdown()
		return nil, err
	}
	c.close = append(c.close, closeSinks)
	chains := []string{cfg.Chain}
	for _, id := range cfg.Endpoints {
		chains = append(chains, EndpointChain(cfg.Chain, id))
	}
	for _, id := range cfg.Handoff.Endpoints {
		chains = append(chains, HandoffChain(cfg.Chain, id))
	}
	if c.logs, err = OpenChains(AuditDir(cfg.DataDir, spec), chains, c.p, spec.Account, sinks, c.log); err != nil {
		c.shutdown()
		return nil, err
	}
	c.close = append(c.close, func() { c.logs.CloseAll(c.log) })
	c.spec.attach(c.logs)
	if cfg.OpsListen != "" {
		c.ops = newOps(name)
		if err := c.ops.start(cfg.OpsListen, c.p.Issuer, spec.Account, stderr, c.log); err != nil {
			c.shutdown()
			return nil, err
		}
		c.close = append(c.close, c.ops.close)
		// /readyz turns 503 as soon as a signal starts the graceful shutdown.
		context.AfterFunc(ctx, c.ops.drain)
	}
	c.spec.serve(c.ops)
	runCtx, stop := context.WithCancel(ctx)
	c.stop, c.runCtx = stop, runCtx
	if err := c.startPublisher(ctx, cfg, spec); err != nil {
		c.shutdown()
		return nil, err
	}
	c.wg.Add(4)
	go func() {
		defer c.wg.Done()
		_ = c.p.IDs.Run(runCtx) // returns when runCtx ends; failures are logged by identity
	}()
	go func() {
		defer c.wg.Done()
		c.p.syncCA(runCtx, filepath.Join(cfg.DataDir, "ca.pem"), c.log)
	}()
	go func() {
		defer c.wg.Done()
		c.spec.run(runCtx, c.p.Store, cfg.Poll, reloadInterval(cfg.Poll))
	}()
	go func() {
		defer c.wg.Done()
		c.logs.renewWriters(runCtx, writerCheckInterval(cfg.Poll), c.log)
	}()
	if cfg.KeysFile != "" {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.p.watchKeyFile(runCtx, cfg.KeysFile, keys.Component(name), cfg.Poll, c.log)
		}()
	}
	return c, nil
}

// startPublisher connects to the event broker, when there is one, and publishes the
// process's chain to it in the background until the process shuts down.
func (c *process) startPublisher(ctx context.Context, cfg ProcessConfig, spec *config.Spec) error {
	b, ok, err := cfg.Events.broker(spec)
	if err != nil || !ok {
		return err
	}
	ec, err := openEvents(b, cfg.Chain, c.log)
	if err != nil {
		return err
	}
	c.events = ec
	c.close = append(c.close, ec.nc.Close)
	pub, err := publishChains(ctx, ec, c.logs, cfg.DataDir, spec.Account, c.log)
	if err != nil {
		return err
	}
	if c.ops != nil {
		c.ops.addNotes(publisherNotes(pub))
	}
	c.log.Info("events: publishing the audit chain", "chain", cfg.Chain, "broker", describeBroker(b), "stream", b.Stream)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		pub.Run(c.runCtx)
	}()
	return nil
}

// componentKinds are the certificate identities of the components that enroll.
var componentKinds = map[string]pki.Kind{
	"gateway": pki.KindGateway, "endpoint": pki.KindEndpoint, "egress": pki.KindEgress,
	"detector": pki.KindDetector, "console": pki.KindConsole,
}

// enrollComponent opens the component's certificate from STS's process API: the one in
// its state directory (DATA_DIR/component/CHAIN), else enrolled with the join token.
// STS's certificate is checked against the CA bundle the store holds.
func enrollComponent(ctx context.Context, cfg ProcessConfig, spec *config.Spec, p *Perimeter, log *slog.Logger) (*enroll.Client, error) {
	name := cfg.Name
	kind, ok := componentKinds[name]
	if !ok {
		return nil, fmt.Errorf("%s: this process holds no CA issuing key (store-ca) and cannot enroll: give it a key file that holds one, or the master key", name)
	}
	stsURL := cmp.Or(cfg.STS, "https://"+listenAddr("", spec.STS.Listen, DefaultSTSListen))
	cl, err := enroll.Open(ctx, enroll.Config{
		STS:       stsURL,
		CABundle:  p.CA.BundlePEM(),
		StateDir:  filepath.Join(cfg.DataDir, "component", cfg.Chain),
		JoinToken: cfg.JoinToken,
		Kind:      kind,
		// A CA rotation renews the certificate within a poll of the trust (syncCA).
		NewerIssuing: p.CA.NewerIssuing,
		Logger:       log,
	})
	if err != nil {
		return nil, fmt.Errorf("%s certificate from STS %s: %w", name, stsURL, err)
	}
	log.Info(name+": certificate from STS", "identity", cl.Identity().String(), "sts", stsURL)
	return cl, nil
}

// serving tells /readyz that the component's listeners serve: ready while checks hold
// and its audit chains can be written.
func (c *process) serving(checks ...readyCheck) {
	c.ops.serving(append(checks, c.logs.readyCheck())...)
}

// freshCheck is the readiness check of a process that decides on the identity
// service's state.
func (c *process) freshCheck() readyCheck {
	return readyCheck{Name: "perimeter state", Check: c.p.IDs.Fresh}
}

// riskLevels gives the process the risk levels the detector raised (phantom:RiskLevel):
// loaded now, then kept current from the store until the process shuts down; and its
// freshness hook, which fails once credentials or risk levels have not been confirmed by
// the store within --max-stale. The process handles no findings: its responder only
// reads risk levels.
func (c *process) riskLevels(ctx context.Context, cfg ProcessConfig) (*respond.Responder, func() error, error) {
	risk, err := newResponder(c.w.Current, c.p, c.logs.Get(cfg.Chain), c.log)
	if err != nil {
		return nil, nil, err
	}
	if err := risk.Refresh(ctx); err != nil {
		return nil, nil, err
	}
	fresh := &freshness{MaxStale: cfg.MaxStale}
	fresh.mark(time.Now())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.p.syncRisk(c.runCtx, risk, fresh, c.log)
	}()
	return risk, c.p.gatewayFreshness(fresh), nil
}

// shutdown stops the refresh loop and closes what was opened, newest first.
func (c *process) shutdown() {
	c.ops.drain()
	if c.stop != nil {
		c.stop()
		c.wg.Wait()
	}
	for i := len(c.close) - 1; i >= 0; i-- {
		c.close[i]()
	}
}

// waitAndShutdown serves until ctx ends or the server fails, then shuts down gracefully.
func waitAndShutdown(ctx context.Context, log *slog.Logger, name string, srv *httpsServer) error {
	select {
	case err := <-srv.Done:
		return fmt.Errorf("serve %s: %w", name, err)
	case <-ctx.Done():
	}
	log.Info(name + ": shutting down; finishing in-flight requests")
	shutdownCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
	defer done()
	return srv.shutdown(shutdownCtx)
}
