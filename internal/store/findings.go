package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Finding is a stored detection finding: the GuardDuty-shaped JSON document (package
// detect's Finding, marshalled) and the fields listing filters on. The store does not
// interpret Document beyond checking it is a JSON object, so it stays below detect.
type Finding struct {
	ID        string
	Type      string
	Severity  float64 // GuardDuty's 1.0 to 8.9
	Principal string  // the principal's ARN, "" when unknown
	Archived  bool
	CreatedAt time.Time
	UpdatedAt time.Time
	Document  []byte // JSON object
}

// FindingFilter selects findings for ListFindings; the zero value selects every finding.
type FindingFilter struct {
	Archived    *bool   // nil: both
	Type        string  // exact type, "" any
	Principal   string  // exact principal ARN, "" any
	MinSeverity float64 // severity >= MinSeverity
	Limit       int     // <= 0: no limit
}

// RiskLevel is a principal's phantom:RiskLevel and the finding that set it.
type RiskLevel struct {
	Principal string // principal ARN
	Level     string
	FindingID string
	SetAt     time.Time
}

const maxFindingDocument = 1 << 20

func validFinding(f Finding) error {
	if err := validName(f.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if err := validName(f.Type); err != nil {
		return fmt.Errorf("%s: type: %w", f.ID, err)
	}
	if math.IsNaN(f.Severity) || f.Severity < 0 || f.Severity > 10 {
		return fmt.Errorf("%s: severity %v is outside 0 to 10", f.ID, f.Severity)
	}
	if len(f.Principal) > 2048 {
		return fmt.Errorf("%s: principal longer than 2048 bytes", f.ID)
	}
	if len(f.Document) > maxFindingDocument {
		return fmt.Errorf("%s: document larger than %d bytes", f.ID, maxFindingDocument)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(f.Document, &obj); err != nil || obj == nil {
		return fmt.Errorf("%s: document is not a JSON object", f.ID)
	}
	return nil
}

// PutFinding inserts or updates a finding by id. An update replaces the document and
// the indexed fields but keeps the stored Archived and CreatedAt: archiving is the
// analyst's decision (ArchiveFinding), not the detector's. Zero times mean now.
func (s *SQLite) PutFinding(ctx context.Context, f Finding) error {
	if err := validFinding(f); err != nil {
		return fmt.Errorf("put finding: %w", err)
	}
	args, err := s.findingArgs(f)
	if err != nil {
		return fmt.Errorf("put finding %s: %w", f.ID, err)
	}
	if _, err := s.w.ExecContext(ctx, upsertFindingSQLite, args...); err != nil {
		return fmt.Errorf("put finding %s: %w", f.ID, err)
	}
	s.changed()
	return nil
}

// upsertFindingSQLite is PutFinding's statement, shared with CommitAudit so both store
// a finding the same way.
const upsertFindingSQLite = `INSERT INTO findings (id, type, severity, principal, archived, created_at, updated_at, document)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET type = excluded.type, severity = excluded.severity, principal = excluded.principal,
		updated_at = excluded.updated_at, document = excluded.document`

// findingArgs returns a validated finding's upsert arguments, in findingCols order.
func (s *SQLite) findingArgs(f Finding) ([]any, error) {
	return findingArgs(f, s.now)
}

func findingArgs(f Finding, now func() time.Time) ([]any, error) {
	created, err := requiredTime(f.CreatedAt, now)
	if err != nil {
		return nil, fmt.Errorf("created: %w", err)
	}
	updated, err := requiredTime(f.UpdatedAt, now)
	if err != nil {
		return nil, fmt.Errorf("updated: %w", err)
	}
	return []any{f.ID, f.Type, f.Severity, f.Principal, boolInt(f.Archived), created, updated, f.Document}, nil
}

const findingCols = `id, type, severity, principal, archived, created_at, updated_at, document`

func scanFinding(sc interface{ Scan(...any) error }) (Finding, error) {
	var (
		f                Finding
		archived         int64
		created, updated int64
	)
	if err := sc.Scan(&f.ID, &f.Type, &f.Severity, &f.Principal, &archived, &created, &updated, &f.Document); err != nil {
		return Finding{}, err
	}
	f.Archived = archived == 1
	f.CreatedAt = fromNanos(created)
	f.UpdatedAt = fromNanos(updated)
	return f, nil
}

// GetFinding returns the finding with this id, or ErrNotFound.
func (s *SQLite) GetFinding(ctx context.Context, id string) (Finding, error) {
	f, err := scanFinding(s.r.QueryRowContext(ctx, `SELECT `+findingCols+` FROM findings WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Finding{}, fmt.Errorf("get finding %s: %w", id, err)
	}
	return f, nil
}

// ListFindings returns the findings the filter selects, most recently updated first.
func (s *SQLite) ListFindings(ctx context.Context, flt FindingFilter) ([]Finding, error) {
	q := `SELECT ` + findingCols + ` FROM findings WHERE severity >= ?`
	args := []any{flt.MinSeverity}
	if flt.Archived != nil {
		q += ` AND archived = ?`
		args = append(args, boolInt(*flt.Archived))
	}
	if flt.Type != "" {
		q += ` AND type = ?`
		args = append(args, flt.Type)
	}
	if flt.Principal != "" {
		q += ` AND principal = ?`
		args = append(args, flt.Principal)
	}
	q += ` ORDER BY updated_at DESC, id`
	if flt.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, flt.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	defer rows.Close()
	var out []Finding
	for rows.Next() {
		f, err := scanFinding(rows)
		if err != nil {
			return nil, fmt.Errorf("list findings: %w", err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	return out, nil
}

// ArchiveFinding archives (or, with archived false, unarchives) a finding, or returns
// ErrNotFound. Setting the state it already has succeeds without a write.
func (s *SQLite) ArchiveFinding(ctx context.Context, id string, archived bool) error {
	res, err := s.w.ExecContext(ctx, `UPDATE findings SET archived = ? WHERE id = ? AND archived <> ?`,
		boolInt(archived), id, boolInt(archived))
	if err != nil {
		return fmt.Errorf("archive finding %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("archive finding %s: %w", id, err)
	} else if n == 1 {
		s.changed()
		return nil
	}
	if err := s.exists(ctx, `SELECT 1 FROM findings WHERE id = ?`, id); err != nil {
		return fmt.Errorf("archive finding %s: %w", id, err)
	}
	return nil
}

// MarkFindingResponse records that action was applied for the finding and reports
// whether this call recorded it: of concurrent callers (in any process) exactly one sees
// true, so an action runs once per finding. The finding must exist (ErrNotFound).
func (s *SQLite) MarkFindingResponse(ctx context.Context, findingID, action string, at time.Time) (bool, error) {
	if err := validName(action); err != nil {
		return false, fmt.Errorf("mark finding response: action: %w", err)
	}
	n, err := requiredTime(at, s.now)
	if err != nil {
		return false, fmt.Errorf("mark finding response %s: %w", findingID, err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO finding_responses (finding_id, action, applied_at)
		SELECT id, ?, ? FROM findings WHERE id = ? ON CONFLICT (finding_id, action) DO NOTHING`, action, n, findingID)
	if err != nil {
		return false, fmt.Errorf("mark finding response %s %s: %w", findingID, action, err)
	}
	c, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("mark finding response %s %s: %w", findingID, action, err)
	}
	if c == 1 {
		s.changed()
		return true, nil
	}
	if err := s.exists(ctx, `SELECT 1 FROM findings WHERE id = ?`, findingID); err != nil {
		return false, fmt.Errorf("mark finding response %s %s: %w", findingID, action, err)
	}
	return false, nil
}

// ListFindingResponses returns the actions applied for a finding, in name order.
func (s *SQLite) ListFindingResponses(ctx context.Context, findingID string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT action FROM finding_responses WHERE finding_id = ? ORDER BY action`, findingID)
	if err != nil {
		return nil, fmt.Errorf("list finding responses %s: %w", findingID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("list finding responses %s: %w", findingID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list finding responses %s: %w", findingID, err)
	}
	return out, nil
}

// PutRiskLevel sets a principal's risk level (replacing the one stored). Whether a level
// may be lowered is the caller's policy; the store records what it is given.
func (s *SQLite) PutRiskLevel(ctx context.Context, r RiskLevel) error {
	if err := validName(r.Principal); err != nil {
		return fmt.Errorf("put risk level: principal: %w", err)
	}
	if err := validName(r.Level); err != nil {
		return fmt.Errorf("put risk level %s: level: %w", r.Principal, err)
	}
	set, err := requiredTime(r.SetAt, s.now)
	if err != nil {
		return fmt.Errorf("put risk level %s: %w", r.Principal, err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO risk_levels (principal, level, finding_id, set_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (principal) DO UPDATE SET level = excluded.level, finding_id = excluded.finding_id, set_at = excluded.set_at`,
		r.Principal, r.Level, r.FindingID, set); err != nil {
		return fmt.Errorf("put risk level %s: %w", r.Principal, err)
	}
	s.changed()
	return nil
}

// DeleteRiskLevel clears a principal's risk level, or returns ErrNotFound.
func (s *SQLite) DeleteRiskLevel(ctx context.Context, principal string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM risk_levels WHERE principal = ?`, principal)
	if err := oneRow(res, err, ErrNotFound); err != nil {
		return fmt.Errorf("delete risk level %s: %w", principal, err)
	}
	s.changed()
	return nil
}

// ListRiskLevels returns every principal's risk level, ordered by principal.
func (s *SQLite) ListRiskLevels(ctx context.Context) ([]RiskLevel, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT principal, level, finding_id, set_at FROM risk_levels ORDER BY principal`)
	if err != nil {
		return nil, fmt.Errorf("list risk levels: %w", err)
	}
	defer rows.Close()
	var out []RiskLevel
	for rows.Next() {
		var r RiskLevel
		var set int64
		if err := rows.Scan(&r.Principal, &r.Level, &r.FindingID, &set); err != nil {
			return nil, fmt.Errorf("list risk levels: %w", err)
		}
		r.SetAt = fromNanos(set)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list risk levels: %w", err)
	}
	return out, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
