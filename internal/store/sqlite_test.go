package store_test

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

var _ pki.TokenStore = (*store.SQLite)(nil)

func TestSQLiteContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openHarness(t, t.TempDir(), newMasterKey(t))
	})
}

func newMasterKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, store.MasterKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// harness is a SQLite store with the contract suite's hooks, which read and write the
// database file through a connection of their own.
type harness struct {
	*store.SQLite
	dir string
	key []byte
}

func openHarness(t *testing.T, dir string, key []byte) *harness {
	t.Helper()
	h, err := tryOpenHarness(t, dir, key)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func tryOpenHarness(t *testing.T, dir string, key []byte) (*harness, error) {
	s, err := store.OpenSQLite(t.Context(), store.Config{DataDir: dir, MasterKey: key})
	if err != nil {
		return nil, err
	}
	var once sync.Once
	h := &harness{SQLite: s, dir: dir, key: key}
	t.Cleanup(func() { once.Do(func() { s.Close() }) })
	return h, nil
}

func (h *harness) MasterKey() []byte { return h.key }

func (h *harness) Backend() string { return "sqlite" }

func (h *harness) ExecRaw(t *testing.T, stmt string) error {
	t.Helper()
	_, err := h.raw(t).ExecContext(t.Context(), stmt)
	return err
}

func (h *harness) Reopen(t *testing.T, key []byte) (storetest.Store, error) {
	t.Helper()
	h.SQLite.Close()
	nh, err := tryOpenHarness(t, h.dir, key)
	if err != nil {
		return nil, err
	}
	return nh, nil
}

// raw opens the database file directly, beneath the store.
func (h *harness) raw(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(h.dir, store.DBFile)+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// rawTables says where each kind of secret-holding row lives, in both backends' schemas.
var rawTables = map[storetest.Kind]struct{ table, id, secret string }{
	storetest.KindAccessKey:  {"access_keys", "id", "secret_sealed"},
	storetest.KindSealingKey: {"sealing_keys", "id", "key_sealed"},
	storetest.KindSecret:     {"secrets", "name", "sealed"},
	storetest.KindMFADevice:  {"mfa_devices", "serial", "seed_sealed"},
}

func (h *harness) RawRow(t *testing.T, kind storetest.Kind, id string) []byte {
	t.Helper()
	tab, ok := rawTables[kind]
	if !ok {
		t.Fatalf("unknown kind %q", kind)
	}
	rows, err := h.raw(t).Query(`SELECT * FROM `+tab.table+` WHERE `+tab.id+` = ?`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatalf("no %s row %s", kind, id)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
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

func (h *harness) SwapSecrets(t *testing.T, kind storetest.Kind, a, b string) {
	t.Helper()
	tab, ok := rawTables[kind]
	if !ok {
		t.Fatalf("unknown kind %q", kind)
	}
	db := h.raw(t)
	var sa, sb []byte
	q := `SELECT ` + tab.secret + ` FROM ` + tab.table + ` WHERE ` + tab.id + ` = ?`
	if err := db.QueryRow(q, a).Scan(&sa); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(q, b).Scan(&sb); err != nil {
		t.Fatal(err)
	}
	u := `UPDATE ` + tab.table + ` SET ` + tab.secret + ` = ? WHERE ` + tab.id + ` = ?`
	if _, err := db.Exec(u, sb, a); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(u, sa, b); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) AddFutureMigration(t *testing.T) {
	t.Helper()
	db := h.raw(t)
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at)
		SELECT MAX(version) + 1, 'from_the_future.sql', 0 FROM schema_migrations`); err != nil {
		t.Fatal(err)
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	openHarness(t, dir, newMasterKey(t))
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("data directory mode = %#o, want 0700", got)
	}
	for _, name := range []string{store.DBFile, store.DBFile + "-wal", store.DBFile + "-shm"} {
		if got := mode(t, filepath.Join(dir, name)); got != 0o600 {
			t.Errorf("%s mode = %#o, want 0600", name, got)
		}
	}
}

func TestLooseDatabaseModeTightened(t *testing.T) {
	dir := t.TempDir()
	key := newMasterKey(t)
	h := openHarness(t, dir, key)
	h.Close()
	path := filepath.Join(dir, store.DBFile)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	openHarness(t, dir, key)
	if got := mode(t, path); got != 0o600 {
		t.Errorf("reopened database mode = %#o, want 0600", got)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestPragmas(t *testing.T) {
	h := openHarness(t, t.TempDir(), newMasterKey(t))
	var jm string
	if err := h.raw(t).QueryRow(`PRAGMA journal_mode`).Scan(&jm); err != nil {
		t.Fatal(err)
	}
	if jm != "wal" {
		t.Errorf("journal_mode = %q, want wal", jm)
	}
}

// The secret must not appear anywhere in the files SQLite writes, WAL included.
func TestSecretNotInFiles(t *testing.T) {
	dir := t.TempDir()
	h := openHarness(t, dir, newMasterKey(t))
	secret := "PLAINTEXT-SECRET-" + strings.Repeat("Z", 23)
	if err := h.PutAccessKey(t.Context(), store.AccessKey{ID: "AKIAFILESFILESFILES0", User: "alice", Secret: secret, Status: store.StatusActive}); err != nil {
		t.Fatal(err)
	}
	sealing := bytes.Repeat([]byte{0xA5, 0x5A, 0xC3, 0x3C}, 8)
	if err := h.PutSealingKey(t.Context(), store.SealingKey{ID: "k", Key: sealing}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		for _, name := range []string{store.DBFile, store.DBFile + "-wal"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s: %s holds the access key secret in plain text", when, name)
			}
			if bytes.Contains(b, sealing) {
				t.Errorf("%s: %s holds the sealing key in plain text", when, name)
			}
		}
	}
	check("open")
	h.Close()
	check("closed")
}

// Two stores on one data directory (two processes, say) write concurrently without
// SQLITE_BUSY reaching the caller.
func TestTwoStoresOneDatabase(t *testing.T) {
	dir := t.TempDir()
	key := newMasterKey(t)
	a := openHarness(t, dir, key)
	b := openHarness(t, dir, key)
	var wg sync.WaitGroup
	for i, s := range []*harness{a, b} {
		wg.Go(func() {
			for j := range 25 {
				id := fmt.Sprintf("AKIATWOSTORES%d%06d", i, j)
				if err := s.PutAccessKey(t.Context(), store.AccessKey{ID: id, User: "u", Secret: "s", Status: store.StatusActive}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	all, err := a.ListAccessKeys(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 50 {
		t.Errorf("stored %d keys, want 50", len(all))
	}
	va, err := a.Version(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	vb, err := b.Version(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if va != vb || va < 50 {
		t.Errorf("Version seen by the two stores = %d, %d; want equal and at least 50", va, vb)
	}
}

func TestOpenSQLiteConfig(t *testing.T) {
	key := newMasterKey(t)
	tests := []struct {
		name string
		cfg  store.Config
	}{
		{"no data directory", store.Config{MasterKey: key}},
		{"no master key", store.Config{DataDir: t.TempDir()}},
		{"short master key", store.Config{DataDir: t.TempDir(), MasterKey: key[:31]}},
		{"zero master key", store.Config{DataDir: t.TempDir(), MasterKey: make([]byte, 32)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.OpenSQLite(t.Context(), tc.cfg)
			if err == nil {
				s.Close()
				t.Fatal("OpenSQLite accepted it")
			}
		})
	}
}

// A data directory path with characters that mean something in a URI still works.
func TestOddDataDirPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with#odd&chars%20=")
	h := openHarness(t, dir, newMasterKey(t))
	if err := h.PutRevocation(t.Context(), store.Revocation{Role: "r", Before: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, store.DBFile)); err != nil {
		t.Errorf("database not at the configured path: %v", err)
	}
}
