// Command gateway measures what the data path costs. In one run it puts the same
// SigV4-signed load (aws-sdk-go-v2's signer) on the same backend (https, requiring the
// caller's perimeter certificate: mutual TLS, as the demo ships it) through
//
//	(a) a bare Go TLS reverse proxy (the baseline),
//	(b) the gateway directly (SigV4, IAM evaluation, audit, identity assertion),
//	(c) the endpoint, then the gateway in the same process, the request handed over in
//	    memory (phantom up, phantom gateway --endpoint),
//	(d) the endpoint in a process of its own (this binary, re-executed) passing each
//	    caller's connection to the gateway's process (phantom endpoint --handoff fd),
//	(e) the endpoint and the gateway in one process over an mTLS hop, as phantom up ran
//	    before the in-memory handover,
//	(f) the endpoint process splicing each caller's connection through an mTLS tunnel
//	    to the gateway's process, as across hosts (--handoff tunnel), and
//	(g) the endpoint process re-proxying each request over pooled mTLS (--handoff http),
//
// at several concurrencies, and prints requests/s, p50/p99 latency and the ratios to (a),
// and the CPU time per request of the bench's processes (clients and the endpoint process
// included) and its ratio: (a)'s CPU per request over the target's, the throughput ratio a
// CPU-bound machine would show. It then prints each server's own CPU per request, read
// from a profile of the load labelled by role (roles.go): what a host of its own would
// pay. Last it verifies identity assertions the backend received, as a backend would, and
// prints that cost apart: the backend under load verifies nothing. Everything runs on
// loopback.
//
//	go run ./bench/gateway -duration 5s -concurrency 1,16,32,64 -rounds 5
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

func main() {
	if file := os.Getenv(childEnv); file != "" {
		if err := runChild(file); err != nil {
			fmt.Fprintln(os.Stderr, "bench/gateway endpoint process:", err)
			os.Exit(1)
		}
		return
	}
	duration := flag.Duration("duration", 5*time.Second, "how long each target is measured at each concurrency")
	warmup := flag.Duration("warmup", time.Second, "unmeasured load before each measurement")
	conc := flag.String("concurrency", "1,16,32,64", "comma-separated numbers of concurrent clients")
	only := flag.String("only", "", "measure only the targets whose letter is in this (b to g; \"cd\" for two); the baseline (a) always runs")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the load (its samples labelled role=clients, backend or server) to this file, and the endpoint process's to FILE.endpoint")
	endpointCPU := flag.Int("endpoint-cpu", -1, "run the endpoint process of (d), (f) and (g) on this CPU alone and everything else on the others: the endpoint on a host of its own, measured in throughput (Linux)")
	rounds := flag.Int("rounds", 1, "split each cell into this many slices, measured in turns across the targets, so load from other processes falls on all of them alike")
	flag.Parse()
	levels, err := parseLevels(*conc)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/gateway:", err)
		os.Exit(2)
	}
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench/gateway: -rounds must be at least 1")
		os.Exit(2)
	}
	o := options{duration: *duration, warmup: *warmup, levels: levels, only: *only, rounds: *rounds, cpuprofile: *cpuprofile}
	if *cpuprofile != "" {
		o.child.profile = *cpuprofile + ".endpoint"
	}
	if *endpointCPU >= 0 {
		rest, err := otherCPUs(*endpointCPU)
		if err == nil {
			err = pin(rest)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/gateway: -endpoint-cpu:", err)
			os.Exit(2)
		}
		o.child.cpus, o.cpus = []int{*endpointCPU}, rest
	}
	if err := run(context.Background(), os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/gateway:", err)
		os.Exit(1)
	}
}

type options struct {
	duration, warmup time.Duration
	levels           []int
	only             string
	rounds           int    // 0 or 1: each target measured once per cell
	cpuprofile       string // "": no profile of the load is written
	child            childOptions
	cpus             []int // the CPUs the bench runs on when its endpoint process has its own; nil: not bound
}

func parseLevels(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			return nil, fmt.Errorf("concurrency %q is not a number from 1 to 4096", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// run measures every target, its clients and the backend under their pprof roles, so the
// server's own share of the CPU is known.
func run(ctx context.Context, out io.Writer, o options) (err error) {
	pprof.Do(ctx, pprof.Labels(roleLabel, roleClients), func(ctx context.Context) { err = measure(ctx, out, o) })
	return err
}

func measure(ctx context.Context, out io.Writer, o options) error {
	dir, err := os.MkdirTemp("", "phantom-bench-gateway-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := newPerimeter(ctx, dir, rand.Reader, log, o.child)
	if err != nil {
		return err
	}
	defer p.close()
	p.prof = &profiler{keep: o.cpuprofile != ""}

	fmt.Fprintf(out, "phantom gateway bench: GET %s, %s per cell after %s warm-up, GOMAXPROCS=%d\n\n",
		benchPath, o.duration, o.warmup, gomaxprocs())
	if o.cpus != nil {
		fmt.Fprintf(out, "the endpoint process of (d), (f) and (g) runs on CPUs %v alone; clients, backend, bare proxy and gateway on CPUs %v\n\n", o.child.cpus, o.cpus)
	}
	fmt.Fprintf(out, "%-40s %5s %10s %10s %10s %8s %10s %9s %8s\n", "target", "conc", "req/s", "p50", "p99", "x (a)", "p99-(a)", "cpu/req", "(a)/cpu")
	rounds := max(o.rounds, 1)
	var apart []string  // rows of the targets with an endpoint process, its CPU left out
	var server []string // every target's server alone
	var profiled, noRole time.Duration
	for _, c := range o.levels {
		var ts []target
		for i, t := range p.targets {
			if i == 0 || o.only == "" || strings.Contains(o.only, t.name[1:2]) {
				ts = append(ts, t)
			}
		}
		for _, t := range ts {
			load(ctx, p, t, c, o.warmup)
		}
		rs := make([]result, len(ts))
		for range rounds {
			for i, t := range ts {
				rs[i].add(load(ctx, p, t, c, o.duration/time.Duration(rounds)))
			}
		}
		for i := range rs {
			rs[i].finish()
		}
		for i, t := range ts {
			r := rs[i]
			if r.errors > 0 {
				return fmt.Errorf("%s at %d clients: %d failed requests (first: %v)", t.name, c, r.errors, r.firstErr)
			}
			base := rs[0]
			fmt.Fprintf(out, "%-40s %5d %10.0f %10s %10s %8.2f %10s %9s %8.2f\n", t.name, c, r.rps(),
				round(r.p50), round(r.p99), r.rps()/base.rps(), round(r.p99-base.p99),
				r.cpuPerReq().Round(time.Microsecond), float64(base.cpuPerReq())/float64(r.cpuPerReq()))
			profiled, noRole = profiled+r.profiled, noRole+r.noRole
			ep := "-"
			if t.apart {
				ep = (r.childCPU / time.Duration(r.n)).Round(time.Microsecond).String()
			}
			if r.server == 0 || base.server == 0 {
				server = append(server, fmt.Sprintf("%-40s %5d %10s %9s %12s", t.name, c, noSamples, "-", ep))
			} else {
				server = append(server, fmt.Sprintf("%-40s %5d %10s %9.2f %12s", t.name, c, r.serverCPUPerReq().Round(100*time.Nanosecond),
					float64(base.serverCPUPerReq())/float64(r.serverCPUPerReq()), ep))
			}
			if t.apart {
				apart = append(apart, fmt.Sprintf("%-40s %5d %9s %8.2f %12s", t.name, c, r.hostCPUPerReq().Round(time.Microsecond),
					float64(base.cpuPerReq())/float64(r.hostCPUPerReq()), (r.childCPU/time.Duration(r.n)).Round(time.Microsecond)))
			}
		}
	}
	if len(apart) > 0 {
		fmt.Fprintf(out, "\nwith the endpoint on a host of its own: the CPU per request the rest pays (clients, backend, gateway), its ratio to (a)'s, and the endpoint process's apart\n")
		fmt.Fprintf(out, "%-40s %5s %9s %8s %12s\n", "target", "conc", "cpu/req", "(a)/cpu", "endpoint/req")
		for _, l := range apart {
			fmt.Fprintln(out, l)
		}
	}
	if p.prof.failed != nil {
		fmt.Fprintf(out, "\n%v\n", p.prof.failed)
	} else if profiled > 0 {
		fmt.Fprintf(out, "\neach server on a host of its own, its callers, backend and endpoint process on others: the server's own CPU per request\n"+
			"(its part of a profile of the load, labelled by role; %.0f%% of the profiled CPU, garbage collection and scheduling, had no role and is left out),\n"+
			"its ratio to (a)'s, and the endpoint process's CPU per request apart\n", 100*float64(noRole)/float64(profiled))
		fmt.Fprintf(out, "%-40s %5s %10s %9s %12s\n", "target", "conc", "server/req", "(a)/server", "endpoint/req")
		for _, l := range server {
			fmt.Fprintln(out, l)
		}
	}
	if o.cpuprofile != "" {
		if err := p.prof.write(o.cpuprofile); err != nil {
			return err
		}
	}
	fwd, dialed, err := p.hopStats()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n(g)'s mTLS hop: %d requests forwarded over %d connections dialed (pooled HTTP/1.1, kept alive)\n", fwd, dialed)
	d, err := verifyCost(ctx, p, 2000)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "backend's own cost, apart: verifying one identity assertion (gateway.AssertionVerifier.VerifyRequest) takes %s of CPU\n", d.Round(100*time.Nanosecond))
	return nil
}

// noSamples stands for a server share too short for the profiler's 10 ms samples.
const noSamples = "no samples"

func round(d time.Duration) time.Duration {
	if d < 0 {
		return -round(-d)
	}
	return d.Round(time.Microsecond)
}
