package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
)

type detectorFlags struct {
	componentFlags
	exclude []string
}

func newDetectorCmd() *cobra.Command {
	var f detectorFlags
	cmd := &cobra.Command{
		Use:   "detector --config FILE --data-dir DIR [--store URL] [--exclude-chain NAME...]",
		Short: "Run the streaming detector over every replica's audit chain, exactly once, and respond to findings",
		Long: `detector follows every audit chain under the spec's audit.dir (each gateway, endpoint, STS
and egress replica writes its own), including chains that appear while it runs, and feeds
their events to the detection rules. It commits in batches: the findings a batch produced
and how far each chain was read are stored in one transaction, so a restarted detector
(even after kill -9) resumes exactly where the last commit left off, no event counted
twice or lost. Then it applies the spec's detection.responses (revoke sessions, disable
access keys, raise risk levels, notify webhooks) through the store, once per finding and
action, each audited in its own chain --audit-chain, which it does not consume.

It never skips a record silently and never stops for one chain: a chain cut short,
emptied, rewritten, with records missing, or (the store knows every chain) deleted is a
High Stealth:IAMUser/AuditLogTampered finding naming the chain and the records, the
responses apply, and the detector reads every other chain on, and the damaged one from
where its writer continued it. Meanwhile /readyz answers 503 naming the chains it cannot
read, and phantom_detector_chain_unread says the same. Run one detector per store: a
second one makes one of them stop.

With --events (or the spec's events.urls) it reads the audit stream on NATS JetStream
instead, to which every component publishes its chain, and several detectors share the
work: each takes whole partitions of the stream (the records of one principal are in one
partition) under a lease in the store, commits each partition exactly once, and takes
over the partitions of a replica that stopped renewing its leases. Give each replica its
own --audit-chain (detector-1, detector-2, ...): it names the replica. Nothing on the
stream is believed: a record must be a record of its chain that follows the chain's
previous one in its partition, or it is a finding.

When it is ready it prints "phantom detector: following audit chains in DIR" (with
--events: "phantom detector: reading audit stream STREAM on URLS as replica CHAIN") on
stderr.
SIGINT or SIGTERM stops it after committing what it has read.`,
		Example: `  phantom detector --config perimeter.yaml --data-dir /var/lib/phantom --store postgres://phantom@db/phantom

  # two replicas on the audit stream
  phantom detector --config perimeter.yaml --data-dir /var/lib/phantom --store postgres://phantom@db/phantom \
    --events nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222 --events-creds /etc/phantom/nats.creds --audit-chain detector-1
  phantom detector … --audit-chain detector-2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			f.log = logFlagsOf(cmd)
			return runDetector(ctx, cmd.ErrOrStderr(), f)
		},
	}
	f.register(cmd, perimeter.DetectorChain)
	cmd.Flags().StringSliceVar(&f.exclude, "exclude-chain", nil, "audit chain not to consume (repeatable)")
	return cmd
}

func runDetector(ctx context.Context, stderr io.Writer, f detectorFlags) error {
	for _, c := range f.exclude {
		if !audit.ValidChain(c) {
			return &exitError{code: 2, err: fmt.Errorf("--exclude-chain %q: use lower-case letters, digits and dashes", c)}
		}
	}
	cfg, err := f.process("detector", stderr)
	if err != nil {
		return err
	}
	return perimeter.RunDetector(ctx, cfg, f.exclude)
}
