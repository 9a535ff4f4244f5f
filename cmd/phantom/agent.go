package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/perimeter"
)

// Default agent listeners, on loopback: workloads on this host only.
const (
	defaultIMDSListen      = "127.0.0.1:8169"
	defaultContainerListen = "127.0.0.1:8170"
	defaultRelayListen     = "127.0.0.1:8171"
)

type agentFlags struct {
	sts, caBundle, stateDir       string
	joinTokenFile                 string
	imdsListen, containerListen   string
	containerTokenFile, egressURL string
	egressTLS, egressListen       string
	sessionDuration               time.Duration
	opsListen                     string
	log                           logFlags
}

func newAgentCmd() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent --sts URL --ca-bundle FILE --state-dir DIR [--join-token-file F]",
		Short: "Run the workload credential agent: IMDSv2 and container credentials for this node's role",
		Long: `agent runs on a workload's host. On its first run it enrolls the host as a node of the
perimeter: it makes a P-256 key (kept in --state-dir, 0600) and redeems the single-use join
token from --join-token-file (made with phantom node join-token; - reads stdin) with STS for
a node certificate from the perimeter CA. Later runs reuse the certificate in --state-dir
(the layout phantom node enroll --out writes) and renew it before it expires.

It proves the node's identity to STS with that certificate and obtains credentials for the
role the spec assigns to the node, bound to the node's network (aws:EC2InstanceSourceVPC,
aws:EC2InstanceSourcePrivateIPv4, its endpoint). It serves them to unmodified AWS SDKs:

  IMDSv2 on --imds-listen:  AWS_EC2_METADATA_SERVICE_ENDPOINT=http://ADDR/
  container credentials on --container-listen:
      AWS_CONTAINER_CREDENTIALS_FULL_URI=http://ADDR/v1/credentials
      AWS_CONTAINER_AUTHORIZATION_TOKEN=<the token written to --container-token-file>

Credentials are refreshed at 2/3 of their lifetime (or 5 minutes before expiry); while STS
is unreachable the agent serves the current ones until shortly before they expire, then
answers 503 — never expired credentials. It keeps a watch open on STS for the session it
serves: when the sessions of its role are revoked (by a detector response or phantom iam
revoke-sessions) it fetches fresh credentials at once, so workloads get working ones
within moments, while the revoked ones stay refused; when the node is removed (phantom
node revoke) it stops serving credentials, whether the watch reports it or STS refuses the
node's certificate on a watch or a refresh. Listeners must be loopback or link-local
addresses; IMDS responses leave with IP TTL 1.

The egress proxy, for workloads (served by IMDS at /latest/meta-data/phantom/egress-proxy):
  --egress-tls HOST:PORT   the proxy's TLS listener (phantom egress --tls-listen): the agent
                           relays workloads' proxy connections there from --egress-listen
                           (HTTPS_PROXY=http://127.0.0.1:8171), authenticated by the node's
                           certificate. The way for a node on another host than the proxy.
  --egress-proxy HOST:PORT the proxy's plain listener on this host: the URL carries the
                           node's proxy password, accepted only from the node's address.

When it is ready it prints "phantom agent: serving IMDS on http://ADDR and container
credentials on http://ADDR/v1/credentials" on stderr. SIGINT or SIGTERM stops it.`,
		Example: `  phantom node join-token --node service-a-1 --output text > token   # on the perimeter
  phantom agent --sts https://sts.internal:8444 --ca-bundle ca.pem --state-dir /var/lib/phantom-agent \
    --join-token-file token --container-token-file /run/phantom/container-token
  AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:8169/ aws sts get-caller-identity --endpoint-url https://sts.internal:8444`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f.log = logFlagsOf(cmd)
			return runAgent(ctx, cmd.InOrStdin(), cmd.ErrOrStderr(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.sts, "sts", "", "STS URL, https://HOST:PORT (required)")
	fl.StringVar(&f.caBundle, "ca-bundle", "", "perimeter CA bundle (PEM) to trust STS with (required)")
	fl.StringVar(&f.stateDir, "state-dir", "", "directory for the node's key and certificate (required)")
	fl.StringVar(&f.joinTokenFile, "join-token-file", "", "file holding the join token for the first run (- for stdin)")
	fl.StringVar(&f.imdsListen, "imds-listen", defaultIMDSListen, "IMDSv2 listen address (loopback or link-local)")
	fl.StringVar(&f.containerListen, "container-listen", defaultContainerListen, "container credentials listen address (loopback or link-local)")
	fl.StringVar(&f.containerTokenFile, "container-token-file", "", "write the container endpoint's authorization token to this file (0600)")
	fl.StringVar(&f.egressURL, "egress-proxy", "", "egress proxy HOST:PORT (plain, on this host) to hand workloads through IMDS with the node's password")
	fl.StringVar(&f.egressTLS, "egress-tls", "", "egress proxy TLS listener HOST:PORT: relay workloads' proxy connections there with the node certificate")
	fl.StringVar(&f.egressListen, "egress-listen", defaultRelayListen, "loopback address of the relay to --egress-tls")
	fl.StringVar(&f.opsListen, "ops-listen", "", "serve GET /metrics (Prometheus), /healthz and /readyz over plain HTTP on this loopback or link-local address (empty: off)")
	fl.DurationVar(&f.sessionDuration, "session-duration", 0, "credentials lifetime to ask for (15s to 12h; default: STS's, 1h capped by the role)")
	for _, name := range []string{"sts", "ca-bundle", "state-dir"} {
		cmd.MarkFlagRequired(name)
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	return cmd
}

func runAgent(ctx context.Context, stdin io.Reader, stderr io.Writer, f agentFlags) error {
	log, err := newLogger(stderr, f.log)
	if err != nil {
		return err
	}
	bundle, err := os.ReadFile(f.caBundle)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("read CA bundle: %w", err)}
	}
	var token string
	if f.joinTokenFile != "" {
		if token, err = readSecretLine(f.joinTokenFile, stdin); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("read join token: %w", err)}
		}
	}
	listens := []string{f.imdsListen, f.containerListen}
	if f.egressTLS != "" {
		listens = append(listens, f.egressListen)
	}
	if f.opsListen != "" {
		listens = append(listens, f.opsListen)
	}
	for _, addr := range listens {
		if err := localListenAddr(addr); err != nil {
			return &exitError{code: 2, err: err}
		}
	}
	return perimeter.RunAgent(ctx, perimeter.AgentConfig{
		STS: f.sts, CABundle: bundle, StateDir: f.stateDir, JoinToken: token,
		IMDSListen: f.imdsListen, ContainerListen: f.containerListen, ContainerTokenFile: f.containerTokenFile,
		EgressURL: f.egressURL, EgressTLS: f.egressTLS, EgressListen: f.egressListen,
		SessionDuration: f.sessionDuration, OpsListen: f.opsListen, Stderr: stderr, Log: log,
	})
}

// localListenAddr refuses listen addresses other than loopback and link-local: the
// credentials endpoints serve this host's workloads only.
func localListenAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !(ip.IsLoopback() || ip.IsLinkLocalUnicast()) {
		return fmt.Errorf("listen address %q is not a loopback or link-local address: the agent serves credentials to this host only", addr)
	}
	return nil
}

// readSecretLine reads the first line of path (- for stdin), at most 4 KiB.
func readSecretLine(path string, stdin io.Reader) (string, error) {
	r := stdin
	if path != "-" {
		fh, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer fh.Close()
		r = fh
	}
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimSpace(line)
	if line == "" {
		return "", errors.New("the file is empty")
	}
	return line, nil
}
