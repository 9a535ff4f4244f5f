package sts

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// presigned is a request signed once and replayed: the benchmarks measure the server,
// not the client's signer (SigV4 has no replay protection within the clock skew window;
// the gateway's audit/detector own replay detection).
type presigned struct {
	header http.Header
	body   []byte
}

func presign(b *testing.B, creds aws.Credentials, f url.Values) presigned {
	r := signedRequest(b, creds, f)
	body, _ := io.ReadAll(r.Body)
	return presigned{header: r.Header.Clone(), body: body}
}

func (p presigned) request() *http.Request {
	r := httptest.NewRequest(http.MethodPost, "https://sts.us-east-1.amazonaws.com/", bytes.NewReader(p.body))
	r.Header = p.header.Clone()
	r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
	return r
}

func benchCall(b *testing.B, e *env, p presigned) {
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, p.request())
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkGetCallerIdentity is the baseline: SigV4 verification, XML, audit, no policy.
func BenchmarkGetCallerIdentity(b *testing.B) {
	e := newEnv(b)
	benchCall(b, e, presign(b, e.users["alice"], form("GetCallerIdentity")))
}

// BenchmarkAssumeRole adds trust and identity policy evaluation and minting (the fake
// issuer's random keys; sealing cost belongs to internal/identity's benchmarks).
func BenchmarkAssumeRole(b *testing.B) {
	e := newEnv(b)
	benchCall(b, e, presign(b, e.users["alice"], form("AssumeRole", "RoleArn", appARN, "RoleSessionName", "bench")))
}

// BenchmarkAssumeRoleTagsPolicy: a session policy, two tags and a transitive key.
func BenchmarkAssumeRoleTagsPolicy(b *testing.B) {
	e := newEnv(b)
	benchCall(b, e, presign(b, e.users["alice"], form("AssumeRole", "RoleArn", appARN, "RoleSessionName", "bench",
		"Policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"execute-api:Invoke","Resource":"*"}]}`,
		"Tags.member.1.Key", "team", "Tags.member.1.Value", "payments", "Tags.member.2.Key", "cost", "Tags.member.2.Value", "42",
		"TransitiveTagKeys.member.1", "team")))
}

// TestLoopbackThroughput measures AssumeRole over HTTPS on loopback: concurrent clients,
// each signing every request with aws-sdk-go-v2's signer over a keep-alive connection.
// Run with PHANTOM_BENCH_STS=1 (optionally PHANTOM_BENCH_STS_CLIENTS, _SECONDS).
func TestLoopbackThroughput(t *testing.T) {
	if os.Getenv("PHANTOM_BENCH_STS") != "1" {
		t.Skip("set PHANTOM_BENCH_STS=1 to measure AssumeRole throughput over HTTPS on loopback")
	}
	clients := 2 * runtime.GOMAXPROCS(0)
	dur := 3 * time.Second
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
	e := newEnv(t)
	e.serve(t)
	for _, action := range []string{"GetCallerIdentity", "AssumeRole"} {
		f := form(action)
		if action == "AssumeRole" {
			f = form(action, "RoleArn", appARN, "RoleSessionName", "loopback")
		}
		body := f.Encode()
		hash := sha256Hex([]byte(body))
		signer := v4.NewSigner()
		creds := e.users["alice"]
		tr := e.srv.Client().Transport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = clients
		hc := &http.Client{Transport: tr}
		var ok, failed atomic.Int64
		var lat atomic.Int64
		ctx, cancel := context.WithTimeout(context.Background(), dur)
		var wg sync.WaitGroup
		start := time.Now()
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					r, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/", strings.NewReader(body))
					r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					t0 := time.Now()
					if err := signer.SignHTTP(ctx, creds, r, hash, "sts", "us-east-1", t0); err != nil {
						failed.Add(1)
						continue
					}
					resp, err := hc.Do(r)
					if err != nil {
						if ctx.Err() == nil {
							failed.Add(1)
						}
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ok.Add(1)
						lat.Add(int64(time.Since(t0)))
					} else {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		cancel()
		elapsed := time.Since(start)
		n := ok.Load()
		if n == 0 || failed.Load() > 0 {
			t.Fatalf("%s: %d ok, %d failed", action, n, failed.Load())
		}
		t.Logf("%s over HTTPS loopback: %d clients, %.1fs: %d requests, %.0f req/s, mean latency %s (GOMAXPROCS=%d)",
			action, clients, elapsed.Seconds(), n, float64(n)/elapsed.Seconds(), time.Duration(lat.Load()/n).Round(time.Microsecond), runtime.GOMAXPROCS(0))
		tr.CloseIdleConnections()
	}
}
