package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

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
	c, err := openComponent(ctx, stderr, "detector", f.componentFlags)
	if err != nil {
		return err
	}
	defer c.shutdown()
	responder, err := perimeter.NewResponder(c.w.Current, c.p, c.logs.Get(f.chain), c.log)
	if err != nil {
		return err
	}
	if err := responder.Refresh(ctx); err != nil {
		return err
	}
	det, err := perimeter.NewDetector(c.w.Current())
	if err != nil {
		return err
	}
	perimeter.LogSigma(perimeter.DetectorLog(c.log), det.SigmaRules())
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun() // before c.shutdown waits for the goroutines
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		// Risk levels set by other processes (or lowered by an analyst): raise compares
		// against the current ones.
		c.p.SyncRisk(runCtx, responder, &perimeter.Freshness{MaxStale: f.maxStale}, c.log)
	}()
	go func() {
		defer c.wg.Done()
		perimeter.FollowDetection(runCtx, c.w, det, perimeter.DetectorLog(c.log))
	}()

	consumer, err := perimeter.NewStreamDetector(c.logs.Dir, append([]string{f.chain}, f.exclude...), det, responder, c.p.Store, c.ops.DetectorMetrics(), c.log, func() {
		fmt.Fprintf(stderr, "phantom detector: following audit chains in %s\n", c.logs.Dir)
		c.serving(c.freshCheck())
	})
	if err != nil {
		return err
	}
	if c.ops != nil {
		perimeter.ServeDetector(c.ops, consumer)
	}
	err = consumer.Run(ctx)
	perimeter.DetectorLog(c.log).Info("stopped; finishing webhook notifications in flight")
	shutdownCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
	defer done()
	if cerr := responder.Close(shutdownCtx); cerr != nil && err == nil {
		err = fmt.Errorf("finish webhook notifications: %w", cerr)
	}
	return err
}
