package consume_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// The consumer against PostgreSQL, when PHANTOM_TEST_POSTGRES_DSN names a server
// (scripts/postgres start prints one): each test in a schema of its own, dropped after.
func openPostgres(t testing.TB) store.Store {
	t.Helper()
	dsn, _ := storetest.PostgresSchema(t, "phantom_consume")
	ctx := context.Background()
	st, err := store.Open(ctx, store.OpenConfig{URL: dsn, MasterKey: bytes.Repeat([]byte{9}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestExactlyOncePostgres(t *testing.T) { exactlyOnce(t, openPostgres(t)) }

func TestConflictStopsPostgres(t *testing.T) { conflictStops(t, openPostgres(t)) }
