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
}

type result struct {
	n, errors int
	firstErr  error
	elapsed   time.Duration
	p50, p99  time.Duration
}

func (r result) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

// load runs c clients against t for d, each signing every request afresh with the AWS
// SDK's signer (the same client-side cost for every target), and reports throughput and
// latency percentiles.
func load(ctx context.Context, p *perimeter, t target, c int, d time.Duration) result {
	signer := v4.NewSigner()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	lat := make([][]time.Duration, c)
	errs := make([]int, c)
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				err := call(ctx, signer, p.creds, t)
				if ctx.Err() != nil {
					return // the clock ran out mid-request: not a failure
				}
				if err != nil {
					errs[i]++
					once.Do(func() { firstErr = err })
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	r := result{elapsed: time.Since(start), firstErr: firstErr}
	var all []time.Duration
	for i := range c {
		all = append(all, lat[i]...)
		r.errors += errs[i]
	}
	r.n = len(all)
	if r.n > 0 {
		slices.Sort(all)
		r.p50 = all[r.n*50/100]
		r.p99 = all[min(r.n-1, r.n*99/100)]
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
