package store_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// PostgreSQL tests run against the server PHANTOM_TEST_POSTGRES_DSN names (a URL; see
// scripts/postgres), each store in a schema of its own that is dropped afterwards. With
// PHANTOM_TEST_POSTGRES_CTL set to scripts/postgres, one test also restarts a server of
// its own.
const dsnEnv = "PHANTOM_TEST_POSTGRES_DSN"

var (
	_ pki.TokenStore = (*store.Postgres)(nil)
	_ store.Notifier = (*store.Postgres)(nil)
)

func testDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skipf("%s is unset: set it to a PostgreSQL URL (scripts/postgres start prints one) to run the PostgreSQL tests", dsnEnv)
	}
	if !store.IsPostgresURL(dsn) {
		t.Fatalf("%s is not a postgres:// URL", dsnEnv)
	}
	return dsn
}

// newSchema creates an empty schema, dropped at cleanup, and returns a DSN whose
// connections use it and name themselves after it (storetest.PostgresSchema).
func newSchema(t *testing.T) (dsn, schema string) {
	t.Helper()
	testDSN(t)
	return storetest.PostgresSchema(t, "phantom_test")
}

func rawConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func openPostgres(t *testing.T, dsn string, key []byte) (*store.Postgres, error) {
	t.Helper()
	s, err := store.OpenPostgres(t.Context(), store.PostgresConfig{DSN: dsn, MasterKey: key, MaxConns: 8})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { s.Close() })
	return s, nil
}

func mustOpenPostgres(t *testing.T, dsn string, key []byte) *store.Postgres {
	t.Helper()
	s, err := openPostgres(t, dsn, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pgHarness is a PostgreSQL store with the contract suite's hooks, which read and write
// the schema through a connection of their own.
type pgHarness struct {
	*store.Postgres
	dsn string
	key []byte
}

func TestPostgresContract(t *testing.T) {
	testDSN(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		dsn, _ := newSchema(t)
		key := newMasterKey(t)
		return &pgHarness{Postgres: mustOpenPostgres(t, dsn, key), dsn: dsn, key: key}
	})
}

func (h *pgHarness) MasterKey() []byte { return h.key }

func (h *pgHarness) Backend() string { return "postgres" }

func (h *pgHarness) ExecRaw(t *testing.T, stmt string) error {
	t.Helper()
	_, err := rawConn(t, h.dsn).Exec(t.Context(), stmt)
	return err
}

func (h *pgHarness) Reopen(t *testing.T, key []byte) (storetest.Store, error) {
	t.Helper()
	h.Postgres.Close()
	s, err := openPostgres(t, h.dsn, key)
	if err != nil {
		return nil, err
	}
	return &pgHarness{Postgres: s, dsn: h.dsn, key: key}, nil
}

func (h *pgHarness) RawRow(t *testing.T, kind storetest.Kind, id string) []byte {
	t.Helper()
	tab, ok := rawTables[kind]
	if !ok {
		t.Fatalf("unknown kind %q", kind)
	}
	rows, err := rawConn(t, h.dsn).Query(t.Context(), `SELECT * FROM `+tab.table+` WHERE `+tab.id+` = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("no %s row %s", kind, id)
	}
	vals, err := rows.Values()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			out.Write(v)
		case string:
			out.WriteString(v)
		default:
			fmt.Fprint(&out, v)
		}
		out.WriteByte(0)
	}
	return out.Bytes()
}

func (h *pgHarness) SwapSecrets(t *testing.T, kind storetest.Kind, a, b string) {
	t.Helper()
	tab, ok := rawTables[kind]
	if !ok {
		t.Fatalf("unknown kind %q", kind)
	}
	c := rawConn(t, h.dsn)
	// One statement: each row takes the other's ciphertext.
	tag, err := c.Exec(t.Context(), `UPDATE `+tab.table+` AS x SET `+tab.secret+` = y.`+tab.secret+`
		FROM `+tab.table+` AS y WHERE (x.`+tab.id+`, y.`+tab.id+`) IN (($1, $2), ($2, $1))`, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 2 {
		t.Fatalf("swapped %d rows, want 2", tag.RowsAffected())
	}
}

func (h *pgHarness) AddFutureMigration(t *testing.T) {
	t.Helper()
	if _, err := rawConn(t, h.dsn).Exec(t.Context(), `INSERT INTO schema_migrations (version, name, applied_at)
		SELECT MAX(version) + 1, 'from_the_future.sql', 0 FROM schema_migrations`); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresOpenByURL(t *testing.T) {
	dsn, _ := newSchema(t)
	s, err := store.Open(t.Context(), store.OpenConfig{URL: dsn, MasterKey: newMasterKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*store.Postgres); !ok {
		t.Fatalf("Open(postgres URL) returned %T, want *store.Postgres", s)
	}
}

// A schema that does not exist is an error at open, not tables created elsewhere.
func TestPostgresMissingSchema(t *testing.T) {
	dsn, schema := newSchema(t)
	_, err := openPostgres(t, strings.ReplaceAll(dsn, schema, schema+"_absent"), newMasterKey(t))
	if err == nil || !strings.Contains(err.Error(), "search_path") {
		t.Fatalf("open with a missing schema: err = %v, want one about search_path", err)
	}
}

// waitWake waits up to d for a wakeup.
func waitWake(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func drainWakes(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// A write by another handle (another replica, in production) wakes subscribers.
func TestPostgresSubscribeOtherHandle(t *testing.T) {
	dsn, _ := newSchema(t)
	key := newMasterKey(t)
	a := mustOpenPostgres(t, dsn, key)
	b := mustOpenPostgres(t, dsn, key)
	ch, cancel := a.Subscribe()
	defer cancel()
	waitFor(t, "listener connected", 5*time.Second, func() bool { return a.ListenerConnects() >= 1 })
	for i := range 3 {
		drainWakes(ch)
		if err := b.PutRevocation(t.Context(), store.Revocation{Role: "deploy", Before: time.Unix(int64(1000+i), 0)}); err != nil {
			t.Fatal(err)
		}
		if !waitWake(ch, 2*time.Second) {
			t.Fatalf("write %d by another handle: no wakeup within 2 s", i)
		}
	}
	// Writes that bump nothing announce nothing: secrets, cursor-only commits, and a
	// revocation that does not raise Before.
	drainWakes(ch)
	if _, err := b.PutSecretIfAbsent(t.Context(), "ca", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.CommitAudit(t.Context(), "detector", []store.CursorAdvance{{Chain: "c", From: 0, To: 1, Hash: "h", Events: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.PutRevocation(t.Context(), store.Revocation{Role: "deploy", Before: time.Unix(1, 0)}); err != nil {
		t.Fatal(err)
	}
	if waitWake(ch, 500*time.Millisecond) {
		t.Error("woken by writes that change no versioned table")
	}
}

// Two perimeters in two schemas of one database do not wake each other.
func TestPostgresSchemasIsolated(t *testing.T) {
	dsnA, _ := newSchema(t)
	dsnB, _ := newSchema(t)
	a := mustOpenPostgres(t, dsnA, newMasterKey(t))
	b := mustOpenPostgres(t, dsnB, newMasterKey(t))
	ch, cancel := a.Subscribe()
	defer cancel()
	waitFor(t, "listener connected", 5*time.Second, func() bool { return a.ListenerConnects() >= 1 })
	drainWakes(ch)
	if err := b.PutNode(t.Context(), store.Node{Name: "n", Role: "r", CertSerial: "01"}); err != nil {
		t.Fatal(err)
	}
	if waitWake(ch, 500*time.Millisecond) {
		t.Error("woken by a write to another schema")
	}
	if v, err := a.Version(t.Context()); err != nil || v != 0 {
		t.Errorf("Version of the untouched schema = %d (err %v), want 0", v, err)
	}
}

func terminate(t *testing.T, where string, args ...any) int {
	t.Helper()
	var n int
	if err := rawConn(t, testDSN(t)).QueryRow(t.Context(),
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The listener reconnects after its connection is killed, wakes subscribers when it
// is back (notifications may have been lost meanwhile), and hears writes again.
func TestPostgresListenerReconnects(t *testing.T) {
	dsn, _ := newSchema(t)
	key := newMasterKey(t)
	a := mustOpenPostgres(t, dsn, key)
	b := mustOpenPostgres(t, dsn, key)
	ch, cancel := a.Subscribe()
	defer cancel()
	waitFor(t, "listener connected", 5*time.Second, func() bool { return a.ListenerConnects() >= 1 })
	for round := range 2 {
		pid := a.ListenerPID()
		drainWakes(ch)
		if n := terminate(t, `pid = $1`, int32(pid)); n != 1 {
			t.Fatalf("terminated %d backends, want the listener's", n)
		}
		waitFor(t, "listener reconnected", 10*time.Second, func() bool { return a.ListenerConnects() >= int64(round+2) })
		if !waitWake(ch, 2*time.Second) {
			t.Fatalf("round %d: no wakeup after the listener reconnected", round)
		}
		if a.ListenerPID() == pid {
			t.Fatalf("round %d: listener still on backend %d", round, pid)
		}
		drainWakes(ch)
		if err := b.PutRevocation(t.Context(), store.Revocation{Role: "r", Before: time.Unix(int64(100+round), 0)}); err != nil {
			t.Fatal(err)
		}
		if !waitWake(ch, 2*time.Second) {
			t.Fatalf("round %d: write after the reconnect not heard within 2 s", round)
		}
	}
}

// Replicas starting together on an empty schema: one migrates, the rest wait for it and
// find the work done; all agree on the master key check.
func TestPostgresConcurrentFirstStart(t *testing.T) {
	dsn, _ := newSchema(t)
	key := newMasterKey(t)
	const n = 4
	stores := make([]*store.Postgres, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = openPostgres(t, dsn, key)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	want, err := stores[0].SchemaVersion(t.Context())
	if err != nil || want < 1 {
		t.Fatalf("SchemaVersion = %d, %v", want, err)
	}
	for i, s := range stores {
		if v, err := s.SchemaVersion(t.Context()); err != nil || v != want {
			t.Errorf("replica %d: SchemaVersion = %d (err %v), want %d", i, v, err, want)
		}
	}
	var migrations int
	if err := rawConn(t, dsn).QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&migrations); err != nil {
		t.Fatal(err)
	}
	if migrations != want {
		t.Errorf("schema_migrations has %d rows, want %d (each migration recorded once)", migrations, want)
	}
	// A replica with another master key is refused, not allowed to seal under it.
	if _, err := openPostgres(t, dsn, newMasterKey(t)); !errors.Is(err, store.ErrWrongMasterKey) {
		t.Errorf("replica with another master key: err = %v, want ErrWrongMasterKey", err)
	}
}

// exercise runs a few reads and writes and reports the first error.
func exercise(ctx context.Context, s *store.Postgres, i int) error {
	if err := s.PutRevocation(ctx, store.Revocation{Role: "r", Before: time.Unix(int64(10+i), 0)}); err != nil {
		return err
	}
	_, err := s.ListRevocations(ctx)
	return err
}

// recovers checks that after the server dropped every connection the store works
// again without being reopened: each dead pooled connection may fail one call at most.
func recovers(t *testing.T, s *store.Postgres, maxConns int) {
	t.Helper()
	failures := 0
	deadline := time.Now().Add(30 * time.Second)
	ok := 0
	for i := 0; ok < 20; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover within 30 s (%d failures)", failures)
		}
		if err := exercise(t.Context(), s, 100+i); err != nil {
			failures++
			ok = 0
			t.Logf("call %d after the drop: %v", i, err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		ok++
	}
	// A call fails only when it lands on a connection that died under it, once per
	// connection (plus the failed reconnects while a restarting server refuses them).
	if failures > maxConns*2 {
		t.Errorf("%d calls failed before the store recovered, want at most %d", failures, maxConns*2)
	}
}

func TestPostgresPoolRecoversFromTerminatedBackends(t *testing.T) {
	dsn, schema := newSchema(t)
	s := mustOpenPostgres(t, dsn, newMasterKey(t))
	var wg sync.WaitGroup
	for i := range 8 { // fill the pool with connections
		wg.Go(func() {
			if err := exercise(t.Context(), s, i); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := terminate(t, `application_name = $1`, schema); n < 2 {
		t.Fatalf("terminated %d backends, want the pool's and the listener's", n)
	}
	recovers(t, s, 8)
	waitFor(t, "listener reconnected", 10*time.Second, func() bool { return s.ListenerConnects() >= 2 })
}

// With PHANTOM_TEST_POSTGRES_CTL naming scripts/postgres, the server itself restarts: a
// server of this test's own, so the tests of other packages on the shared one are not
// cut off (a restart of the shared server failed another package's schema cleanup).
func TestPostgresServerRestart(t *testing.T) {
	testDSN(t)
	dsn, ctl := storetest.PrivatePostgres(t)
	s := mustOpenPostgres(t, dsn, newMasterKey(t))
	if err := exercise(t.Context(), s, 0); err != nil {
		t.Fatal(err)
	}
	ch, cancel := s.Subscribe()
	defer cancel()
	before := s.ListenerConnects()
	ctl("restart")
	recovers(t, s, 8)
	waitFor(t, "listener reconnected", 15*time.Second, func() bool { return s.ListenerConnects() > before })
	if !waitWake(ch, 2*time.Second) {
		t.Error("no wakeup after the listener reconnected")
	}
}

// Neither a wrong password nor a malformed DSN puts the password in an error.
func TestPostgresPasswordNotInErrors(t *testing.T) {
	base := testDSN(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	real, _ := u.User.Password()
	wrong := "wrongpw-" + hex.EncodeToString([]byte(t.Name()))[:16]
	u.User = url.UserPassword(u.User.Username(), wrong)
	key := newMasterKey(t)
	tests := []struct {
		name, dsn string
	}{
		{"wrong password", u.String()},
		{"bad port", strings.Replace(u.String(), u.Port(), "notaport", 1)},
		{"stranded password", "postgres://phantom:" + wrong + "/x@127.0.0.1/phantom"},
		{"keyword/value", "host=127.0.0.1 port=" + u.Port() + " user=phantom password=" + wrong + " dbname=phantom sslmode=require connect_timeout=x"},
		{"wrong password keyword/value", "host=127.0.0.1 port=" + u.Port() + " user=phantom password=" + wrong + " dbname=phantom sslmode=require"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, open := range []func() error{
				func() error {
					s, err := store.OpenPostgres(t.Context(), store.PostgresConfig{DSN: tc.dsn, MasterKey: key})
					if err == nil {
						s.Close()
					}
					return err
				},
				func() error {
					s, err := store.Open(t.Context(), store.OpenConfig{URL: tc.dsn, MasterKey: key})
					if err == nil {
						s.Close()
					}
					return err
				},
			} {
				err := open()
				if err == nil {
					t.Fatal("open succeeded")
				}
				for _, pw := range []string{wrong, real} {
					if strings.Contains(err.Error(), pw) || strings.Contains(fmt.Sprintf("%+v", err), pw) {
						t.Errorf("error %q contains a password", err)
					}
				}
			}
		})
	}
}
