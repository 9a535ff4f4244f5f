// Package proctest is a multi-process test harness: it runs a Phantom perimeter as
// separate processes on this machine, the way a team runs it across several: one STS,
// gateway replicas, endpoints that forward to all of them, a detector and an egress
// proxy, each its own `phantom` process with its own data directory, sharing a
// PostgreSQL store and the perimeter's master key, and writing their audit chains into
// one directory. The
// replica, fault and load tests and bench/soak drive it; it signs calls with
// aws-sdk-go-v2's SigV4 signer, a client Phantom did not write.
//
// Everything listens on 127.0.0.1.
package proctest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Fixed names of the cluster's perimeter.
const (
	Account = "111122223333"
	Region  = "us-east-1"
	APIID   = "c1u2s3t4e5"
	User    = "alice"
	Role    = "app"
	VPC     = "vpc-0c1a2b3c4d5e6f708"
	Node    = "app-node-1" // the node whose egress rules allow the backend (privateIp 127.0.0.1)
)

// Config says what to run.
type Config struct {
	Bin       string // the phantom binary
	Dir       string // working directory: spec, data directories, audit chains, logs
	StoreURL  string // the shared PostgreSQL store (postgres://…)
	Gateways  int    // gateway replicas (at least 1)
	Endpoints int    // endpoints (at least 1), each forwarding to every gateway
	// InProcess runs endpoint i inside gateway i%Gateways (phantom gateway --endpoint),
	// which it hands its requests to in memory, instead of as a process of its own.
	InProcess bool
	// Handoff, "fd" or "tunnel", runs each endpoint as a network boundary handing its
	// callers' connections to gateway i mod Gateways (phantom endpoint --handoff, phantom
	// gateway --handoff-endpoint): over that gateway's Unix socket, or through mTLS tunnels
	// to its --tunnel-listen address.
	Handoff string
	// Pin has endpoint i forward only to gateway i mod Gateways, so a test knows which
	// replica answered.
	Pin      bool
	Detector bool // run `phantom detector` too
	// Egress runs `phantom egress` too, a proxy for the spec's node Node (role Role, at
	// 127.0.0.1) whose egress rules allow the cluster's backend.
	Egress   bool
	Poll     time.Duration // components' --poll; 0: their default
	MaxStale time.Duration // components' --max-stale; 0: their default
	// Logs receives every component's stderr; nil: Dir/logs/<name>.log only.
	Logs io.Writer
	// LeastPrivilege runs each component as docs/threat-model.md says: without the
	// master key, with its key file (phantom keys export), and for gateways and endpoints
	// a certificate enrolled at STS with a join token (phantom ca join-token).
	LeastPrivilege bool
	// StoreRoles, with LeastPrivilege, are the store URLs each component kind ("sts",
	// "gateway", "endpoint", …) logs in with (phantom store roles); a kind not named
	// uses StoreURL.
	StoreRoles map[string]string
	// Args are more arguments for each command ("sts", "gateway", …), e.g. --pkcs11-….
	Args map[string][]string
	// Events are NATS JetStream servers (nats://…): the spec's events setting sends every
	// component's audit records there (stream replicas EventReplicas), each process keeps
	// its chains in its own data directory (DATA/audit), as on hosts of their own, and
	// the detectors read the stream.
	Events        []string
	EventReplicas int
	// Detectors, with Events, runs that many detector replicas (detector-1, …) instead
	// of Detector's one; STSReplicas more STS processes (sts-2, …) beside the first.
	Detectors   int
	STSReplicas int
	// Detection is the spec's detection mapping (responses, …), as YAML whose lines are
	// indented under `detection:`; empty: none.
	Detection string
	// EndpointUser, when set, runs each endpoint process as this user and group, not the
	// harness's (which must then be root), as a host that keeps the endpoint apart from
	// the gateway does: its data directory is its own, and the group reads the spec,
	// writes the audit directory (each chain is one writer's) and reaches the gateways'
	// handoff socket directories, which are made 2750 of that group so the sockets the
	// gateways create in them are the group's (the gateways' --handoff-peer-uid says
	// whether they accept the endpoint's uid). The binary's directory and Dir must be
	// reachable by it.
	EndpointUser *syscall.Credential
	// masterKey is the perimeter's master key; nil: a random one.
	masterKey []byte
}

// Cluster is a running perimeter.
type Cluster struct {
	cfg       Config
	masterKey string
	spec      string
	auditDir  string
	backend   *http.Server
	backendLn net.Listener

	sts       *Proc
	moreSTS   []*Proc
	detectors []*Proc
	gateways  []*Proc
	endpoints []*Proc
	detector  *Proc
	egress    *Proc

	gatewayAddrs  []string
	endpointAddrs []string
	stsAddr       string
	moreSTSAddrs  []string
	egressAddr    string

	clientOnce sync.Once
	client     *http.Client
	caPEM      []byte
}

// EndpointID is the id of endpoint i.
func EndpointID(i int) string { return fmt.Sprintf("vpce-%017x", 0xe0+i) }

// Start writes the spec and starts every process, returning when all are listening.
// On error, whatever started is stopped.
func Start(ctx context.Context, cfg Config) (c *Cluster, err error) {
	if cfg.Gateways < 1 || cfg.Endpoints < 1 {
		return nil, errors.New("cluster: at least one gateway and one endpoint")
	}
	if cfg.Bin == "" || cfg.Dir == "" || cfg.StoreURL == "" {
		return nil, errors.New("cluster: Bin, Dir and StoreURL are required")
	}
	mk := cfg.masterKey
	if mk == nil {
		mk = make([]byte, 32)
		if _, err := rand.Read(mk); err != nil {
			return nil, err
		}
	}
	c = &Cluster{cfg: cfg, masterKey: base64.StdEncoding.EncodeToString(mk), auditDir: filepath.Join(cfg.Dir, "audit")}
	if len(cfg.Events) > 0 {
		c.auditDir = "" // each process's own: DATA/audit
	}
	started := c // the return statements below set c to nil
	defer func() {
		if err != nil {
			started.Close()
			c = nil
		}
	}()
	for _, d := range []string{"logs", "audit"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if err := c.startBackend(); err != nil {
		return nil, err
	}
	ports, err := freePorts(2 + cfg.Gateways + cfg.Endpoints + cfg.STSReplicas)
	if err != nil {
		return nil, err
	}
	var tunnelAddrs []string
	if cfg.Handoff == "tunnel" {
		if tunnelAddrs, err = freePorts(cfg.Gateways); err != nil {
			return nil, err
		}
	}
	// A Unix socket's path has at most 108 bytes: the handoff sockets go in a short
	// directory of their own.
	handoffDir := func(i int) string { return filepath.Join(cfg.Dir, "ho", fmt.Sprint(i)) }
	c.moreSTSAddrs, ports = ports[len(ports)-cfg.STSReplicas:], ports[:len(ports)-cfg.STSReplicas]
	c.stsAddr = ports[0]
	c.gatewayAddrs = ports[1 : 1+cfg.Gateways]
	c.endpointAddrs = ports[1+cfg.Gateways : 1+cfg.Gateways+cfg.Endpoints]
	if cfg.Egress {
		c.egressAddr = ports[len(ports)-1]
	}
	if err := c.writeSpec(); err != nil {
		return nil, err
	}
	if cfg.EndpointUser != nil {
		if err := c.shareWithEndpointUser(len(c.gatewayAddrs), handoffDir); err != nil {
			return nil, err
		}
	}

	if cfg.LeastPrivilege {
		// The operator makes the store and the CA (the root needs the master key).
		if _, err := c.Phantom(ctx, "ca", "list"); err != nil {
			return nil, err
		}
	}
	// STS first: the first process to open the store migrates it and creates the CA and
	// the sealing key; the others find them.
	if c.sts, err = c.component(ctx, "sts", "", "sts", "sts", "--listen", c.stsAddr, "--audit-chain", "sts"); err != nil {
		return nil, err
	}
	if err := c.sts.Start(ctx); err != nil {
		return nil, err
	}
	for i, addr := range c.gatewayAddrs {
		name := fmt.Sprintf("gateway-%d", i+1)
		args := []string{"--listen", addr, "--audit-chain", name}
		for j := range c.endpointAddrs {
			switch {
			case cfg.InProcess && j%len(c.gatewayAddrs) == i:
				args = append(args, "--endpoint", EndpointID(j))
			case cfg.Handoff != "" && j%len(c.gatewayAddrs) == i:
				args = append(args, "--handoff-endpoint", EndpointID(j))
			}
		}
		if cfg.Handoff != "" {
			args = append(args, "--handoff-dir", handoffDir(i))
		}
		if tunnelAddrs != nil {
			// At debug level the gateway says of each caller a tunnel delivers whether its
			// bytes came raw (TestHandoffRealClients reads it).
			args = append(args, "--tunnel-listen", tunnelAddrs[i], "--log-level", "debug")
		}
		p, err := c.component(ctx, name, "gateway", "gateway", "gateway", args...)
		if err != nil {
			return nil, err
		}
		c.gateways = append(c.gateways, p)
	}
	for i := range c.endpointAddrs {
		if cfg.InProcess {
			continue
		}
		name := fmt.Sprintf("endpoint-%d", i+1)
		args := []string{"endpoint", "--id", EndpointID(i), "--audit-chain", name}
		switch cfg.Handoff {
		case "fd":
			args = append(args, "--handoff", "fd", "--handoff-dir", handoffDir(i%len(c.gatewayAddrs)))
		case "tunnel":
			args = append(args, "--handoff", "tunnel", "--gateway", tunnelAddrs[i%len(c.gatewayAddrs)])
		default:
			for j, g := range c.gatewayAddrs {
				if !cfg.Pin || j == i%len(c.gatewayAddrs) {
					args = append(args, "--gateway", g)
				}
			}
		}
		p, err := c.component(ctx, name, "endpoint", EndpointID(i), args[0], args[1:]...)
		if err != nil {
			return nil, err
		}
		if cfg.EndpointUser != nil {
			p.cred = cfg.EndpointUser
			if err := c.ownDataDir(name); err != nil {
				return nil, err
			}
		}
		c.endpoints = append(c.endpoints, p)
	}
	for i, addr := range c.moreSTSAddrs {
		name := fmt.Sprintf("sts-%d", i+2)
		p, err := c.component(ctx, name, "", "sts", "sts", "--listen", addr, "--audit-chain", name)
		if err != nil {
			return nil, err
		}
		c.moreSTS = append(c.moreSTS, p)
	}
	procs := append(append(append([]*Proc{}, c.moreSTS...), c.gateways...), c.endpoints...)
	for i := range cfg.Detectors {
		name := fmt.Sprintf("detector-%d", i+1)
		p, err := c.component(ctx, name, "detector", name, "detector", "--audit-chain", name)
		if err != nil {
			return nil, err
		}
		c.detectors = append(c.detectors, p)
		procs = append(procs, p)
	}
	if cfg.Detector {
		if c.detector, err = c.component(ctx, "detector", "detector", "detector", "detector"); err != nil {
			return nil, err
		}
		procs = append(procs, c.detector)
	}
	if cfg.Egress {
		if c.egress, err = c.component(ctx, "egress", "", "", "egress", "--listen", c.egressAddr, "--audit-chain", "egress"); err != nil {
			return nil, err
		}
		procs = append(procs, c.egress)
	}
	errs := make(chan error, len(procs))
	for _, p := range procs {
		go func() { errs <- p.Start(ctx) }()
	}
	var all []error
	for range procs {
		all = append(all, <-errs)
	}
	if err := errors.Join(all...); err != nil {
		return nil, err
	}
	return c, nil
}

// Close stops every process (SIGTERM, then SIGKILL after a few seconds) and the backend.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, p := range c.procs() {
		wg.Go(func() { p.Stop() })
	}
	wg.Wait()
	if c.backend != nil {
		c.backend.Close()
	}
}

func (c *Cluster) procs() []*Proc {
	var ps []*Proc
	if c.detector != nil {
		ps = append(ps, c.detector)
	}
	if c.egress != nil {
		ps = append(ps, c.egress)
	}
	ps = append(ps, c.detectors...)
	ps = append(ps, c.endpoints...)
	ps = append(ps, c.gateways...)
	ps = append(ps, c.moreSTS...)
	if c.sts != nil {
		ps = append(ps, c.sts)
	}
	return ps
}

// STS, Gateway, Endpoint and Detector return the processes (i from 0).
func (c *Cluster) STS() *Proc          { return c.sts }
func (c *Cluster) Gateway(i int) *Proc { return c.gateways[i] }
func (c *Cluster) Endpoint(i int) *Proc {
	if c.cfg.InProcess {
		return c.gateways[i%len(c.gateways)] // the process the endpoint runs in
	}
	return c.endpoints[i]
}
func (c *Cluster) Detector() *Proc     { return c.detector }
func (c *Cluster) Detectors() []*Proc  { return c.detectors }
func (c *Cluster) MoreSTS(i int) *Proc { return c.moreSTS[i] }
func (c *Cluster) Egress() *Proc       { return c.egress }
func (c *Cluster) AuditDir() string    { return c.auditDir }

// ProcAuditDir is the audit directory process name writes its chain to.
func (c *Cluster) ProcAuditDir(name string) string {
	if c.auditDir != "" {
		return c.auditDir
	}
	return filepath.Join(c.cfg.Dir, "data", name, "audit")
}
func (c *Cluster) SpecPath() string       { return c.spec }
func (c *Cluster) GatewayAddrs() []string { return c.gatewayAddrs }

// EndpointURL is the orders API's URL through endpoint i.
func (c *Cluster) EndpointURL(i int) string {
	return "https://" + c.endpointAddrs[i] + "/prod/orders"
}

// EgressAddr is the egress proxy's listen address ("" without Config.Egress).
func (c *Cluster) EgressAddr() string { return c.egressAddr }

// BackendAddr is the address of the APIs' backend, which the node's egress rules allow.
func (c *Cluster) BackendAddr() string { return c.backendLn.Addr().String() }

// STSURL is the STS's URL.
func (c *Cluster) STSURL() string { return "https://" + c.stsAddr }

// env is every process's environment: the shared master key and store.
func (c *Cluster) env() []string {
	return append(os.Environ(), "PHANTOM_MASTER_KEY="+c.masterKey, "PHANTOM_STORE="+c.cfg.StoreURL)
}

// component is the process name runs as `phantom <cmd> args…`. With LeastPrivilege it
// gets its kind's key file and store role and no master key, and, when kind is a
// certificate kind other than STS's, a join token for the identity kind/certName with
// name as its audit chain.
func (c *Cluster) component(ctx context.Context, name, kind, certName, cmd string, args ...string) (*Proc, error) {
	args = append(append([]string{cmd}, args...), c.cfg.Args[cmd]...)
	if !c.cfg.LeastPrivilege {
		return c.newProc(name, args...), nil
	}
	component := cmd
	keyFile := filepath.Join(c.cfg.Dir, "keys", name+".keys")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return nil, err
	}
	if _, err := c.Phantom(ctx, "keys", "export", "--component", component, "--out", keyFile); err != nil {
		return nil, err
	}
	args = append(args, "--keys", keyFile)
	if kind != "" {
		tok, err := c.Phantom(ctx, "ca", "join-token", "--kind", kind, "--name", certName, "--audit-chain", name, "--output", "text")
		if err != nil {
			return nil, err
		}
		args = append(args, "--join-token", strings.TrimSpace(string(tok)), "--sts", c.STSURL())
	}
	p := c.newProc(name, args...)
	if dsn, ok := c.cfg.StoreRoles[component]; ok {
		for i := range p.args {
			if p.args[i] == "--store" {
				p.args[i+1] = dsn
			}
		}
	}
	// Nothing of the operator's: no master key, no owner's store URL in the environment.
	p.env = slices.DeleteFunc(slices.Clone(os.Environ()), func(e string) bool {
		return strings.HasPrefix(e, "PHANTOM_MASTER_KEY=") || strings.HasPrefix(e, "PHANTOM_STORE=")
	})
	return p, nil
}

func (c *Cluster) newProc(name string, args ...string) *Proc {
	dataDir := filepath.Join(c.cfg.Dir, "data", name)
	args = append(args, "--config", c.spec, "--data-dir", dataDir, "--store", c.cfg.StoreURL)
	if c.cfg.Poll > 0 {
		args = append(args, "--poll", c.cfg.Poll.String())
	}
	if c.cfg.MaxStale > 0 && args[0] != "endpoint" {
		args = append(args, "--max-stale", c.cfg.MaxStale.String())
	}
	return &Proc{Name: name, bin: c.cfg.Bin, args: args, env: c.env(), logPath: filepath.Join(c.cfg.Dir, "logs", name+".log"), tee: c.cfg.Logs}
}

// Phantom runs an administrative phantom command against the cluster's store and spec
// (as an operator would from their own host) and returns its standard output.
func (c *Cluster) Phantom(ctx context.Context, args ...string) ([]byte, error) {
	args = append(args, "--config", c.spec, "--data-dir", filepath.Join(c.cfg.Dir, "data", "admin"), "--store", c.cfg.StoreURL)
	var out, errb bytes.Buffer
	cmd := execCommand(ctx, c.cfg.Bin, args...)
	cmd.Env = c.env()
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("phantom %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes(), nil
}

// CreateUserKey creates an access key for the cluster's user.
func (c *Cluster) CreateUserKey(ctx context.Context) (aws.Credentials, error) {
	out, err := c.Phantom(ctx, "iam", "create-access-key", "--user", User)
	if err != nil {
		return aws.Credentials{}, err
	}
	var r struct {
		AccessKey struct{ AccessKeyId, SecretAccessKey string }
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return aws.Credentials{}, fmt.Errorf("create-access-key output: %w", err)
	}
	creds := aws.Credentials{AccessKeyID: r.AccessKey.AccessKeyId, SecretAccessKey: r.AccessKey.SecretAccessKey}
	// Like IAM, a new key reaches the running components shortly after it is created
	// (here: milliseconds, through the store's notification); wait until every STS
	// replica knows it.
	deadline := time.Now().Add(5 * time.Second)
	urls := []string{c.STSURL()}
	for _, a := range c.moreSTSAddrs {
		urls = append(urls, "https://"+a)
	}
	for _, url := range urls {
		for {
			err := c.callerIdentityAt(ctx, url, creds)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return aws.Credentials{}, fmt.Errorf("the new access key is not accepted by the STS at %s: %w", url, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return creds, nil
}

// RevokeSessions revokes every session of the cluster's role issued until now and
// returns the revocation's time (sessions issued before it are refused).
func (c *Cluster) RevokeSessions(ctx context.Context) (time.Time, error) {
	out, err := c.Phantom(ctx, "iam", "revoke-sessions", "--role", Role)
	if err != nil {
		return time.Time{}, err
	}
	var r struct{ TokenIssueTimeBefore time.Time }
	if err := json.Unmarshal(out, &r); err != nil {
		return time.Time{}, fmt.Errorf("revoke-sessions output: %w", err)
	}
	return r.TokenIssueTimeBefore, nil
}

// CAPEM is the perimeter CA bundle (written by the STS into its data directory).
func (c *Cluster) CAPEM() ([]byte, error) {
	if c.caPEM != nil {
		return c.caPEM, nil
	}
	b, err := os.ReadFile(filepath.Join(c.cfg.Dir, "data", "sts", "ca.pem"))
	if err != nil {
		return nil, err
	}
	c.caPEM = b
	return b, nil
}

// Client is an HTTPS client trusting the perimeter CA, with keep-alive connections.
func (c *Cluster) Client() (*http.Client, error) {
	pemBytes, err := c.CAPEM()
	if err != nil {
		return nil, err
	}
	c.clientOnce.Do(func() {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemBytes)
		tr := &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
		}
		c.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	})
	return c.client, nil
}

func (c *Cluster) startBackend() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	c.backendLn = ln
	c.backend = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"orders":[]}`)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go c.backend.Serve(ln)
	return nil
}

// freePorts reserves n loopback ports by listening on them, then frees them for the
// processes to take.
func freePorts(n int) ([]string, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

type specEndpoint struct {
	ID, Addr, Port string
}

func (c *Cluster) writeSpec() error {
	var eps []specEndpoint
	for i, a := range c.endpointAddrs {
		_, port, _ := net.SplitHostPort(a)
		eps = append(eps, specEndpoint{ID: EndpointID(i), Addr: a, Port: port})
	}
	var b bytes.Buffer
	err := specTemplate.Execute(&b, map[string]any{
		"Account": Account, "Region": Region, "APIID": APIID, "User": User, "Role": Role, "VPC": VPC,
		"AuditDir": c.auditDir, "Backend": "http://" + c.backendLn.Addr().String(), "Endpoints": eps,
		"STSAddr": c.stsAddr, "GatewayAddr": c.gatewayAddrs[0],
		"Node": Node, "BackendPort": c.backendLn.Addr().(*net.TCPAddr).Port,
		"Events": c.cfg.Events, "EventReplicas": max(c.cfg.EventReplicas, 1),
		"Detection": indent(c.cfg.Detection, "  "),
	})
	if err != nil {
		return err
	}
	c.spec = filepath.Join(c.cfg.Dir, "perimeter.yaml")
	return os.WriteFile(c.spec, b.Bytes(), 0o600)
}

// indent puts prefix before each line of yaml.
func indent(yaml, prefix string) string {
	if yaml == "" {
		return ""
	}
	lines := strings.Split(strings.TrimRight(yaml, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix)
}

var specTemplate = template.Must(template.New("spec").Parse(`version: 1
account: "{{.Account}}"
region: {{.Region}}
gateway:
  name: gateway
  listen: "{{.GatewayAddr}}"
sts:
  listen: "{{.STSAddr}}"
{{- if .AuditDir}}
audit:
  dir: {{.AuditDir}}
{{- end}}
{{- if .Events}}
events:
  urls: [{{range $i, $u := .Events}}{{if $i}}, {{end}}"{{$u}}"{{end}}]
  replicas: {{.EventReplicas}}
{{- end}}
{{- if .Detection}}
detection:
{{.Detection}}
{{- end}}
managedPolicies:
  - name: Orders
    document:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Action: execute-api:Invoke
          Resource: "arn:aws:execute-api:{{.Region}}:{{.Account}}:{{.APIID}}/prod/*/orders"
users:
  - name: {{.User}}
    managedPolicies: [Orders]
    policies:
      - name: assume
        document:
          Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: sts:AssumeRole
              Resource: "arn:aws:iam::{{.Account}}:role/{{.Role}}"
      - name: connections-read-only
        document:
          Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: execute-api:Invoke
              Resource: "arn:aws:execute-api:{{.Region}}:{{.Account}}:{{.APIID}}/prod/GET/@connections/*"
roles:
  - name: {{.Role}}
    maxSessionDuration: 1h
    trustPolicy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Principal: {AWS: "arn:aws:iam::{{.Account}}:user/{{.User}}"}
          Action: sts:AssumeRole
    managedPolicies: [Orders]
apis:
  - id: {{.APIID}}
    name: orders
    stages: [prod]
    backends:
      orders: {url: "{{.Backend}}", timeout: 10s}
    routes:
      - {path: /orders, methods: [GET, POST], backend: orders}
      - {path: "/orders/{id}", methods: [GET], backend: orders}
      # The path of API Gateway's management API for WebSocket APIs, which the AWS CLI
      # calls signed for execute-api (aws apigatewaymanagementapi --endpoint-url …/prod).
      - {path: "/@connections/{connectionId}", methods: [GET, DELETE], backend: orders}
    resourcePolicy:
      Version: "2012-10-17"
      Statement:
        - Sid: OnlyThroughTheEndpoints
          Effect: Deny
          Principal: "*"
          Action: execute-api:Invoke
          Resource: "arn:aws:execute-api:{{.Region}}:{{.Account}}:{{.APIID}}/*"
          Condition:
            StringNotEquals: {"aws:SourceVpce": [{{range $i, $e := .Endpoints}}{{if $i}}, {{end}}"{{$e.ID}}"{{end}}]}
endpoints:
{{- range .Endpoints}}
  - id: {{.ID}}
    vpc: {{$.VPC}}
    listen: ["{{.Addr}}"]
    ingress:
      - {protocol: tcp, ports: "{{.Port}}", cidrs: [127.0.0.0/8]}
    apis: [{{$.APIID}}]
{{- end}}
nodes:
  - {name: {{.Node}}, role: {{.Role}}, vpc: {{.VPC}}, privateIp: 127.0.0.1}
egress:
  - role: {{.Role}}
    allow:
      - {cidr: 127.0.0.1/32, ports: [{{.BackendPort}}]}
`))

// shareWithEndpointUser gives Config.EndpointUser's group what an endpoint process reads
// and writes of the cluster's: the spec and its directory (the spec watcher reads it), the
// audit directory, and the handoff socket directories of gateways gateways (setgid: the
// sockets created there are the group's).
func (c *Cluster) shareWithEndpointUser(gateways int, handoffDir func(int) string) error {
	gid := int(c.cfg.EndpointUser.Gid)
	type share struct {
		path string
		mode os.FileMode
	}
	shares := []share{{c.cfg.Dir, 0o750}, {c.spec, 0o640}, {filepath.Join(c.cfg.Dir, "data"), 0o710}, {filepath.Dir(handoffDir(0)), 0o710}}
	if c.auditDir != "" {
		shares = append(shares, share{c.auditDir, 0o770 | os.ModeSetgid})
	}
	for i := range gateways {
		shares = append(shares, share{handoffDir(i), 0o750 | os.ModeSetgid})
	}
	for _, s := range shares {
		if s.path != c.spec {
			if err := os.MkdirAll(s.path, 0o700); err != nil {
				return err
			}
		}
		if err := os.Chown(s.path, -1, gid); err != nil {
			return fmt.Errorf("share %s with the endpoint's group: %w", s.path, err)
		}
		if err := os.Chmod(s.path, s.mode); err != nil {
			return err
		}
	}
	return nil
}

// ownDataDir makes process name's data directory Config.EndpointUser's own.
func (c *Cluster) ownDataDir(name string) error {
	dir := filepath.Join(c.cfg.Dir, "data", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chown(dir, int(c.cfg.EndpointUser.Uid), int(c.cfg.EndpointUser.Gid))
}
