package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// PostgresEnv names the variable that points tests at a PostgreSQL server
// (scripts/postgres start prints a URL for it; .ci/run always sets it).
const PostgresEnv = "PHANTOM_TEST_POSTGRES_DSN"

// CtlEnv names the variable that points tests at scripts/postgres, to run servers of
// their own (.ci/run sets it).
const CtlEnv = "PHANTOM_TEST_POSTGRES_CTL"

// FreshSchema creates an empty schema named prefix_<random> in the database at base and
// returns a URL whose connections use it (search_path) and name themselves after it
// (application_name, so a test can find and terminate exactly its own backends), and a
// function that drops it. Runs side by side never meet.
func FreshSchema(ctx context.Context, base, prefix string) (dsn, schema string, drop func(context.Context) error, err error) {
	if !store.IsPostgresURL(base) {
		return "", "", nil, errors.New("not a postgres:// URL")
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", "", nil, errors.New("postgres URL does not parse")
	}
	b := make([]byte, 8)
	rand.Read(b)
	schema = prefix + "_" + hex.EncodeToString(b)
	exec := func(ctx context.Context, sql string) error {
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", store.RedactURL(base), err)
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, sql)
		return err
	}
	if err := exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		return "", "", nil, fmt.Errorf("create schema %s: %w", schema, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", schema)
	u.RawQuery = q.Encode()
	drop = func(ctx context.Context) error {
		return exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	}
	return u.String(), schema, drop, nil
}

// PostgresSchema is FreshSchema for a test on the server PostgresEnv names: it skips,
// saying so, when the variable is unset, and drops the schema at cleanup.
func PostgresSchema(t testing.TB, prefix string) (dsn, schema string) {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skipf("%s is unset: no PostgreSQL server for this test (export %s=$(scripts/postgres start))", PostgresEnv, PostgresEnv)
	}
	dsn, schema, drop, err := FreshSchema(context.Background(), base, prefix)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := drop(ctx); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return dsn, schema
}

// AuditWriterRole creates a login role (dropped at cleanup) with only the audit
// writer's grants on the schema s uses (store.Postgres.GrantAuditWriter), and returns
// ownerDSN with that role's credentials instead: what an audit writer logs in with. The
// owner's login needs CREATEROLE (scripts/postgres gives it).
func AuditWriterRole(t testing.TB, s *store.Postgres, ownerDSN string) string {
	t.Helper()
	return LoginRole(t, ownerDSN, "phantom_writer", func(role string) error { return s.GrantAuditWriter(context.Background(), role) })
}

// ComponentRole is AuditWriterRole for component c's store role (phantom store roles:
// store.Postgres.GrantComponent, which creates the role).
func ComponentRole(t testing.TB, s *store.Postgres, ownerDSN string, c keys.Component) string {
	t.Helper()
	return LoginRole(t, ownerDSN, "phantom_"+string(c), func(role string) error {
		return s.GrantComponent(context.Background(), c, role, true)
	})
}

// LoginRole makes a role named prefix_<random> with a random password (dropped at
// cleanup, with its grants), grants it with grant (which may create it), and returns
// ownerDSN with its credentials.
func LoginRole(t testing.TB, ownerDSN, prefix string, grant func(role string) error) string {
	t.Helper()
	u, err := url.Parse(ownerDSN)
	if err != nil {
		t.Fatal("owner DSN does not parse")
	}
	b := make([]byte, 8)
	rand.Read(b)
	role := prefix + "_" + hex.EncodeToString(b)
	rand.Read(b)
	password := hex.EncodeToString(b)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, ownerDSN)
	if err != nil {
		t.Fatalf("connect as the owner: %v", err)
	}
	defer c.Close(ctx)
	r := pgx.Identifier{role}.Sanitize()
	if _, err := c.Exec(ctx, `CREATE ROLE `+r+` LOGIN PASSWORD '`+password+`'`); err != nil {
		t.Fatalf("create the role (the owner's login needs CREATEROLE: ALTER ROLE … CREATEROLE): %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, ownerDSN)
		if err != nil {
			t.Errorf("drop role %s: %v", role, err)
			return
		}
		defer c.Close(ctx)
		// The role owns nothing; its grants go first (DROP OWNED needs membership).
		for _, stmt := range []string{
			`DO $$ BEGIN EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM ` + r + `', current_schema());
				EXECUTE format('REVOKE ALL ON SCHEMA %I FROM ` + r + `', current_schema()); END $$`,
			`DROP ROLE ` + r,
		} {
			if _, err := c.Exec(ctx, stmt); err != nil {
				t.Errorf("drop role %s: %v", role, err)
				return
			}
		}
	})
	if err := grant(role); err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	return u.String()
}

// Conn connects to dsn (closed at cleanup), for statements beneath the store.
func Conn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// PrivatePostgres starts a PostgreSQL server of the test's own (scripts/postgres with
// its own directory and port), so it can be restarted and stopped without disturbing
// the tests of other packages on the shared one. It needs PHANTOM_TEST_POSTGRES_CTL.
func PrivatePostgres(t testing.TB) (dsn string, ctl func(cmd string)) {
	t.Helper()
	script := os.Getenv(CtlEnv)
	if script == "" {
		testenv.Skipf(t, "%s is not set: no way to start, restart and stop a PostgreSQL server of this test's own (.ci/run sets it to scripts/postgres)", CtlEnv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	dir, err := os.MkdirTemp("", "phantom-pg-")
	if err != nil {
		t.Fatal(err)
	}
	// As root, the script runs the server as the postgres user, who must reach the data
	// directory inside this one.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctl = func(cmd string) {
		t.Helper()
		c := exec.Command(script, cmd)
		c.Env = append(os.Environ(), "PHANTOM_PG_DIR="+filepath.Join(dir, "pg"), "PHANTOM_PG_PORT="+port)
		out, err := c.Output()
		if err != nil {
			t.Fatalf("scripts/postgres %s: %v %s", cmd, err, out)
		}
		if cmd == "start" {
			dsn = strings.TrimSpace(string(out))
		}
	}
	ctl("start")
	t.Cleanup(func() {
		c := exec.Command(script, "stop")
		c.Env = append(os.Environ(), "PHANTOM_PG_DIR="+filepath.Join(dir, "pg"), "PHANTOM_PG_PORT="+port)
		c.Run()
		os.RemoveAll(dir)
	})
	return dsn, ctl
}
