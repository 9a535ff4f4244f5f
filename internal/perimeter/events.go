package perimeter

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/events"
)

// EventsFlags are a component's --events flags: they override the spec's events setting
// field by field.
type EventsFlags struct {
	URLs                       []string
	Creds, NKey, CA, Cert, Key string
}

// broker is the NATS broker the process publishes to (and a detector reads from):
// the flags over the spec's events setting. ok is false when neither names one.
func (f EventsFlags) broker(spec *config.Spec) (events.Broker, bool, error) {
	e := spec.Events
	b := events.Broker{
		URLs:  f.URLs,
		Creds: cmp.Or(f.Creds, e.Creds), NKey: cmp.Or(f.NKey, e.NKey), CA: cmp.Or(f.CA, e.CA),
		Cert: cmp.Or(f.Cert, e.Cert), Key: cmp.Or(f.Key, e.Key),
		Stream: e.Stream, Replicas: e.Replicas,
	}
	if len(b.URLs) == 0 {
		b.URLs = e.URLs
	}
	if len(b.URLs) == 0 {
		return b, false, nil
	}
	if f.Creds != "" && e.NKey != "" && f.NKey == "" {
		b.NKey = "" // the flag's creds replace the spec's nkey
	}
	if f.NKey != "" && e.Creds != "" && f.Creds == "" {
		b.Creds = ""
	}
	if err := b.Validate(); err != nil {
		return b, false, &UsageError{Err: fmt.Errorf("--events: %w", err)}
	}
	return b, true, nil
}

// eventsConn is the process's connection to the broker and its stream.
type eventsConn struct {
	broker events.Broker
	nc     *nats.Conn
	js     jetstream.JetStream
}

// openEvents connects to the broker. A broker that does not answer at start is waited for
// in the background: the process serves, its chains hold every record, and publishing
// catches up when it answers.
func openEvents(b events.Broker, name string, log *slog.Logger) (*eventsConn, error) {
	nc, err := events.Dial(b, name, log)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("events: %w", err)
	}
	// The stream is made sure of by the publisher, in the background (publishChains):
	// a process starts and serves whether or not the broker answers.
	return &eventsConn{broker: b, nc: nc, js: js}, nil
}

// publishChains publishes the process's chains to the broker until ctx ends; what was
// acknowledged is kept in DATA_DIR/events/published.
func publishChains(ctx context.Context, ec *eventsConn, logs *Chains, dataDir, account string, log *slog.Logger) (*events.Publisher, error) {
	return events.NewPublisher(events.PublisherConfig{
		JetStream: ec.js, Account: account, Dir: logs.Dir, Chains: logs.names(),
		StateDir: filepath.Join(dataDir, "events", "published"), Logger: log,
		Prepare: func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := events.EnsureStream(sctx, ec.js, ec.broker, account)
			return err
		},
	})
}

// publisherNotes names, on /readyz, the chains whose records are not reaching the
// broker: the process still serves (its chains hold them), but detection lags.
func publisherNotes(p *events.Publisher) func() []string {
	return func() []string {
		var out []string
		failing := p.Failing()
		for _, c := range slices.Sorted(maps.Keys(failing)) {
			out = append(out, fmt.Sprintf("audit chain %s not published to the event stream since its record seq %d: %v", c, p.Positions()[c].Seq, failing[c]))
		}
		return out
	}
}

// describeBroker is the broker for a log line: its URLs.
func describeBroker(b events.Broker) string { return strings.Join(b.URLs, ",") }
