package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"

	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// DBFile is the SQLite database's file name in the data directory.
const DBFile = "phantom.db"

// DefaultBusyTimeout is how long a connection waits for another process's lock.
const DefaultBusyTimeout = 5 * time.Second

// Config configures OpenSQLite.
type Config struct {
	// DataDir holds phantom.db (0600); it is created 0700 when missing.
	DataDir string
	// MasterKey is the 32-byte perimeter master key (LoadOrCreateMasterKey). Opening a
	// database created under another key fails with ErrWrongMasterKey. Keys, when set,
	// replaces it: a component's ring (keys.ForComponent, a key file) reads only the
	// secrets of its purposes.
	MasterKey []byte
	Keys      *keys.Ring
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// BusyTimeout bounds the wait for another process's lock; zero means DefaultBusyTimeout.
	BusyTimeout time.Duration
	// MaxReaders bounds concurrent read connections; zero means 4.
	MaxReaders int
}

// SQLite is the embedded store: one SQLite database in WAL mode. All writes go through a
// single connection, so writers in this process queue in Go rather than fail with
// SQLITE_BUSY, and every write transaction takes the write lock at BEGIN (IMMEDIATE), so
// one never fails upgrading a read lock. Reads use a separate pool of read-only
// connections that WAL lets run alongside the writer.
type SQLite struct {
	w      *sql.DB
	r      *sql.DB
	seal   *sealer
	now    func() time.Time
	path   string
	schema int
	hub    hub
}

var (
	_ Store    = (*SQLite)(nil)
	_ Notifier = (*SQLite)(nil)
)

// OpenSQLite opens (creating and migrating as needed) the database in cfg.DataDir.
func OpenSQLite(ctx context.Context, cfg Config) (*SQLite, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("open store: no data directory")
	}
	seal, err := sealerFor(cfg.Keys, cfg.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	busy := cfg.BusyTimeout
	if busy <= 0 {
		busy = DefaultBusyTimeout
	}
	readers := cfg.MaxReaders
	if readers <= 0 {
		readers = 4
	}
	ms, err := loadMigrations(migrationFiles, sqliteMigrationDir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("open store: data directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: create data directory: %w", err)
	}
	path := filepath.Join(dir, DBFile)
	// SQLite would create the file with the umask's mode (and its -wal and -shm files
	// with the database's mode): create it 0600 first, and tighten an existing one.
	if err := ensurePrivateFile(path); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	s := &SQLite{seal: seal, now: now, path: path}
	s.w, err = openDB(path, busy, false)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := s.init(ctx, ms); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.r, err = openDB(path, busy, true)
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	if err := s.r.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: reader: %w", path, err)
	}
	return s, nil
}

func ensurePrivateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return fmt.Errorf("restrict %s to 0600: %w", p, err)
			}
		}
	}
	return nil
}

// openDB opens a pool on path. The DSN is built from fixed keys and an escaped path; no
// caller-supplied SQL reaches it.
func openDB(path string, busy time.Duration, readOnly bool) (*sql.DB, error) {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(busy.Milliseconds(), 10))
	q.Set("_foreign_keys", "1")
	q.Set("_defensive", "1")
	if readOnly {
		q.Set("_query_only", "1")
	} else {
		q.Set("_journal_mode", "WAL")
		q.Set("_synchronous", "FULL") // a revocation or a disabled key must survive power loss
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	c, err := sqlite.NewConnector(u.String())
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(c), nil
}

// init checks the connection settings took, migrates, and checks the master key.
func (s *SQLite) init(ctx context.Context, ms []migration) error {
	var mode string
	if err := s.w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	var fk int
	if err := s.w.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil {
		return fmt.Errorf("read foreign_keys: %w", err)
	}
	if fk != 1 {
		return errors.New("foreign keys are not enforced")
	}
	v, err := migrate(ctx, s.w, ms, s.now())
	if err != nil {
		return err
	}
	s.schema = v
	return s.checkKeys(ctx)
}

// checkKeys checks the keys this process holds against the database (checkKeys), in
// one write transaction.
func (s *SQLite) checkKeys(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("check keys: %w", err)
	}
	defer tx.Rollback()
	if err := checkKeys(ctx, sqliteKeyTx{tx}, s.seal); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("check keys: commit: %w", err)
	}
	return nil
}

type sqliteKeyTx struct{ tx *sql.Tx }

func (t sqliteKeyTx) row(ctx context.Context, q string, args ...any) ([]byte, bool, error) {
	var b []byte
	err := t.tx.QueryRowContext(ctx, q, args...).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	return b, err == nil, err
}

func (t sqliteKeyTx) legacyCheck(ctx context.Context) ([]byte, bool, error) {
	return t.row(ctx, `SELECT sealed FROM master_key_check WHERE id = 1`)
}

func (t sqliteKeyTx) putLegacyCheck(ctx context.Context, sealed []byte) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO master_key_check (id, sealed) VALUES (1, ?)`, sealed)
	return err
}

func (t sqliteKeyTx) purposeCheck(ctx context.Context, name string) ([]byte, bool, error) {
	return t.row(ctx, `SELECT sealed FROM key_checks WHERE purpose = ?`, name)
}

func (t sqliteKeyTx) putPurposeCheck(ctx context.Context, name string, sealed []byte) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO key_checks (purpose, sealed) VALUES (?, ?)`, name, sealed)
	return err
}

func (t sqliteKeyTx) generations(ctx context.Context) ([]genRow, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT purpose, generation, state, changed_at FROM key_generations ORDER BY purpose, generation`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanGenRows(rows)
}

func (t sqliteKeyTx) putGeneration(ctx context.Context, r genRow) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO key_generations (purpose, generation, state, changed_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (purpose, generation) DO UPDATE SET state = excluded.state, changed_at = excluded.changed_at`, string(r.p), int64(r.g), r.state, r.at)
	return err
}

func (t sqliteKeyTx) sealedValues(ctx context.Context, c sealedColumn) (map[string][]byte, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT `+c.id+`, `+c.col+` FROM `+c.table+` WHERE `+c.col+` IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var id string
		var v []byte
		if err := rows.Scan(&id, &v); err != nil {
			return nil, err
		}
		out[id] = v
	}
	return out, rows.Err()
}

func (t sqliteKeyTx) updateSealed(ctx context.Context, c sealedColumn, id string, v []byte) error {
	_, err := t.tx.ExecContext(ctx, `UPDATE `+c.table+` SET `+c.col+` = ? WHERE `+c.id+` = ?`, v, id)
	return err
}

func (t sqliteKeyTx) updateSealedIf(ctx context.Context, c sealedColumn, id string, old, v []byte) (bool, error) {
	res, err := t.tx.ExecContext(ctx, `UPDATE `+c.table+` SET `+c.col+` = ? WHERE `+c.id+` = ? AND `+c.col+` = ?`, v, id, old)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// keyTx runs fn in one write transaction.
func (s *SQLite) keyTx(ctx context.Context, fn func(keyChecks) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(sqliteKeyTx{tx}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.changed()
	return nil
}

// StageStorageKey adds purpose p's next key generation, staged (rotate.go).
func (s *SQLite) StageStorageKey(ctx context.Context, p keys.Purpose) (keys.Generation, error) {
	return stageStorageKey(ctx, s.keyTx, s.seal, p, s.now())
}

// RotateStorageKey makes purpose p's next key generation current (rotate.go).
func (s *SQLite) RotateStorageKey(ctx context.Context, p keys.Purpose) (keys.Generation, error) {
	return rotateStorageKey(ctx, s.keyTx, s.seal, p, s.now())
}

// ResealStorageKey re-seals every value of p under its current generation.
func (s *SQLite) ResealStorageKey(ctx context.Context, p keys.Purpose) (int, error) {
	return resealStorageKey(ctx, s.keyTx, s.seal, p, false)
}

// RetireStorageKeys retires p's generations superseded at least overlap ago.
func (s *SQLite) RetireStorageKeys(ctx context.Context, p keys.Purpose, overlap time.Duration) ([]keys.Generation, int, error) {
	return retireStorageKeys(ctx, s.keyTx, s.seal, p, overlap, s.now())
}

// SetKeys replaces this component's keys with a newer export of its key file.
func (s *SQLite) SetKeys(ctx context.Context, ring *keys.Ring) error {
	return setKeys(ctx, s.keyTx, s.seal, ring)
}

// StorageKeyGenerations lists every storage purpose's key generations.
func (s *SQLite) StorageKeyGenerations(ctx context.Context) ([]KeyGeneration, error) {
	rows, err := s.genRows(ctx)
	if err != nil {
		return nil, err
	}
	return storageKeyGenerations(rows), nil
}

func (s *SQLite) genRows(ctx context.Context) ([]genRow, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT purpose, generation, state, changed_at FROM key_generations ORDER BY purpose, generation`)
	if err != nil {
		return nil, fmt.Errorf("read key generations: %w", err)
	}
	defer rows.Close()
	return scanGenRows(rows)
}

// Subscribe implements Notifier for writes made through this handle: each write method
// that may have bumped Version wakes subscribers after it commits. Other processes on the
// same file are not heard (SQLite has no cross-process notification); poll Version for
// them.
func (s *SQLite) Subscribe() (<-chan struct{}, func()) { return s.hub.subscribe() }

// changed wakes subscribers; write methods call it after a commit that may have bumped
// Version.
func (s *SQLite) changed() { s.hub.wake() }

// Path returns the database file's path.
func (s *SQLite) Path() string { return s.path }

// Close closes both connection pools.
func (s *SQLite) Close() error {
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// Version returns the change counter.
func (s *SQLite) Version(ctx context.Context) (int64, error) {
	var v int64
	if err := s.r.QueryRowContext(ctx, `SELECT version FROM store_version WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read store version: %w", err)
	}
	// The storage key generations are read again whenever the store changed: a rotation
	// reaches every process within a poll.
	if v != s.seal.gens.Load().version {
		rows, err := s.genRows(ctx)
		if err == nil {
			err = s.seal.loadGenerations(rows, v)
		}
		if err != nil {
			return 0, err
		}
	}
	return v, nil
}

// SchemaVersion returns the last migration applied.
func (s *SQLite) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// --- access keys ---

// PutAccessKey stores a new access key with its secret sealed. A zero CreatedAt means now.
func (s *SQLite) PutAccessKey(ctx context.Context, k AccessKey) error {
	vals, err := accessKeyValues(s.seal, s.now, k)
	if err != nil {
		return fmt.Errorf("put access key: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO access_keys (`+accessKeyCols+`)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, vals...)
	if err := oneRow(res, err, ErrExists); err != nil {
		return fmt.Errorf("put access key %s: %w", k.ID, err)
	}
	s.changed()
	return nil
}

// GetAccessKey returns an access key with its secret, or ErrNotFound.
func (s *SQLite) GetAccessKey(ctx context.Context, id string) (AccessKey, error) {
	row := s.r.QueryRowContext(ctx, `SELECT `+accessKeyCols+` FROM access_keys WHERE id = ?`, id)
	k, err := scanAccessKey(s.seal, row)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return AccessKey{}, fmt.Errorf("get access key %s: %w", id, err)
	}
	return k, nil
}

// ListAccessKeys returns user's access keys (every key when user is "").
func (s *SQLite) ListAccessKeys(ctx context.Context, user string) ([]AccessKey, error) {
	q := `SELECT ` + accessKeyCols + ` FROM access_keys`
	var args []any
	if user != "" {
		q += ` WHERE user_name = ?`
		args = append(args, user)
	}
	q += ` ORDER BY user_name, created_at, id`
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list access keys: %w", err)
	}
	defer rows.Close()
	var out []AccessKey
	for rows.Next() {
		k, err := scanAccessKey(s.seal, rows)
		if err != nil {
			return nil, fmt.Errorf("list access keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list access keys: %w", err)
	}
	return out, nil
}

// UpdateAccessKeyStatus sets a key's status.
func (s *SQLite) UpdateAccessKeyStatus(ctx context.Context, id, status string) error {
	if status != StatusActive && status != StatusInactive {
		return fmt.Errorf("update access key %s: status %q is neither %s nor %s", id, status, StatusActive, StatusInactive)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE access_keys SET status = ? WHERE id = ? AND status <> ?`, status, id, status)
	if err != nil {
		return fmt.Errorf("update access key %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update access key %s: %w", id, err)
	} else if n == 1 {
		s.changed()
		return nil
	}
	// Nothing changed: either the key is absent or already has this status.
	if err := s.exists(ctx, `SELECT 1 FROM access_keys WHERE id = ?`, id); err != nil {
		return fmt.Errorf("update access key %s: %w", id, err)
	}
	return nil
}

// DeleteAccessKey removes a key, or returns ErrNotFound.
func (s *SQLite) DeleteAccessKey(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM access_keys WHERE id = ?`, id)
	if err := oneRow(res, err, ErrNotFound); err != nil {
		return fmt.Errorf("delete access key %s: %w", id, err)
	}
	s.changed()
	return nil
}

// --- sealing keys ---

// PutSealingKey stores a new sealing key, sealed. A zero CreatedAt means now.
func (s *SQLite) PutSealingKey(ctx context.Context, k SealingKey) error {
	vals, err := sealingKeyValues(s.seal, s.now, k)
	if err != nil {
		return fmt.Errorf("put sealing key: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO sealing_keys (`+sealingKeyCols+`)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, vals...)
	if err := oneRow(res, err, ErrExists); err != nil {
		return fmt.Errorf("put sealing key %s: %w", k.ID, err)
	}
	s.changed()
	return nil
}

// ListSealingKeys returns every sealing key, newest first.
func (s *SQLite) ListSealingKeys(ctx context.Context) ([]SealingKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+sealingKeySelect(s.seal)+` FROM sealing_keys
		ORDER BY created_at DESC, rowid DESC`)
	if err != nil {
		return nil, fmt.Errorf("list sealing keys: %w", err)
	}
	defer rows.Close()
	var out []SealingKey
	for rows.Next() {
		k, err := scanSealingKey(s.seal, rows)
		if err != nil {
			return nil, fmt.Errorf("list sealing keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sealing keys: %w", err)
	}
	return out, nil
}

// RetireSealingKey sets the time after which the key is no longer used; after must not
// be zero (zero would make the key current again).
func (s *SQLite) RetireSealingKey(ctx context.Context, id string, after time.Time) error {
	if after.IsZero() {
		return fmt.Errorf("retire sealing key %s: zero retirement time", id)
	}
	n, err := nanos(after)
	if err != nil {
		return fmt.Errorf("retire sealing key %s: %w", id, err)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE sealing_keys SET retire_after = ? WHERE id = ?`, n, id)
	if err := oneRow(res, err, ErrNotFound); err != nil {
		return fmt.Errorf("retire sealing key %s: %w", id, err)
	}
	s.changed()
	return nil
}

// --- revocations ---

// PutRevocation records that sessions of r.Role (or of r.Node) issued before r.Before
// are revoked; an earlier Before than the one stored changes nothing.
func (s *SQLite) PutRevocation(ctx context.Context, r Revocation) error {
	table, key, n, err := revocationRow(r)
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO `+table+` (`+key+`, before) VALUES (?, ?)
		ON CONFLICT (`+key+`) DO UPDATE SET before = excluded.before WHERE excluded.before > `+table+`.before`,
		r.Role+r.Node, n); err != nil {
		return fmt.Errorf("put revocation %s%s: %w", r.Role, r.Node, err)
	}
	s.changed()
	return nil
}

// ListRevocations returns one revocation per role, ordered by role, then one per node,
// ordered by node.
func (s *SQLite) ListRevocations(ctx context.Context) ([]Revocation, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT role, '', before FROM revocations
		UNION ALL SELECT '', node, before FROM node_revocations ORDER BY 2, 1`)
	if err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	defer rows.Close()
	var out []Revocation
	for rows.Next() {
		var r Revocation
		var before int64
		if err := rows.Scan(&r.Role, &r.Node, &before); err != nil {
			return nil, fmt.Errorf("list revocations: %w", err)
		}
		r.Before = fromNanos(before)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list revocations: %w", err)
	}
	return out, nil
}

// --- join tokens (pki.TokenStore) ---

// PutJoinToken stores a new join token (its secret's hash, never the secret).
func (s *SQLite) PutJoinToken(ctx context.Context, t pki.JoinToken) error {
	if err := validName(t.ID); err != nil {
		return fmt.Errorf("put join token: id: %w", err)
	}
	if err := validName(t.Node); err != nil {
		return fmt.Errorf("put join token: node: %w", err)
	}
	if t.Expires.IsZero() {
		return errors.New("put join token: no expiry")
	}
	created, err := requiredTime(t.Created, s.now)
	if err != nil {
		return fmt.Errorf("put join token: created: %w", err)
	}
	expires, err := nanos(t.Expires)
	if err != nil {
		return fmt.Errorf("put join token: expires: %w", err)
	}
	grant, err := grantValue(t)
	if err != nil {
		return fmt.Errorf("put join token: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO join_tokens (id, hash, node, created_at, expires_at, grant_json)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, t.ID, t.Hash[:], t.Node, created, expires, grant)
	if err := oneRow(res, err, ErrExists); err != nil {
		return fmt.Errorf("put join token: %w", err)
	}
	s.changed()
	return nil
}

// GetJoinToken returns a join token, or pki.ErrTokenNotFound (which also matches
// ErrNotFound).
func (s *SQLite) GetJoinToken(ctx context.Context, id string) (pki.JoinToken, error) {
	var (
		t                pki.JoinToken
		hash             []byte
		created, expires int64
	)
	var grant sql.NullString
	err := s.r.QueryRowContext(ctx, `SELECT id, hash, node, created_at, expires_at, grant_json FROM join_tokens WHERE id = ?`, id).
		Scan(&t.ID, &hash, &t.Node, &created, &expires, &grant)
	if errors.Is(err, sql.ErrNoRows) {
		return pki.JoinToken{}, fmt.Errorf("get join token: %w (%w)", pki.ErrTokenNotFound, ErrNotFound)
	}
	if err != nil {
		return pki.JoinToken{}, fmt.Errorf("get join token: %w", err)
	}
	if len(hash) != len(t.Hash) {
		return pki.JoinToken{}, fmt.Errorf("get join token: stored hash is %d bytes", len(hash))
	}
	copy(t.Hash[:], hash)
	t.Created = fromNanos(created)
	t.Expires = fromNanos(expires)
	if grant.Valid {
		g, err := pki.ParseGrant(grant.String)
		if err != nil {
			return pki.JoinToken{}, fmt.Errorf("get join token: %w", err)
		}
		t.Grant = &g
	}
	return t, nil
}

// DeleteJoinToken removes a join token and reports whether this call removed it. Deletes
// are serialized on the single writer connection, so of concurrent callers exactly one
// sees true.
func (s *SQLite) DeleteJoinToken(ctx context.Context, id string) (bool, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM join_tokens WHERE id = ?`, id)
	if err != nil {
		return false, fmt.Errorf("delete join token: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("delete join token: %w", err)
	}
	if n == 1 {
		s.changed()
	}
	return n == 1, nil
}

// DeleteExpiredJoinTokens removes tokens that expired at or before now.
func (s *SQLite) DeleteExpiredJoinTokens(ctx context.Context, now time.Time) (int, error) {
	n, err := nanos(now)
	if err != nil {
		return 0, fmt.Errorf("delete expired join tokens: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM join_tokens WHERE expires_at <= ?`, n)
	if err != nil {
		return 0, fmt.Errorf("delete expired join tokens: %w", err)
	}
	c, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete expired join tokens: %w", err)
	}
	if c > 0 {
		s.changed()
	}
	return int(c), nil
}

// --- nodes ---

// PutNode records an enrolled node; re-enrolling a node replaces its record. A zero
// EnrolledAt means now.
func (s *SQLite) PutNode(ctx context.Context, n Node) error {
	enrolled, notAfter, err := nodeRow(n, s.now)
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO nodes (name, role, cert_serial, enrolled_at, cert_not_after) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET role = excluded.role, cert_serial = excluded.cert_serial,
			enrolled_at = excluded.enrolled_at, cert_not_after = excluded.cert_not_after`,
		n.Name, n.Role, n.CertSerial, enrolled, notAfter); err != nil {
		return fmt.Errorf("put node %s: %w", n.Name, err)
	}
	s.changed()
	return nil
}

// nodeSelect reads nodes with their last contact.
const nodeSelect = `SELECT n.name, n.role, n.cert_serial, n.enrolled_at, n.cert_not_after, c.at, c.source_ip
	FROM nodes n LEFT JOIN node_contacts c ON c.node = n.name`

type rowScanner interface{ Scan(dest ...any) error }

func scanNodeRow(r rowScanner) (Node, error) {
	var n Node
	var enrolled int64
	var notAfter, contact sql.NullInt64
	var ip sql.NullString
	if err := r.Scan(&n.Name, &n.Role, &n.CertSerial, &enrolled, &notAfter, &contact, &ip); err != nil {
		return Node{}, err
	}
	n.EnrolledAt = fromNanos(enrolled)
	if notAfter.Valid {
		n.CertNotAfter = fromNanos(notAfter.Int64)
	}
	if contact.Valid {
		n.LastContact, n.LastContactIP = fromNanos(contact.Int64), ip.String
	}
	return n, nil
}

// GetNode returns a node, or ErrNotFound.
func (s *SQLite) GetNode(ctx context.Context, name string) (Node, error) {
	n, err := scanNodeRow(s.r.QueryRowContext(ctx, nodeSelect+` WHERE n.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Node{}, fmt.Errorf("get node %s: %w", name, err)
	}
	return n, nil
}

// ListNodes returns every node ordered by name.
func (s *SQLite) ListNodes(ctx context.Context) ([]Node, error) {
	rows, err := s.r.QueryContext(ctx, nodeSelect+` ORDER BY n.name`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n, err := scanNodeRow(rows)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}

// TouchNode records a node's contact with STS, keeping the latest. It does not bump the
// version: nothing is decided on it.
func (s *SQLite) TouchNode(ctx context.Context, name string, at time.Time, sourceIP string) error {
	n, err := contactRow(name, at, sourceIP)
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO node_contacts (node, at, source_ip) VALUES (?, ?, ?)
		ON CONFLICT (node) DO UPDATE SET at = excluded.at, source_ip = excluded.source_ip WHERE excluded.at > node_contacts.at`,
		name, n, sourceIP); err != nil {
		return fmt.Errorf("touch node %s: %w", name, err)
	}
	return nil
}

// DeleteNode removes a node, or returns ErrNotFound.
func (s *SQLite) DeleteNode(ctx context.Context, name string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM nodes WHERE name = ?`, name)
	if err := oneRow(res, err, ErrNotFound); err != nil {
		return fmt.Errorf("delete node %s: %w", name, err)
	}
	s.changed()
	return nil
}

// --- helpers ---

// oneRow turns an Exec result into nil when it changed one row, and ifNone otherwise.
func oneRow(res sql.Result, err error, ifNone error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return ifNone
	}
	return nil
}

func (s *SQLite) exists(ctx context.Context, q string, args ...any) error {
	var one int
	err := s.w.QueryRowContext(ctx, q, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
