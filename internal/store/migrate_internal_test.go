package store

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestEmbeddedMigrations(t *testing.T) {
	ms, err := loadMigrations(migrationFiles, sqliteMigrationDir)
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].version != 1 || ms[0].name != "0001_init.sql" {
		t.Errorf("first migration = %d %s, want 1 0001_init.sql", ms[0].version, ms[0].name)
	}
	pg, err := loadMigrations(postgresMigrationFiles, postgresMigrationDir)
	if err != nil {
		t.Fatal(err)
	}
	if pg[0].version != 1 || pg[0].name != "0001_init.sql" || !strings.Contains(pg[0].sql, "bigint") {
		t.Errorf("first PostgreSQL migration = %d %s, want 1 0001_init.sql in PostgreSQL's dialect", pg[0].version, pg[0].name)
	}
}

func TestLoadMigrationsRefuses(t *testing.T) {
	file := &fstest.MapFile{Data: []byte("SELECT 1;")}
	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"none", nil, "migrations"},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, "want version 2"},
		{"duplicate", []string{"0001_a.sql", "0001_b.sql"}, "want version 2"},
		{"starts at 2", []string{"0002_b.sql"}, "want version 1"},
		{"bad name", []string{"0001_a.sql", "2_b.sql"}, "NNNN_name.sql"},
		{"upper case", []string{"0001_Init.sql"}, "NNNN_name.sql"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"migrations": &fstest.MapFile{Mode: fs.ModeDir | 0o755}}
			for _, f := range tc.files {
				fsys["migrations/"+f] = file
			}
			_, err := loadMigrations(fsys, "migrations")
			if err == nil {
				t.Fatal("loadMigrations accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// Migrations apply in order, each once; a failing one leaves the database as it was.
func TestMigrateInOrderOnceAtomically(t *testing.T) {
	ctx := context.Background()
	db, err := openDB(filepath.Join(t.TempDir(), "m.db"), time.Second, false)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	m := func(files ...string) []migration {
		fsys := fstest.MapFS{"migrations": &fstest.MapFile{Mode: fs.ModeDir | 0o755}}
		for i := 0; i < len(files); i += 2 {
			fsys["migrations/"+files[i]] = &fstest.MapFile{Data: []byte(files[i+1])}
		}
		ms, err := loadMigrations(fsys, "migrations")
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	one := m("0001_a.sql", "CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);")
	two := m("0001_a.sql", "CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);",
		"0002_b.sql", "INSERT INTO a VALUES (2); CREATE TABLE b (y INTEGER);")
	bad := m("0001_a.sql", "CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);",
		"0002_b.sql", "INSERT INTO a VALUES (2); CREATE TABLE b (y INTEGER);",
		"0003_c.sql", "INSERT INTO a VALUES (3); THIS IS NOT SQL;")
	renamed := m("0001_other.sql", "SELECT 1;")

	count := func() (n int) {
		t.Helper()
		if err := db.QueryRow(`SELECT COUNT(*) FROM a`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i, ms := range [][]migration{one, one, two, two} {
		v, err := migrate(ctx, db, ms, time.Unix(1, 0))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if v != len(ms) {
			t.Errorf("step %d: version %d, want %d", i, v, len(ms))
		}
	}
	if n := count(); n != 2 {
		t.Errorf("table a has %d rows, want 2 (each migration applied once)", n)
	}
	if _, err := migrate(ctx, db, bad, time.Unix(1, 0)); err == nil || !strings.Contains(err.Error(), "0003_c.sql") {
		t.Fatalf("failing migration: err = %v, want one naming 0003_c.sql", err)
	}
	if n := count(); n != 2 {
		t.Errorf("after a failed migration table a has %d rows, want 2 (rolled back)", n)
	}
	var recorded int
	if err := db.QueryRow(`SELECT MAX(version) FROM schema_migrations`).Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	if recorded != 2 {
		t.Errorf("schema_migrations records version %d, want 2", recorded)
	}
	if _, err := migrate(ctx, db, one, time.Unix(1, 0)); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("older binary: err = %v, want ErrSchemaTooNew", err)
	}
	if _, err := migrate(ctx, db, renamed, time.Unix(1, 0)); err == nil {
		t.Error("a binary whose migration 1 has another name was accepted")
	}
}
