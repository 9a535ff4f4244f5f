package perimeter

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/consume"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/detect/sigma"
)

// DetectorChain is the audit chain the detector's responses are written to: never
// consumed, or each response would be an event for the detector.
const DetectorChain = "detector"

// findingHandler takes the detector's findings: commits them with the audit cursors,
// then applies the spec's responses (respond.Responder).
type findingHandler = consume.Sink

// newStreamDetector is the consumer of the audit chains in dir, exactly once, resuming
// from the cursors in the store: every chain, including those that appear later, but
// the excluded. Every event goes, in each chain's order, to det; the findings go to h.
// anchors (the store) tells it the chains that should be there. Its Run returns nil
// when ctx ends (after committing what it consumed), or the error that stopped it
// (another detector on the same store, a store that stays unreachable); a damaged
// chain is a finding, never a stop.
func newStreamDetector(dir string, exclude []string, det *detect.Detector, h findingHandler, anchors consume.AnchorSource, m consume.Metrics, log *slog.Logger, ready func()) (*consume.Consumer, error) {
	slices.Sort(exclude)
	return consume.New(consume.Config{Dir: dir, Exclude: slices.Compact(exclude), Detector: det, Sink: h, Anchors: anchors, Metrics: m, Logger: log, Ready: ready})
}

// chainStatuses is what the detector tells of the chains it reads (*consume.Consumer,
// *consume.Replica).
type chainStatuses interface {
	Unread() []consume.ChainStatus
	Damage() []consume.ChainStatus
}

// serveDetector exposes the detector's view of the audit chains on the ops listener:
// /readyz is 503 naming the chains it cannot read (their events go undetected), and,
// when ready, names the damage found in chains since the process started.
func serveDetector(o *ops, c chainStatuses) {
	o.addCheck(readyCheck{Name: "audit chains", Check: func() error {
		u := c.Unread()
		if len(u) == 0 {
			return nil
		}
		parts := make([]string, len(u))
		for i, s := range u {
			parts[i] = fmt.Sprintf("%s (since %s: %s)", s.Chain, s.Since.UTC().Format(time.RFC3339), s.Reason)
		}
		return fmt.Errorf("not reading %s", strings.Join(parts, "; "))
	}})
	o.addNotes(func() []string {
		var out []string
		for _, d := range c.Damage() {
			out = append(out, fmt.Sprintf("audit chain %s damaged (found %s): %s", d.Chain, d.Since.UTC().Format(time.RFC3339), d.Reason))
		}
		return out
	})
}

// newDetector is the detector of a spec's detection settings.
func newDetector(spec *config.Spec) (*detect.Detector, error) {
	return detect.New(detect.Config{
		Account:        spec.Account,
		Region:         spec.Region,
		LearningPeriod: spec.Detection.LearningPeriod,
		ThreatLists:    spec.Detection.ThreatLists,
		SigmaRules:     spec.Detection.SigmaRules,
		PeerGroups:     detect.PeerGroups(spec),
		AdminUsers:     detect.AdminUsers(spec),
	})
}

// logSigma logs how many Sigma rules loaded and each one that did not, with the reason,
// on the detector's logger (detectorLog).
func logSigma(log *slog.Logger, s *sigma.Set) {
	if s == nil || s.Dir == "" {
		return
	}
	bad, other := s.Unloaded()
	for _, p := range bad {
		log.Warn("Sigma rule not loaded", "file", p.File, "title", p.Title, "reason", p.Reason)
	}
	log.Info("Sigma rules loaded", "dir", s.Dir, "rules", len(s.Rules), "other_log_sources", other)
}

// detectorLog is log naming the detector as the component, for what the runtime logs of it
// (the consumer and the responder name themselves).
func detectorLog(log *slog.Logger) *slog.Logger { return log.With("component", "detector") }

// followDetection logs on the detector's logger (detectorLog). It reloads the detector's
// threat lists, Sigma rules and peer groups
// whenever the spec is reloaded, and re-reads the files on SIGHUP (edited in place); a
// list that does not load keeps the previous set, and so does a rules directory that
// cannot be read.
func followDetection(ctx context.Context, w *config.Watcher, det *detect.Detector, log *slog.Logger) {
	specs, cancel := w.Subscribe()
	defer cancel()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := det.Reload(); err != nil {
				log.Error("threat lists or Sigma rules not reloaded; keeping the previous ones", "error", err)
			} else {
				logSigma(log, det.SigmaRules())
			}
		case spec := <-specs:
			if err := det.SetThreatLists(spec.Detection.ThreatLists); err != nil {
				log.Error("threat lists not reloaded; keeping the previous ones", "error", err)
			} else {
				log.Info("threat lists reloaded", "lists", len(spec.Detection.ThreatLists))
			}
			det.SetPeerGroups(detect.PeerGroups(spec))
			if s, err := det.SetSigmaRules(spec.Detection.SigmaRules); err != nil {
				log.Error("Sigma rules not reloaded; keeping the previous ones", "error", err)
			} else {
				logSigma(log, s)
			}
		}
	}
}

// RunDetector runs the streaming detector over every audit chain but its own and
// exclude, until ctx ends.
func RunDetector(ctx context.Context, cfg ProcessConfig, exclude []string) error {
	c, err := openProcess(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.shutdown()
	responder, err := newResponder(c.w.Current, c.p, c.logs.Get(cfg.Chain), c.log)
	if err != nil {
		return err
	}
	if err := responder.Refresh(ctx); err != nil {
		return err
	}
	det, err := newDetector(c.w.Current())
	if err != nil {
		return err
	}
	logSigma(detectorLog(c.log), det.SigmaRules())
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun() // before c.shutdown waits for the goroutines
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		// Risk levels set by other processes (or lowered by an analyst): raise compares
		// against the current ones.
		c.p.syncRisk(runCtx, responder, &freshness{MaxStale: cfg.MaxStale}, c.log)
	}()
	go func() {
		defer c.wg.Done()
		followDetection(runCtx, c.w, det, detectorLog(c.log))
	}()

	if c.events != nil {
		err = runReplica(ctx, c, cfg, exclude, det, responder)
	} else {
		err = runFileDetector(ctx, c, cfg, exclude, det, responder)
	}
	detectorLog(c.log).Info("stopped; finishing webhook notifications in flight")
	shutdownCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
	defer done()
	if cerr := responder.Close(shutdownCtx); cerr != nil && err == nil {
		err = fmt.Errorf("finish webhook notifications: %w", cerr)
	}
	return err
}

// runFileDetector consumes the chains in the process's audit directory (one detector
// per store).
func runFileDetector(ctx context.Context, c *process, cfg ProcessConfig, exclude []string, det *detect.Detector, responder *respond.Responder) error {
	consumer, err := newStreamDetector(c.logs.Dir, append([]string{cfg.Chain}, exclude...), det, responder, c.p.Store, c.ops.detectorMetrics(), c.log, func() {
		fmt.Fprintf(cfg.Stderr, "phantom detector: following audit chains in %s\n", c.logs.Dir)
		c.serving(c.freshCheck())
	})
	if err != nil {
		return err
	}
	if c.ops != nil {
		serveDetector(c.ops, consumer)
	}
	return consumer.Run(ctx)
}

// runReplica consumes the audit stream as one of the detector replicas: its chain
// (--audit-chain, one per replica) names it in the partitions' leases.
func runReplica(ctx context.Context, c *process, cfg ProcessConfig, exclude []string, det *detect.Detector, responder *respond.Responder) error {
	b := c.events.broker
	r, err := consume.NewReplica(consume.StreamConfig{
		JetStream: c.events.js, Stream: b.Stream, Account: c.w.Current().Account, Holder: cfg.Chain, Leases: c.p.Store, Anchors: c.p.Store,
		Skip:     func(chain string) bool { return detectorChain(chain) || slices.Contains(exclude, chain) },
		Detector: det, Sink: responder, Metrics: c.ops.detectorMetrics(), Logger: c.log,
		Ready: func() {
			fmt.Fprintf(cfg.Stderr, "phantom detector: reading audit stream %s on %s as replica %s\n", b.Stream, describeBroker(b), cfg.Chain)
			c.serving(c.freshCheck())
		},
	})
	if err != nil {
		return err
	}
	if c.ops != nil {
		serveDetector(c.ops, r)
	}
	return r.Run(ctx)
}

// detectorChain reports whether chain is a detector's (DetectorChain, or a replica's
// DetectorChain-NAME): their records are the detectors' responses, never consumed.
func detectorChain(chain string) bool {
	return chain == DetectorChain || strings.HasPrefix(chain, DetectorChain+"-")
}
