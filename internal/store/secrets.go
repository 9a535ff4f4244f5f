package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// maxSecretSize bounds a secret: a CA's key and certificate take a few kilobytes.
const maxSecretSize = 1 << 20

func validSecret(name string, value []byte) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	if len(value) == 0 {
		return fmt.Errorf("%s: empty value", name)
	}
	if len(value) > maxSecretSize {
		return fmt.Errorf("%s: value larger than %d bytes", name, maxSecretSize)
	}
	return nil
}

// PutSecretIfAbsent stores value under name unless one is stored already, and returns
// the stored value. The insert and the read run in one write transaction, so of
// concurrent callers (in any process) all get the first one's value.
func (s *SQLite) PutSecretIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	if err := validSecret(name, value); err != nil {
		return nil, fmt.Errorf("put secret: %w", err)
	}
	sealed, err := s.seal.seal(secretKind(name), name, value)
	if err != nil {
		return nil, fmt.Errorf("put secret %s: %w", name, err)
	}
	created, err := requiredTime(s.now(), s.now)
	if err != nil {
		return nil, fmt.Errorf("put secret %s: %w", name, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("put secret %s: %w", name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO secrets (name, sealed, created_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO NOTHING`, name, sealed, created); err != nil {
		return nil, fmt.Errorf("put secret %s: %w", name, err)
	}
	var stored []byte
	if err := tx.QueryRowContext(ctx, `SELECT sealed FROM secrets WHERE name = ?`, name).Scan(&stored); err != nil {
		return nil, fmt.Errorf("put secret %s: read back: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("put secret %s: commit: %w", name, err)
	}
	pt, err := s.seal.open(secretKind(name), name, stored)
	if err != nil {
		return nil, fmt.Errorf("put secret %s: stored value: %w", name, err)
	}
	return pt, nil
}

// GetSecret returns the secret stored under name, or ErrNotFound.
func (s *SQLite) GetSecret(ctx context.Context, name string) ([]byte, error) {
	var sealed []byte
	err := s.r.QueryRowContext(ctx, `SELECT sealed FROM secrets WHERE name = ?`, name).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get secret %s: %w", name, err)
	}
	pt, err := s.seal.open(secretKind(name), name, sealed)
	if err != nil {
		return nil, fmt.Errorf("get secret %s: %w", name, err)
	}
	return pt, nil
}
