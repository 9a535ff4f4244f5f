package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/google/pprof/profile"
)

// On one machine the bench's CPU per request counts the clients and the backend beside the
// server under test, and on loopback the two ends of every connection pay each other's
// TCP work. A server on a host of its own pays only its own share, which is what a
// CPU-bound gateway host across hosts from its endpoints and callers would show. Every
// part of the bench runs under a pprof label naming its role, each measured slice is
// profiled, and the server's share is read from the samples.
const roleLabel = "role"

const (
	roleClients = "clients" // the load: signing, the callers' TLS and HTTP
	roleBackend = "backend" // the service behind every target
	roleServer  = "server"  // the target: bare proxy, gateway, in-process endpoints, tunnel server
)

// asRole runs f with the role label; goroutines f starts keep it, and so do the ones
// those start (net/http's connection goroutines, a transport's dialed connections). The
// goroutine gets ctx's labels back after f: ctx is the one run labelled for the clients.
func asRole(ctx context.Context, role string, f func()) {
	pprof.Do(ctx, pprof.Labels(roleLabel, role), func(context.Context) { f() })
}

// roleCPU is the CPU time each role took in a profile, from its samples (10 ms each at
// the profiler's 100 Hz); "" counts samples of no role (the garbage collector's
// background workers, the scheduler).
func roleCPU(p *profile.Profile) map[string]time.Duration {
	cpu := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			cpu = i
		}
	}
	out := map[string]time.Duration{}
	if cpu < 0 {
		return out
	}
	for _, s := range p.Sample {
		role := ""
		if v := s.Label[roleLabel]; len(v) > 0 {
			role = v[0]
		}
		out[role] += time.Duration(s.Value[cpu])
	}
	return out
}

// profiler profiles the bench slice by slice; merged keeps every slice for -cpuprofile.
type profiler struct {
	buf    bytes.Buffer
	keep   bool
	merged []*profile.Profile
	failed error // why slices are not profiled (another profile running): no server share
}

// start begins a slice's profile.
func (pr *profiler) start() {
	if pr.failed != nil {
		return
	}
	pr.buf.Reset()
	if err := pprof.StartCPUProfile(&pr.buf); err != nil {
		pr.failed = fmt.Errorf("cannot profile the load, so the server's share is not measured: %w", err)
	}
}

// stop ends the slice's profile and returns each role's CPU time in it.
func (pr *profiler) stop() (map[string]time.Duration, error) {
	if pr.failed != nil {
		return nil, nil
	}
	pprof.StopCPUProfile()
	p, err := profile.Parse(&pr.buf)
	if err != nil {
		return nil, fmt.Errorf("the load's CPU profile: %w", err)
	}
	if pr.keep {
		pr.merged = append(pr.merged, p)
	}
	return roleCPU(p), nil
}

// write writes the slices' profiles merged into one, for go tool pprof (-tagfocus
// role=server shows the server's share alone).
func (pr *profiler) write(file string) error {
	if len(pr.merged) == 0 {
		return fmt.Errorf("no profile of the load to write to %s", file)
	}
	p, err := profile.Merge(pr.merged)
	if err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := p.Write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
