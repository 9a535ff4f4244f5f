package respond

import (
	"context"
	"errors"
	"fmt"

	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/export"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// The methods here serve a consumer of the audit chains that stores findings together
// with how far it has read (package consume): Commit stores a batch's findings and
// advances the cursors in one transaction, then Apply applies each finding's responses.
// A finding is stored once, by Commit; Apply only rewrites it when it applied an action,
// to list the action (as Handle does).

// Cursors returns consumer's audit cursors (store.ListAuditCursors).
func (r *Responder) Cursors(ctx context.Context, consumer string) ([]store.AuditCursor, error) {
	return r.cfg.Store.ListAuditCursors(ctx, consumer)
}

// Findings returns up to limit stored findings, most recently updated first, for a
// detector to restore (detect.Detector.Restore).
func (r *Responder) Findings(ctx context.Context, limit int) ([]detect.Finding, error) {
	recs, err := r.cfg.Store.ListFindings(ctx, store.FindingFilter{Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("list stored findings: %w", err)
	}
	out := make([]detect.Finding, 0, len(recs))
	for _, rec := range recs {
		f, err := export.FromStore(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// Commit stores findings, each with the actions already applied to it in its
// additionalInfo, and advances consumer's cursors, all in one transaction
// (store.CommitAudit): either both happen or neither. A cursor that moved since the
// caller read it is store.ErrConflict (wrapped) and nothing is written. Call Apply for
// each finding after Commit succeeded.
func (r *Responder) Commit(ctx context.Context, consumer string, adv []store.CursorAdvance, findings []detect.Finding) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	recs := make([]store.Finding, 0, len(findings))
	for _, f := range findings {
		if f.ID == "" {
			return errors.New("commit findings: a finding has no id")
		}
		applied, err := r.cfg.Store.ListFindingResponses(ctx, f.ID)
		if err != nil {
			return fmt.Errorf("commit finding %s: %w", f.ID, err)
		}
		rec, err := record(f, applied)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
	}
	return r.cfg.Store.CommitAudit(ctx, consumer, adv, recs)
}

// Apply applies every response of the spec that matches f, a finding already stored
// (by Commit), and was not applied to it yet: each action once per finding, as Handle.
func (r *Responder) Apply(ctx context.Context, f detect.Finding) error {
	if f.ID == "" {
		return errors.New("apply responses: finding has no id")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	applied, err := r.cfg.Store.ListFindingResponses(ctx, f.ID)
	if err != nil {
		return fmt.Errorf("apply responses to finding %s: %w", f.ID, err)
	}
	return r.respond(ctx, f, applied)
}
