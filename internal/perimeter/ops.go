package perimeter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/phantom-perimeter/phantom/internal/agent"
	"github.com/phantom-perimeter/phantom/internal/detect/consume"
	"github.com/phantom-perimeter/phantom/internal/egress"
	"github.com/phantom-perimeter/phantom/internal/endpoint"
	"github.com/phantom-perimeter/phantom/internal/gateway"
	"github.com/phantom-perimeter/phantom/internal/metrics"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/sts"
)

// readyCheck is one condition of /readyz: nil while it holds.
type readyCheck struct {
	Name  string
	Check func() error
}

// ops is a process's operations listener: its metrics registry, served with /healthz and
// /readyz. A nil *ops is "off": its metrics are nil (the components observe nothing) and
// its methods do nothing.
type ops struct {
	name string
	reg  *prometheus.Registry
	// checks is nil until the component's listeners serve; then what /readyz asks.
	checks   atomic.Pointer[[]readyCheck]
	draining atomic.Bool
	srv      *http.Server
	addr     net.Addr

	// standing are checks that hold whatever the component (spec agreement, audit
	// chains read); notes are lines /readyz adds after "ok" (the spec in force, damage
	// found in audit chains).
	mu       sync.Mutex
	standing []readyCheck
	notes    []func() []string
}

// addCheck adds a readiness check to the component's own.
func (o *ops) addCheck(c readyCheck) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.standing = append(o.standing, c)
}

// addNotes adds lines /readyz prints after "ok".
func (o *ops) addNotes(fn func() []string) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.notes = append(o.notes, fn)
}

// newOps makes the registry of a process named name (Go, process, build info).
func newOps(name string) *ops {
	return &ops{name: name, reg: metrics.NewRegistry()}
}

// Handler serves GET /metrics, /healthz and /readyz.
func (o *ops) handler(log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Timeout:       10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { plain(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := o.ready(); err != nil {
			plain(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		msg := "ok"
		o.mu.Lock()
		notes := slices.Clone(o.notes)
		o.mu.Unlock()
		for _, fn := range notes {
			for _, n := range fn() {
				msg += "\n" + n
			}
		}
		plain(w, http.StatusOK, msg)
	})
	return mux
}

func plain(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// Ready is nil when the component serves and every check holds, else why not.
func (o *ops) ready() error {
	if o.draining.Load() {
		return errors.New("shutting down")
	}
	checks := o.checks.Load()
	if checks == nil {
		return errors.New("starting: not serving yet")
	}
	o.mu.Lock()
	all := append(slices.Clone(*checks), o.standing...)
	o.mu.Unlock()
	for _, c := range all {
		if err := c.Check(); err != nil {
			return fmt.Errorf("%s: %v", c.Name, err)
		}
	}
	return nil
}

// serving marks the component's listeners as serving: /readyz answers 200 while checks
// hold.
func (o *ops) serving(checks ...readyCheck) {
	if o == nil {
		return
	}
	o.checks.Store(&checks)
}

// Start listens on addr and serves over HTTPS with a certificate from ca for the
// perimeter account, or over plain HTTP when ca is nil (the workload agent, which holds
// no CA key, serves on loopback only). It prints the URL on stderr.
func (o *ops) start(addr string, ca certIssuer, account string, stderr io.Writer, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for --ops-listen on %s: %w", addr, err)
	}
	return o.serve(ln, ca, account, stderr, log)
}

// Serve is start on a listener the caller opened; it takes ownership of ln.
func (o *ops) serve(ln net.Listener, ca certIssuer, account string, stderr io.Writer, log *slog.Logger) error {
	o.addr = ln.Addr()
	o.srv = &http.Server{
		Handler:           o.handler(log),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if ca != nil {
		certs, err := newCertSource(ca, serverRequest(pki.Identity{Account: account, Kind: pki.KindGateway, Name: "ops"}, []net.Addr{ln.Addr()}))
		if err != nil {
			ln.Close()
			return err
		}
		o.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.getServer}
		ln = tls.NewListener(ln, o.srv.TLSConfig)
		scheme = "https"
	}
	go func() {
		if err := o.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error(o.name+": the ops listener stopped", "addr", o.addr.String(), "error", err)
		}
	}()
	fmt.Fprintf(stderr, "phantom %s: metrics at %s://%s/metrics (health /healthz, readiness /readyz)\n", o.name, scheme, o.addr)
	return nil
}

// Url is the ops listener's base URL.
func (o *ops) url() string {
	scheme := "https"
	if o.srv.TLSConfig == nil {
		scheme = "http"
	}
	return scheme + "://" + o.addr.String()
}

// drain makes /readyz answer 503 while the component finishes in-flight work.
func (o *ops) drain() {
	if o != nil {
		o.draining.Store(true)
	}
}

// Close stops the ops listener.
func (o *ops) close() {
	if o == nil || o.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o.srv.Shutdown(ctx)
}

// The components' metrics, nil when ops is off so the components observe nothing.

func (o *ops) gatewayMetrics() gateway.Metrics {
	if o == nil {
		return nil
	}
	return metrics.NewGateway(o.reg)
}

func (o *ops) stsMetrics() sts.Metrics {
	if o == nil {
		return nil
	}
	return metrics.NewSTS(o.reg)
}

func (o *ops) egressMetrics() egress.Metrics {
	if o == nil {
		return nil
	}
	return metrics.NewEgress(o.reg)
}

func (o *ops) detectorMetrics() consume.Metrics {
	if o == nil {
		return nil
	}
	return metrics.NewDetector(o.reg)
}

func (o *ops) specMetrics() *metrics.Spec {
	if o == nil {
		return nil
	}
	return metrics.NewSpec(o.reg)
}

// endpointMetrics returns a function giving each endpoint id its metrics (up runs
// several endpoints on one registry).
func (o *ops) endpointMetrics() func(id string) endpoint.Metrics {
	if o == nil {
		return func(string) endpoint.Metrics { return nil }
	}
	eps := metrics.NewEndpoints(o.reg)
	return func(id string) endpoint.Metrics { return eps.For(id) }
}

// handoffMetrics returns the count of callers a tunnel server delivers, nil without ops.
func (o *ops) handoffMetrics() func(endpoint string, raw bool) {
	if o == nil {
		return nil
	}
	return metrics.NewHandoff(o.reg).Delivered
}

// agentMetrics registers the agent's collectors; expiry is read at each scrape.
func (o *ops) agentMetrics(expiry func() time.Time) agent.Metrics {
	if o == nil {
		return nil
	}
	return metrics.NewAgent(o.reg, expiry)
}

// identityMetrics registers the freshness gauges of the perimeter's identity service;
// fresh is the component's own staleness check.
func (o *ops) identityMetrics(p *Perimeter, fresh func() error) {
	if o == nil {
		return
	}
	metrics.RegisterFreshness(o.reg, metrics.Freshness{
		SyncedAt:  p.IDs.SyncedAt,
		Fresh:     fresh,
		Reachable: 2*p.Poll + max(p.Poll, time.Second),
	})
}
