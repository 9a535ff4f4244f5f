package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"time"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered schema change; numbers start at 1 and have no gaps.
type migration struct {
	version int
	name    string // file name, recorded with the version
	sql     string
}

var migrationNameRe = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the embedded migrations in version order and checks they are
// numbered 1, 2, 3… with no gaps or duplicates.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m := migrationNameRe.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, "migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d (versions start at 1 with no gaps or duplicates)", m.name, i+1)
		}
	}
	if len(ms) == 0 {
		return nil, errors.New("no migrations embedded")
	}
	return ms, nil
}

// migrate applies the migrations db lacks, in order, in one transaction, recording each
// in schema_migrations. It refuses a database that records a migration this binary does
// not know (a newer Phantom migrated it) or whose recorded names disagree with ours.
// The transaction must take the write lock at BEGIN (BEGIN IMMEDIATE), so concurrent
// openers serialize instead of both applying.
func migrate(ctx context.Context, db *sql.DB, ms []migration, now time.Time) (int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return 0, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		return 0, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	applied := 0
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			rows.Close()
			return 0, fmt.Errorf("migrate: read schema_migrations: %w", err)
		}
		if v < 1 {
			rows.Close()
			return 0, fmt.Errorf("migrate: database records invalid migration version %d", v)
		}
		if v > len(ms) {
			rows.Close()
			return 0, fmt.Errorf("database has migration %d (%s) but this binary knows only up to %d: upgrade phantom or use a matching data directory: %w", v, name, len(ms), ErrSchemaTooNew)
		}
		if v != applied+1 || ms[v-1].name != name {
			rows.Close()
			return 0, fmt.Errorf("migrate: database records migration %d as %q after migration %d; this binary's history does not match", v, name, applied)
		}
		applied = v
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return 0, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	rows.Close()
	for _, m := range ms[applied:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return 0, fmt.Errorf("migrate: apply %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, now.UnixNano()); err != nil {
			return 0, fmt.Errorf("migrate: record %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("migrate: commit: %w", err)
	}
	return len(ms), nil
}
