package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
)

// defaultPortBase is where the demo's listeners start: endpoint 8443, STS 8444, gateway
// 8445, demo backend 8446, the demo node's agent (IMDS 8447, container credentials 8448,
// its egress relay 8449; the egress proxy itself takes free ports), the findings API 8450
// and the web console 8452 (all on 127.0.0.1; 8451 is kept for the operations listener).
const defaultPortBase = 8443

// demoPorts is how many consecutive ports the demo takes from --port-base.
const demoPorts = 10

type upFlags struct {
	dataDir  string
	config   string
	portBase int
	// portBaseSet: --port-base was given (else the demo spec's own ports decide).
	portBaseSet bool
	// regenerateSpec replaces an existing demo spec (kept beside it) with a fresh one.
	regenerateSpec bool
	poll           time.Duration
	// nodeSession is the demo agent's credential lifetime (0: STS's default).
	nodeSession time.Duration
	opsListen   string   // "": 127.0.0.1, port base + opsPort
	log         logFlags // the root's --log-format and --log-level
	anchors     []string // --audit-anchors
}

func newUpCmd() *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:   "up [--data-dir DIR] [--config FILE] [--port-base N]",
		Short: "Run the whole perimeter on one machine with embedded defaults",
		Long: `up runs the whole perimeter in one process on loopback: the CA, STS, the demo endpoint
(TLS only, security-group rules), the gateway (SigV4 + IAM on every call), a demo orders
backend, a demo user with an access key, the Service-A role the demo user may assume, and
a resource policy that admits the orders API only through the demo endpoint AND with the
right credentials. Every decision is written to the tamper-evident audit log in
DIR/audit (check it with phantom audit verify DIR/audit).

On first start it writes the demo spec to DIR/perimeter.yaml; from then on that file is
yours: edits are picked up while it runs and kept across restarts (--regenerate-spec
writes a fresh one, keeping the old one as DIR/perimeter.yaml.TIME.bak). Every start
writes DIR/demo.env (shell export lines for the AWS CLI, SDKs and curl, including
PHANTOM_CONFIG and PHANTOM_DATA_DIR for the admin commands) and DIR/aws-config (AWS
profiles: phantom-demo-user, the demo user's key, and phantom-demo, sessions of the
Service-A role through credential_process), and prints commands to try.

Listeners take ten consecutive ports from --port-base (endpoint, STS, gateway, backend,
agent IMDS and container credentials, egress proxy, findings API, metrics, web console);
--port-base 0 picks free ports. Once the spec exists, the endpoint, STS, gateway and
backend listen where it says; a --port-base that disagrees with it is refused rather than
serving an endpoint whose security group admits another port. One phantom up at a time
may use a data directory (DIR/up.lock): a second one fails before it writes anything.

With --config it runs your spec instead: its STS, gateway and endpoints, without the demo
backend, user, demo.env or aws-config.

Prometheus metrics of every component it runs are at https://127.0.0.1:PORT/metrics, PORT
being port base + 8 (--ops-listen moves it), with /healthz and /readyz (200 once every
listener serves and the perimeter state is fresh; 503 with the reason otherwise); the
certificate is from the perimeter CA (scrape with ca_file DIR/ca.pem). demo.env has the
URL as PHANTOM_METRICS_URL.

SIGINT or SIGTERM stops it, finishing in-flight requests first.`,
		Example: `  phantom up
  source phantom-data/demo.env && curl --cacert "$AWS_CA_BUNDLE" --aws-sigv4 "aws:amz:$AWS_REGION:execute-api" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$PHANTOM_API_URL"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f.log = logFlagsOf(cmd)
			f.portBaseSet = cmd.Flags().Changed("port-base")
			return runUp(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "./phantom-data", "data directory: store, master key, CA, audit log, demo.env")
	fl.StringVar(&f.config, "config", "", "run this perimeter spec instead of the embedded demo")
	fl.IntVar(&f.portBase, "port-base", defaultPortBase, "first of the demo's ten consecutive loopback ports; 0 picks free ports")
	fl.DurationVar(&f.poll, "poll", identity.DefaultRefreshInterval, "how often to pick up key, revocation and sealing-key changes from the store")
	fl.StringVar(&f.opsListen, "ops-listen", "", "serve GET /metrics (Prometheus), /healthz and /readyz over HTTPS on this address (default: 127.0.0.1, port base + 8)")
	fl.BoolVar(&f.regenerateSpec, "regenerate-spec", false, "replace DIR/perimeter.yaml with a fresh demo spec (the current one, edits included, is kept as perimeter.yaml.TIME.bak)")
	fl.DurationVar(&f.nodeSession, "node-session-duration", 0, "lifetime of the demo node agent's credentials (default: STS's, one hour capped by the role)")
	fl.StringArrayVar(&f.anchors, "audit-anchors", nil, auditAnchorsHelp)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	return cmd
}

func runUp(ctx context.Context, stdout, stderr io.Writer, f upFlags) error {
	if f.poll <= 0 {
		return &exitError{code: 2, err: fmt.Errorf("--poll %s is not positive", f.poll)}
	}
	if f.nodeSession != 0 && f.nodeSession < 15*time.Second {
		return &exitError{code: 2, err: fmt.Errorf("--node-session-duration %s is below STS's minimum of 15s", f.nodeSession)}
	}
	if f.portBase < 0 || f.portBase > 65535-demoPorts+1 {
		return &exitError{code: 2, err: fmt.Errorf("--port-base %d is not a port", f.portBase)}
	}
	log, err := newLogger(stderr, f.log)
	if err != nil {
		return err
	}
	return perimeter.Up(ctx, perimeter.UpConfig{
		DataDir: f.dataDir, Config: f.config, PortBase: f.portBase, PortBaseSet: f.portBaseSet,
		RegenerateSpec: f.regenerateSpec, Poll: f.poll, NodeSession: f.nodeSession,
		OpsListen: f.opsListen, Anchors: auditAnchorURLs(f.anchors),
		Stdout: stdout, Stderr: stderr, Log: log,
	})
}
