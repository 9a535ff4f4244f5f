package consume_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// The consumer against PostgreSQL, when PHANTOM_TEST_POSTGRES_DSN names a server
// (scripts/postgres start prints one): each test in a schema of its own, dropped after.
const dsnEnv = "PHANTOM_TEST_POSTGRES_DSN"

func openPostgres(t testing.TB) store.Store {
	t.Helper()
	base := os.Getenv(dsnEnv)
	if base == "" {
		t.Skipf("%s is unset: set it to a PostgreSQL URL to run the consumer against PostgreSQL", dsnEnv)
	}
	b := make([]byte, 8)
	rand.Read(b)
	schema := "phantom_consume_" + hex.EncodeToString(b)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", store.RedactURL(base), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	st, err := store.Open(ctx, store.OpenConfig{URL: u.String(), MasterKey: bytes.Repeat([]byte{9}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestExactlyOncePostgres(t *testing.T) { exactlyOnce(t, openPostgres(t)) }

func TestConflictStopsPostgres(t *testing.T) { conflictStops(t, openPostgres(t)) }
