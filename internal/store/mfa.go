package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Virtual MFA devices. Each state change is one conditional UPDATE, so two replicas (or two
// requests) racing on one device cannot both take a code or both enable it.

// --- SQLite ---

// PutMFADevice stores a new device, not enabled, its seed sealed.
func (s *SQLite) PutMFADevice(ctx context.Context, d MFADevice) error {
	d.User, d.EnabledAt = "", time.Time{}
	vals, err := mfaDeviceValues(s.seal, s.now, d)
	if err != nil {
		return fmt.Errorf("put mfa device: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO mfa_devices (`+mfaDeviceCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (serial) DO NOTHING`, vals...)
	if err := oneRow(res, err, ErrExists); err != nil {
		return fmt.Errorf("put mfa device %s: %w", d.Serial, err)
	}
	return nil
}

// GetMFADevice returns a device with its seed, or ErrNotFound.
func (s *SQLite) GetMFADevice(ctx context.Context, serial string) (MFADevice, error) {
	row := s.r.QueryRowContext(ctx, `SELECT `+mfaDeviceCols+` FROM mfa_devices WHERE serial = ?`, serial)
	d, err := scanMFADevice(s.seal, row)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return MFADevice{}, fmt.Errorf("get mfa device %s: %w", serial, err)
	}
	return d, nil
}

// ListMFADevices returns user's devices (every device when user is "").
func (s *SQLite) ListMFADevices(ctx context.Context, user string) ([]MFADevice, error) {
	q, args := listMFAQuery(user, "?")
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list mfa devices: %w", err)
	}
	defer rows.Close()
	var out []MFADevice
	for rows.Next() {
		d, err := scanMFADevice(s.seal, rows)
		if err != nil {
			return nil, fmt.Errorf("list mfa devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list mfa devices: %w", err)
	}
	return out, nil
}

// EnableMFADevice enables a device that is not enabled yet.
func (s *SQLite) EnableMFADevice(ctx context.Context, serial, user string, step int64, at time.Time) error {
	if err := validEnable(user, step); err != nil {
		return fmt.Errorf("enable mfa device %s: %w", serial, err)
	}
	when, err := nanos(at)
	if err != nil {
		return fmt.Errorf("enable mfa device %s: %w", serial, err)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE mfa_devices SET user_name = ?, enabled_at = ?, last_step = MAX(last_step, ?), failures = 0
		WHERE serial = ? AND user_name = ''`, user, when, step, serial)
	if err := oneRow(res, err, ErrConflict); errors.Is(err, ErrConflict) {
		if err := s.exists(ctx, `SELECT 1 FROM mfa_devices WHERE serial = ?`, serial); err != nil {
			return fmt.Errorf("enable mfa device %s: %w", serial, err)
		}
		return fmt.Errorf("enable mfa device %s: enabled already: %w", serial, ErrConflict)
	} else if err != nil {
		return fmt.Errorf("enable mfa device %s: %w", serial, err)
	}
	return nil
}

// DeactivateMFADevice disables user's device.
func (s *SQLite) DeactivateMFADevice(ctx context.Context, serial, user string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE mfa_devices SET user_name = '', enabled_at = NULL, failures = 0
		WHERE serial = ? AND user_name = ? AND user_name <> ''`, serial, user)
	if err := oneRow(res, err, ErrNotFound); err != nil {
		return fmt.Errorf("deactivate mfa device %s: %w", serial, err)
	}
	return nil
}

// ResyncMFADevice clears failures and moves the last step forward.
func (s *SQLite) ResyncMFADevice(ctx context.Context, serial, user string, step int64) error {
	res, err := s.w.ExecContext(ctx, `UPDATE mfa_devices SET last_step = MAX(last_step, ?), failures = 0
		WHERE serial = ? AND user_name = ? AND user_name <> ''`, step, serial, user)
	if err := oneRow(res, err, ErrNotFound); err != nil {
		return fmt.Errorf("resync mfa device %s: %w", serial, err)
	}
	return nil
}

// DeleteMFADevice removes a device that is not enabled.
func (s *SQLite) DeleteMFADevice(ctx context.Context, serial string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM mfa_devices WHERE serial = ? AND user_name = ''`, serial)
	if err := oneRow(res, err, ErrConflict); errors.Is(err, ErrConflict) {
		if err := s.exists(ctx, `SELECT 1 FROM mfa_devices WHERE serial = ?`, serial); err != nil {
			return fmt.Errorf("delete mfa device %s: %w", serial, err)
		}
		return fmt.Errorf("delete mfa device %s: enabled for a user: %w", serial, ErrConflict)
	} else if err != nil {
		return fmt.Errorf("delete mfa device %s: %w", serial, err)
	}
	return nil
}

// CountMFAAttempt counts an attempt on user's device.
func (s *SQLite) CountMFAAttempt(ctx context.Context, serial, user string) (int, error) {
	var n int
	err := s.w.QueryRowContext(ctx, `UPDATE mfa_devices SET failures = failures + 1
		WHERE serial = ? AND user_name = ? AND user_name <> '' RETURNING failures`, serial, user).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("count mfa attempt %s: %w", serial, err)
	}
	return n, nil
}

// AcceptMFACode takes step as the device's last accepted step, once.
func (s *SQLite) AcceptMFACode(ctx context.Context, serial, user string, step int64) (bool, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE mfa_devices SET last_step = ?, failures = 0
		WHERE serial = ? AND user_name = ? AND user_name <> '' AND last_step < ?`, step, serial, user, step)
	if err != nil {
		return false, fmt.Errorf("accept mfa code %s: %w", serial, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("accept mfa code %s: %w", serial, err)
	}
	return n == 1, nil
}

// --- PostgreSQL ---

// PutMFADevice stores a new device, not enabled, its seed sealed.
func (p *Postgres) PutMFADevice(ctx context.Context, d MFADevice) error {
	d.User, d.EnabledAt = "", time.Time{}
	vals, err := mfaDeviceValues(p.seal, p.now, d)
	if err != nil {
		return fmt.Errorf("put mfa device: %w", err)
	}
	tag, err := p.pool.Exec(ctx, `INSERT INTO mfa_devices (`+mfaDeviceCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (serial) DO NOTHING`, vals...)
	if err := affected(tag, err, ErrExists); err != nil {
		return p.errorf("put mfa device %s: %w", d.Serial, err)
	}
	return nil
}

// GetMFADevice returns a device with its seed, or ErrNotFound.
func (p *Postgres) GetMFADevice(ctx context.Context, serial string) (MFADevice, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+mfaDeviceCols+` FROM mfa_devices WHERE serial = $1`, serial)
	if err != nil {
		return MFADevice{}, p.errorf("get mfa device %s: %w", serial, err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, p.scanMFADevice)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return MFADevice{}, p.errorf("get mfa device %s: %w", serial, err)
	}
	return d, nil
}

func (p *Postgres) scanMFADevice(r pgx.CollectableRow) (MFADevice, error) {
	return scanMFADevice(p.seal, r)
}

// ListMFADevices returns user's devices (every device when user is "").
func (p *Postgres) ListMFADevices(ctx context.Context, user string) ([]MFADevice, error) {
	q, args := listMFAQuery(user, "$1")
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, p.errorf("list mfa devices: %w", err)
	}
	ds, err := pgx.CollectRows(rows, p.scanMFADevice)
	if err != nil {
		return nil, p.errorf("list mfa devices: %w", err)
	}
	return nilIfEmpty(ds), nil
}

// EnableMFADevice enables a device that is not enabled yet.
func (p *Postgres) EnableMFADevice(ctx context.Context, serial, user string, step int64, at time.Time) error {
	if err := validEnable(user, step); err != nil {
		return fmt.Errorf("enable mfa device %s: %w", serial, err)
	}
	when, err := nanos(at)
	if err != nil {
		return fmt.Errorf("enable mfa device %s: %w", serial, err)
	}
	tag, err := p.pool.Exec(ctx, `UPDATE mfa_devices SET user_name = $1, enabled_at = $2, last_step = GREATEST(last_step, $3), failures = 0
		WHERE serial = $4 AND user_name = ''`, user, when, step, serial)
	if err := affected(tag, err, ErrConflict); errors.Is(err, ErrConflict) {
		if err := p.exists(ctx, `SELECT 1 FROM mfa_devices WHERE serial = $1`, serial); err != nil {
			return p.errorf("enable mfa device %s: %w", serial, err)
		}
		return fmt.Errorf("enable mfa device %s: enabled already: %w", serial, ErrConflict)
	} else if err != nil {
		return p.errorf("enable mfa device %s: %w", serial, err)
	}
	return nil
}

// DeactivateMFADevice disables user's device.
func (p *Postgres) DeactivateMFADevice(ctx context.Context, serial, user string) error {
	tag, err := p.pool.Exec(ctx, `UPDATE mfa_devices SET user_name = '', enabled_at = NULL, failures = 0
		WHERE serial = $1 AND user_name = $2 AND user_name <> ''`, serial, user)
	if err := affected(tag, err, ErrNotFound); err != nil {
		return p.errorf("deactivate mfa device %s: %w", serial, err)
	}
	return nil
}

// ResyncMFADevice clears failures and moves the last step forward.
func (p *Postgres) ResyncMFADevice(ctx context.Context, serial, user string, step int64) error {
	tag, err := p.pool.Exec(ctx, `UPDATE mfa_devices SET last_step = GREATEST(last_step, $1), failures = 0
		WHERE serial = $2 AND user_name = $3 AND user_name <> ''`, step, serial, user)
	if err := affected(tag, err, ErrNotFound); err != nil {
		return p.errorf("resync mfa device %s: %w", serial, err)
	}
	return nil
}

// DeleteMFADevice removes a device that is not enabled.
func (p *Postgres) DeleteMFADevice(ctx context.Context, serial string) error {
	tag, err := p.pool.Exec(ctx, `DELETE FROM mfa_devices WHERE serial = $1 AND user_name = ''`, serial)
	if err := affected(tag, err, ErrConflict); errors.Is(err, ErrConflict) {
		if err := p.exists(ctx, `SELECT 1 FROM mfa_devices WHERE serial = $1`, serial); err != nil {
			return p.errorf("delete mfa device %s: %w", serial, err)
		}
		return fmt.Errorf("delete mfa device %s: enabled for a user: %w", serial, ErrConflict)
	} else if err != nil {
		return p.errorf("delete mfa device %s: %w", serial, err)
	}
	return nil
}

// CountMFAAttempt counts an attempt on user's device.
func (p *Postgres) CountMFAAttempt(ctx context.Context, serial, user string) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, `UPDATE mfa_devices SET failures = failures + 1
		WHERE serial = $1 AND user_name = $2 AND user_name <> '' RETURNING failures`, serial, user).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return 0, p.errorf("count mfa attempt %s: %w", serial, err)
	}
	return n, nil
}

// AcceptMFACode takes step as the device's last accepted step, once.
func (p *Postgres) AcceptMFACode(ctx context.Context, serial, user string, step int64) (bool, error) {
	tag, err := p.pool.Exec(ctx, `UPDATE mfa_devices SET last_step = $1, failures = 0
		WHERE serial = $2 AND user_name = $3 AND user_name <> '' AND last_step < $1`, step, serial, user)
	if err != nil {
		return false, p.errorf("accept mfa code %s: %w", serial, err)
	}
	return tag.RowsAffected() == 1, nil
}

// --- shared ---

func listMFAQuery(user, placeholder string) (string, []any) {
	q := `SELECT ` + mfaDeviceCols + ` FROM mfa_devices`
	var args []any
	if user != "" {
		q += ` WHERE user_name = ` + placeholder
		args = append(args, user)
	}
	return q + ` ORDER BY user_name, serial`, args
}

func validEnable(user string, step int64) error {
	if err := validName(user); err != nil {
		return fmt.Errorf("user: %w", err)
	}
	if step < 0 {
		return errors.New("negative step")
	}
	return nil
}
