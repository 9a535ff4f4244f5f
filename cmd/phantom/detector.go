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

When it is ready it prints "phantom detector: following audit chains in DIR" on stderr.
SIGINT or SIGTERM stops it after committing what it has read.`,
		Example: `  phantom detector --config perimeter.yaml --data-dir /var/lib/phantom --store postgres://phantom@db/phantom`,
		Args:    cobra.NoArgs,
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
