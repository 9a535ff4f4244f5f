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

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
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
	// events are the --events flags: the NATS broker of the audit records.
	events eventsFlags
	// pkcs11 is the token holding the keys --pkcs11-keys names: STS's issuing CAs' keys
	// (phantom ca --pkcs11-issuing) and token-signing keys, any component's audit
	// writer's key.
	pkcs11 pkcs11Flags
	// endpoints are gateway --endpoint: endpoints run in the gateway's process.
	endpoints []string
	// handoff are the flags of the connections endpoint processes hand to the gateway.
	handoff handoffFlags
}

// handoffFlags are the --handoff* flags of phantom endpoint and phantom gateway.
type handoffFlags struct {
	mode      string   // endpoint --handoff
	endpoints []string // gateway --handoff-endpoint
	dir       string
	tunnel    string // gateway --tunnel-listen
	peerUIDs  []uint
}

const handoffDirHelp = "directory of the Unix sockets over which endpoint processes on this host pass their callers' connections to the gateway, one VPCE_ID.sock per endpoint (default DATA_DIR/handoff)"
const handoffUIDHelp = "a uid the process at the other end of a handoff socket may run as (repeatable; default this process's own): the kernel's SO_PEERCRED is checked on every connection, both ways"

func (h handoffFlags) config() perimeter.HandoffConfig {
	c := perimeter.HandoffConfig{Mode: h.mode, Endpoints: h.endpoints, Dir: h.dir, TunnelListen: h.tunnel}
	for _, u := range h.peerUIDs {
		c.PeerUIDs = append(c.PeerUIDs, uint32(u))
	}
	return c
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
	f.events.register(fl)
	fl.StringVar(&f.joinToken, "join-token", os.Getenv("PHANTOM_JOIN_TOKEN"), "join token (phantom ca join-token) a process holding no CA key enrolls with, once (default $PHANTOM_JOIN_TOKEN)")
	f.pkcs11.register(fl, "the keys --pkcs11-keys names")
	fl.StringSliceVar(&f.pkcs11.keys, "pkcs11-keys", nil, "keys kept in the PKCS#11 token, comma-separated: audit (this process's audit writer key) for every component; for sts also issuing (the issuing CAs', phantom ca --pkcs11-issuing) and token-signing (new session-token signing keys are made there; sessions are signed there). Default with --pkcs11-module: issuing for sts, audit for the others")
	for _, name := range []string{"config", "data-dir"} {
		cmd.MarkFlagRequired(name)
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
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
certificate), that endpoint's policy. Allowed calls reach the route's backend with an
identity assertion (X-Phantom-Identity: HS256 under the API's key, phantom keys backend; or,
for an API with assertion: eddsa, Ed25519 with keys at /.well-known/phantom/jwks.json). Every call
is one CloudTrail event in the audit chain --audit-chain under the spec's audit.dir.

With --endpoint VPCE_ID (repeatable) the process also runs that endpoint of the spec on its
listen addresses, exactly as "phantom endpoint" would (TLS only, security group, API
selection, its own audit chain endpoint-VPCE_ID, or GATEWAY_CHAIN-endpoint-VPCE_ID when
--audit-chain is not "gateway"), but hands each admitted request to the gateway in memory
with the endpoint's identity as a typed value instead of over an mTLS hop: the same
decision, without a second TLS termination. This is how "phantom up" runs its endpoints.
The process issues the endpoint's certificate itself, so --endpoint needs the CA's issuing
key on the host; a gateway enrolled with --join-token refuses it (run phantom endpoint).

With --handoff-endpoint VPCE_ID (repeatable) the endpoint runs in a process of its own
(phantom endpoint --handoff fd|tunnel), which only applies the security group at accept and
refuses plaintext on the first byte, then hands the caller's connection, its TLS bytes
untouched, to this process: here it terminates TLS with the endpoint's certificate and makes
every per-request check exactly as --endpoint does, learning the caller's address and
destination port from the handoff and the endpoint from the channel, never from the caller.
Connections arrive over the Unix socket --handoff-dir/VPCE_ID.sock (an endpoint process on
this host passes the socket itself; its uid is checked) and, with --tunnel-listen ADDR,
over mutual TLS tunnels from endpoint processes on other hosts (each tunnel's certificate
must name an endpoint listed here). An endpoint process running as another user than the
gateway needs --handoff-peer-uid on both sides (each names the other's uid; each refuses
any other): the directory is then 0750 and the sockets 0660, reached through their group,
so give the directory a group the endpoint's user is in and the setgid bit (chgrp GROUP
DIR; chmod 2750 DIR) and the sockets created in it are that group's. A socket file a
gateway that died left behind is replaced; one another process still answers on is not (the
gateway refuses to start). What the gateway's part refuses is recorded in the chain
GATEWAY_CHAIN-endpoint-VPCE_ID; the endpoint process records its accept-time refusals in
its own. Like --endpoint, --handoff-endpoint needs the CA's issuing key on this host: an
enrolled gateway refuses it (use phantom endpoint --handoff http).

When it is ready it prints "phantom gateway: listening on https://ADDR" on stderr, then one
line per in-process endpoint listener.`,
		Example: `  phantom gateway --config perimeter.yaml --data-dir /var/lib/phantom

  # two replicas on one shared PostgreSQL store, each with its own audit chain
  export PHANTOM_STORE='postgres://phantom:…@db.internal:5432/phantom?sslmode=verify-full' PHANTOM_MASTER_KEY=…
  phantom gateway --config perimeter.yaml --data-dir /var/lib/phantom --audit-chain gateway-1 --listen 10.0.1.10:8445
  phantom gateway --config perimeter.yaml --data-dir /var/lib/phantom --audit-chain gateway-2 --listen 10.0.1.11:8445

  # the gateway and an endpoint on one host, in one process (no mTLS hop between them)
  phantom gateway --config perimeter.yaml --data-dir /var/lib/phantom --endpoint vpce-0123456789abcdef0

  # the endpoint in a process of its own, on this host (fd) or another (tunnel)
  phantom gateway --config perimeter.yaml --data-dir /var/lib/phantom \
      --handoff-endpoint vpce-0123456789abcdef0 --tunnel-listen 10.0.1.10:8446
  phantom endpoint --config perimeter.yaml --data-dir /var/lib/phantom --id vpce-0123456789abcdef0 --handoff fd`,
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
	cmd.Flags().StringArrayVar(&f.endpoints, "endpoint", nil, "also run this endpoint of the spec (vpce-...) in this process, handing its requests to the gateway in memory (repeatable)")
	cmd.Flags().StringArrayVar(&f.handoff.endpoints, "handoff-endpoint", nil, "terminate TLS for this endpoint of the spec (vpce-...), whose own process (phantom endpoint --handoff fd|tunnel) hands its callers' connections to this one (repeatable)")
	cmd.Flags().StringVar(&f.handoff.dir, "handoff-dir", "", handoffDirHelp)
	cmd.Flags().StringVar(&f.handoff.tunnel, "tunnel-listen", "", "also accept mTLS tunnels carrying callers' connections from the --handoff-endpoint endpoints' processes on other hosts (phantom endpoint --handoff tunnel --gateway ADDR) on this address")
	cmd.Flags().UintSliceVar(&f.handoff.peerUIDs, "handoff-peer-uid", nil, handoffUIDHelp)
	return cmd
}

func runGateway(ctx context.Context, stderr io.Writer, f componentFlags) error {
	cfg, err := f.process("gateway", stderr)
	if err != nil {
		return err
	}
	return perimeter.RunGateway(ctx, cfg)
}

// process validates the flags every component shares (exit 2 on a bad value) and makes
// the process's logger: what perimeter runs the component with.
func (f componentFlags) process(name string, stderr io.Writer) (perimeter.ProcessConfig, error) {
	if f.poll <= 0 {
		return perimeter.ProcessConfig{}, &exitError{code: 2, err: fmt.Errorf("--poll %s is not positive", f.poll)}
	}
	if f.maxStale < 0 || (f.maxStale > 0 && f.maxStale <= f.poll) {
		return perimeter.ProcessConfig{}, &exitError{code: 2, err: fmt.Errorf("--max-stale %s must be 0 or longer than --poll %s", f.maxStale, f.poll)}
	}
	if !audit.ValidChain(f.chain) {
		return perimeter.ProcessConfig{}, &exitError{code: 2, err: fmt.Errorf("--audit-chain %q: use lower-case letters, digits and dashes", f.chain)}
	}
	inToken, err := f.pkcs11.inToken(name)
	if err != nil {
		return perimeter.ProcessConfig{}, &exitError{code: 2, err: err}
	}
	log, err := newLogger(stderr, f.log)
	if err != nil {
		return perimeter.ProcessConfig{}, err
	}
	return perimeter.ProcessConfig{
		Name: name, Config: f.config, DataDir: f.dataDir, StoreURL: f.store, Listen: f.listen,
		Poll: f.poll, MaxStale: f.maxStale, Chain: f.chain, Anchors: auditAnchorURLs(f.anchors),
		Events:    f.events.process(),
		OpsListen: f.opsListen, Endpoints: f.endpoints, Handoff: f.handoff.config(), KeysFile: f.keys, STS: f.sts, JoinToken: f.joinToken,
		OpenKeyToken: func() (perimeter.KeyToken, error) {
			tok, err := f.pkcs11.open()
			if tok == nil {
				return nil, err // not a typed nil: no token
			}
			return tok, nil
		},
		InToken: inToken,
		Stderr:  stderr, Log: log,
	}, nil
}
