package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
)

// followPoll is how often the streaming detector looks for new audit records: well inside
// the one second from a request to its finding.
const followPoll = 50 * time.Millisecond

// findingHandler takes the detector's findings: stores them and applies the spec's
// responses (respond.Responder).
type findingHandler interface {
	Handle(ctx context.Context, f detect.Finding) error
}

// streamDetector follows the given audit chains as they are written and feeds every
// event, in each chain's order, to one detector; its findings go to h. It returns when
// ctx ends, or when a chain cannot be read (a consumer never skips a record).
func streamDetector(ctx context.Context, dir string, chains []string, det *detect.Detector, h findingHandler, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan *audit.Event, 1024)
	errs := make(chan error, len(chains)+1)
	var wg sync.WaitGroup
	for _, chain := range chains {
		r, err := audit.NewReader(dir, chain, 0)
		if err != nil {
			return fmt.Errorf("follow audit chain %s: %w", chain, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			err := r.Follow(ctx, followPoll, func(e audit.Entry) error {
				ev, err := e.Decode()
				if err != nil {
					return fmt.Errorf("chain %s record %d: %w", chain, e.Seq, err)
				}
				select {
				case events <- ev:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("follow audit chain %s: %w", chain, err)
			}
		}()
	}
	go func() { wg.Wait(); close(events) }()
	for {
		select {
		case err := <-errs:
			return err
		case ev, ok := <-events:
			if !ok {
				return ctx.Err()
			}
			for _, f := range det.Observe(ev) {
				if err := h.Handle(ctx, f); err != nil {
					log.Error("detector: handling a finding failed", "finding", f.ID, "type", f.Type, "error", err)
				}
			}
		}
	}
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
