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

// SQLite's migrations are migrations/NNNN_name.sql, PostgreSQL's
// migrations/postgres/NNNN_name.sql; each backend numbers its own from 1.
var (
	//go:embed migrations/*.sql
	migrationFiles embed.FS
	//go:embed migrations/postgres/*.sql
	postgresMigrationFiles embed.FS
)

const (
	sqliteMigrationDir   = "migrations"
	postgresMigrationDir = "migrations/postgres"
)

// migration is one numbered schema change; numbers start at 1 and have no gaps.
type migration struct {
	version int
	name    string // file name, recorded with the version
	sql     string
}

var migrationNameRe = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the migrations in dir in version order and checks they are
// numbered 1, 2, 3… with no gaps or duplicates.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		if e.IsDir() {
			continue // another backend's migrations
		}
		m := migrationNameRe.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(fsys, dir+"/"+e.Name())
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
	var recs []appliedMigration
	for rows.Next() {
		var m appliedMigration
		if err := rows.Scan(&m.version, &m.name); err != nil {
			rows.Close()
			return 0, fmt.Errorf("migrate: read schema_migrations: %w", err)
		}
		recs = append(recs, m)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return 0, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	rows.Close()
	applied, err := checkApplied(ms, recs)
	if err != nil {
		return 0, err
	}
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

// appliedMigration is a row of schema_migrations.
type appliedMigration struct {
	version int
	name    string
}

// checkApplied checks the migrations a database records against ms and returns how many
// are applied. It refuses a migration this binary does not know (a newer Phantom migrated
// the database: ErrSchemaTooNew) and a history whose names or order disagree with ours.
func checkApplied(ms []migration, recs []appliedMigration) (int, error) {
	applied := 0
	for _, r := range recs {
		if r.version < 1 {
			return 0, fmt.Errorf("migrate: database records invalid migration version %d", r.version)
		}
		if r.version > len(ms) {
			return 0, fmt.Errorf("database has migration %d (%s) but this binary knows only up to %d: upgrade phantom or use a matching database: %w", r.version, r.name, len(ms), ErrSchemaTooNew)
		}
		if r.version != applied+1 || ms[r.version-1].name != r.name {
			return 0, fmt.Errorf("migrate: database records migration %d as %q after migration %d; this binary's history does not match", r.version, r.name, applied)
		}
		applied = r.version
	}
	return applied, nil
}
