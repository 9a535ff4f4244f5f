package proctest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/phantom-perimeter/phantom/internal/events"
)

// NATSNode is one nats-server process of a JetStream cluster; it can be killed and
// started again on the same ports and store.
type NATSNode struct {
	Name string
	URL  string
	bin  string
	conf string
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartNATSCluster starts n nats-server processes (bin: Debian's nats-server) as one
// JetStream cluster on 127.0.0.1, each with its store under dir, and returns when the
// cluster has a JetStream leader.
func StartNATSCluster(ctx context.Context, bin, dir string, n int) ([]*NATSNode, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := range n {
		routes = append(routes, "nats-route://"+ports[n+i])
	}
	var nodes []*NATSNode
	for i := range n {
		name := fmt.Sprintf("nats-%d", i+1)
		store := filepath.Join(dir, name)
		if err := os.MkdirAll(store, 0o700); err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, name+".conf")
		body := fmt.Sprintf(`server_name: %s
listen: %q
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: phantom
  listen: %q
  routes: [%s]
}
`, name, ports[i], store, ports[n+i], strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return nil, err
		}
		nodes = append(nodes, &NATSNode{Name: name, URL: "nats://" + ports[i], bin: bin, conf: conf, log: filepath.Join(dir, name+".log")})
	}
	for _, nd := range nodes {
		if err := nd.Start(); err != nil {
			StopNATS(nodes)
			return nil, err
		}
	}
	if err := waitJetStream(ctx, nodes); err != nil {
		StopNATS(nodes)
		return nil, err
	}
	return nodes, nil
}

// URLs are the nodes' client URLs.
func NATSURLs(nodes []*NATSNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.URL)
	}
	return out
}

// StopNATS kills every node.
func StopNATS(nodes []*NATSNode) {
	for _, n := range nodes {
		n.Kill()
	}
}

// Start starts the node.
func (n *NATSNode) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("%s: already running", n.Name)
	}
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.bin, "-c", n.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	n.cmd, n.exited = cmd, exited
	return nil
}

// Kill sends SIGKILL.
func (n *NATSNode) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

// Log is the node's log.
func (n *NATSNode) Log() string { return tail(n.log) }

// waitJetStream waits until the cluster answers JetStream requests (a meta leader).
func waitJetStream(ctx context.Context, nodes []*NATSNode) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		nc, err := events.Dial(events.Broker{URLs: NATSURLs(nodes)}, "proctest", slog.New(slog.DiscardHandler))
		if err == nil {
			js, jerr := jetstream.New(nc)
			if jerr == nil {
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, jerr = js.AccountInfo(actx)
				cancel()
			}
			nc.Close()
			if jerr == nil {
				return nil
			}
			err = jerr
		}
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.Join(errors.New("the NATS cluster has no JetStream leader after 60s"), last)
}
