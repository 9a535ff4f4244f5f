package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// emptyHash is the SHA-256 of an empty payload, which every GET signs.
var emptyHash = func() string { h := sha256.Sum256(nil); return hex.EncodeToString(h[:]) }()

type target struct {
	name   string
	url    string // https://host:port + benchPath
	client *http.Client
	// apart: the endpoint runs in the child process, whose CPU is also reported apart.
	apart bool
}

type result struct {
	n, errors int
	firstErr  error
	elapsed   time.Duration
	p50, p99  time.Duration
	lat       []time.Duration // every request's latency, until finish
	cpu       time.Duration   // CPU time of the bench's processes (clients included) while measuring
	childCPU  time.Duration   // of which the endpoint process's
	server    time.Duration   // the server's part of the bench process's CPU, from its profile
	profiled  time.Duration   // all of the bench process's CPU in its profile
	noRole    time.Duration   // of which no role's (garbage collection, scheduling)
}

// cpuPerReq is the bench's CPU time per request (the endpoint process's included): unlike req/s it does not move with
// what other processes on the machine take, so it compares the targets' cost.
func (r result) cpuPerReq() time.Duration {
	if r.n == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.n)
}

// hostCPUPerReq is the CPU time per request without the endpoint process's: what the
// gateway's host would pay with the endpoint on a host of its own.
func (r result) hostCPUPerReq() time.Duration {
	if r.n == 0 {
		return 0
	}
	return (r.cpu - r.childCPU) / time.Duration(r.n)
}

// serverCPUPerReq is the server's own CPU time per request, the endpoint process's
// apart: what its host would pay with clients, backend and endpoint on hosts of their own.
func (r result) serverCPUPerReq() time.Duration {
	if r.n == 0 {
		return 0
	}
	return r.server / time.Duration(r.n)
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// add merges the measurement of another slice of the same cell into r.
func (r *result) add(s result) {
	r.errors += s.errors
	if r.firstErr == nil {
		r.firstErr = s.firstErr
	}
	r.elapsed += s.elapsed
	r.cpu += s.cpu
	r.childCPU += s.childCPU
	r.server += s.server
	r.profiled += s.profiled
	r.noRole += s.noRole
	r.lat = append(r.lat, s.lat...)
}

// finish computes the count and percentiles.
func (r *result) finish() {
	r.n = len(r.lat)
	if r.n > 0 {
		slices.Sort(r.lat)
		r.p50 = r.lat[r.n*50/100]
		r.p99 = r.lat[min(r.n-1, r.n*99/100)]
	}
	r.lat = nil
}

func (r result) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

// load runs c clients against t for d, each signing every request afresh with the AWS
// SDK's signer (the same client-side cost for every target), and returns the latencies
// (result.finish computes throughput and percentiles). A request in flight when d is up
// completes uncounted rather than cancelled: cancelling would close its connection, and
// every slice would then pay new handshakes (for (f), a tunnel's too) that steady
// keep-alive traffic does not.
func load(ctx context.Context, p *perimeter, t target, c int, d time.Duration) result {
	signer := v4.NewSigner()
	lat := make([][]time.Duration, c)
	errs := make([]int, c)
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	p.prof.start()
	start, cpu0, child0 := time.Now(), p.cpuTime(), p.childCPU()
	deadline := start.Add(d)
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t0 := time.Now()
				err := call(ctx, signer, p.creds, t)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					errs[i]++
					once.Do(func() { firstErr = err })
					continue
				}
				if end := time.Now(); end.Before(deadline) {
					lat[i] = append(lat[i], end.Sub(t0))
				}
			}
		}()
	}
	wg.Wait()
	r := result{elapsed: d, cpu: p.cpuTime() - cpu0, childCPU: p.childCPU() - child0, firstErr: firstErr}
	roles, err := p.prof.stop()
	if err != nil && r.firstErr == nil {
		r.errors, r.firstErr = r.errors+1, err
	}
	for role, cpu := range roles {
		r.profiled += cpu
		switch role {
		case roleServer:
			r.server += cpu
		case "":
			r.noRole += cpu
		}
	}
	for i := range c {
		r.lat = append(r.lat, lat[i]...)
		r.errors += errs[i]
	}
	return r
}

func call(ctx context.Context, signer *v4.Signer, creds aws.Credentials, t target) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return err
	}
	if err := signer.SignHTTP(ctx, creds, req, emptyHash, "execute-api", benchRegion, time.Now()); err != nil {
		return err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", t.name, resp.StatusCode)
	}
	return nil
}
