package consume_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/consume"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// nopSink commits nothing anywhere: the baseline of reading, decoding and detecting.
type nopSink struct{}

func (nopSink) Cursors(context.Context, string) ([]store.AuditCursor, error) { return nil, nil }
func (nopSink) Findings(context.Context, int) ([]detect.Finding, error)      { return nil, nil }
func (nopSink) Commit(context.Context, string, []store.CursorAdvance, []detect.Finding) error {
	return nil
}
func (nopSink) Apply(context.Context, detect.Finding) error { return nil }

// BenchmarkConsume consumes b.N records of two chains with the real detector and the
// default batching (500 records or 100 ms), committing to nothing (the baseline),
// SQLite, and PostgreSQL when PHANTOM_TEST_POSTGRES_DSN is set. events/s is the rate.
func BenchmarkConsume(b *testing.B) {
	for _, bc := range []struct {
		name string
		sink func(b *testing.B) consume.Sink
	}{
		{"nocommit", func(*testing.B) consume.Sink { return nopSink{} }},
		{"sqlite", func(b *testing.B) consume.Sink { return newResponder(b, openSQLiteB(b)) }},
		{"postgres", func(b *testing.B) consume.Sink { return newResponder(b, openPostgres(b)) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sink := bc.sink(b)
			dir := b.TempDir()
			chains := []string{"gateway-a", "gateway-b"}
			for i, c := range chains {
				w := newWriter(b, dir, c)
				n := b.N / 2
				if i == 0 {
					n = b.N - n
				}
				for j := range n {
					ev := &audit.Event{EventVersion: audit.EventVersion, EventID: fmt.Sprintf("%s/%d", c, j), EventTime: time.Now().UTC(),
						EventSource: "execute-api.amazonaws.com", EventName: "Invoke", AWSRegion: "us-east-1", SourceIPAddress: "192.0.2.10",
						UserIdentity: audit.UserIdentity{Type: "IAMUser", ARN: "arn:aws:iam::123456789012:user/alice", AccountID: "123456789012", AccessKeyID: "AKIAEXAMPLEEXAMPLE01"}}
					if err := w.l.Record(context.Background(), ev); err != nil {
						b.Fatal(err)
					}
				}
			}
			det, err := detect.New(detect.Config{})
			if err != nil {
				b.Fatal(err)
			}
			c, err := consume.New(consume.Config{Dir: dir, Detector: det, Sink: sink, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			for {
				var n int64
				for _, cur := range c.Cursors() {
					n += cur.Events
				}
				if n >= int64(b.N) {
					break
				}
				select {
				case err := <-done:
					b.Fatalf("consumer stopped: %v", err)
				case <-time.After(time.Millisecond):
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
