// Command soak runs a Phantom perimeter as separate processes (an STS, gateway
// replicas, endpoints and the detector, on a PostgreSQL store; internal/proctest) under
// steady SigV4-signed load for a long time, and watches two things: that every request
// keeps succeeding, and that no process's memory keeps growing. Every -interval it prints
// the requests, errors by kind and each process's VmRSS/VmHWM; at the end a summary with a
// memory verdict per process (see verdict.go for the rule). It exits 1 when a process's
// memory grows or more than -max-errors requests fail, 2 on bad flags.
//
// The role session it signs with is renewed before it expires, so a run may last longer
// than the role's one-hour maxSessionDuration.
//
//	go run ./bench/soak -duration 10m -concurrency 8 -gateways 2 -endpoints 2
//
// It needs a PostgreSQL server (-store, default $PHANTOM_TEST_POSTGRES_DSN), where it
// creates its own schema and drops it at the end; everything else listens on 127.0.0.1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/phantom-perimeter/phantom/internal/proctest"
)

func main() { os.Exit(run()) }

func run() int {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to keep the load on (e.g. 30s, 10m, 2h)")
	flag.DurationVar(&o.interval, "interval", 0, "report period (0: 10s, or a tenth of -duration if shorter)")
	flag.IntVar(&o.clients, "concurrency", 8, "concurrent clients, each with one request in flight")
	flag.IntVar(&o.gateways, "gateways", 2, "gateway replicas")
	flag.IntVar(&o.endpoints, "endpoints", 2, "endpoints, each forwarding to every gateway")
	flag.BoolVar(&o.detector, "detector", true, "run `phantom detector` too")
	flag.StringVar(&o.store, "store", os.Getenv("PHANTOM_TEST_POSTGRES_DSN"), "PostgreSQL server URL (postgres://…); a schema is created in it and dropped at the end")
	flag.StringVar(&o.bin, "phantom", "", "phantom binary (default: build ./cmd/phantom)")
	flag.Float64Var(&o.rate, "rate", 0, "cap on requests/s of all clients together (0: as fast as answers come)")
	flag.DurationVar(&o.renew, "renew", 0, "renew the role session this often (0: at three quarters of its lifetime)")
	flag.IntVar(&o.maxErrors, "max-errors", 0, "failed requests allowed before the soak fails")
	flag.BoolVar(&o.keep, "keep", false, "keep the cluster's directory (logs, audit chains) after a successful run")
	flag.Parse()
	if o.store == "" {
		return fail(2, "no PostgreSQL server: set -store or PHANTOM_TEST_POSTGRES_DSN")
	}
	if o.duration <= 0 || o.clients < 1 || o.gateways < 1 || o.endpoints < 1 || o.interval < 0 || o.maxErrors < 0 || o.rate < 0 {
		return fail(2, "-duration, -concurrency, -gateways and -endpoints must be positive; -interval, -rate and -max-errors not negative")
	}
	if o.interval == 0 {
		o.interval = min(10*time.Second, o.duration/10)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.bin == "" {
		dir, err := os.MkdirTemp("", "phantom-soak-bin-")
		if err != nil {
			return fail(1, err.Error())
		}
		defer os.RemoveAll(dir)
		if o.bin, err = proctest.Build(ctx, dir); err != nil {
			return fail(1, err.Error())
		}
	}
	if o.detector && !proctest.HasCommand(ctx, o.bin, "detector") {
		return fail(2, "this phantom has no detector command: run with -detector=false")
	}
	rep, err := soak(ctx, os.Stdout, o)
	if err != nil {
		return fail(1, err.Error())
	}
	if len(rep.failures(o.maxErrors)) > 0 {
		return 1
	}
	return 0
}

func fail(code int, msg string) int {
	fmt.Fprintln(os.Stderr, "bench/soak:", msg)
	return code
}
