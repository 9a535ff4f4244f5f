package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
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
	b.ResetTimer()
	for b.Loop() {
		r.Body = http.NoBody
		w := &discardWriter{h: make(http.Header, 4)}
		gw.ServeHTTP(w, r)
		if w.code != want && !(want == 200 && w.code == 0) {
			b.Fatalf("status %d, want %d", w.code, want)
		}
	}
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
		benchRoleSessionEndpoint(b, discardAudit{})
	})
	b.Run("role-session-endpoint-audit-chain", func(b *testing.B) {
		benchRoleSessionEndpoint(b, benchChain(b))
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
func benchRoleSessionEndpoint(b *testing.B, auditor Auditor) {
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
	runRequests(b, e.gw, r, 200)
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
