package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// AuditCursor is how far a consumer (the detector) has read one audit chain. Stored
// beside the findings that reading produced, it makes consumption exactly-once: a
// restarted consumer resumes after Seq and checks the chain continues from Hash.
type AuditCursor struct {
	Consumer  string // e.g. "detector"
	Chain     string // audit chain name
	Seq       uint64 // last record consumed (0: none)
	Hash      string // that record's hash, for audit.Reader.ExpectAfter
	Events    int64  // records consumed in total
	UpdatedAt time.Time
}

// CursorAdvance moves one chain's cursor from From to To.
type CursorAdvance struct {
	Chain  string
	From   uint64 // the Seq the stored cursor must have now (0 and no row for a new chain)
	To     uint64 // new Seq (> From, unless Reset)
	Hash   string // hash of record To (for To 0 with Reset: the hash before the chain's first record)
	Events int64  // records consumed in this batch (added to Events)
	// Reset lets To be at or before From: the chain was found damaged and continues in
	// records numbered again from To+1 (the consumer resumes there, the gap recorded as
	// a finding in the same commit).
	Reset bool
}

func validCommit(consumer string, adv []CursorAdvance, findings []Finding) error {
	if err := validName(consumer); err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	seen := make(map[string]bool, len(adv))
	for _, a := range adv {
		if err := validName(a.Chain); err != nil {
			return fmt.Errorf("chain: %w", err)
		}
		if seen[a.Chain] {
			return fmt.Errorf("chain %s advanced twice in one commit", a.Chain)
		}
		seen[a.Chain] = true
		if a.To <= a.From && !a.Reset {
			return fmt.Errorf("chain %s: advance from %d to %d does not move forward", a.Chain, a.From, a.To)
		}
		if a.To > math.MaxInt64 {
			return fmt.Errorf("chain %s: sequence %d out of range", a.Chain, a.To)
		}
		if err := validName(a.Hash); err != nil {
			return fmt.Errorf("chain %s: hash: %w", a.Chain, err)
		}
		if a.Events < 0 {
			return fmt.Errorf("chain %s: negative event count %d", a.Chain, a.Events)
		}
	}
	for _, f := range findings {
		if err := validFinding(f); err != nil {
			return fmt.Errorf("finding: %w", err)
		}
	}
	return nil
}

// conflict reports a cursor that is not where the caller expected.
func conflict(chain string, stored uint64, found bool, want uint64) error {
	if !found {
		return fmt.Errorf("chain %s has no cursor, expected one at %d: %w", chain, want, ErrConflict)
	}
	return fmt.Errorf("chain %s cursor is at %d, expected %d: %w", chain, stored, want, ErrConflict)
}

// ListAuditCursors returns consumer's cursors, ordered by chain.
func (s *SQLite) ListAuditCursors(ctx context.Context, consumer string) ([]AuditCursor, error) {
	if err := validName(consumer); err != nil {
		return nil, fmt.Errorf("list audit cursors: consumer: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT chain, seq, hash, events, updated_at FROM audit_cursors
		WHERE consumer = ? ORDER BY chain`, consumer)
	if err != nil {
		return nil, fmt.Errorf("list audit cursors %s: %w", consumer, err)
	}
	defer rows.Close()
	var out []AuditCursor
	for rows.Next() {
		c := AuditCursor{Consumer: consumer}
		var seq, updated int64
		if err := rows.Scan(&c.Chain, &seq, &c.Hash, &c.Events, &updated); err != nil {
			return nil, fmt.Errorf("list audit cursors %s: %w", consumer, err)
		}
		c.Seq = uint64(seq) // CHECK (seq >= 0)
		c.UpdatedAt = fromNanos(updated)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit cursors %s: %w", consumer, err)
	}
	return out, nil
}

// CommitAudit advances consumer's cursors and stores the findings the batch produced, all
// or nothing. The write transaction holds SQLite's write lock from BEGIN (IMMEDIATE), so
// the From checks and the writes cannot interleave with another commit, in any process.
func (s *SQLite) CommitAudit(ctx context.Context, consumer string, adv []CursorAdvance, findings []Finding) error {
	if err := validCommit(consumer, adv, findings); err != nil {
		return fmt.Errorf("commit audit: %w", err)
	}
	now, err := requiredTime(s.now(), s.now)
	if err != nil {
		return fmt.Errorf("commit audit %s: %w", consumer, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("commit audit %s: %w", consumer, err)
	}
	defer tx.Rollback()
	for _, a := range adv {
		var seq int64
		err := tx.QueryRowContext(ctx, `SELECT seq FROM audit_cursors WHERE consumer = ? AND chain = ?`, consumer, a.Chain).Scan(&seq)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if a.From != 0 {
				return fmt.Errorf("commit audit %s: %w", consumer, conflict(a.Chain, 0, false, a.From))
			}
		case err != nil:
			return fmt.Errorf("commit audit %s: read cursor %s: %w", consumer, a.Chain, err)
		case uint64(seq) != a.From:
			return fmt.Errorf("commit audit %s: %w", consumer, conflict(a.Chain, uint64(seq), true, a.From))
		}
	}
	for _, f := range findings {
		args, err := s.findingArgs(f)
		if err != nil {
			return fmt.Errorf("commit audit %s: finding %s: %w", consumer, f.ID, err)
		}
		if _, err := tx.ExecContext(ctx, upsertFindingSQLite, args...); err != nil {
			return fmt.Errorf("commit audit %s: finding %s: %w", consumer, f.ID, err)
		}
	}
	for _, a := range adv {
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_cursors (consumer, chain, seq, hash, events, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (consumer, chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,
				events = audit_cursors.events + excluded.events, updated_at = excluded.updated_at`,
			consumer, a.Chain, int64(a.To), a.Hash, a.Events, now); err != nil {
			return fmt.Errorf("commit audit %s: advance %s: %w", consumer, a.Chain, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit audit %s: commit: %w", consumer, err)
	}
	if len(findings) > 0 {
		s.changed()
	}
	return nil
}
