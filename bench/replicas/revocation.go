package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/phantom-perimeter/phantom/internal/proctest"
)

// neverDenied bounds the wait for one endpoint to refuse a revoked session.
const neverDenied = 10 * time.Second

// probe is what polling one endpoint around one revocation saw.
type probe struct {
	denied  time.Time      // when the first refusal came back (zero: none)
	latency time.Duration  // of the refused request
	other   proctest.Stats // replies neither 200 nor the refusal
}

func revocation(ctx context.Context, out io.Writer, o options) error {
	c, err := start(ctx, o, proctest.Config{Gateways: 2, Endpoints: 2, Pin: true})
	if err != nil {
		return err
	}
	defer c.close()
	user, err := c.CreateUserKey(ctx)
	if err != nil {
		return err
	}
	delays := make([][]time.Duration, 2) // per gateway
	var revokeCmd, refusedLatency []time.Duration
	var other proctest.Stats
	beforeReturn, never := 0, 0
	for n := range o.revocations {
		session, err := c.AssumeRole(ctx, user, "bench")
		if err != nil {
			return err
		}
		for i := range 2 {
			if r := c.Call(ctx, i, session); r.Status != 200 {
				return fmt.Errorf("revocation %d: the new session through endpoint %d: %+v", n+1, i, r)
			}
		}
		// Polling starts before the revocation, so a refusal that comes before the
		// `phantom iam revoke-sessions` process has even exited is timed too.
		pctx, cancel := context.WithTimeout(ctx, neverDenied)
		probes := make([]probe, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() { probes[i] = poll(pctx, c, i, session, o.poll) })
		}
		t0 := time.Now()
		revokedAt, err := c.RevokeSessions(ctx)
		returned := time.Now()
		revokeCmd = append(revokeCmd, returned.Sub(t0))
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		wg.Wait()
		cancel()
		for i, p := range probes {
			other.Add(p.other)
			if p.denied.IsZero() {
				never++
				continue
			}
			delays[i] = append(delays[i], p.denied.Sub(revokedAt))
			refusedLatency = append(refusedLatency, p.latency)
			if p.denied.Before(returned) {
				beforeReturn++
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The next session must be issued after this revocation's instant.
		time.Sleep(5 * time.Millisecond)
	}

	fmt.Fprintf(out, "(b) revocation propagation: %d revocations of a role session; 2 gateways, 2 endpoints, endpoint i forwards\n", o.revocations)
	fmt.Fprintf(out, "    only to gateway i; each endpoint is tried every %s from before the revocation until it refuses (403 AccessDeniedException).\n", o.poll)
	fmt.Fprintf(out, "    delay = when the first refusal came back − the revocation's time (TokenIssueTimeBefore, taken by\n")
	fmt.Fprintf(out, "    `phantom iam revoke-sessions` before its write); resolution: the poll period plus one request (refused requests: p50 %s)\n",
		pctl(refusedLatency, 0.5).Round(10*time.Microsecond))
	fmt.Fprintf(out, "NOTE: this machine's %d CPU core(s) run the pollers, both endpoints and gateways, the STS and PostgreSQL\n"+
		"(and whatever else runs): the delays include waiting for a core, and would be shorter on hosts of their own.\n", numCPU())
	fmt.Fprintf(out, "\n%-10s %4s %9s %9s %9s %9s %9s\n", "gateway", "n", "min", "p50", "p90", "p99", "max")
	var all []time.Duration
	for i, d := range delays {
		row(out, fmt.Sprintf("gateway-%d", i+1), d)
		all = append(all, d...)
	}
	row(out, "overall", all)
	fmt.Fprintf(out, "\nthe revoke-sessions command itself (process start, store write, exit): p50 %s, max %s\n",
		pctl(revokeCmd, 0.5).Round(time.Millisecond), pctl(revokeCmd, 1).Round(time.Millisecond))
	fmt.Fprintf(out, "refusals that came before that command had exited: %d of %d\n", beforeReturn, len(all))
	if never > 0 {
		fmt.Fprintf(out, "NEVER REFUSED within %s: %d\n", neverDenied, never)
	}
	if other.ErrorCount() > 0 {
		fmt.Fprintf(out, "other replies while polling: %s\n", other.ErrorSummary())
	}
	if never > 0 {
		return fmt.Errorf("%d endpoint(s) kept accepting a revoked session for %s", never, neverDenied)
	}
	return nil
}

// poll tries the session through endpoint i every period until it is refused or ctx ends.
func poll(ctx context.Context, c *started, i int, creds aws.Credentials, period time.Duration) probe {
	var p probe
	var t proctest.Tally
	for next := time.Now(); ctx.Err() == nil; next = next.Add(period) {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		} else {
			next = time.Now()
		}
		sent := time.Now()
		r := c.Call(ctx, i, creds)
		if ctx.Err() != nil {
			break
		}
		switch {
		case r.Err == nil && r.Status == 200:
		case r.Err == nil && r.Status == 403 && r.ErrorType == "AccessDeniedException":
			p.denied = time.Now()
			p.latency = p.denied.Sub(sent)
			p.other = t.Take()
			return p
		default:
			t.Record(r, 0, false)
		}
	}
	p.other = t.Take()
	return p
}

func row(out io.Writer, name string, d []time.Duration) {
	if len(d) == 0 {
		fmt.Fprintf(out, "%-10s %4d\n", name, 0)
		return
	}
	r := func(q float64) string { return pctl(d, q).Round(100 * time.Microsecond).String() }
	fmt.Fprintf(out, "%-10s %4d %9s %9s %9s %9s %9s\n", name, len(d), r(0), r(0.5), r(0.9), r(0.99), r(1))
}

// pctl is the nearest-rank q-quantile of d (q=0: the minimum).
func pctl(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	k := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}
