package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// TestSTSBinaryThroughput measures the real `phantom sts` binary over HTTPS on loopback:
// concurrent clients over keep-alive connections, each request signed with
// aws-sdk-go-v2's signer; AssumeRole mints and seals a real session and appends an audit
// line per call. Run with PHANTOM_BENCH_STS=1 (optionally PHANTOM_BENCH_STS_CLIENTS and
// PHANTOM_BENCH_STS_SECONDS). Client and server share the machine's cores.
func TestSTSBinaryThroughput(t *testing.T) {
	if os.Getenv("PHANTOM_BENCH_STS") != "1" {
		t.Skip("set PHANTOM_BENCH_STS=1 to measure the phantom sts binary's throughput over HTTPS on loopback")
	}
	clients := 2 * runtime.GOMAXPROCS(0)
	dur := 5 * time.Second
	if s := os.Getenv("PHANTOM_BENCH_STS_SECONDS"); s != "" {
		if d, err := time.ParseDuration(s + "s"); err == nil && d > 0 {
			dur = d
		}
	}
	if s := os.Getenv("PHANTOM_BENCH_STS_CLIENTS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			clients = n
		}
	}
	bin := buildPhantom(t)
	s := startSTS(t, bin)
	ids := openIdentity(t, s.dataDir)
	key, err := ids.CreateAccessKey(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	creds := aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}
	hc := s.client(t)
	tr := hc.Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = clients

	// Wait for the server to see the key (its poll interval).
	call := func(ctx context.Context, body string) (int, error) {
		r, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		sum := sha256.Sum256([]byte(body))
		if err := v4.NewSigner().SignHTTP(ctx, creds, r, hex.EncodeToString(sum[:]), "sts", "us-east-1", time.Now()); err != nil {
			return 0, err
		}
		resp, err := hc.Do(r)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		code, err := call(context.Background(), "Action=GetCallerIdentity&Version=2011-06-15")
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not accept the new key: %d %v", code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	for _, bench := range []struct{ name, body string }{
		{"GetCallerIdentity", "Action=GetCallerIdentity&Version=2011-06-15"},
		{"AssumeRole", "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp&RoleSessionName=loopback"},
	} {
		var ok, failed atomic.Int64
		var mu sync.Mutex
		var lats []time.Duration
		ctx, cancel := context.WithTimeout(context.Background(), dur)
		var wg sync.WaitGroup
		start := time.Now()
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for ctx.Err() == nil {
					t0 := time.Now()
					code, err := call(ctx, bench.body)
					switch {
					case err == nil && code == http.StatusOK:
						ok.Add(1)
						mine = append(mine, time.Since(t0))
					case ctx.Err() == nil:
						failed.Add(1)
					}
				}
				mu.Lock()
				lats = append(lats, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		cancel()
		elapsed := time.Since(start)
		n := ok.Load()
		if n == 0 || failed.Load() > 0 {
			t.Fatalf("%s: %d ok, %d failed\n%s", bench.name, n, failed.Load(), s.logs())
		}
		sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
		t.Logf("phantom sts binary, %s over HTTPS loopback: %d clients, %.1fs: %d requests, %.0f req/s, p50 %s, p99 %s (GOMAXPROCS=%d, client in the same machine)",
			bench.name, clients, elapsed.Seconds(), n, float64(n)/elapsed.Seconds(),
			lats[len(lats)/2].Round(time.Microsecond), lats[len(lats)*99/100].Round(time.Microsecond), runtime.GOMAXPROCS(0))
	}
}
