// Command replicas measures what gateway replicas give, with the perimeter run as
// separate processes on a PostgreSQL store (internal/proctest):
//
//	(a) throughput and latency through ONE endpoint in front of ONE gateway and in front
//	    of TWO gateway replicas, at several concurrencies, measured in interleaved rounds
//	    in the same run, with the ratio two/one;
//	(b) revocation propagation: with two gateways and two endpoints (endpoint i forwards
//	    only to gateway i), a role session is revoked N times and each endpoint is polled
//	    until it refuses the session; the distribution of (first refusal − revocation
//	    time) per gateway and overall.
//
// Replicas exist for availability and to spread load over hosts. On one machine a second
// gateway process adds no CPU: the load generator, the endpoint, both gateways, the STS
// and PostgreSQL share the same cores, so (a) cannot show a doubling; it shows what a
// second replica costs or gains when the cores are already busy. The output says so.
//
//	go run ./bench/replicas -concurrency 4,16,64 -duration 5s -rounds 3 -revocations 50
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/phantom-perimeter/phantom/internal/proctest"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

type options struct {
	bin, store  string
	levels      []int
	duration    time.Duration // per setup and concurrency, split over the rounds
	warmup      time.Duration
	rounds      int // 0: skip (a)
	revocations int // 0: skip (b)
	poll        time.Duration
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	conc := flag.String("concurrency", "4,16,64", "comma-separated numbers of concurrent clients for (a)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "(a): measured load per setup and concurrency, split over the rounds")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "(a): unmeasured load on each setup before each concurrency")
	flag.IntVar(&o.rounds, "rounds", 3, "(a): measure in this many turns alternating the setups, so drift and other processes' load fall on both alike (0: skip (a))")
	flag.IntVar(&o.revocations, "revocations", 50, "(b): revocations to time (0: skip (b))")
	flag.DurationVar(&o.poll, "poll", 2*time.Millisecond, "(b): how often each endpoint is tried after a revocation")
	flag.StringVar(&o.store, "store", os.Getenv("PHANTOM_TEST_POSTGRES_DSN"), "PostgreSQL server URL (postgres://…); each cluster gets its own schema, dropped at the end")
	flag.StringVar(&o.bin, "phantom", "", "phantom binary (default: build ./cmd/phantom)")
	flag.Parse()
	var err error
	if o.levels, err = parseLevels(*conc); err != nil {
		return fail(2, err)
	}
	if o.store == "" {
		return fail(2, fmt.Errorf("no PostgreSQL server: set -store or PHANTOM_TEST_POSTGRES_DSN"))
	}
	if o.rounds < 0 || o.revocations < 0 || o.duration <= 0 || o.warmup < 0 || o.poll <= 0 {
		return fail(2, fmt.Errorf("-rounds and -revocations must not be negative, -duration and -poll must be positive"))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.bin == "" {
		dir, err := os.MkdirTemp("", "phantom-replicas-bin-")
		if err != nil {
			return fail(1, err)
		}
		defer os.RemoveAll(dir)
		if o.bin, err = proctest.Build(ctx, dir); err != nil {
			return fail(1, err)
		}
	}
	if o.rounds > 0 {
		if err := throughput(ctx, os.Stdout, o); err != nil {
			return fail(1, err)
		}
	}
	if o.revocations > 0 {
		if o.rounds > 0 {
			fmt.Println()
		}
		if err := revocation(ctx, os.Stdout, o); err != nil {
			return fail(1, err)
		}
	}
	return 0
}

func fail(code int, err error) int {
	fmt.Fprintln(os.Stderr, "bench/replicas:", err)
	return code
}

func parseLevels(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("concurrency %q is not a number from 1 to 1024", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// started is a cluster on its own schema and directory.
type started struct {
	*proctest.Cluster
	close func()
}

func start(ctx context.Context, o options, cfg proctest.Config) (*started, error) {
	dsn, _, drop, err := storetest.FreshSchema(ctx, o.store, "replicas")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "phantom-replicas-")
	if err != nil {
		drop(context.WithoutCancel(ctx))
		return nil, err
	}
	cfg.Bin, cfg.Dir, cfg.StoreURL = o.bin, dir, dsn
	c, err := proctest.Start(ctx, cfg)
	if err != nil {
		drop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("%w (logs in %s)", err, dir)
	}
	return &started{Cluster: c, close: func() {
		c.Close()
		drop(context.WithoutCancel(ctx))
		os.RemoveAll(dir)
	}}, nil
}

func machineNote(out io.Writer) {
	fmt.Fprintf(out, "NOTE: this machine has %d CPU core(s), shared by the load generator, the endpoint(s), the gateways,\n"+
		"the STS and PostgreSQL (and whatever else runs). A second gateway replica adds a process, not a core, so two\n"+
		"replicas cannot double throughput here; replicas scale throughput only on hosts of their own.\n", numCPU())
}
