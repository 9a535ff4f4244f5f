package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkGatewayDecision is the gateway's per-request cost of metrics: one cached
// child lookup, a counter add and a histogram observation.
func BenchmarkGatewayDecision(b *testing.B) {
	g := NewGateway(prometheus.NewRegistry())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.Decision("a1b2c3d4e5", "deny", "AccessDenied", 420*time.Microsecond)
		}
	})
}

// BenchmarkGatewayDecisionWithLabelValues is the baseline: the client library's own
// label lookup (hashing the values, a locked map read) for both collectors per request.
func BenchmarkGatewayDecisionWithLabelValues(b *testing.B) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "requests_total", Help: "h"}, []string{"api", "result", "reason"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "duration_seconds", Help: "h", Buckets: decisionBuckets}, []string{"api", "result"})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			requests.WithLabelValues("a1b2c3d4e5", "deny", "AccessDenied").Inc()
			duration.WithLabelValues("a1b2c3d4e5", "deny").Observe((420 * time.Microsecond).Seconds())
		}
	})
}

// BenchmarkGatewayDecisionSerial is the same observation on one goroutine.
func BenchmarkGatewayDecisionSerial(b *testing.B) {
	g := NewGateway(prometheus.NewRegistry())
	b.ReportAllocs()
	for b.Loop() {
		g.Decision("a1b2c3d4e5", "allow", "", 420*time.Microsecond)
	}
}
