package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/consume"
)

// detectorChain is the audit chain the detector's responses are written to: never
// consumed, or each response would be an event for the detector.
const detectorChain = "detector"

// findingHandler takes the detector's findings: commits them with the audit cursors,
// then applies the spec's responses (respond.Responder).
type findingHandler = consume.Sink

// streamDetector consumes the audit chains in dir exactly once, resuming from the
// cursors in the store: the chains named and any that appears later, except the
// detector's own unless named. Every event goes, in each chain's order, to det; the
// findings go to h. It returns nil when ctx ends (after committing what it consumed),
// or the error that stopped it (a chain that fails verification, another detector on
// the same store).
func streamDetector(ctx context.Context, dir string, chains []string, det *detect.Detector, h findingHandler, m consume.Metrics, log *slog.Logger) error {
	var exclude []string
	if !slices.Contains(chains, detectorChain) {
		exclude = []string{detectorChain}
	}
	return runConsumer(ctx, consume.Config{Dir: dir, Exclude: exclude, Detector: det, Sink: h, Metrics: m, Logger: log})
}

func runConsumer(ctx context.Context, cfg consume.Config) error {
	c, err := consume.New(cfg)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// newDetector is the detector of a spec's detection settings.
func newDetector(spec *config.Spec) (*detect.Detector, error) {
	return detect.New(detect.Config{
		Account:        spec.Account,
		Region:         spec.Region,
		LearningPeriod: spec.Detection.LearningPeriod,
		ThreatLists:    spec.Detection.ThreatLists,
		AdminUsers:     detect.AdminUsers(spec),
	})
}

// followThreatLists reloads the detector's threat lists whenever the spec is reloaded,
// and re-reads the list files on SIGHUP (lists edited in place); a list that does not
// load keeps the previous set.
func followThreatLists(ctx context.Context, w *config.Watcher, det *detect.Detector, log *slog.Logger) {
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
				log.Error("detector: threat lists not reloaded; keeping the previous ones", "error", err)
			}
		case spec := <-specs:
			if err := det.SetThreatLists(spec.Detection.ThreatLists); err != nil {
				log.Error("detector: threat lists not reloaded; keeping the previous ones", "error", err)
			} else {
				log.Info("detector: threat lists reloaded", "lists", len(spec.Detection.ThreatLists))
			}
		}
	}
}
