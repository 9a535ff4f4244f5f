package events_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/events"
)

// BenchmarkRecordPublished is the request path's cost of publishing: Record (what a
// call waits for) on a chain without a publisher (the baseline), and on one whose
// publisher sends every record to a JetStream server meanwhile, in the same run. The
// publisher is not on the path; what it costs the path is the CPU it shares.
func BenchmarkRecordPublished(b *testing.B) {
	_, _, js := startStream(b)
	for _, publish := range []bool{false, true} {
		b.Run(fmt.Sprintf("publisher=%v", publish), func(b *testing.B) {
			dir := b.TempDir()
			chain := "gateway-a"
			l := openChain(b, dir, chain)
			var p *events.Publisher
			if publish {
				p, _ = startPublisher(b, js, dir, b.TempDir(), chain)
			}
			ev := &audit.Event{EventVersion: audit.EventVersion, EventTime: time.Now().UTC(), EventSource: "execute-api.amazonaws.com", EventName: "Invoke",
				UserIdentity: audit.UserIdentity{Type: "IAMUser", ARN: "arn:aws:iam::" + account + ":user/alice"}, RequestID: "r", EventID: "e", RecipientAccountID: account}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := l.Record(context.Background(), ev); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if p != nil {
				waitPublished(b, p, chain, uint64(b.N))
			}
		})
	}
}
