package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phantom-perimeter/phantom/internal/pki"
)

// The CA's certificates and the certificate revocations (pki.CAStore): public rows every
// process reads to build its trust; the CA's keys are named secrets (secrets.go).

const caCertCols = `serial, der, role, not_before, not_after, distrusted_at`

func caCertValues(c pki.CACertificate) ([]any, error) {
	if c.Serial == "" || len(c.DER) == 0 || (c.Role != pki.RoleRoot && c.Role != pki.RoleIssuing) {
		return nil, fmt.Errorf("CA certificate %q: serial, DER and role (root or issuing) are required", c.Serial)
	}
	nb, err := nanos(c.NotBefore)
	if err != nil {
		return nil, err
	}
	na, err := nanos(c.NotAfter)
	if err != nil {
		return nil, err
	}
	return []any{c.Serial, c.DER, string(c.Role), nb, na}, nil
}

func scanCACert(sc scanner) (pki.CACertificate, error) {
	var (
		c          pki.CACertificate
		role       string
		nb, na     int64
		distrusted sql.NullInt64
	)
	if err := sc.Scan(&c.Serial, &c.DER, &role, &nb, &na, &distrusted); err != nil {
		return pki.CACertificate{}, err
	}
	c.Role, c.NotBefore, c.NotAfter = pki.Role(role), fromNanos(nb), fromNanos(na)
	if distrusted.Valid {
		c.DistrustedAt = fromNanos(distrusted.Int64)
	}
	return c, nil
}

const revocationCols = `id, serial, identity, issued_before, revoked_at, reason`

func revocationValues(r pki.Revocation) ([]any, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var serial, identity sql.NullString
	var before sql.NullInt64
	if r.Serial != "" {
		serial = sql.NullString{String: r.Serial, Valid: true}
	} else {
		identity = sql.NullString{String: r.Identity.String(), Valid: true}
		n, err := nanos(r.IssuedBefore)
		if err != nil {
			return nil, err
		}
		before = sql.NullInt64{Int64: n, Valid: true}
	}
	at, err := nanos(r.RevokedAt)
	if err != nil {
		return nil, err
	}
	return []any{r.ID(), serial, identity, before, at, r.Reason}, nil
}

func scanRevocation(sc scanner) (pki.Revocation, error) {
	var (
		id               string
		serial, identity sql.NullString
		before           sql.NullInt64
		at               int64
		r                pki.Revocation
	)
	if err := sc.Scan(&id, &serial, &identity, &before, &at, &r.Reason); err != nil {
		return pki.Revocation{}, err
	}
	r.RevokedAt = fromNanos(at)
	if serial.Valid {
		r.Serial = serial.String
	} else {
		ident, err := pki.ParseIdentity(identity.String)
		if err != nil {
			return pki.Revocation{}, fmt.Errorf("revocation %s: %w", id, err)
		}
		r.Identity, r.IssuedBefore = ident, fromNanos(before.Int64)
	}
	return r, nil
}

// --- SQLite ---

// PutCACertificate adds a CA certificate; one with the same serial is left as it is.
func (s *SQLite) PutCACertificate(ctx context.Context, c pki.CACertificate) error {
	vals, err := caCertValues(c)
	if err != nil {
		return fmt.Errorf("put CA certificate: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO ca_certificates (serial, der, role, not_before, not_after)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (serial) DO NOTHING`, vals...); err != nil {
		return fmt.Errorf("put CA certificate %s: %w", c.Serial, err)
	}
	s.changed()
	return nil
}

// ListCACertificates returns every CA certificate, oldest first.
func (s *SQLite) ListCACertificates(ctx context.Context) ([]pki.CACertificate, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+caCertCols+` FROM ca_certificates ORDER BY not_before, serial`)
	if err != nil {
		return nil, fmt.Errorf("list CA certificates: %w", err)
	}
	defer rows.Close()
	var out []pki.CACertificate
	for rows.Next() {
		c, err := scanCACert(rows)
		if err != nil {
			return nil, fmt.Errorf("list CA certificates: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DistrustCACertificate marks a CA certificate distrusted from at on (the first time
// counts), or returns ErrNotFound.
func (s *SQLite) DistrustCACertificate(ctx context.Context, serial string, at time.Time) error {
	n, err := nanos(at)
	if err != nil {
		return fmt.Errorf("distrust CA %s: %w", serial, err)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE ca_certificates SET distrusted_at = COALESCE(distrusted_at, ?) WHERE serial = ?`, n, serial)
	if err := oneRow(res, err, ErrNotFound); err != nil {
		return fmt.Errorf("distrust CA %s: %w", serial, err)
	}
	s.changed()
	return nil
}

// PutCertificateRevocation records a revocation; the same one again keeps the first.
func (s *SQLite) PutCertificateRevocation(ctx context.Context, r pki.Revocation) error {
	vals, err := revocationValues(r)
	if err != nil {
		return fmt.Errorf("put certificate revocation: %w", err)
	}
	// An identity revoked again moves its time forward, never back.
	if _, err := s.w.ExecContext(ctx, `INSERT INTO certificate_revocations (`+revocationCols+`) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET issued_before = excluded.issued_before, revoked_at = excluded.revoked_at, reason = excluded.reason
		WHERE excluded.issued_before > certificate_revocations.issued_before`, vals...); err != nil {
		return fmt.Errorf("put certificate revocation %s: %w", r.ID(), err)
	}
	s.changed()
	return nil
}

// ListCertificateRevocations returns every certificate revocation, ordered by id.
func (s *SQLite) ListCertificateRevocations(ctx context.Context) ([]pki.Revocation, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+revocationCols+` FROM certificate_revocations ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list certificate revocations: %w", err)
	}
	defer rows.Close()
	var out []pki.Revocation
	for rows.Next() {
		r, err := scanRevocation(rows)
		if err != nil {
			return nil, fmt.Errorf("list certificate revocations: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// --- PostgreSQL ---

// PutCACertificate adds a CA certificate; one with the same serial is left as it is.
func (p *Postgres) PutCACertificate(ctx context.Context, c pki.CACertificate) error {
	vals, err := caCertValues(c)
	if err != nil {
		return fmt.Errorf("put CA certificate: %w", err)
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO ca_certificates (serial, der, role, not_before, not_after)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (serial) DO NOTHING`, vals...); err != nil {
		return p.errorf("put CA certificate %s: %w", c.Serial, err)
	}
	return nil
}

// ListCACertificates returns every CA certificate, oldest first.
func (p *Postgres) ListCACertificates(ctx context.Context) ([]pki.CACertificate, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+caCertCols+` FROM ca_certificates ORDER BY not_before, serial`)
	if err != nil {
		return nil, p.errorf("list CA certificates: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pki.CACertificate, error) { return scanCACert(r) })
	if err != nil {
		return nil, p.errorf("list CA certificates: %w", err)
	}
	return nilIfEmpty(out), nil
}

// DistrustCACertificate marks a CA certificate distrusted from at on (the first time
// counts), or returns ErrNotFound.
func (p *Postgres) DistrustCACertificate(ctx context.Context, serial string, at time.Time) error {
	n, err := nanos(at)
	if err != nil {
		return fmt.Errorf("distrust CA %s: %w", serial, err)
	}
	tag, err := p.pool.Exec(ctx, `UPDATE ca_certificates SET distrusted_at = COALESCE(distrusted_at, $1) WHERE serial = $2`, n, serial)
	if err := affected(tag, err, ErrNotFound); err != nil {
		return p.errorf("distrust CA %s: %w", serial, err)
	}
	return nil
}

// PutCertificateRevocation records a revocation; the same one again keeps the first.
func (p *Postgres) PutCertificateRevocation(ctx context.Context, r pki.Revocation) error {
	vals, err := revocationValues(r)
	if err != nil {
		return fmt.Errorf("put certificate revocation: %w", err)
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO certificate_revocations (`+revocationCols+`) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET issued_before = excluded.issued_before, revoked_at = excluded.revoked_at, reason = excluded.reason
		WHERE excluded.issued_before > certificate_revocations.issued_before`, vals...); err != nil {
		return p.errorf("put certificate revocation %s: %w", r.ID(), err)
	}
	return nil
}

// ListCertificateRevocations returns every certificate revocation, ordered by id.
func (p *Postgres) ListCertificateRevocations(ctx context.Context) ([]pki.Revocation, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+revocationCols+` FROM certificate_revocations ORDER BY id`)
	if err != nil {
		return nil, p.errorf("list certificate revocations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pki.Revocation, error) { return scanRevocation(r) })
	if err != nil {
		return nil, p.errorf("list certificate revocations: %w", err)
	}
	return nilIfEmpty(out), nil
}

// grantValue is a join token's grant_json column: NULL for a node's token.
func grantValue(t pki.JoinToken) (sql.NullString, error) {
	if t.Grant == nil {
		return sql.NullString{}, nil
	}
	s, err := pki.MarshalGrant(*t.Grant)
	if err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: s, Valid: true}, nil
}
