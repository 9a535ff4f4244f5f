package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"time"

	"github.com/phantom-perimeter/phantom/internal/proctest"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

type options struct {
	bin       string // the phantom binary
	store     string // PostgreSQL server; the soak creates and drops its own schema in it
	duration  time.Duration
	interval  time.Duration // one report line per interval
	sample    time.Duration // memory sampling period (0: a second, or interval if shorter)
	clients   int
	gateways  int
	endpoints int
	detector  bool
	rate      float64       // requests/s cap of all clients together; 0: none
	renew     time.Duration // session renewal period; 0: at three quarters of its lifetime
	maxErrors int
	keep      bool // keep the cluster's directory (logs, audit chains) even when all went well
}

// report is what a soak found.
type report struct {
	elapsed  time.Duration
	total    proctest.Stats
	renewals int
	mem      []memReport
}

type memReport struct {
	name string
	v    verdict
}

// failures lists why the soak failed: errors over the allowance, memory growing.
func (r report) failures(maxErrors int) []string {
	var f []string
	if n := r.total.ErrorCount(); n > maxErrors {
		f = append(f, fmt.Sprintf("%d failed requests, at most %d allowed: %s", n, maxErrors, r.total.ErrorSummary()))
	}
	for _, m := range r.mem {
		if m.v.growing {
			f = append(f, fmt.Sprintf("%s: memory growing, median VmRSS %s → %s MiB (%+.0f%%)", m.name, mib(m.v.middle), mib(m.v.last), 100*m.v.change()))
		}
	}
	if r.total.OK == 0 {
		f = append(f, "no request succeeded")
	}
	return f
}

// track is the memory samples of one process, or of this one's Go heap.
type track struct {
	name string
	read func() (proctest.Mem, error)
	rss  []uint64
	last proctest.Mem
	peak uint64
}

func (t *track) sample() error {
	m, err := t.read()
	if err != nil {
		return err
	}
	t.rss = append(t.rss, m.RSS)
	t.last = m
	t.peak = max(t.peak, m.HWM)
	return nil
}

// liveHeap is this process's Go heap that the last GC found live: unlike HeapAlloc it
// does not swing with where the sample falls in the GC cycle.
func liveHeap() (proctest.Mem, error) {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return proctest.Mem{}, errors.New("runtime/metrics has no /gc/heap/live:bytes")
	}
	v := s[0].Value.Uint64()
	return proctest.Mem{RSS: v, HWM: v}, nil
}

// soak starts a cluster on a fresh schema, puts load on it for o.duration, prints a line
// every o.interval and a summary at the end, and returns what it found. An error means
// the soak could not run (or was interrupted), not that it found a problem: see
// report.failures.
func soak(ctx context.Context, out io.Writer, o options) (rep report, err error) {
	if o.interval <= 0 || o.duration <= 0 || o.clients < 1 {
		return rep, errors.New("duration, interval and clients must be positive")
	}
	if o.sample <= 0 {
		o.sample = min(time.Second, o.interval)
	}
	dsn, _, drop, err := storetest.FreshSchema(ctx, o.store, "soak")
	if err != nil {
		return rep, err
	}
	defer drop(context.WithoutCancel(ctx))
	dir, err := os.MkdirTemp("", "phantom-soak-")
	if err != nil {
		return rep, err
	}
	defer func() {
		if err != nil || o.keep || len(rep.failures(o.maxErrors)) > 0 {
			fmt.Fprintf(out, "cluster directory kept (logs, audit chains): %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()

	c, err := proctest.Start(ctx, proctest.Config{
		Bin: o.bin, Dir: dir, StoreURL: dsn,
		Gateways: o.gateways, Endpoints: o.endpoints, Detector: o.detector,
	})
	if err != nil {
		return rep, err
	}
	defer c.Close()
	user, err := c.CreateUserKey(ctx)
	if err != nil {
		return rep, err
	}
	sess, err := c.KeepSession(ctx, user, "soak", o.renew)
	if err != nil {
		return rep, err
	}
	defer sess.Close()
	for i := range o.endpoints {
		if r := c.Call(ctx, i, sess.Creds()); r.Status != 200 {
			return rep, fmt.Errorf("first call through endpoint %d: %s", i, orKind(r))
		}
	}

	var tracks []*track
	for _, p := range c.Processes() {
		tracks = append(tracks, &track{name: p.Name, read: p.Mem})
	}
	tracks = append(tracks, &track{name: "load", read: liveHeap})

	fmt.Fprintf(out, "phantom soak: %d gateway(s), %d endpoint(s), %s, %d clients%s, %s, a line every %s, GOMAXPROCS=%d\n",
		o.gateways, o.endpoints, map[bool]string{true: "detector", false: "no detector"}[o.detector], o.clients,
		rateNote(o.rate), o.duration, o.interval, runtime.GOMAXPROCS(0))
	fmt.Fprintf(out, "memory in MiB: VmRSS/VmHWM of each process; load = this process's live Go heap\n\n")
	var hdr strings.Builder
	fmt.Fprintf(&hdr, "%8s %9s %8s %6s", "elapsed", "requests", "req/s", "errors")
	for _, t := range tracks {
		fmt.Fprintf(&hdr, " %13s", t.name)
	}
	fmt.Fprintln(out, hdr.String())

	var tally proctest.Tally
	start := time.Now()
	end := start.Add(o.duration)
	loadCtx, stopLoad := context.WithDeadline(ctx, end)
	defer stopLoad()
	loadDone := make(chan error, 1)
	go func() {
		loadDone <- c.Load(loadCtx, proctest.LoadOptions{Concurrency: o.clients, Creds: sess.Creds, Rate: o.rate}, &tally)
	}()

	sampleTick := time.NewTicker(o.sample)
	defer sampleTick.Stop()
	nextLine := start.Add(o.interval)
	lineTimer := time.NewTimer(time.Until(nextLine))
	defer lineTimer.Stop()
	lastLine, lastSample := start, time.Time{}
	sampleAll := func() error {
		lastSample = time.Now()
		for _, t := range tracks {
			if err := t.sample(); err != nil {
				return fmt.Errorf("%w; the component's log:\n%s", err, tailOf(c, t.name))
			}
		}
		return nil
	}
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			runErr = fmt.Errorf("interrupted after %s", time.Since(start).Round(time.Second))
			break loop
		case err := <-sess.Errors():
			// A failed renewal is an error of the run; the current session keeps the load going.
			fmt.Fprintf(out, "session: %v\n", err)
			rep.total.Add(proctest.Stats{Errors: map[string]int{"session renewal": 1}})
		case <-sampleTick.C:
			if time.Since(lastSample) < o.sample/2 {
				continue // a line just took one
			}
			if err := sampleAll(); err != nil {
				runErr = err
				break loop
			}
		case now := <-lineTimer.C:
			if err := sampleAll(); err != nil {
				runErr = err
				break loop
			}
			s := tally.Take()
			rep.total.Add(s)
			n := s.OK + s.ErrorCount()
			var line strings.Builder
			fmt.Fprintf(&line, "%8s %9d %8.0f %6d", now.Sub(start).Round(time.Second), n, float64(n)/now.Sub(lastLine).Seconds(), s.ErrorCount())
			for _, t := range tracks {
				if t.name == "load" {
					fmt.Fprintf(&line, " %13s", mib(t.last.RSS))
				} else {
					fmt.Fprintf(&line, " %13s", mib(t.last.RSS)+"/"+mib(t.last.HWM))
				}
			}
			if s.ErrorCount() > 0 {
				fmt.Fprintf(&line, "  %s", s.ErrorSummary())
			}
			fmt.Fprintln(out, line.String())
			lastLine = now
			if !now.Before(end) {
				break loop
			}
			nextLine = nextLine.Add(o.interval)
			if nextLine.After(end) {
				nextLine = end
			}
			lineTimer.Reset(time.Until(nextLine))
		}
	}
	stopLoad()
	if err := <-loadDone; err != nil && runErr == nil {
		runErr = err
	}
	// Requests answered between the last line and the clients stopping.
	rep.total.Add(tally.Take())
	rep.elapsed = time.Since(start)
	rep.renewals = sess.Renewals()
	for _, t := range tracks {
		rep.mem = append(rep.mem, memReport{name: t.name, v: judge(t.rss, t.peak)})
	}
	printSummary(out, rep, o)
	return rep, runErr
}

func printSummary(out io.Writer, rep report, o options) {
	n := rep.total.OK + rep.total.ErrorCount()
	fmt.Fprintf(out, "\ntotal: %d requests in %s, %.0f req/s, %d errors", n, rep.elapsed.Round(time.Second), float64(n)/rep.elapsed.Seconds(), rep.total.ErrorCount())
	if rep.total.ErrorCount() > 0 {
		fmt.Fprintf(out, " (%s)", rep.total.ErrorSummary())
	}
	fmt.Fprintf(out, "; session renewed %d time(s)\n", rep.renewals)
	fmt.Fprintf(out, "memory: median VmRSS of the middle and last thirds of the run (the first is warm-up);\n")
	fmt.Fprintf(out, "growing = up more than %.0f%% and more than %s MiB\n", 100*growthRatio, mib(growthMin))
	fmt.Fprintf(out, "%-12s %8s %8s %8s %8s  %s\n", "process", "middle", "last", "change", "peak", "verdict")
	for _, m := range rep.mem {
		peak := "HWM"
		if m.name == "load" {
			peak = "heap"
		}
		fmt.Fprintf(out, "%-12s %8s %8s %+7.1f%% %8s  %s (peak is %s)\n", m.name, mib(m.v.middle), mib(m.v.last), 100*m.v.change(), mib(m.v.peak), m.v, peak)
	}
	if f := rep.failures(o.maxErrors); len(f) > 0 {
		fmt.Fprintf(out, "FAIL:\n  %s\n", strings.Join(f, "\n  "))
	} else {
		fmt.Fprintln(out, "PASS")
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

func rateNote(r float64) string {
	if r <= 0 {
		return ""
	}
	return fmt.Sprintf(" (at most %.0f req/s)", r)
}

func orKind(r proctest.Reply) string {
	if r.Err != nil {
		return r.Err.Error()
	}
	if k := proctest.ErrorKind(r); k != "" {
		return k
	}
	return "200"
}

func tailOf(c *proctest.Cluster, name string) string {
	for _, p := range c.Processes() {
		if p.Name == name {
			s := p.Log()
			if len(s) > 3000 {
				s = "…" + s[len(s)-3000:]
			}
			return s
		}
	}
	return ""
}
