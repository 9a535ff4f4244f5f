package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Broker says how to reach the NATS servers and the stream: cmd/phantom's --events
// flags, or the spec's events setting.
type Broker struct {
	// URLs are the servers, nats:// or tls:// (a cluster's seeds, comma-separated in
	// one flag as NATS clients take them).
	URLs []string
	// Creds is a NATS credentials file (a user JWT and its nkey seed); NKey a file
	// holding a user nkey seed. At most one.
	Creds, NKey string
	// CA is a PEM bundle the servers' TLS certificates must chain to (the perimeter CA's
	// ca.pem, or the operator's); with Cert and Key the client presents a certificate.
	CA, Cert, Key string
	// Stream is the JetStream stream (DefaultStream); Replicas its replicas when this
	// process creates it (1; 3 on a three-node cluster).
	Stream   string
	Replicas int
}

// Defaults.
const (
	DefaultStream = "PHANTOM_AUDIT"
	// DuplicateWindow is the stream's deduplication window: a publisher that comes back
	// within it republishes nothing twice into the stream. Longer gaps are dropped by
	// the consumer's cursor.
	DuplicateWindow = 10 * time.Minute
	// MaxAge is how long the stream keeps records: consumers that fall further behind
	// than that miss them and say so (a gap is a finding); the chains still hold them.
	MaxAge = 7 * 24 * time.Hour
)

// Validate checks b before anything connects.
func (b *Broker) Validate() error {
	if len(b.URLs) == 0 {
		return ErrNoBroker
	}
	for _, u := range b.URLs {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" || (pu.Scheme != "nats" && pu.Scheme != "tls") {
			return fmt.Errorf("events: %q is not a nats:// or tls:// URL", u)
		}
		if pu.User != nil {
			return fmt.Errorf("events: %s: give credentials as a creds or nkey file, not in the URL", pu.Redacted())
		}
	}
	if b.Creds != "" && b.NKey != "" {
		return errors.New("events: a creds file or an nkey seed file, not both")
	}
	if (b.Cert == "") != (b.Key == "") {
		return errors.New("events: a client certificate needs its key, and a key its certificate")
	}
	if b.Stream == "" {
		b.Stream = DefaultStream
	}
	if b.Replicas == 0 {
		b.Replicas = 1
	}
	if b.Replicas < 0 || b.Replicas > 5 {
		return fmt.Errorf("events: %d stream replicas: want 1 to 5", b.Replicas)
	}
	return nil
}

// ParseURLs splits a --events value: one or more URLs, comma-separated.
func ParseURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Dial connects to the broker as name (the process's chain), reconnecting for as long as
// the process runs: a broker that is down is waited for, never a reason to stop (the
// chains keep every record meanwhile).
func Dial(b Broker, name string, log *slog.Logger) (*nats.Conn, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name("phantom " + name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("events: disconnected from the broker; reconnecting", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("events: reconnected to the broker", "server", c.ConnectedUrlRedacted())
		}),
	}
	switch {
	case b.Creds != "":
		opts = append(opts, nats.UserCredentials(b.Creds))
	case b.NKey != "":
		o, err := nats.NkeyOptionFromSeed(b.NKey)
		if err != nil {
			return nil, fmt.Errorf("events: nkey seed %s: %w", b.NKey, err)
		}
		opts = append(opts, o)
	}
	if b.CA != "" {
		opts = append(opts, nats.RootCAs(b.CA))
	}
	if b.Cert != "" {
		opts = append(opts, nats.ClientCert(b.Cert, b.Key))
	}
	nc, err := nats.Connect(strings.Join(b.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("events: connect to %s: %w", strings.Join(b.URLs, ","), err)
	}
	return nc, nil
}

// EnsureStream creates the audit stream of account if it does not exist, or returns it:
// every record of the account's subjects, on file, deduplicated over DuplicateWindow.
func EnsureStream(ctx context.Context, js jetstream.JetStream, b Broker, account string) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, b.Stream)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("events: stream %s: %w", b.Stream, err)
	}
	s, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       b.Stream,
		Subjects:   []string{AccountSubjects(account)},
		Storage:    jetstream.FileStorage,
		Replicas:   b.Replicas,
		Duplicates: DuplicateWindow,
		MaxAge:     MaxAge,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, b.Stream) // created by another process meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("events: create stream %s: %w", b.Stream, err)
	}
	return s, nil
}
