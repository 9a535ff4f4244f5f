package store

import (
	"context"
	"fmt"
	"time"
)

// validSignatureID accepts the id of a used signature: the lower-case hex SHA-256 of the
// signature (64 digits), as the gateway's replay guard names it.
func validSignatureID(id string) error {
	if len(id) != 64 {
		return fmt.Errorf("signature id is %d characters, want 64 hex digits", len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("signature id is not lower-case hex")
		}
	}
	return nil
}

// signatureTimes encodes a claim's expiry and the store's now.
func signatureTimes(expires time.Time, now func() time.Time) (exp, at int64, err error) {
	if exp, err = nanos(expires); err != nil {
		return 0, 0, err
	}
	at, err = nanos(now())
	return exp, at, err
}

// ClaimSignature records the first use of the signature whose digest is id, good until
// expires, and reports whether this call made it: of concurrent claims (from any process
// on the store) exactly one sees true. A record already expired is taken over (no
// verifier accepts that signature any more). Claims do not bump Version.
func (s *SQLite) ClaimSignature(ctx context.Context, id string, expires time.Time) (bool, error) {
	if err := validSignatureID(id); err != nil {
		return false, fmt.Errorf("claim signature: %w", err)
	}
	exp, now, err := signatureTimes(expires, s.now)
	if err != nil {
		return false, fmt.Errorf("claim signature: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO used_signatures (id, expires_at) VALUES (?, ?)
		ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at WHERE used_signatures.expires_at <= ?`, id, exp, now)
	if err != nil {
		return false, fmt.Errorf("claim signature: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claim signature: %w", err)
	}
	return n == 1, nil
}

// DeleteExpiredSignatures forgets used signatures that expired at or before now.
func (s *SQLite) DeleteExpiredSignatures(ctx context.Context, now time.Time) (int, error) {
	n, err := nanos(now)
	if err != nil {
		return 0, fmt.Errorf("delete expired signatures: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM used_signatures WHERE expires_at <= ?`, n)
	if err != nil {
		return 0, fmt.Errorf("delete expired signatures: %w", err)
	}
	c, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete expired signatures: %w", err)
	}
	return int(c), nil
}

// ClaimSignature is SQLite's ClaimSignature on PostgreSQL: the unique index decides
// between concurrent claims.
func (p *Postgres) ClaimSignature(ctx context.Context, id string, expires time.Time) (bool, error) {
	if err := validSignatureID(id); err != nil {
		return false, fmt.Errorf("claim signature: %w", err)
	}
	exp, now, err := signatureTimes(expires, p.now)
	if err != nil {
		return false, fmt.Errorf("claim signature: %w", err)
	}
	tag, err := p.pool.Exec(ctx, `INSERT INTO used_signatures (id, expires_at) VALUES ($1, $2)
		ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE used_signatures.expires_at <= $3`, id, exp, now)
	if err != nil {
		return false, p.errorf("claim signature: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// DeleteExpiredSignatures forgets used signatures that expired at or before now.
func (p *Postgres) DeleteExpiredSignatures(ctx context.Context, now time.Time) (int, error) {
	n, err := nanos(now)
	if err != nil {
		return 0, fmt.Errorf("delete expired signatures: %w", err)
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM used_signatures WHERE expires_at <= $1`, n)
	if err != nil {
		return 0, p.errorf("delete expired signatures: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
