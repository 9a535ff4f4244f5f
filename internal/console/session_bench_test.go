package console

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// BenchmarkSessionLookup: what a signed-in request pays for its session. "memory" is the
// old in-process table (a hash and a map lookup under a lock), the baseline; "sqlite" and
// "postgres" read and touch the row in the store, as every replica does now.
//
//	go test -run '^$' -bench SessionLookup -benchmem ./internal/console/
func BenchmarkSessionLookup(b *testing.B) {
	now := time.Now()
	b.Run("memory", func(b *testing.B) {
		var mu sync.Mutex
		m := map[[32]byte]*session{}
		secret := newToken(32)
		m[sha256.Sum256([]byte(secret))] = &session{}
		b.ReportAllocs()
		for b.Loop() {
			k := sha256.Sum256([]byte(secret))
			mu.Lock()
			s := m[k]
			mu.Unlock()
			if s == nil {
				b.Fatal("no session")
			}
		}
	})
	run := func(b *testing.B, st SessionStore) {
		t := &sessions{st: st, idle: time.Hour, log: slog.New(slog.DiscardHandler), swept: now}
		secret, err := t.add(context.Background(), &session{accessKey: aliceKey, principal: aliceARN, expires: now.Add(time.Hour)}, now)
		if err != nil || secret == "" {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if s, err := t.get(context.Background(), secret, now); err != nil || s == nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("sqlite", func(b *testing.B) { run(b, openSQLite(b, b.TempDir())) })
	b.Run("postgres", func(b *testing.B) {
		if os.Getenv(storetest.PostgresEnv) == "" {
			b.Skipf("%s is unset", storetest.PostgresEnv)
		}
		dsn, _ := storetest.PostgresSchema(b, "phantom_bench")
		st, err := store.OpenPostgres(b.Context(), store.PostgresConfig{DSN: dsn, MasterKey: testMasterKey})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		run(b, st)
	})
}
