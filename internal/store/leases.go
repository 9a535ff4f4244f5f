package store

import (
	"context"
	"fmt"
	"time"
)

// Lease is one named piece of work (a partition of the audit stream) and who holds it.
type Lease struct {
	Name    string
	Holder  string
	Expires time.Time
}

func validLease(name, holder string, ttl time.Duration) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("lease name: %w", err)
	}
	if err := validName(holder); err != nil {
		return fmt.Errorf("lease holder: %w", err)
	}
	if ttl <= 0 || ttl > time.Hour {
		return fmt.Errorf("lease %s: ttl %s outside (0, 1h]", name, ttl)
	}
	return nil
}

// AcquireLease takes lease name for holder until ttl from now, if it is free, expired
// or already holder's (then it is renewed), and reports whether holder has it.
func (s *SQLite) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := validLease(name, holder, ttl); err != nil {
		return false, fmt.Errorf("acquire lease: %w", err)
	}
	now, err := requiredTime(s.now(), s.now)
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= ?`,
		name, holder, now+ttl.Nanoseconds(), now)
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return n == 1, nil
}

// ReleaseLease gives up holder's lease name (nothing if another holds it).
func (s *SQLite) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// ListLeases returns the leases not yet expired, by name.
func (s *SQLite) ListLeases(ctx context.Context) ([]Lease, error) {
	now, err := requiredTime(s.now(), s.now)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT name, holder, expires_at FROM leases WHERE expires_at > ? ORDER BY name`, now)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		var exp int64
		if err := rows.Scan(&l.Name, &l.Holder, &exp); err != nil {
			return nil, fmt.Errorf("list leases: %w", err)
		}
		l.Expires = fromNanos(exp)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return out, nil
}

// pgNow is the PostgreSQL server's clock in Unix nanoseconds: leases are judged by it.
const pgNow = `(extract(epoch from clock_timestamp()) * 1e9)::bigint`

// AcquireLease takes lease name for holder until ttl from now by the server's clock, if
// it is free, expired or already holder's (then it is renewed), and reports whether
// holder has it.
func (p *Postgres) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := validLease(name, holder, ttl); err != nil {
		return false, fmt.Errorf("acquire lease: %w", err)
	}
	tag, err := p.pool.Exec(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, `+pgNow+` + $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= `+pgNow,
		name, holder, ttl.Nanoseconds())
	if err != nil {
		return false, p.errorf("acquire lease %s: %w", name, err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLease gives up holder's lease name (nothing if another holds it).
func (p *Postgres) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := p.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return p.errorf("release lease %s: %w", name, err)
	}
	return nil
}

// ListLeases returns the leases not yet expired by the server's clock, by name.
func (p *Postgres) ListLeases(ctx context.Context) ([]Lease, error) {
	rows, err := p.pool.Query(ctx, `SELECT name, holder, expires_at FROM leases WHERE expires_at > `+pgNow+` ORDER BY name`)
	if err != nil {
		return nil, p.errorf("list leases: %w", err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		var exp int64
		if err := rows.Scan(&l.Name, &l.Holder, &exp); err != nil {
			return nil, p.errorf("list leases: %w", err)
		}
		l.Expires = fromNanos(exp)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, p.errorf("list leases: %w", err)
	}
	return out, nil
}
