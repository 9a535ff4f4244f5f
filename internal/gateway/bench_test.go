package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// inProcess is a backend without a network: it answers every request 200 with a short body,
// so the benchmarks measure the gateway, not loopback TCP.
type inProcess struct{}

func (inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Content-Type": {"text/plain"}},
		Body: io.NopCloser(strings.NewReader("ok")), ContentLength: 2, Request: r}, nil
}

type discardAudit struct{}

func (discardAudit) Record(context.Context, *audit.Event) error { return nil }

// discardWriter is a ResponseWriter that keeps nothing but the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func benchEnv(b *testing.B) *env {
	return newEnv(b, func(c *Config) {
		c.Transport = inProcess{}
		c.Auditor = discardAudit{}
	})
}

func runRequests(b *testing.B, gw http.Handler, r *http.Request, want int) {
	b.Helper()
	b.ReportAllocs()
	cpu := startCPU(b)
	for b.Loop() {
		if err := serveOne(gw, r, want); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// runParallel is runRequests from GOMAXPROCS goroutines at once (b.RunParallel), each
// with its own clone of r: the CPU per call when calls share the gateway's caches and
// the audit chain's group commit.
func runParallel(b *testing.B, gw http.Handler, r *http.Request, want int) {
	b.Helper()
	b.ReportAllocs()
	cpu := startCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		r := r.Clone(context.Background())
		for pb.Next() {
			if err := serveOne(gw, r, want); err != nil {
				b.Error(err) // not Fatal: this is not the benchmark's goroutine
				return
			}
		}
	})
	cpu.report(b)
}

func serveOne(gw http.Handler, r *http.Request, want int) error {
	r.Body = http.NoBody
	w := &discardWriter{h: make(http.Header, 4)}
	gw.ServeHTTP(w, r)
	if w.code != want && !(want == 200 && w.code == 0) {
		return fmt.Errorf("status %d, want %d", w.code, want)
	}
	return nil
}

// cpuClock measures the process's CPU time (user+sys, getrusage(2) RUSAGE_SELF) over a
// benchmark's loop: ns/op is wall time, which on a busy machine counts other processes'
// turns and under RunParallel divides by the goroutines; cpu-ns/op is what the calls
// cost this process, background goroutines (the audit chain's digests, the GC) included.
type cpuClock struct{ start time.Duration }

func startCPU(b *testing.B) cpuClock {
	b.ResetTimer()
	return cpuClock{processCPU(b)}
}

func (c cpuClock) report(b *testing.B) {
	b.StopTimer()
	if b.N > 0 {
		b.ReportMetric(float64(processCPU(b)-c.start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkServeHTTP is the whole pipeline for an allowed, signed request to an in-process
// backend: channel, API and route selection, SigV4 (signing key cached), the policy decision
// (compiled set cached), the assertion signature and the reverse proxy. Baseline is the bare
// httputil.ReverseProxy to the same backend: the difference is what authorization costs.
func BenchmarkServeHTTP(b *testing.B) {
	b.Run("baseline-reverse-proxy", func(b *testing.B) {
		target, _ := url.Parse("http://backend.invalid")
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }, Transport: inProcess{}}
		r := newRequest(b, "GET", "http://gateway/prod/orders/42", nil)
		r.RemoteAddr = "127.0.0.1:1"
		runRequests(b, rp, r, 200)
	})
	b.Run("user-key-direct", func(b *testing.B) {
		e := benchEnv(b)
		r := newRequest(b, "GET", "http://gateway/prod/orders/42?x=1", nil)
		r.Header.Set("X-Apigw-Api-Id", testAPI)
		r.Header.Set("User-Agent", "aws-sdk-go-v2/1.0")
		e.sign(r, e.keys["alice"], nil)
		r.RemoteAddr = "127.0.0.1:1"
		runRequests(b, e.gw, r, 200)
	})
	b.Run("user-key-direct-with-hooks", func(b *testing.B) {
		// The same with the Fresh and Metrics hooks a component process sets (a counting
		// Metrics here; internal/metrics' own benchmark prices the Prometheus side).
		var synced atomic.Int64
		synced.Store(time.Now().UnixNano())
		e := newEnv(b, func(c *Config) {
			c.Transport = inProcess{}
			c.Auditor = discardAudit{}
			c.Metrics = &countingMetrics{}
			c.Fresh = func() error {
				if time.Since(time.Unix(0, synced.Load())) > time.Hour {
					return errors.New("stale")
				}
				return nil
			}
		})
		r := newRequest(b, "GET", "http://gateway/prod/orders/42?x=1", nil)
		r.Header.Set("X-Apigw-Api-Id", testAPI)
		r.Header.Set("User-Agent", "aws-sdk-go-v2/1.0")
		e.sign(r, e.keys["alice"], nil)
		r.RemoteAddr = "127.0.0.1:1"
		runRequests(b, e.gw, r, 200)
	})
	b.Run("user-key-direct-loopback-backend", func(b *testing.B) {
		// The same, to a real HTTP backend on loopback (httptest server, keep-alive).
		e := newEnv(b, func(c *Config) { c.Auditor = discardAudit{} })
		r := newRequest(b, "GET", "http://gateway/prod/orders/42?x=1", nil)
		r.Header.Set("X-Apigw-Api-Id", testAPI)
		e.sign(r, e.keys["alice"], nil)
		r.RemoteAddr = "127.0.0.1:1"
		// The backend drops hits once its buffer is full (non-blocking send).
		runRequests(b, e.gw, r, 200)
	})
	b.Run("user-key-direct-audit-chain", func(b *testing.B) {
		// user-key-direct with the real audit chain writer (JSON, record hash, write(2) to
		// a segment file in a temporary directory) instead of discardAudit: the whole
		// decision, its record included.
		e := newEnv(b, func(c *Config) {
			c.Transport = inProcess{}
			c.Auditor = benchChain(b)
		})
		r := newRequest(b, "GET", "http://gateway/prod/orders/42?x=1", nil)
		r.Header.Set("X-Apigw-Api-Id", testAPI)
		r.Header.Set("User-Agent", "aws-sdk-go-v2/1.0")
		e.sign(r, e.keys["alice"], nil)
		r.RemoteAddr = "127.0.0.1:1"
		runRequests(b, e.gw, r, 200)
	})
	b.Run("role-session-endpoint", func(b *testing.B) {
		benchRoleSessionEndpoint(b, discardAudit{}, runRequests)
	})
	b.Run("role-session-endpoint-audit-chain", func(b *testing.B) {
		benchRoleSessionEndpoint(b, benchChain(b), runRequests)
	})
	b.Run("role-session-endpoint-audit-chain-parallel", func(b *testing.B) {
		// The same from GOMAXPROCS goroutines: records that arrive together share a
		// write(2) (the chain's group commit). Compare its cpu-ns/op, not its ns/op.
		benchRoleSessionEndpoint(b, benchChain(b), runParallel)
	})
	b.Run("role-session-handover", func(b *testing.B) {
		// The same call handed over in memory by an endpoint of this process (phantom up,
		// internal/endpoint's Config.Local): no certificate, no X-Phantom-* headers.
		e := newEnv(b, func(c *Config) {
			c.Transport = inProcess{}
			c.Auditor = discardAudit{}
		})
		s := e.session("app", "s1", time.Hour)
		r := newRequest(b, "GET", "https://gateway/prod/private/data", nil)
		e.sign(r, s, nil)
		r.RemoteAddr = "127.0.0.1:1"
		r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
		src := netip.MustParseAddr("10.0.1.15")
		runRequests(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.gw.ServeHandover(w, r, &Handover{Endpoint: testEndpoint, SourceIP: src, APIID: testAPI,
				TLSVersion: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256})
		}), r, 200)
	})
	b.Run("none-route", func(b *testing.B) {
		e := benchEnv(b)
		r := newRequest(b, "GET", "http://gateway/prod/health", nil)
		r.Header.Set("X-Apigw-Api-Id", testAPI)
		r.RemoteAddr = "127.0.0.1:1"
		runRequests(b, e.gw, r, 200)
	})
	b.Run("denied-implicit", func(b *testing.B) {
		e := benchEnv(b)
		r := newRequest(b, "GET", "http://gateway/prod/orders", nil)
		r.Header.Set("X-Apigw-Api-Id", testAPI)
		e.sign(r, e.keys["bob"], nil)
		r.RemoteAddr = "127.0.0.1:1"
		runRequests(b, e.gw, r, 403)
	})
}

// countingMetrics counts what the gateway reports.
type countingMetrics struct{ decisions, backends atomic.Int64 }

func (m *countingMetrics) Decision(string, string, string, time.Duration) { m.decisions.Add(1) }
func (m *countingMetrics) Backend(string, int, time.Duration)             { m.backends.Add(1) }

// benchRoleSessionEndpoint is an allowed call of a role session through an endpoint (its
// mTLS certificate verified, its forwarded headers read) with auditor recording it.
func benchRoleSessionEndpoint(b *testing.B, auditor Auditor, run func(*testing.B, http.Handler, *http.Request, int)) {
	e := newEnv(b, func(c *Config) {
		c.Transport = inProcess{}
		c.Auditor = auditor
	})
	s := e.session("app", "s1", time.Hour)
	cert := endpointCert(b, e.ca, pki.KindEndpoint, testEndpoint)
	r := newRequest(b, "GET", "https://gateway/prod/private/data", nil)
	e.sign(r, s, nil)
	for k, v := range viaEndpoint(testAPI, "10.0.1.15") {
		r.Header.Set(k, v)
	}
	r.RemoteAddr = "127.0.0.1:1"
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		b.Fatal(err)
	}
	r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{leaf}}
	run(b, e.gw, r, 200)
}

// benchChain is the real audit chain writer over a temporary directory, with the
// default digest interval (digests are signed and synced off the request path).
func benchChain(b *testing.B) *audit.Log {
	b.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: b.TempDir(), Chain: "gateway", Signer: key})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}
