package main

import (
	"os"

	"github.com/spf13/pflag"

	"github.com/phantom-perimeter/phantom/internal/events"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
)

// eventsEnv supplies --events.
const eventsEnv = "PHANTOM_EVENTS"

// eventsFlags are the --events flags every component takes.
type eventsFlags struct {
	urls                       string
	creds, nkey, ca, cert, key string
}

func (f *eventsFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.urls, "events", os.Getenv(eventsEnv), "NATS JetStream servers (nats://HOST:PORT or tls://HOST:PORT, comma-separated) to publish this process's audit records to, and a detector's to read them from, over the spec's events.urls (default $"+eventsEnv+")")
	fl.StringVar(&f.creds, "events-creds", "", "NATS credentials file (user JWT and nkey seed) for --events, over the spec's events.creds")
	fl.StringVar(&f.nkey, "events-nkey", "", "file holding a NATS user nkey seed for --events, over the spec's events.nkey")
	fl.StringVar(&f.ca, "events-ca", "", "PEM bundle the NATS servers' TLS certificates must chain to (the perimeter's DATA_DIR/ca.pem, or the operator's CA), over the spec's events.ca")
	fl.StringVar(&f.cert, "events-cert", "", "client certificate (PEM) for NATS servers that verify clients, with --events-key")
	fl.StringVar(&f.key, "events-key", "", "key of --events-cert")
}

func (f eventsFlags) process() perimeter.EventsFlags {
	return perimeter.EventsFlags{URLs: events.ParseURLs(f.urls), Creds: f.creds, NKey: f.nkey, CA: f.ca, Cert: f.cert, Key: f.key}
}
