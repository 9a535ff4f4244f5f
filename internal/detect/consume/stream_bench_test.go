package consume_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/consume"
)

// latencyDetector is the real detector, timing each event from its write (EventTime)
// to its evaluation.
type latencyDetector struct {
	*detect.Detector
	mu  sync.Mutex
	lat []time.Duration
}

func (d *latencyDetector) Observe(ev *audit.Event) []detect.Finding {
	if _, ok := audit.DamageOf(ev); !ok {
		d.mu.Lock()
		d.lat = append(d.lat, time.Since(ev.EventTime))
		d.mu.Unlock()
	}
	return d.Detector.Observe(ev)
}

func (d *latencyDetector) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.lat)
}

func benchReplica(b testing.TB, rig *streamRig, name string, det consume.Detector) func() {
	r, err := consume.NewReplica(consume.StreamConfig{JetStream: rig.js, Account: streamAccount, Holder: name, Leases: rig.st, Anchors: rig.st,
		LeaseTTL: time.Second, Detector: det, Sink: newResponder(b, rig.st), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	return func() { cancel(); <-done }
}

// measureLatency runs n records through a rig and returns p50, p99.
func measureLatency(tb testing.TB, rig *streamRig, n int) (time.Duration, time.Duration) {
	det, err := detect.New(detect.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	ld := &latencyDetector{Detector: det}
	stop := benchReplica(tb, rig, "replica-a", ld)
	defer stop()
	time.Sleep(2 * time.Second) // partitions taken
	w := rig.chain["gateway-a"]
	for range n {
		w.write(tb, 1)
		time.Sleep(2 * time.Millisecond)
	}
	deadline := time.Now().Add(30 * time.Second)
	for ld.count() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ld.mu.Lock()
	lat := slices.Clone(ld.lat)
	ld.mu.Unlock()
	slices.Sort(lat)
	if len(lat) == 0 {
		tb.Fatal("nothing evaluated")
	}
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

// BenchmarkStreamEndToEnd reports, for b.N records, the latency from the chain write to
// the evaluation (p50, p99), and the throughput of one replica and of two over a backlog
// of 20000 records in four chains (events/s), all in the same run.
func BenchmarkStreamEndToEnd(b *testing.B) {
	b.Run("latency", func(b *testing.B) {
		rig := newStreamRig(b, "gateway-a")
		p50, p99 := measureLatency(b, rig, max(b.N, 200))
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	})
	for _, replicas := range []int{1, 2} {
		b.Run(fmt.Sprintf("throughput-replicas=%d", replicas), func(b *testing.B) {
			const perChain = 5000
			chains := []string{"gateway-a", "gateway-b", "gateway-c", "gateway-d"}
			rig := newStreamRig(b, chains...)
			want := map[string]int64{}
			for _, c := range chains {
				rig.chain[c].write(b, perChain)
				want[c] = perChain
			}
			waitStream(b, rig, int64(len(chains)*perChain))
			b.ResetTimer()
			start := time.Now()
			for i := range replicas {
				det, err := detect.New(detect.Config{})
				if err != nil {
					b.Fatal(err)
				}
				defer benchReplica(b, rig, fmt.Sprintf("replica-%d", i), det)()
			}
			waitCommitted(b, rig.st, want, 5*time.Minute)
			d := time.Since(start)
			b.ReportMetric(float64(len(chains)*perChain)/d.Seconds(), "events/s")
		})
	}
}

// waitStream waits until the stream holds n records.
func waitStream(tb testing.TB, rig *streamRig, n int64) {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s, err := rig.js.Stream(context.Background(), "PHANTOM_AUDIT")
		if err == nil {
			if info, err := s.Info(context.Background()); err == nil && int64(info.State.Msgs) >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the stream does not hold %d records after 2 minutes", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
