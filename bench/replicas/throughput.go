package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/proctest"
)

func numCPU() int { return runtime.NumCPU() }

// setup is one of the two perimeters (a) compares.
type setup struct {
	name  string
	c     *started
	creds aws.Credentials
	res   []*result // per concurrency level
}

// result is one setup at one concurrency, summed over the rounds.
type result struct {
	stats          proctest.Stats
	elapsed        time.Duration
	gwCPU          []time.Duration // per gateway
	epCPU, loadCPU time.Duration
	p50, p99       time.Duration
}

func (r *result) rps() float64 { return float64(r.stats.OK) / r.elapsed.Seconds() }

// pct is CPU time as a percentage of one core over the measured time.
func (r *result) pct(cpu time.Duration) float64 { return 100 * cpu.Seconds() / r.elapsed.Seconds() }

func throughput(ctx context.Context, out io.Writer, o options) error {
	var setups []*setup
	defer func() {
		for _, s := range setups {
			s.c.close()
		}
	}()
	// Both perimeters run for the whole of (a), the one not measured idle, so each round
	// measures the two under the same conditions.
	for _, gws := range []int{1, 2} {
		c, err := start(ctx, o, proctest.Config{Gateways: gws, Endpoints: 1})
		if err != nil {
			return err
		}
		name := map[int]string{1: "one gateway", 2: "two gateways"}[gws]
		s := &setup{name: name, c: c}
		setups = append(setups, s)
		user, err := c.CreateUserKey(ctx)
		if err != nil {
			return err
		}
		if s.creds, err = c.AssumeRole(ctx, user, "bench"); err != nil {
			return err
		}
		if r := c.Call(ctx, 0, s.creds); r.Status != 200 {
			return fmt.Errorf("%s: first call: %+v", name, r)
		}
	}

	fmt.Fprintf(out, "(a) throughput through one endpoint, one gateway vs two replicas: GET /prod/orders signed with a role session,\n")
	fmt.Fprintf(out, "    %s per point in %d interleaved round(s) after %s warm-up; cpu%% = CPU time / wall time\n    (100 = one core; gw cpu%% per replica)\n", o.duration, o.rounds, o.warmup)
	machineNote(out)
	fmt.Fprintf(out, "\n%-13s %5s %9s %9s %9s %6s %8s %8s %9s\n", "setup", "conc", "req/s", "p50", "p99", "errors", "gw cpu%", "ep cpu%", "load cpu%")
	slice := o.duration / time.Duration(o.rounds)
	for _, conc := range o.levels {
		for _, s := range setups {
			if _, err := measure(ctx, s, conc, o.warmup); err != nil {
				return err
			}
		}
		rs := make([]*result, len(setups))
		for i := range rs {
			rs[i] = &result{}
		}
		for round := range o.rounds {
			for k := range setups {
				// Alternate who goes first, so neither always follows the other's load.
				i := k
				if round%2 == 1 {
					i = len(setups) - 1 - k
				}
				r, err := measure(ctx, setups[i], conc, slice)
				if err != nil {
					return err
				}
				rs[i].add(r)
			}
		}
		for i, s := range setups {
			r := rs[i]
			r.finish()
			var gw []string
			for _, t := range r.gwCPU {
				gw = append(gw, fmt.Sprintf("%.0f", r.pct(t)))
			}
			fmt.Fprintf(out, "%-13s %5d %9.0f %9s %9s %6d %8s %8.0f %9.0f", s.name, conc, r.rps(), r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond),
				r.stats.ErrorCount(), strings.Join(gw, "+"), r.pct(r.epCPU), r.pct(r.loadCPU))
			if r.stats.ErrorCount() > 0 {
				fmt.Fprintf(out, "  %s", r.stats.ErrorSummary())
			}
			fmt.Fprintln(out)
		}
		one, two := rs[0], rs[1]
		fmt.Fprintf(out, "%-13s %5d %8.2fx %8.2fx %8.2fx\n", "two/one", conc, two.rps()/one.rps(), ratio(two.p50, one.p50), ratio(two.p99, one.p99))
	}
	return nil
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func (r *result) add(o *result) {
	r.stats.Add(o.stats)
	r.elapsed += o.elapsed
	if r.gwCPU == nil {
		r.gwCPU = make([]time.Duration, len(o.gwCPU))
	}
	for i, t := range o.gwCPU {
		r.gwCPU[i] += t
	}
	r.epCPU += o.epCPU
	r.loadCPU += o.loadCPU
}

func (r *result) finish() {
	l := r.stats.Latencies
	slices.Sort(l)
	if n := len(l); n > 0 {
		r.p50 = l[n*50/100]
		r.p99 = l[min(n-1, n*99/100)]
	}
	r.stats.Latencies = nil
}

// measure puts conc clients on s's endpoint for d and returns what came back and the CPU
// time the gateways, the endpoint and this process used meanwhile.
func measure(ctx context.Context, s *setup, conc int, d time.Duration) (*result, error) {
	gws := s.c.GatewayAddrs()
	cpu := func() (gw []time.Duration, ep, self time.Duration, err error) {
		for i := range gws {
			t, err := s.c.Gateway(i).CPU()
			if err != nil {
				return nil, 0, 0, err
			}
			gw = append(gw, t)
		}
		if ep, err = s.c.Endpoint(0).CPU(); err != nil {
			return nil, 0, 0, err
		}
		return gw, ep, selfCPU(), nil
	}
	gw0, ep0, self0, err := cpu()
	if err != nil {
		return nil, err
	}
	var t proctest.Tally
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t0 := time.Now()
	err = s.c.Load(lctx, proctest.LoadOptions{Concurrency: conc, Creds: func() aws.Credentials { return s.creds }, Latencies: true}, &t)
	elapsed := time.Since(t0)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	gw1, ep1, self1, err := cpu()
	if err != nil {
		return nil, err
	}
	for i := range gw1 {
		gw1[i] -= gw0[i]
	}
	return &result{stats: t.Take(), elapsed: elapsed, gwCPU: gw1, epCPU: ep1 - ep0, loadCPU: self1 - self0}, nil
}

// selfCPU is this process's user and system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
