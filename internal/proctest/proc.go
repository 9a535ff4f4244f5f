package proctest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// readyTimeout bounds a process's start, store migration and certificate included.
const readyTimeout = 60 * time.Second

var execCommand = exec.CommandContext

// Proc is one component process; it can be killed and started again with the same
// arguments (same ports, same audit chain, same data directory).
type Proc struct {
	Name    string
	bin     string
	args    []string
	env     []string
	logPath string
	tee     io.Writer
	// cred, when set, is the user and groups the process runs as (the harness runs as root).
	cred *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts the process and waits until it says it is serving.
func (p *Proc) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running", p.Name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return err
	}
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	ready := make(chan struct{})
	exited := make(chan struct{})
	var out io.Writer = logf
	if p.tee != nil {
		out = io.MultiWriter(logf, prefixWriter{p.Name, p.tee})
	}
	// os/exec: Wait closes the pipe, so it waits until every line has been read and
	// logged; otherwise a process's last words (why it exited) could be lost from its log.
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(out, line)
			if strings.HasPrefix(line, "phantom ") && (strings.Contains(line, ": listening on ") || strings.Contains(line, ": following ") || strings.Contains(line, ": reading audit stream ")) {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		<-scanned
		cmd.Wait()
		logf.Close()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		// An endpoint prints one line per listener; the first is enough here (one each).
		return nil
	case <-exited:
		p.cmd = nil
		return fmt.Errorf("%s exited before it was ready (%s); see %s:\n%s", p.Name, cmd.ProcessState, p.logPath, tail(p.logPath))
	case <-timer.C:
	case <-ctx.Done():
	}
	cmd.Process.Kill()
	<-exited
	p.cmd = nil
	return fmt.Errorf("%s not ready in time; see %s:\n%s", p.Name, p.logPath, tail(p.logPath))
}

// Kill sends SIGKILL and waits for the process to be gone: no shutdown, no flush.
func (p *Proc) Kill() error { return p.signal(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits up to 20 s (then SIGKILL).
func (p *Proc) Stop() error { return p.signal(syscall.SIGTERM, 20*time.Second) }

func (p *Proc) signal(sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	if grace > 0 {
		select {
		case <-exited:
			return nil
		case <-time.After(grace):
			cmd.Process.Kill()
		}
	}
	<-exited
	return nil
}

// Running reports whether the process is up (started and not stopped or killed by us).
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Log returns the process's log so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// PID returns the process id, or 0.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

type prefixWriter struct {
	name string
	w    io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	fmt.Fprintf(p.w, "[%s] %s", p.name, b)
	return len(b), nil
}
