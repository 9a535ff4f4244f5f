package perimeter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/agent"
)

// AgentConfig is what a workload credential agent runs with: cmd/phantom's agent flags,
// validated (loopback or link-local listeners), with the CA bundle and join token read.
type AgentConfig struct {
	// STS is the STS URL; CABundle the perimeter CA bundle it is verified against;
	// StateDir where the node's key and certificate are kept; JoinToken the token a
	// first start enrolls with ("": enrolled already).
	STS       string
	CABundle  []byte
	StateDir  string
	JoinToken string
	// IMDSListen and ContainerListen serve credentials; ContainerTokenFile, when set,
	// receives the container endpoint's authorization token (0600).
	IMDSListen, ContainerListen, ContainerTokenFile string
	// EgressURL is the egress proxy's URL (passwords); with EgressTLS (the proxy's TLS
	// address) the agent relays EgressListen's connections to it with the node's
	// certificate.
	EgressURL, EgressTLS, EgressListen string
	// SessionDuration is the credentials' lifetime (0: STS's default).
	SessionDuration time.Duration
	// OpsListen is the plain-HTTP ops listener's address ("": none).
	OpsListen string
	Stderr    io.Writer
	Log       *slog.Logger
}

// RunAgent runs the agent until ctx ends or a listener fails: it listens before it
// enrolls (a busy port does not cost the join token), then serves IMDS, container
// credentials and, with EgressTLS, the egress relay.
func RunAgent(ctx context.Context, cfg AgentConfig) error {
	log := cfg.Log
	// The agent holds no CA key: its ops listener is plain HTTP, on loopback like its
	// credentials endpoints.
	var o *ops
	var current atomic.Pointer[agent.Agent]
	if cfg.OpsListen != "" {
		o = newOps("agent")
		if err := o.start(cfg.OpsListen, nil, "", cfg.Stderr, log); err != nil {
			return err
		}
		defer o.close()
		context.AfterFunc(ctx, o.drain)
	}
	a, err := agent.New(agent.Config{
		STS: cfg.STS, CABundle: cfg.CABundle, StateDir: cfg.StateDir, JoinToken: cfg.JoinToken,
		SessionDuration: cfg.SessionDuration, EgressProxy: cfg.EgressURL, EgressTLS: cfg.EgressTLS, Logger: log,
		Metrics: o.agentMetrics(func() time.Time {
			if a := current.Load(); a != nil {
				return a.Expiration()
			}
			return time.Time{}
		}),
	})
	if err != nil {
		return &UsageError{Err: err}
	}
	defer a.Close()
	current.Store(a)
	// Listen before enrolling: a busy port should not cost the join token.
	imds, err := net.Listen("tcp", cfg.IMDSListen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.IMDSListen, err)
	}
	cont, err := net.Listen("tcp", cfg.ContainerListen)
	if err != nil {
		imds.Close()
		return fmt.Errorf("listen on %s: %w", cfg.ContainerListen, err)
	}
	if err := a.Start(ctx); err != nil {
		imds.Close()
		cont.Close()
		return err
	}
	if cfg.ContainerTokenFile != "" {
		if err := writeSecretFile(cfg.ContainerTokenFile, a.ContainerToken()+"\n"); err != nil {
			imds.Close()
			cont.Close()
			return err
		}
	}
	served := make(chan error, 2)
	if cfg.EgressTLS != "" {
		rl, err := net.Listen("tcp", cfg.EgressListen)
		if err != nil {
			imds.Close()
			cont.Close()
			return fmt.Errorf("listen on %s: %w", cfg.EgressListen, err)
		}
		go func() {
			if err := a.ServeEgress(ctx, rl); err != nil {
				served <- fmt.Errorf("egress relay: %w", err)
			}
		}()
		fmt.Fprintf(cfg.Stderr, "phantom agent: relaying egress proxy connections from http://%s to https://%s\n", rl.Addr(), cfg.EgressTLS)
	}
	go func() { served <- a.Serve(ctx, imds, cont) }()
	fmt.Fprintf(cfg.Stderr, "phantom agent: serving IMDS on http://%s and container credentials on http://%s%s\n", imds.Addr(), cont.Addr(), agent.ContainerPath)
	log.Info("serving", "component", "agent", "node", a.Node(), "role", a.Role(), "imds", imds.Addr().String(), "container", cont.Addr().String())
	o.serving(readyCheck{Name: "credentials", Check: func() error {
		if _, ok := a.Credentials(); !ok {
			return errors.New("no unexpired credentials to serve (STS unreachable?)")
		}
		return nil
	}})
	return <-served
}

// writeSecretFile writes a secret 0600, replacing the file atomically. The temporary file
// is created exclusively, so it never exists with a wider mode.
func writeSecretFile(path, data string) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = fh.WriteString(data)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
