package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/endpoint"
	"github.com/phantom-perimeter/phantom/internal/handoff"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// childEnv names the file of a childConfig: set, the bench binary runs as the separate
// endpoint process of target (d) instead of as the bench.
const childEnv = "PHANTOM_BENCH_GATEWAY_ENDPOINT"

// childConfig is what the endpoint process is started with: the spec, its certificate
// and key, the perimeter CA and the gateway's address, as `phantom endpoint` has them.
type childConfig struct {
	Spec     []byte `json:"spec"`
	CertPEM  []byte `json:"certPEM"`
	KeyPEM   []byte `json:"keyPEM"`
	Bundle   []byte `json:"bundle"`
	Gateway  string `json:"gateway"`
	Socket   string `json:"socket"` // the gateway's handoff socket (fd passing)
	Tunnel   string `json:"tunnel"` // the gateway's tunnel listener
	AuditDir string `json:"auditDir"`
	Profile  string `json:"profile"` // "": none
	CPUs     []int  `json:"cpus"`    // the CPUs it runs on; none: the bench's
}

// childOptions is how the bench runs its endpoint process.
type childOptions struct {
	profile string // "": the endpoint process writes no CPU profile
	cpus    []int  // nil: it shares the bench's CPUs; else it runs on these alone
}

// startChildEndpoint re-executes this binary as the endpoint process and returns the
// address it listens on. The process stops when the bench closes its stdin.
func (p *perimeter) startChildEndpoint(dir string, spec []byte, cert *tls.Certificate, bundle []byte, gw, socket, tunnel string, opt childOptions) ([]string, error) {
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, err
	}
	cc := childConfig{Spec: spec, KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
		Bundle: bundle, Gateway: gw, Socket: socket, Tunnel: tunnel, AuditDir: filepath.Join(dir, "child-audit"), Profile: opt.profile, CPUs: opt.cpus}
	for _, der := range cert.Certificate {
		cc.CertPEM = append(cc.CertPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	b, err := json.Marshal(cc)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "child.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+file)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.closers = append(p.closers, func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	addrs, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		return nil, fmt.Errorf("the endpoint process did not start: %q %v", line, err)
	}
	if _, ok := childCPU(cmd.Process.Pid); !ok {
		return nil, errors.New("no /proc/PID/stat: the endpoint process's CPU time cannot be counted")
	}
	p.children = append(p.children, cmd.Process.Pid)
	p.child = &childProc{stdin: stdin, stdout: out}
	return strings.Fields(addrs), nil
}

// runChild is the endpoint process: it serves until its stdin closes.
func runChild(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var cc childConfig
	if err := json.Unmarshal(b, &cc); err != nil {
		return err
	}
	if cc.CPUs != nil {
		if err := pin(cc.CPUs); err != nil {
			return err
		}
	}
	if cc.Profile != "" {
		f, err := os.Create(cc.Profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	spec, err := config.Parse("bench.yaml", cc.Spec)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(cc.CertPEM, cc.KeyPEM)
	if err != nil {
		return err
	}
	verifier, err := pki.NewVerifier(cc.Bundle, spec.Account, nil)
	if err != nil {
		return err
	}
	_, signer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	aud, err := audit.Open(audit.Config{Dir: cc.AuditDir, Chain: "endpoint-" + benchEndpoint, Signer: signer, Logger: log})
	if err != nil {
		return err
	}
	defer aud.Close()
	m := &dialCounter{}
	ep, err := endpoint.New(endpoint.Config{
		ID: benchEndpoint, Spec: func() *config.Spec { return spec },
		ServerCert: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
		ClientCert: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		Verifier:   verifier, Gateways: []string{cc.Gateway}, Auditor: aud, Logger: log, Metrics: m,
	})
	if err != nil {
		return err
	}
	ln, err := listen()
	if err != nil {
		return err
	}
	go ep.Serve(context.Background(), ln)
	// The same endpoint handing each connection's descriptor to the gateway (fd passing).
	fds := handoff.NewFDSender(handoff.FDConfig{Path: cc.Socket, Logger: log})
	defer fds.Close()
	if err := fds.Connect(); err != nil {
		return err
	}
	fdEP, err := endpoint.New(endpoint.Config{
		ID: benchEndpoint, Spec: func() *config.Spec { return spec },
		Handoff: endpoint.PassFD(fds), Auditor: aud, Logger: log,
	})
	if err != nil {
		return err
	}
	fdLn, err := listen()
	if err != nil {
		return err
	}
	go fdEP.Serve(context.Background(), fdLn)
	// And handing each connection to the gateway through a pre-dialed mTLS tunnel, its
	// bytes spliced both ways (another host's endpoint).
	tun, err := handoff.NewTunnelDialer(handoff.TunnelDialerConfig{
		Gateways:      []string{cc.Tunnel},
		ClientCert:    func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		VerifyGateway: endpoint.VerifyGateway(verifier, func() *config.Spec { return spec }),
		Warm:          64, Logger: log,
	})
	if err != nil {
		return err
	}
	tunEP, err := endpoint.New(endpoint.Config{
		ID: benchEndpoint, Spec: func() *config.Spec { return spec },
		Handoff: tun.Handoff, Auditor: aud, Logger: log,
	})
	if err != nil {
		return err
	}
	tunLn, err := listen()
	if err != nil {
		return err
	}
	go tunEP.Serve(context.Background(), tunLn)
	fmt.Printf("listening %s %s %s\n", ln.Addr(), fdLn.Addr(), tunLn.Addr())
	// Until the bench closes stdin; each line asks how the mTLS hop was used.
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Printf("forwarded %d dialed %d\n", m.forwarded.Load(), m.dialed.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = errors.Join(ep.Shutdown(ctx), fdEP.Shutdown(ctx), tunEP.Shutdown(ctx))
	// The bench's clients may still hold kept-alive connections through tunnels: cut them.
	short, done := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer done()
	tun.Close(short)
	return err
}

// dialCounter counts the requests the endpoint forwarded and the connections it dialed
// to the gateway: how well the pool of mTLS connections is reused.
type dialCounter struct{ forwarded, dialed atomic.Int64 }

func (d *dialCounter) Connection(string)             {}
func (d *dialCounter) Request(string, string)        {}
func (d *dialCounter) Forward(string, time.Duration) { d.forwarded.Add(1) }
func (d *dialCounter) Replica(_ string, err error) {
	if err == nil {
		d.dialed.Add(1)
	}
}

// hopStats asks the endpoint process how many requests it forwarded over how many
// connections it dialed.
func (p *perimeter) hopStats() (forwarded, dialed int64, err error) {
	if p.child == nil {
		return 0, 0, errors.New("no endpoint process")
	}
	if _, err := io.WriteString(p.child.stdin, "stats\n"); err != nil {
		return 0, 0, err
	}
	line, err := p.child.stdout.ReadString('\n')
	if err != nil {
		return 0, 0, err
	}
	_, err = fmt.Sscanf(line, "forwarded %d dialed %d", &forwarded, &dialed)
	return forwarded, dialed, err
}

// childProc is the endpoint process's pipes.
type childProc struct {
	stdin  io.Writer
	stdout *bufio.Reader
}

// childCPU is a process's user and system CPU time so far, all its threads (Linux:
// /proc/PID/stat's utime and stime, in clock ticks of 10 ms), and whether it is known.
func childCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	_, rest, ok := strings.Cut(string(b), ") ") // the command name may hold spaces
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on every Linux ABI Go supports
	return time.Duration(utime+stime) * tick, true
}
