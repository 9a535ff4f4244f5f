package events_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/events"
	"github.com/phantom-perimeter/phantom/internal/events/natstest"
)

const account = "123456789012"

// openChain opens a chain writer in dir.
func openChain(t testing.TB, dir, chain string) *audit.Log {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: dir, Chain: chain, Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func record(t testing.TB, l *audit.Log, n int, source string) {
	t.Helper()
	for i := 0; i < n; i++ {
		ev := &audit.Event{EventVersion: audit.EventVersion, EventTime: time.Now().UTC(), EventSource: source, EventName: "GetObject",
			UserIdentity: audit.UserIdentity{Type: "IAMUser", ARN: fmt.Sprintf("arn:aws:iam::%s:user/u%d", account, i%7)},
			RequestID:    fmt.Sprint(i), EventID: fmt.Sprint(i), RecipientAccountID: account}
		if err := l.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := events.Dial(events.Broker{URLs: []string{url}}, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// startStream starts a JetStream server with the events stream on it, and connects.
func startStream(t testing.TB) (*natstest.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := connect(t, srv.URL())
	b := events.Broker{URLs: []string{srv.URL()}, Stream: events.DefaultStream, Replicas: 1}
	if _, err := events.EnsureStream(context.Background(), js, b, account); err != nil {
		t.Fatal(err)
	}
	return srv, nc, js
}

func startPublisher(t testing.TB, js jetstream.JetStream, dir, state string, chains ...string) (*events.Publisher, context.CancelFunc) {
	t.Helper()
	p, err := events.NewPublisher(events.PublisherConfig{JetStream: js, Account: account, Dir: dir, Chains: chains, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return p, stop
}

// streamRecords reads every message of the stream in order and checks each parses.
func streamRecords(t *testing.T, js jetstream.JetStream) []events.Message {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Message
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream seq %d: %v", seq, err)
		}
		m, err := events.ParseMessage(raw.Subject, raw.Header, raw.Data)
		if err != nil {
			t.Fatalf("stream seq %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// waitPublished waits until chain's acknowledged position reaches seq.
func waitPublished(t testing.TB, p *events.Publisher, chain string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for p.Positions()[chain].Seq < seq {
		if time.Now().After(deadline) {
			t.Fatalf("chain %s published up to seq %d, want %d (failing: %v)", chain, p.Positions()[chain].Seq, seq, p.Failing())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkContinuous checks that the stream holds chain's records 1..n, each once, in order.
func checkContinuous(t *testing.T, msgs []events.Message, chain string, n uint64) {
	t.Helper()
	var seq uint64
	prev := ""
	parts := map[int]events.Link{}
	for _, m := range msgs {
		if m.Chain != chain {
			continue
		}
		if m.Record.Seq != seq+1 || seq > 0 && m.Record.Prev != prev {
			t.Fatalf("chain %s: seq %d follows seq %d in the stream", chain, m.Record.Seq, seq)
		}
		if want := parts[m.Partition]; m.PartPrev.Seq != want.Seq || want.Seq > 0 && m.PartPrev.Hash != want.Hash {
			t.Fatalf("chain %s seq %d: partition %d link %v, want %v", chain, m.Record.Seq, m.Partition, m.PartPrev, want)
		}
		parts[m.Partition] = events.Link{Seq: m.Record.Seq, Hash: m.Record.Hash}
		seq, prev = m.Record.Seq, m.Record.Hash
	}
	if len(parts) < 3 {
		t.Fatalf("chain %s: records in %d partitions, want several", chain, len(parts))
	}
	if seq != n {
		t.Fatalf("chain %s: the stream holds records up to seq %d, want %d", chain, seq, n)
	}
}

// TestPublisherHoldsRecordsWhileDisconnected: records written while the broker is down
// stay in the chain, not in the client's reconnect buffer, which would send them all on
// reconnect, when the stream may refuse the first and store the later ones before them.
func TestPublisherHoldsRecordsWhileDisconnected(t *testing.T) {
	srv, nc, js := startStream(t)
	dir := t.TempDir()
	gw := openChain(t, dir, "gateway-a")
	record(t, gw, 3, "s3.amazonaws.com")
	p, _ := startPublisher(t, js, dir, t.TempDir(), "gateway-a")
	waitPublished(t, p, "gateway-a", 3)

	srv.Stop()
	record(t, gw, 10, "s3.amazonaws.com")
	buffered := func() {
		t.Helper()
		if n, err := nc.Buffered(); err != nil || n != 0 {
			t.Fatalf("%d bytes (%v) in the reconnect buffer while the broker is down, want none", n, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(p.Failing()["gateway-a"], nats.ErrDisconnected) {
		buffered()
		if time.Now().After(deadline) {
			t.Fatalf("publisher not failing on the broker being down after 10s (failing: %v)", p.Failing())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a retry or two
	buffered()
	srv.Restart()
	waitPublished(t, p, "gateway-a", 13)
	checkContinuous(t, streamRecords(t, js), "gateway-a", 13)
}

func TestPublisherPublishesEveryRecordWithItsPlace(t *testing.T) {
	_, _, js := startStream(t)
	dir := t.TempDir()
	gw, sts := openChain(t, dir, "gateway-a"), openChain(t, dir, "sts-a")
	record(t, gw, 50, "s3.amazonaws.com")
	record(t, sts, 20, "sts.amazonaws.com")
	p, _ := startPublisher(t, js, dir, t.TempDir(), "gateway-a", "sts-a")
	waitPublished(t, p, "gateway-a", 50)
	waitPublished(t, p, "sts-a", 20)
	msgs := streamRecords(t, js)
	if len(msgs) != 70 {
		t.Fatalf("the stream holds %d records, want 70", len(msgs))
	}
	checkContinuous(t, msgs, "gateway-a", 50)
	checkContinuous(t, msgs, "sts-a", 20)
	for _, m := range msgs {
		want := map[string]string{"gateway-a": "s3_amazonaws_com", "sts-a": "sts_amazonaws_com"}[m.Chain]
		if m.Source != want || m.Account != account {
			t.Fatalf("chain %s seq %d on account %s source %s, want %s", m.Chain, m.Record.Seq, m.Account, m.Source, want)
		}
	}
}

// A broker that goes away while records are written gets them all when it is back,
// each once; so does a publisher restarted on its saved position.
func TestPublisherCatchesUpWithoutGapsOrDuplicates(t *testing.T) {
	srv, _, js := startStream(t)
	dir, state := t.TempDir(), t.TempDir()
	gw := openChain(t, dir, "gateway-a")
	record(t, gw, 30, "s3.amazonaws.com")
	p, stop := startPublisher(t, js, dir, state, "gateway-a")
	waitPublished(t, p, "gateway-a", 30)

	srv.Stop()
	start := time.Now()
	record(t, gw, 40, "s3.amazonaws.com") // answered while the broker is down
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("writing 40 records with the broker down took %s: publishing is in the request path", d)
	}
	srv.Restart()
	waitPublished(t, p, "gateway-a", 70)

	// A restart on a position file behind the broker (a crash before it was saved)
	// publishes again what the broker holds: deduplicated.
	stop()
	p2, _ := startPublisher(t, js, dir, t.TempDir(), "gateway-a")
	record(t, gw, 5, "s3.amazonaws.com")
	waitPublished(t, p2, "gateway-a", 75)
	checkContinuous(t, streamRecords(t, js), "gateway-a", 75)
}
