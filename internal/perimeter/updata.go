package perimeter

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/phantom-perimeter/phantom/internal/atomicfile"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/demo"
)

// Files `up` keeps in its data directory besides the store's, the CA's and the audit
// chains.
const (
	upLockFile   = "up.lock"        // held while a phantom up runs on the directory
	demoSpecFile = "perimeter.yaml" // the demo spec: written once, then the user's to edit
	demoEnvFile  = "demo.env"
	demoAWSFile  = "aws-config" // AWS CLI / SDK profiles (demo.AWSConfig)
)

// dataDirLock is an exclusive hold on a data directory for one phantom up.
type dataDirLock struct{ f *os.File }

// lockDataDir takes DIR/up.lock (flock, never waiting) before `up` writes anything in
// the directory, so a second `up` on it fails without touching the files or the ports of
// the one running. The lock file keeps the holder's pid for the message; it is never
// removed (removing a lock file lets two processes hold "the" lock).
func lockDataDir(dir string) (*dataDirLock, error) {
	path := filepath.Join(dir, upLockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, err := os.ReadFile(path); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
					holder = fmt.Sprintf("process %d", pid)
				}
			}
			return nil, fmt.Errorf("data directory %s is in use by another phantom up (%s): stop that one first, or give this one its own --data-dir", dir, holder)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dataDirLock{f: f}, nil
}

func (l *dataDirLock) release() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// openDemoSpec binds the demo's listeners and returns the demo perimeter, with its spec at
// path. The spec is written only when there is none (or --regenerate-spec asks, keeping
// the old one beside it): afterwards it is the user's, edits included, and its addresses
// decide where the demo listens. It returns the port base the listeners the spec does not
// name (agent, egress proxy, findings API, metrics, console) were taken from.
func openDemoSpec(out io.Writer, lns *upListeners, cfg UpConfig, path string) (*demo.Perimeter, int, error) {
	d := demo.Defaults()
	_, err := os.Stat(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("the demo spec: %w", err)
	}
	if exists && !cfg.RegenerateSpec {
		spec, err := config.Load(path)
		if err != nil {
			return nil, 0, &UsageError{Err: fmt.Errorf("%w\n(fix %s, or pass --regenerate-spec to replace it with a fresh demo spec; the current one is kept beside it)", err, path)}
		}
		if err := d.Adopt(spec); err != nil {
			return nil, 0, &UsageError{Err: fmt.Errorf("%s is no longer the demo perimeter: %v. Run it as your own perimeter with --config %s (without the demo's backend, user and node), or pass --regenerate-spec to write a fresh demo spec (the current one is kept beside it)", path, err, path)}
		}
		specBase := d.PortBase()
		if cfg.PortBaseSet && cfg.PortBase != 0 && cfg.PortBase != specBase {
			return nil, 0, &UsageError{Err: fmt.Errorf("--port-base %d does not match %s, which puts the endpoint on %s, STS on %s, the gateway on %s and the backend on %s (and its security group admits the endpoint's port only). Run without --port-base to use the spec's ports, or add --regenerate-spec to write the demo spec for port base %d (the current one is kept beside it)",
				cfg.PortBase, path, d.EndpointAddr, d.STSAddr, d.GatewayAddr, strings.TrimPrefix(d.BackendURL, "https://"), cfg.PortBase)}
		}
		base := specBase // 0 (free ports) when the spec's ports are not a demo layout
		if cfg.PortBaseSet {
			base = cfg.PortBase
		}
		if err := openDemo(lns, &d, base, true); err != nil {
			return nil, 0, err
		}
		return &d, base, nil
	}

	if err := openDemo(lns, &d, cfg.PortBase, false); err != nil {
		return nil, 0, err
	}
	b, err := d.Spec()
	if err != nil {
		return nil, 0, fmt.Errorf("write the demo spec: %w", err)
	}
	if exists {
		kept := fmt.Sprintf("%s.%s.bak", path, time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(path, kept); err != nil {
			return nil, 0, fmt.Errorf("keep the current spec before replacing it: %w", err)
		}
		fmt.Fprintf(out, "phantom up: --regenerate-spec: replaced %s with a fresh demo spec; the one it replaces (with your edits) is now %s\n", path, kept)
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return nil, 0, fmt.Errorf("write the demo spec: %w", err)
	}
	return &d, cfg.PortBase, nil
}
