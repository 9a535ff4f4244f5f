package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

// DefaultConnectTimeout bounds each connection attempt to PostgreSQL when the DSN sets
// no connect_timeout.
const DefaultConnectTimeout = 5 * time.Second

// Listener reconnection backoff: first retry after 100 ms, doubling up to 5 s.
const (
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 5 * time.Second
)

// migrationLockKey is the first half of the advisory lock that serializes migrations of
// one schema (the second half is the schema name's hash). A fixed class id keeps
// Phantom's lock apart from other applications' advisory locks in the same database.
const migrationLockKey = 0x7068616e // "phan"

// PostgresConfig configures OpenPostgres.
type PostgresConfig struct {
	// DSN is a postgres:// or postgresql:// URL or a libpq keyword/value string. Tables
	// live in the first schema of the connection's search_path (add
	// search_path=<schema> to give a perimeter a schema of its own). A DSN without
	// connect_timeout gets DefaultConnectTimeout; connect_timeout=0, libpq's "wait
	// forever", is not honored: a perimeter must not hang at start.
	DSN string
	// MasterKey is the 32-byte perimeter master key. Opening a database created under
	// another key fails with ErrWrongMasterKey. Keys, when set, replaces it (Config.Keys).
	MasterKey []byte
	Keys      *keys.Ring
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxConns bounds the connection pool; zero means pgxpool's default (the larger of
	// 4 and the number of CPUs). The change listener holds one more connection.
	MaxConns int32
}

// Postgres is the store on a PostgreSQL server, shared by every replica of a perimeter.
// Each statement runs on a pooled connection; a dedicated connection LISTENs for the
// change notifications that the version triggers send, so Subscribe hears writes from
// every process. After a server restart or failover the pool heals by itself: pgxpool
// pings a connection idle for over a second before handing it out and replaces dead
// ones, so at most one call per pooled connection (one that was in use, or idle under a
// second) fails with the server's error; callers retry as they would any store error.
type Postgres struct {
	pgAnchors
	pool     *pgxpool.Pool
	listen   *pgx.ConnConfig
	seal     *sealer
	now      func() time.Time
	password string // replaced in every error, whatever produced it
	hub      hub

	stop   context.CancelFunc
	done   chan struct{}
	closed sync.Once

	// For tests: listener connections made, and the listening backend's process id.
	listens     atomic.Int64
	listenerPID atomic.Uint32
}

var (
	_ Store    = (*Postgres)(nil)
	_ Notifier = (*Postgres)(nil)
)

// OpenPostgres connects to PostgreSQL, migrates the schema (safely when several replicas
// start at once) and checks the master key. Its errors, and every error the store
// returns later, never contain the DSN's password.
func OpenPostgres(ctx context.Context, cfg PostgresConfig) (*Postgres, error) {
	where := RedactURL(cfg.DSN)
	seal, err := sealerFor(cfg.Keys, cfg.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	ms, err := loadMigrations(postgresMigrationFiles, postgresMigrationDir)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("open store %s: negative MaxConns %d", where, cfg.MaxConns)
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's parse errors redact passwords only on a best-effort basis and may quote
		// other parts of a malformed DSN (a stranded password among them): withhold them.
		return nil, fmt.Errorf("open store %s: cannot parse the PostgreSQL connection string (details withheld: they may quote its password)", where)
	}
	if pc.ConnConfig.ConnectTimeout <= 0 {
		pc.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "phantom"
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	password := pc.ConnConfig.Password
	fail := func(err error) error {
		return redactError(fmt.Errorf("open store %s: %w", where, err), password)
	}
	listen := pc.ConnConfig.Copy()
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fail(err)
	}
	p := &Postgres{pool: pool, listen: listen, seal: seal, now: now, password: password}
	p.pgAnchors = pgAnchors{q: pool, now: now, where: where, errorf: p.errorf}
	if err := p.init(ctx, ms); err != nil {
		pool.Close()
		return nil, fail(err)
	}
	lctx, stop := context.WithCancel(context.Background())
	p.stop = stop
	p.done = make(chan struct{})
	go p.listenLoop(lctx)
	return p, nil
}

// init migrates and checks the master key in one transaction holding an advisory lock
// on the schema, so replicas starting together take turns: the first migrates, the
// others find the work done. The lock is transaction-scoped, so a crash releases it.
func (p *Postgres) init(ctx context.Context, ms []migration) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	var schema *string
	if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("migrate: read current schema: %w", err)
	}
	if schema == nil {
		return errors.New("migrate: no schema of the search_path exists (create it, or fix search_path)")
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))`, migrationLockKey); err != nil {
		return fmt.Errorf("migrate: lock schema %s: %w", *schema, err)
	}
	// A component's role (phantom store roles) may not create tables: it finds them in
	// the current schema (not another of the search_path).
	var migrated bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_migrations')`).Scan(&migrated); err != nil {
		return fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	if !migrated {
		if _, err := tx.Exec(ctx, `CREATE TABLE schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at bigint NOT NULL
		)`); err != nil {
			return fmt.Errorf("migrate: create schema_migrations: %w", err)
		}
	}
	rows, err := tx.Query(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		return fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	recs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (appliedMigration, error) {
		var m appliedMigration
		err := r.Scan(&m.version, &m.name)
		return m, err
	})
	if err != nil {
		return fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	applied, err := checkApplied(ms, recs)
	if err != nil {
		return err
	}
	for _, m := range ms[applied:] {
		if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.version, m.name, p.now().UnixNano()); err != nil {
			return fmt.Errorf("migrate: record %s: %w", m.name, err)
		}
	}
	if err := checkKeys(ctx, pgKeyTx{tx}, p.seal); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

type pgKeyTx struct{ tx pgx.Tx }

func (t pgKeyTx) row(ctx context.Context, q string, args ...any) ([]byte, bool, error) {
	var b []byte
	err := t.tx.QueryRow(ctx, q, args...).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return b, err == nil, err
}

func (t pgKeyTx) legacyCheck(ctx context.Context) ([]byte, bool, error) {
	return t.row(ctx, `SELECT sealed FROM master_key_check WHERE id = 1`)
}

func (t pgKeyTx) putLegacyCheck(ctx context.Context, sealed []byte) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO master_key_check (id, sealed) VALUES (1, $1)`, sealed)
	return err
}

func (t pgKeyTx) purposeCheck(ctx context.Context, name string) ([]byte, bool, error) {
	return t.row(ctx, `SELECT sealed FROM key_checks WHERE purpose = $1`, name)
}

func (t pgKeyTx) putPurposeCheck(ctx context.Context, name string, sealed []byte) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO key_checks (purpose, sealed) VALUES ($1, $2)`, name, sealed)
	return err
}

func (t pgKeyTx) generations(ctx context.Context) ([]genRow, error) {
	rows, err := t.tx.Query(ctx, `SELECT purpose, generation, state, changed_at FROM key_generations ORDER BY purpose, generation`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return scanGenRows(rows)
}

func (t pgKeyTx) putGeneration(ctx context.Context, r genRow) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO key_generations (purpose, generation, state, changed_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (purpose, generation) DO UPDATE SET state = excluded.state, changed_at = excluded.changed_at`, string(r.p), int64(r.g), r.state, r.at)
	return err
}

// The table and column names come from sealedColumns, never from input.
func (t pgKeyTx) sealedValues(ctx context.Context, c sealedColumn) (map[string][]byte, error) {
	rows, err := t.tx.Query(ctx, `SELECT `+c.id+`, `+c.col+` FROM `+c.table+` WHERE `+c.col+` IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	defer rows.Close()
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

func (t pgKeyTx) updateSealed(ctx context.Context, c sealedColumn, id string, v []byte) error {
	_, err := t.tx.Exec(ctx, `UPDATE `+c.table+` SET `+c.col+` = $1 WHERE `+c.id+` = $2`, v, id)
	return err
}

func (t pgKeyTx) updateSealedIf(ctx context.Context, c sealedColumn, id string, old, v []byte) (bool, error) {
	tag, err := t.tx.Exec(ctx, `UPDATE `+c.table+` SET `+c.col+` = $1 WHERE `+c.id+` = $2 AND `+c.col+` = $3`, v, id, old)
	return err == nil && tag.RowsAffected() == 1, err
}

// keyTx runs fn in one transaction.
func (p *Postgres) keyTx(ctx context.Context, fn func(keyChecks) error) error {
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return p.errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	if err := fn(pgKeyTx{tx}); err != nil {
		return p.errorf("%w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return p.errorf("commit: %w", err)
	}
	return nil
}

// StageStorageKey adds purpose pu's next key generation, staged (rotate.go).
func (p *Postgres) StageStorageKey(ctx context.Context, pu keys.Purpose) (keys.Generation, error) {
	return stageStorageKey(ctx, p.keyTx, p.seal, pu, p.now())
}

// RotateStorageKey makes purpose p's next key generation current (rotate.go).
func (p *Postgres) RotateStorageKey(ctx context.Context, pu keys.Purpose) (keys.Generation, error) {
	return rotateStorageKey(ctx, p.keyTx, p.seal, pu, p.now())
}

// ResealStorageKey re-seals every value of pu under its current generation.
func (p *Postgres) ResealStorageKey(ctx context.Context, pu keys.Purpose) (int, error) {
	return resealStorageKey(ctx, p.keyTx, p.seal, pu, false)
}

// RetireStorageKeys retires pu's generations superseded at least overlap ago.
func (p *Postgres) RetireStorageKeys(ctx context.Context, pu keys.Purpose, overlap time.Duration) ([]keys.Generation, int, error) {
	return retireStorageKeys(ctx, p.keyTx, p.seal, pu, overlap, p.now())
}

// SetKeys replaces this component's keys with a newer export of its key file.
func (p *Postgres) SetKeys(ctx context.Context, ring *keys.Ring) error {
	return setKeys(ctx, p.keyTx, p.seal, ring)
}

// StorageKeyGenerations lists every storage purpose's key generations.
func (p *Postgres) StorageKeyGenerations(ctx context.Context) ([]KeyGeneration, error) {
	rows, err := p.genRows(ctx)
	if err != nil {
		return nil, err
	}
	return storageKeyGenerations(rows), nil
}

func (p *Postgres) genRows(ctx context.Context) ([]genRow, error) {
	rows, err := p.pool.Query(ctx, `SELECT purpose, generation, state, changed_at FROM key_generations ORDER BY purpose, generation`)
	if err != nil {
		return nil, p.errorf("read key generations: %w", err)
	}
	defer rows.Close()
	return scanGenRows(rows)
}

// listenLoop keeps one connection LISTENing on the schema's channel until Close, waking
// subscribers on every notification and after every (re)connect, since notifications
// sent while it was away are lost.
func (p *Postgres) listenLoop(ctx context.Context) {
	defer close(p.done)
	backoff := listenBackoffMin
	for {
		err := p.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = listenBackoffMin // it was connected: start over
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if err != nil {
			backoff = min(2*backoff, listenBackoffMax)
		}
	}
}

// listenOnce connects, listens and relays notifications until the connection fails. It
// returns nil if it got as far as listening.
func (p *Postgres) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, p.listen)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var channel string
	if err := conn.QueryRow(ctx, `SELECT phantom_store_channel(n.nspname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = 'store_version'::regclass`).Scan(&channel); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	p.listenerPID.Store(conn.PgConn().PID())
	p.listens.Add(1)
	p.hub.wake()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return nil
		}
		p.hub.wake()
	}
}

// Subscribe implements Notifier: wakeups follow committed changes from any process
// using this schema, and every reconnection of the listener.
func (p *Postgres) Subscribe() (<-chan struct{}, func()) { return p.hub.subscribe() }

// Close stops the listener and closes the pool, waiting for connections in use to be
// released. Calling it again does nothing.
func (p *Postgres) Close() error {
	p.closed.Do(func() {
		p.stop()
		<-p.done
		p.pool.Close()
	})
	return nil
}

// errorf formats an error as fmt.Errorf does, with the DSN's password removed.
func (p *Postgres) errorf(format string, args ...any) error {
	return redactError(fmt.Errorf(format, args...), p.password)
}

// redactedError is an error whose text had a password removed; errors.Is and errors.As
// still see the original chain.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactError replaces password wherever it appears in err's text. Nothing Phantom or
// pgx writes should contain it; this is the last line should a message ever quote it.
func redactError(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), password, redacted), err: err}
}

// isUniqueViolation reports a unique_violation (23505).
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// affected turns a command tag into nil when it changed one row, and ifNone otherwise.
func affected(tag pgconn.CommandTag, err error, ifNone error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return ifNone
	}
	return nil
}

// Version returns the change counter.
func (p *Postgres) Version(ctx context.Context) (int64, error) {
	// The storage key generations come in the same round trip and are taken whenever
	// the store changed: a rotation reaches every process within a poll, and polling
	// costs no extra query.
	rows, err := p.pool.Query(ctx, `SELECT v.version, g.purpose, g.generation, g.state, g.changed_at
		FROM store_version v LEFT JOIN key_generations g ON true WHERE v.id = 1 ORDER BY g.purpose, g.generation`)
	if err != nil {
		return 0, p.errorf("read store version: %w", err)
	}
	defer rows.Close()
	var (
		v    int64
		seen bool
		gens []genRow
	)
	for rows.Next() {
		var (
			pu, state *string // NULL without generations
			g, at     *int64
		)
		if err := rows.Scan(&v, &pu, &g, &state, &at); err != nil {
			return 0, p.errorf("read store version: %w", err)
		}
		seen = true
		if pu != nil && g != nil && state != nil && at != nil {
			if *g < int64(keys.FirstGeneration) || *g > int64(^uint32(0)) {
				return 0, fmt.Errorf("read store version: key generation %d of %s out of range", *g, *pu)
			}
			gens = append(gens, genRow{p: keys.Purpose(*pu), g: keys.Generation(*g), state: *state, at: *at})
		}
	}
	if err := rows.Err(); err != nil {
		return 0, p.errorf("read store version: %w", err)
	}
	if !seen {
		return 0, p.errorf("read store version: %w", pgx.ErrNoRows)
	}
	if v != p.seal.gens.Load().version {
		if err := p.seal.loadGenerations(gens, v); err != nil {
			return 0, err
		}
	}
	return v, nil
}

// SchemaVersion returns the last migration applied.
func (p *Postgres) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := p.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, p.errorf("read schema version: %w", err)
	}
	return v, nil
}

func (p *Postgres) exists(ctx context.Context, q string, args ...any) error {
	var one int
	err := p.pool.QueryRow(ctx, q, args...).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// --- access keys ---

// PutAccessKey stores a new access key with its secret sealed. A zero CreatedAt means now.
func (p *Postgres) PutAccessKey(ctx context.Context, k AccessKey) error {
	vals, err := accessKeyValues(p.seal, p.now, k)
	if err != nil {
		return fmt.Errorf("put access key: %w", err)
	}
	tag, err := p.pool.Exec(ctx, `INSERT INTO access_keys (`+accessKeyCols+`)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`, vals...)
	if err := affected(tag, err, ErrExists); err != nil {
		return p.errorf("put access key %s: %w", k.ID, err)
	}
	return nil
}

// GetAccessKey returns an access key with its secret, or ErrNotFound.
func (p *Postgres) GetAccessKey(ctx context.Context, id string) (AccessKey, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+accessKeyCols+` FROM access_keys WHERE id = $1`, id)
	if err != nil {
		return AccessKey{}, p.errorf("get access key %s: %w", id, err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, p.scanAccessKey)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return AccessKey{}, p.errorf("get access key %s: %w", id, err)
	}
	return k, nil
}

// ListAccessKeys returns user's access keys (every key when user is "").
func (p *Postgres) ListAccessKeys(ctx context.Context, user string) ([]AccessKey, error) {
	q := `SELECT ` + accessKeyCols + ` FROM access_keys`
	var args []any
	if user != "" {
		q += ` WHERE user_name = $1`
		args = append(args, user)
	}
	q += ` ORDER BY user_name, created_at, id`
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, p.errorf("list access keys: %w", err)
	}
	ks, err := pgx.CollectRows(rows, p.scanAccessKey)
	if err != nil {
		return nil, p.errorf("list access keys: %w", err)
	}
	return nilIfEmpty(ks), nil
}

func (p *Postgres) scanAccessKey(r pgx.CollectableRow) (AccessKey, error) {
	return scanAccessKey(p.seal, r)
}

// UpdateAccessKeyStatus sets a key's status.
func (p *Postgres) UpdateAccessKeyStatus(ctx context.Context, id, status string) error {
	if status != StatusActive && status != StatusInactive {
		return fmt.Errorf("update access key %s: status %q is neither %s nor %s", id, status, StatusActive, StatusInactive)
	}
	tag, err := p.pool.Exec(ctx, `UPDATE access_keys SET status = $1 WHERE id = $2 AND status <> $1`, status, id)
	if err != nil {
		return p.errorf("update access key %s: %w", id, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	// Nothing changed: either the key is absent or already has this status.
	if err := p.exists(ctx, `SELECT 1 FROM access_keys WHERE id = $1`, id); err != nil {
		return p.errorf("update access key %s: %w", id, err)
	}
	return nil
}

// DeleteAccessKey removes a key, or returns ErrNotFound.
func (p *Postgres) DeleteAccessKey(ctx context.Context, id string) error {
	tag, err := p.pool.Exec(ctx, `DELETE FROM access_keys WHERE id = $1`, id)
	if err := affected(tag, err, ErrNotFound); err != nil {
		return p.errorf("delete access key %s: %w", id, err)
	}
	return nil
}

// --- sealing keys ---

// PutSealingKey stores a new sealing key, sealed. A zero CreatedAt means now.
func (p *Postgres) PutSealingKey(ctx context.Context, k SealingKey) error {
	vals, err := sealingKeyValues(p.seal, p.now, k)
	if err != nil {
		return fmt.Errorf("put sealing key: %w", err)
	}
	tag, err := p.pool.Exec(ctx, `INSERT INTO sealing_keys (`+sealingKeyCols+`)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`, vals...)
	if err := affected(tag, err, ErrExists); err != nil {
		return p.errorf("put sealing key %s: %w", k.ID, err)
	}
	return nil
}

// ListSealingKeys returns every sealing key, newest first.
func (p *Postgres) ListSealingKeys(ctx context.Context) ([]SealingKey, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+sealingKeySelect(p.seal)+` FROM sealing_keys
		ORDER BY created_at DESC, seq DESC`)
	if err != nil {
		return nil, p.errorf("list sealing keys: %w", err)
	}
	ks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SealingKey, error) { return scanSealingKey(p.seal, r) })
	if err != nil {
		return nil, p.errorf("list sealing keys: %w", err)
	}
	return nilIfEmpty(ks), nil
}

// RetireSealingKey sets the time after which the key is no longer used; after must not
// be zero (zero would make the key current again).
func (p *Postgres) RetireSealingKey(ctx context.Context, id string, after time.Time) error {
	if after.IsZero() {
		return fmt.Errorf("retire sealing key %s: zero retirement time", id)
	}
	n, err := nanos(after)
	if err != nil {
		return fmt.Errorf("retire sealing key %s: %w", id, err)
	}
	tag, err := p.pool.Exec(ctx, `UPDATE sealing_keys SET retire_after = $1 WHERE id = $2`, n, id)
	if err := affected(tag, err, ErrNotFound); err != nil {
		return p.errorf("retire sealing key %s: %w", id, err)
	}
	return nil
}

// --- revocations ---

// PutRevocation records that sessions of r.Role (or of r.Node) issued before r.Before
// are revoked; an earlier Before than the one stored changes nothing. One statement: the
// upsert locks the row, so concurrent revocations in any process cannot lower it.
// GREATEST keeps the statement right on its own; the WHERE spares a write (and a Version
// bump) when nothing would change.
func (p *Postgres) PutRevocation(ctx context.Context, r Revocation) error {
	table, key, n, err := revocationRow(r)
	if err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO `+table+` (`+key+`, before) VALUES ($1, $2)
		ON CONFLICT (`+key+`) DO UPDATE SET before = GREATEST(`+table+`.before, excluded.before)
		WHERE excluded.before > `+table+`.before`, r.Role+r.Node, n); err != nil {
		return p.errorf("put revocation %s%s: %w", r.Role, r.Node, err)
	}
	return nil
}

// ListRevocations returns one revocation per role, ordered by role, then one per node,
// ordered by node.
func (p *Postgres) ListRevocations(ctx context.Context) ([]Revocation, error) {
	rows, err := p.pool.Query(ctx, `SELECT role, '' AS node, before FROM revocations
		UNION ALL SELECT '', node, before FROM node_revocations ORDER BY 2, 1`)
	if err != nil {
		return nil, p.errorf("list revocations: %w", err)
	}
	rs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Revocation, error) {
		var r Revocation
		var before int64
		err := row.Scan(&r.Role, &r.Node, &before)
		r.Before = fromNanos(before)
		return r, err
	})
	if err != nil {
		return nil, p.errorf("list revocations: %w", err)
	}
	return nilIfEmpty(rs), nil
}

// --- join tokens (pki.TokenStore) ---

// PutJoinToken stores a new join token (its secret's hash, never the secret).
func (p *Postgres) PutJoinToken(ctx context.Context, t pki.JoinToken) error {
	if err := validName(t.ID); err != nil {
		return fmt.Errorf("put join token: id: %w", err)
	}
	if err := validName(t.Node); err != nil {
		return fmt.Errorf("put join token: node: %w", err)
	}
	if t.Expires.IsZero() {
		return errors.New("put join token: no expiry")
	}
	created, err := requiredTime(t.Created, p.now)
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
	tag, err := p.pool.Exec(ctx, `INSERT INTO join_tokens (id, hash, node, created_at, expires_at, grant_json)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`, t.ID, t.Hash[:], t.Node, created, expires, grant)
	if err := affected(tag, err, ErrExists); err != nil {
		return p.errorf("put join token: %w", err)
	}
	return nil
}

// GetJoinToken returns a join token, or pki.ErrTokenNotFound (which also matches
// ErrNotFound).
func (p *Postgres) GetJoinToken(ctx context.Context, id string) (pki.JoinToken, error) {
	var (
		t                pki.JoinToken
		hash             []byte
		created, expires int64
	)
	var grant sql.NullString
	err := p.pool.QueryRow(ctx, `SELECT id, hash, node, created_at, expires_at, grant_json FROM join_tokens WHERE id = $1`, id).
		Scan(&t.ID, &hash, &t.Node, &created, &expires, &grant)
	if errors.Is(err, pgx.ErrNoRows) {
		return pki.JoinToken{}, fmt.Errorf("get join token: %w (%w)", pki.ErrTokenNotFound, ErrNotFound)
	}
	if err != nil {
		return pki.JoinToken{}, p.errorf("get join token: %w", err)
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

// DeleteJoinToken removes a join token and reports whether this call removed it. Of
// concurrent deletes (in any process) the first locks the row and the others, once it
// commits, find it gone: exactly one sees true.
func (p *Postgres) DeleteJoinToken(ctx context.Context, id string) (bool, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM join_tokens WHERE id = $1`, id)
	if err != nil {
		return false, p.errorf("delete join token: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// DeleteExpiredJoinTokens removes tokens that expired at or before now.
func (p *Postgres) DeleteExpiredJoinTokens(ctx context.Context, now time.Time) (int, error) {
	n, err := nanos(now)
	if err != nil {
		return 0, fmt.Errorf("delete expired join tokens: %w", err)
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM join_tokens WHERE expires_at <= $1`, n)
	if err != nil {
		return 0, p.errorf("delete expired join tokens: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// --- nodes ---

// PutNode records an enrolled node; re-enrolling a node replaces its record. A zero
// EnrolledAt means now.
func (p *Postgres) PutNode(ctx context.Context, n Node) error {
	enrolled, notAfter, err := nodeRow(n, p.now)
	if err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO nodes (name, role, cert_serial, enrolled_at, cert_not_after) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (name) DO UPDATE SET role = excluded.role, cert_serial = excluded.cert_serial,
			enrolled_at = excluded.enrolled_at, cert_not_after = excluded.cert_not_after`,
		n.Name, n.Role, n.CertSerial, enrolled, notAfter); err != nil {
		return p.errorf("put node %s: %w", n.Name, err)
	}
	return nil
}

func scanNode(r pgx.CollectableRow) (Node, error) {
	return scanNodeRow(r)
}

// GetNode returns a node, or ErrNotFound.
func (p *Postgres) GetNode(ctx context.Context, name string) (Node, error) {
	rows, err := p.pool.Query(ctx, nodeSelect+` WHERE n.name = $1`, name)
	if err != nil {
		return Node{}, p.errorf("get node %s: %w", name, err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, scanNode)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Node{}, p.errorf("get node %s: %w", name, err)
	}
	return n, nil
}

// ListNodes returns every node ordered by name.
func (p *Postgres) ListNodes(ctx context.Context) ([]Node, error) {
	rows, err := p.pool.Query(ctx, nodeSelect+` ORDER BY n.name`)
	if err != nil {
		return nil, p.errorf("list nodes: %w", err)
	}
	ns, err := pgx.CollectRows(rows, scanNode)
	if err != nil {
		return nil, p.errorf("list nodes: %w", err)
	}
	return nilIfEmpty(ns), nil
}

// TouchNode records a node's contact with STS, keeping the latest. node_contacts has no
// version trigger.
func (p *Postgres) TouchNode(ctx context.Context, name string, at time.Time, sourceIP string) error {
	n, err := contactRow(name, at, sourceIP)
	if err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO node_contacts (node, at, source_ip) VALUES ($1, $2, $3)
		ON CONFLICT (node) DO UPDATE SET at = excluded.at, source_ip = excluded.source_ip WHERE excluded.at > node_contacts.at`,
		name, n, sourceIP); err != nil {
		return p.errorf("touch node %s: %w", name, err)
	}
	return nil
}

// DeleteNode removes a node, or returns ErrNotFound.
func (p *Postgres) DeleteNode(ctx context.Context, name string) error {
	tag, err := p.pool.Exec(ctx, `DELETE FROM nodes WHERE name = $1`, name)
	if err := affected(tag, err, ErrNotFound); err != nil {
		return p.errorf("delete node %s: %w", name, err)
	}
	return nil
}

// --- findings ---

// upsertFindingsPostgres upserts any number of findings in one statement from parallel
// arrays, keeping a stored finding's archived and created_at as PutFinding does. One
// statement matters for CommitAudit: its rows are all locked before the version trigger
// locks store_version, so it never holds that lock while waiting for a row.
const upsertFindingsPostgres = `INSERT INTO findings (id, type, severity, principal, archived, created_at, updated_at, document)
	SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::bool[], $6::int8[], $7::int8[], $8::bytea[])
	ON CONFLICT (id) DO UPDATE SET type = excluded.type, severity = excluded.severity, principal = excluded.principal,
		updated_at = excluded.updated_at, document = excluded.document`

// upsertFindings writes validated findings with q (the pool or a transaction).
func (p *Postgres) upsertFindings(ctx context.Context, q interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, fs []Finding) error {
	fs = mergeFindings(fs)
	var (
		ids, types, principals []string
		sevs                   []float64
		archived               []bool
		created, updated       []int64
		docs                   [][]byte
	)
	for _, f := range fs {
		args, err := findingArgs(f, p.now)
		if err != nil {
			return fmt.Errorf("finding %s: %w", f.ID, err)
		}
		ids = append(ids, f.ID)
		types = append(types, f.Type)
		sevs = append(sevs, f.Severity)
		principals = append(principals, f.Principal)
		archived = append(archived, f.Archived)
		created = append(created, args[5].(int64))
		updated = append(updated, args[6].(int64))
		docs = append(docs, f.Document)
	}
	_, err := q.Exec(ctx, upsertFindingsPostgres, ids, types, sevs, principals, archived, created, updated, docs)
	return err
}

// mergeFindings folds repeated ids into one finding each, as upserting them one after
// another would leave it (the last one's fields, the first one's Archived and CreatedAt),
// and orders them by id so concurrent commits lock rows in one order.
func mergeFindings(fs []Finding) []Finding {
	byID := make(map[string]int, len(fs))
	var out []Finding
	for _, f := range fs {
		i, ok := byID[f.ID]
		if !ok {
			byID[f.ID] = len(out)
			out = append(out, f)
			continue
		}
		first := out[i]
		f.Archived, f.CreatedAt = first.Archived, first.CreatedAt
		out[i] = f
	}
	slices.SortFunc(out, func(a, b Finding) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// PutFinding inserts or updates a finding by id, keeping a stored finding's Archived and
// CreatedAt. Zero times mean now.
func (p *Postgres) PutFinding(ctx context.Context, f Finding) error {
	if err := validFinding(f); err != nil {
		return fmt.Errorf("put finding: %w", err)
	}
	if err := p.upsertFindings(ctx, p.pool, []Finding{f}); err != nil {
		return p.errorf("put finding %s: %w", f.ID, err)
	}
	return nil
}

func scanPostgresFinding(r pgx.CollectableRow) (Finding, error) {
	var (
		f                Finding
		created, updated int64
	)
	if err := r.Scan(&f.ID, &f.Type, &f.Severity, &f.Principal, &f.Archived, &created, &updated, &f.Document); err != nil {
		return Finding{}, err
	}
	f.CreatedAt = fromNanos(created)
	f.UpdatedAt = fromNanos(updated)
	return f, nil
}

// GetFinding returns the finding with this id, or ErrNotFound.
func (p *Postgres) GetFinding(ctx context.Context, id string) (Finding, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+findingCols+` FROM findings WHERE id = $1`, id)
	if err != nil {
		return Finding{}, p.errorf("get finding %s: %w", id, err)
	}
	f, err := pgx.CollectExactlyOneRow(rows, scanPostgresFinding)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Finding{}, p.errorf("get finding %s: %w", id, err)
	}
	return f, nil
}

// ListFindings returns the findings the filter selects, most recently updated first.
func (p *Postgres) ListFindings(ctx context.Context, flt FindingFilter) ([]Finding, error) {
	args := []any{flt.MinSeverity}
	q := `SELECT ` + findingCols + ` FROM findings WHERE severity >= $1`
	add := func(cond string, v any) {
		args = append(args, v)
		q += fmt.Sprintf(` AND `+cond, len(args))
	}
	if flt.Archived != nil {
		add(`archived = $%d`, *flt.Archived)
	}
	if flt.Type != "" {
		add(`type = $%d`, flt.Type)
	}
	if flt.Principal != "" {
		add(`principal = $%d`, flt.Principal)
	}
	q += ` ORDER BY updated_at DESC, id`
	if flt.Limit > 0 {
		args = append(args, flt.Limit)
		q += fmt.Sprintf(` LIMIT $%d`, len(args))
	}
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, p.errorf("list findings: %w", err)
	}
	fs, err := pgx.CollectRows(rows, scanPostgresFinding)
	if err != nil {
		return nil, p.errorf("list findings: %w", err)
	}
	return nilIfEmpty(fs), nil
}

// ArchiveFinding archives (or, with archived false, unarchives) a finding, or returns
// ErrNotFound. Setting the state it already has succeeds without a write.
func (p *Postgres) ArchiveFinding(ctx context.Context, id string, archived bool) error {
	tag, err := p.pool.Exec(ctx, `UPDATE findings SET archived = $1 WHERE id = $2 AND archived <> $1`, archived, id)
	if err != nil {
		return p.errorf("archive finding %s: %w", id, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	if err := p.exists(ctx, `SELECT 1 FROM findings WHERE id = $1`, id); err != nil {
		return p.errorf("archive finding %s: %w", id, err)
	}
	return nil
}

// MarkFindingResponse records that action was applied for the finding and reports
// whether this call recorded it. The primary key arbitrates: of concurrent inserts (in
// any process) exactly one inserts, the others wait for it and then do nothing.
func (p *Postgres) MarkFindingResponse(ctx context.Context, findingID, action string, at time.Time) (bool, error) {
	if err := validName(action); err != nil {
		return false, fmt.Errorf("mark finding response: action: %w", err)
	}
	n, err := requiredTime(at, p.now)
	if err != nil {
		return false, fmt.Errorf("mark finding response %s: %w", findingID, err)
	}
	tag, err := p.pool.Exec(ctx, `INSERT INTO finding_responses (finding_id, action, applied_at)
		SELECT id, $1, $2 FROM findings WHERE id = $3 ON CONFLICT (finding_id, action) DO NOTHING`, action, n, findingID)
	if err != nil {
		return false, p.errorf("mark finding response %s %s: %w", findingID, action, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	if err := p.exists(ctx, `SELECT 1 FROM findings WHERE id = $1`, findingID); err != nil {
		return false, p.errorf("mark finding response %s %s: %w", findingID, action, err)
	}
	return false, nil
}

// ListFindingResponses returns the actions applied for a finding, in name order.
func (p *Postgres) ListFindingResponses(ctx context.Context, findingID string) ([]string, error) {
	rows, err := p.pool.Query(ctx, `SELECT action FROM finding_responses WHERE finding_id = $1 ORDER BY action`, findingID)
	if err != nil {
		return nil, p.errorf("list finding responses %s: %w", findingID, err)
	}
	as, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, p.errorf("list finding responses %s: %w", findingID, err)
	}
	return nilIfEmpty(as), nil
}

// PutRiskLevel sets a principal's risk level (replacing the one stored).
func (p *Postgres) PutRiskLevel(ctx context.Context, r RiskLevel) error {
	if err := validName(r.Principal); err != nil {
		return fmt.Errorf("put risk level: principal: %w", err)
	}
	if err := validName(r.Level); err != nil {
		return fmt.Errorf("put risk level %s: level: %w", r.Principal, err)
	}
	set, err := requiredTime(r.SetAt, p.now)
	if err != nil {
		return fmt.Errorf("put risk level %s: %w", r.Principal, err)
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO risk_levels (principal, level, finding_id, set_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (principal) DO UPDATE SET level = excluded.level, finding_id = excluded.finding_id, set_at = excluded.set_at`,
		r.Principal, r.Level, r.FindingID, set); err != nil {
		return p.errorf("put risk level %s: %w", r.Principal, err)
	}
	return nil
}

// DeleteRiskLevel clears a principal's risk level, or returns ErrNotFound.
func (p *Postgres) DeleteRiskLevel(ctx context.Context, principal string) error {
	tag, err := p.pool.Exec(ctx, `DELETE FROM risk_levels WHERE principal = $1`, principal)
	if err := affected(tag, err, ErrNotFound); err != nil {
		return p.errorf("delete risk level %s: %w", principal, err)
	}
	return nil
}

// ListRiskLevels returns every principal's risk level, ordered by principal.
func (p *Postgres) ListRiskLevels(ctx context.Context) ([]RiskLevel, error) {
	rows, err := p.pool.Query(ctx, `SELECT principal, level, finding_id, set_at FROM risk_levels ORDER BY principal`)
	if err != nil {
		return nil, p.errorf("list risk levels: %w", err)
	}
	rs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RiskLevel, error) {
		var r RiskLevel
		var set int64
		err := row.Scan(&r.Principal, &r.Level, &r.FindingID, &set)
		r.SetAt = fromNanos(set)
		return r, err
	})
	if err != nil {
		return nil, p.errorf("list risk levels: %w", err)
	}
	return nilIfEmpty(rs), nil
}

// --- secrets ---

// PutSecretIfAbsent stores value under name unless one is stored already, and returns
// the stored value. The insert waits for a concurrent insert of the same name to finish
// and then does nothing, so the read that follows sees the value that won.
func (p *Postgres) PutSecretIfAbsent(ctx context.Context, name string, value []byte) ([]byte, error) {
	if err := validSecret(name, value); err != nil {
		return nil, fmt.Errorf("put secret: %w", err)
	}
	sealed, err := p.seal.seal(secretKind(name), name, value)
	if err != nil {
		return nil, fmt.Errorf("put secret %s: %w", name, err)
	}
	created, err := requiredTime(p.now(), p.now)
	if err != nil {
		return nil, fmt.Errorf("put secret %s: %w", name, err)
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO secrets (name, sealed, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO NOTHING`, name, sealed, created); err != nil {
		return nil, p.errorf("put secret %s: %w", name, err)
	}
	pt, err := p.GetSecret(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("put secret %s: stored value: %w", name, err)
	}
	return pt, nil
}

// GetSecret returns the secret stored under name, or ErrNotFound.
func (p *Postgres) GetSecret(ctx context.Context, name string) ([]byte, error) {
	var sealed []byte
	err := p.pool.QueryRow(ctx, `SELECT sealed FROM secrets WHERE name = $1`, name).Scan(&sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return nil, p.errorf("get secret %s: %w", name, err)
	}
	pt, err := p.seal.open(secretKind(name), name, sealed)
	if err != nil {
		return nil, fmt.Errorf("get secret %s: %w", name, err)
	}
	return pt, nil
}

// --- audit cursors ---

// ListAuditCursors returns consumer's cursors, ordered by chain.
func (p *Postgres) ListAuditCursors(ctx context.Context, consumer string) ([]AuditCursor, error) {
	if err := validName(consumer); err != nil {
		return nil, fmt.Errorf("list audit cursors: consumer: %w", err)
	}
	rows, err := p.pool.Query(ctx, `SELECT chain, seq, hash, events, updated_at FROM audit_cursors
		WHERE consumer = $1 ORDER BY chain`, consumer)
	if err != nil {
		return nil, p.errorf("list audit cursors %s: %w", consumer, err)
	}
	cs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditCursor, error) {
		c := AuditCursor{Consumer: consumer}
		var seq, updated int64
		err := r.Scan(&c.Chain, &seq, &c.Hash, &c.Events, &updated)
		c.Seq = uint64(seq) // CHECK (seq >= 0)
		c.UpdatedAt = fromNanos(updated)
		return c, err
	})
	if err != nil {
		return nil, p.errorf("list audit cursors %s: %w", consumer, err)
	}
	return nilIfEmpty(cs), nil
}

// CommitAudit advances consumer's cursors and stores the findings the batch produced, all
// or nothing. Each advance is a conditional write (an UPDATE matching the expected seq,
// or an INSERT that does nothing if a row exists): a concurrent commit of the same chain
// holds the row until it ends, after which this one matches nothing and reports
// ErrConflict. Chains are advanced in name order and findings written in id order, so
// two commits never wait on each other in a cycle.
func (p *Postgres) CommitAudit(ctx context.Context, consumer string, adv []CursorAdvance, findings []Finding) error {
	if err := validCommit(consumer, adv, findings); err != nil {
		return fmt.Errorf("commit audit: %w", err)
	}
	now, err := requiredTime(p.now(), p.now)
	if err != nil {
		return fmt.Errorf("commit audit %s: %w", consumer, err)
	}
	adv = slices.Clone(adv)
	slices.SortFunc(adv, func(a, b CursorAdvance) int { return strings.Compare(a.Chain, b.Chain) })
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		for _, a := range adv {
			var tag pgconn.CommandTag
			var err error
			if a.From == 0 {
				tag, err = tx.Exec(ctx, `INSERT INTO audit_cursors (consumer, chain, seq, hash, events, updated_at)
					VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (consumer, chain) DO NOTHING`,
					consumer, a.Chain, int64(a.To), a.Hash, a.Events, now)
			} else {
				tag, err = tx.Exec(ctx, `UPDATE audit_cursors SET seq = $3, hash = $4, events = events + $5, updated_at = $6
					WHERE consumer = $1 AND chain = $2 AND seq = $7`,
					consumer, a.Chain, int64(a.To), a.Hash, a.Events, now, int64(a.From))
			}
			if err != nil {
				return fmt.Errorf("advance %s: %w", a.Chain, err)
			}
			if tag.RowsAffected() != 1 {
				return p.cursorConflict(ctx, tx, consumer, a)
			}
		}
		if len(findings) > 0 {
			if err := p.upsertFindings(ctx, tx, findings); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return p.errorf("commit audit %s: %w", consumer, err)
	}
	return nil
}

// cursorConflict describes where the cursor a failed advance expected actually is.
func (p *Postgres) cursorConflict(ctx context.Context, tx pgx.Tx, consumer string, a CursorAdvance) error {
	var seq int64
	err := tx.QueryRow(ctx, `SELECT seq FROM audit_cursors WHERE consumer = $1 AND chain = $2`, consumer, a.Chain).Scan(&seq)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return conflict(a.Chain, 0, false, a.From)
	case err != nil:
		return fmt.Errorf("chain %s moved (reading where to: %v): %w", a.Chain, err, ErrConflict)
	default:
		return conflict(a.Chain, uint64(seq), true, a.From)
	}
}

// nilIfEmpty returns nil for an empty slice, as the SQLite store's lists do.
func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}
