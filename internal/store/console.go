package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// ConsoleSession is a signed-in web console session (package console). The browser's
// cookie holds a random secret; the store keeps only its SHA-256 (ID), so whoever reads
// the store cannot present the session.
type ConsoleSession struct {
	ID           [32]byte // SHA-256 of the cookie's secret
	AccessKeyID  string
	SessionToken string   // the session token of an ASIA key; "" for a long-term key
	SecretHash   [32]byte // SHA-256 of the secret access key signed in with
	Principal    string
	CreatedAt    time.Time
	ExpiresAt    time.Time // the absolute end
	LastSeen     time.Time // the idle timeout counts from here
}

// LimitBucket is one token bucket of the console's sign-in limiter; package console owns
// the arithmetic, the store its atomic update. A bucket never stored has a zero At.
type LimitBucket struct {
	Name   string
	Tokens float64
	At     time.Time // when Tokens was computed
	Pace   time.Time // the next free pacing slot
	IdleAt time.Time // from then on the bucket is full with no slot ahead: it is deleted
}

// Bounds of console rows: far above real values.
const (
	maxLimitName      = 256
	maxConsoleField   = 4096
	maxLimitBucketsTx = 8
)

func validConsoleSession(cs ConsoleSession) error {
	switch {
	case cs.ID == [32]byte{}:
		return errors.New("no session id")
	case cs.AccessKeyID == "" || len(cs.AccessKeyID) > maxConsoleField || len(cs.SessionToken) > maxConsoleField:
		return errors.New("access key id missing or too long, or session token too long")
	case cs.Principal == "" || len(cs.Principal) > maxConsoleField:
		return errors.New("principal missing or too long")
	case cs.CreatedAt.IsZero() || cs.ExpiresAt.IsZero() || cs.LastSeen.IsZero():
		return errors.New("created, expiry or last-seen time missing")
	}
	return nil
}

func validLimitNames(names []string) error {
	if len(names) == 0 || len(names) > maxLimitBucketsTx {
		return fmt.Errorf("%d buckets, want 1 to %d", len(names), maxLimitBucketsTx)
	}
	for _, n := range names {
		if n == "" || len(n) > maxLimitName {
			return fmt.Errorf("bucket name of %d bytes, want 1 to %d", len(n), maxLimitName)
		}
	}
	return nil
}

// sessionTimes encodes a session's times.
func sessionTimes(cs ConsoleSession) (created, expires, seen int64, err error) {
	if created, err = nanos(cs.CreatedAt); err != nil {
		return
	}
	if expires, err = nanos(cs.ExpiresAt); err != nil {
		return
	}
	seen, err = nanos(cs.LastSeen)
	return
}

func scanConsoleSession(sc scanner) (ConsoleSession, error) {
	var cs ConsoleSession
	var id, sh []byte
	var created, expires, seen int64
	if err := sc.Scan(&id, &cs.AccessKeyID, &cs.SessionToken, &sh, &cs.Principal, &created, &expires, &seen); err != nil {
		return cs, err
	}
	if len(id) != 32 || len(sh) != 32 {
		return cs, errors.New("stored session id or secret hash is not 32 bytes")
	}
	copy(cs.ID[:], id)
	copy(cs.SecretHash[:], sh)
	cs.CreatedAt, cs.ExpiresAt, cs.LastSeen = fromNanos(created), fromNanos(expires), fromNanos(seen)
	return cs, nil
}

const consoleSessionColumns = `id, access_key_id, session_token, secret_hash, principal, created_at, expires_at, last_seen`

// limitRow encodes a bucket.
func limitRow(b LimitBucket) (at, pace, idle int64, err error) {
	if at, err = nanos(b.At); err != nil {
		return
	}
	if pace, err = nanos(b.Pace); err != nil {
		return
	}
	idle, err = nanos(b.IdleAt)
	return
}

// bucketOf decodes a stored bucket; at == 0 is a row made by this transaction (new).
func bucketOf(name string, tokens float64, at, pace, idle int64) LimitBucket {
	b := LimitBucket{Name: name, Tokens: tokens}
	if at != 0 {
		b.At, b.Pace, b.IdleAt = fromNanos(at), fromNanos(pace), fromNanos(idle)
	}
	return b
}

// PutConsoleSession stores a new session, unless the store already holds max sessions
// (false: the caller refuses the sign-in). An id already taken is ErrExists.
func (s *SQLite) PutConsoleSession(ctx context.Context, cs ConsoleSession, max int) (bool, error) {
	if err := validConsoleSession(cs); err != nil {
		return false, fmt.Errorf("put console session: %w", err)
	}
	created, expires, seen, err := sessionTimes(cs)
	if err != nil {
		return false, fmt.Errorf("put console session: %w", err)
	}
	ok, err := s.boundedInsert(ctx, "console_sessions", cs.ID, `INSERT INTO console_sessions (`+consoleSessionColumns+`)
		SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE (SELECT count(*) FROM console_sessions) < ?
		ON CONFLICT (id) DO NOTHING`,
		cs.ID[:], cs.AccessKeyID, cs.SessionToken, cs.SecretHash[:], cs.Principal, created, expires, seen, max)
	if err != nil {
		return false, fmt.Errorf("put console session: %w", err)
	}
	return ok, nil
}

// boundedInsert runs insert, which inserts nothing when table is full or id is taken,
// and says which: true inserted, false full, ErrExists taken.
func (s *SQLite) boundedInsert(ctx context.Context, table string, id [32]byte, insert string, args ...any) (bool, error) {
	res, err := s.w.ExecContext(ctx, insert, args...)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return n == 1, err
	}
	var one int
	switch err := s.w.QueryRowContext(ctx, `SELECT 1 FROM `+table+` WHERE id = ?`, id[:]).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	}
	return false, ErrExists
}

// GetConsoleSession returns the session whose cookie secret hashes to id (ErrNotFound:
// none, or signed out: each read sees every committed sign-out, from any process).
func (s *SQLite) GetConsoleSession(ctx context.Context, id [32]byte) (ConsoleSession, error) {
	cs, err := scanConsoleSession(s.r.QueryRowContext(ctx, `SELECT `+consoleSessionColumns+` FROM console_sessions WHERE id = ?`, id[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return cs, fmt.Errorf("get console session: %w", ErrNotFound)
	}
	if err != nil {
		return cs, fmt.Errorf("get console session: %w", err)
	}
	return cs, nil
}

// TouchConsoleSession moves the session's last use forward to at (never back);
// ErrNotFound when the session is gone (signed out on another replica meanwhile).
func (s *SQLite) TouchConsoleSession(ctx context.Context, id [32]byte, at time.Time) error {
	n, err := nanos(at)
	if err != nil {
		return fmt.Errorf("touch console session: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE console_sessions SET last_seen = max(last_seen, ?) WHERE id = ?`, n, id[:])
	if err != nil {
		return fmt.Errorf("touch console session: %w", err)
	}
	if c, err := res.RowsAffected(); err != nil || c == 0 {
		return fmt.Errorf("touch console session: %w", errors.Join(ErrNotFound, err))
	}
	return nil
}

// DeleteConsoleSession ends a session (sign-out); a missing one is no error.
func (s *SQLite) DeleteConsoleSession(ctx context.Context, id [32]byte) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM console_sessions WHERE id = ?`, id[:]); err != nil {
		return fmt.Errorf("delete console session: %w", err)
	}
	return nil
}

// DeleteEndedConsoleSessions deletes the sessions past their expiry at now, or unused
// since idleSince, and the single sign-ons in progress past theirs.
func (s *SQLite) DeleteEndedConsoleSessions(ctx context.Context, now, idleSince time.Time) (int, error) {
	n, err := nanos(now)
	if err != nil {
		return 0, fmt.Errorf("delete ended console sessions: %w", err)
	}
	idle, err := nanos(idleSince)
	if err != nil {
		return 0, fmt.Errorf("delete ended console sessions: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM console_sessions WHERE expires_at <= ? OR last_seen <= ?`, n, idle)
	if err != nil {
		return 0, fmt.Errorf("delete ended console sessions: %w", err)
	}
	c, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete ended console sessions: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM console_sso WHERE expires_at <= ?`, n); err != nil {
		return int(c), fmt.Errorf("delete expired console sign-ons: %w", err)
	}
	return int(c), nil
}

// UpdateLimitBuckets reads the named buckets (a bucket never stored has a zero At), lets
// fn change them and stores the result, all in one write transaction: an update from any
// process on the store waits for this one, so concurrent sign-in attempts are counted
// exactly. An error from fn rolls back and is returned.
func (s *SQLite) UpdateLimitBuckets(ctx context.Context, names []string, fn func([]LimitBucket) error) error {
	if err := validLimitNames(names); err != nil {
		return fmt.Errorf("update limit buckets: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock first
	if err != nil {
		return fmt.Errorf("update limit buckets: %w", err)
	}
	defer tx.Rollback()
	bs := make([]LimitBucket, len(names))
	for i, name := range names {
		var tokens float64
		var at, pace, idle int64
		err := tx.QueryRowContext(ctx, `SELECT tokens, at, pace, idle_at FROM signin_limits WHERE name = ?`, name).Scan(&tokens, &at, &pace, &idle)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("update limit buckets: read %s: %w", name, err)
		}
		bs[i] = bucketOf(name, tokens, at, pace, idle)
	}
	if err := fn(bs); err != nil {
		return err
	}
	for _, b := range bs {
		at, pace, idle, err := limitRow(b)
		if err != nil {
			return fmt.Errorf("update limit buckets: %s: %w", b.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO signin_limits (name, tokens, at, pace, idle_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens, at = excluded.at, pace = excluded.pace, idle_at = excluded.idle_at`,
			b.Name, b.Tokens, at, pace, idle); err != nil {
			return fmt.Errorf("update limit buckets: write %s: %w", b.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update limit buckets: commit: %w", err)
	}
	return nil
}

// DeleteIdleLimitBuckets deletes the buckets idle at now.
func (s *SQLite) DeleteIdleLimitBuckets(ctx context.Context, now time.Time) (int, error) {
	n, err := nanos(now)
	if err != nil {
		return 0, fmt.Errorf("delete idle limit buckets: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM signin_limits WHERE idle_at <= ?`, n)
	if err != nil {
		return 0, fmt.Errorf("delete idle limit buckets: %w", err)
	}
	c, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete idle limit buckets: %w", err)
	}
	return int(c), nil
}

// PutConsoleSession is SQLite's PutConsoleSession on PostgreSQL. The bound is checked by
// the same statement; concurrent sign-ins on several replicas may pass it by a few.
func (p *Postgres) PutConsoleSession(ctx context.Context, cs ConsoleSession, max int) (bool, error) {
	if err := validConsoleSession(cs); err != nil {
		return false, fmt.Errorf("put console session: %w", err)
	}
	created, expires, seen, err := sessionTimes(cs)
	if err != nil {
		return false, fmt.Errorf("put console session: %w", err)
	}
	ok, err := p.boundedInsert(ctx, "console_sessions", cs.ID, `INSERT INTO console_sessions (`+consoleSessionColumns+`)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE (SELECT count(*) FROM console_sessions) < $9
		ON CONFLICT (id) DO NOTHING`,
		cs.ID[:], cs.AccessKeyID, cs.SessionToken, cs.SecretHash[:], cs.Principal, created, expires, seen, max)
	if err != nil {
		return false, p.errorf("put console session: %w", err)
	}
	return ok, nil
}

// boundedInsert is SQLite's boundedInsert on PostgreSQL.
func (p *Postgres) boundedInsert(ctx context.Context, table string, id [32]byte, insert string, args ...any) (bool, error) {
	tag, err := p.pool.Exec(ctx, insert, args...)
	if err != nil || tag.RowsAffected() == 1 {
		return err == nil, err
	}
	var one int
	switch err := p.pool.QueryRow(ctx, `SELECT 1 FROM `+table+` WHERE id = $1`, id[:]).Scan(&one); {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	}
	return false, ErrExists
}

// GetConsoleSession is SQLite's GetConsoleSession on PostgreSQL.
func (p *Postgres) GetConsoleSession(ctx context.Context, id [32]byte) (ConsoleSession, error) {
	cs, err := scanConsoleSession(p.pool.QueryRow(ctx, `SELECT `+consoleSessionColumns+` FROM console_sessions WHERE id = $1`, id[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return cs, fmt.Errorf("get console session: %w", ErrNotFound)
	}
	if err != nil {
		return cs, p.errorf("get console session: %w", err)
	}
	return cs, nil
}

// TouchConsoleSession is SQLite's TouchConsoleSession on PostgreSQL.
func (p *Postgres) TouchConsoleSession(ctx context.Context, id [32]byte, at time.Time) error {
	n, err := nanos(at)
	if err != nil {
		return fmt.Errorf("touch console session: %w", err)
	}
	tag, err := p.pool.Exec(ctx, `UPDATE console_sessions SET last_seen = GREATEST(last_seen, $1) WHERE id = $2`, n, id[:])
	if err != nil {
		return p.errorf("touch console session: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("touch console session: %w", ErrNotFound)
	}
	return nil
}

// DeleteConsoleSession is SQLite's DeleteConsoleSession on PostgreSQL.
func (p *Postgres) DeleteConsoleSession(ctx context.Context, id [32]byte) error {
	if _, err := p.pool.Exec(ctx, `DELETE FROM console_sessions WHERE id = $1`, id[:]); err != nil {
		return p.errorf("delete console session: %w", err)
	}
	return nil
}

// DeleteEndedConsoleSessions is SQLite's DeleteEndedConsoleSessions on PostgreSQL.
func (p *Postgres) DeleteEndedConsoleSessions(ctx context.Context, now, idleSince time.Time) (int, error) {
	n, err := nanos(now)
	if err != nil {
		return 0, fmt.Errorf("delete ended console sessions: %w", err)
	}
	idle, err := nanos(idleSince)
	if err != nil {
		return 0, fmt.Errorf("delete ended console sessions: %w", err)
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen <= $2`, n, idle)
	if err != nil {
		return 0, p.errorf("delete ended console sessions: %w", err)
	}
	if _, err := p.pool.Exec(ctx, `DELETE FROM console_sso WHERE expires_at <= $1`, n); err != nil {
		return int(tag.RowsAffected()), p.errorf("delete expired console sign-ons: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// UpdateLimitBuckets is SQLite's UpdateLimitBuckets on PostgreSQL: each bucket's row is
// created if missing and locked (INSERT … ON CONFLICT DO UPDATE locks the row either
// way) in name order, so two transactions never wait on each other in a cycle, and the
// rows stay locked until the new values are written and committed.
func (p *Postgres) UpdateLimitBuckets(ctx context.Context, names []string, fn func([]LimitBucket) error) error {
	if err := validLimitNames(names); err != nil {
		return fmt.Errorf("update limit buckets: %w", err)
	}
	order := slices.Clone(names)
	slices.Sort(order)
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return p.errorf("update limit buckets: %w", err)
	}
	defer tx.Rollback(context.Background())
	read := map[string]LimitBucket{}
	for _, name := range order {
		if _, ok := read[name]; ok {
			continue
		}
		var tokens float64
		var at, pace, idle int64
		if err := tx.QueryRow(ctx, `INSERT INTO signin_limits (name, tokens, at, pace, idle_at) VALUES ($1, 0, 0, 0, 0)
			ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
			RETURNING tokens, at, pace, idle_at`, name).Scan(&tokens, &at, &pace, &idle); err != nil {
			return p.errorf("update limit buckets: lock %s: %w", name, err)
		}
		read[name] = bucketOf(name, tokens, at, pace, idle)
	}
	bs := make([]LimitBucket, len(names))
	for i, name := range names {
		bs[i] = read[name]
	}
	if err := fn(bs); err != nil {
		return err
	}
	for _, b := range bs {
		at, pace, idle, err := limitRow(b)
		if err != nil {
			return fmt.Errorf("update limit buckets: %s: %w", b.Name, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE signin_limits SET tokens = $2, at = $3, pace = $4, idle_at = $5 WHERE name = $1`,
			b.Name, b.Tokens, at, pace, idle); err != nil {
			return p.errorf("update limit buckets: write %s: %w", b.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return p.errorf("update limit buckets: commit: %w", err)
	}
	return nil
}

// DeleteIdleLimitBuckets is SQLite's DeleteIdleLimitBuckets on PostgreSQL.
func (p *Postgres) DeleteIdleLimitBuckets(ctx context.Context, now time.Time) (int, error) {
	n, err := nanos(now)
	if err != nil {
		return 0, fmt.Errorf("delete idle limit buckets: %w", err)
	}
	tag, err := p.pool.Exec(ctx, `DELETE FROM signin_limits WHERE idle_at <= $1`, n)
	if err != nil {
		return 0, p.errorf("delete idle limit buckets: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// maxSSOSealed bounds a sealed sign-on in progress (an ID token and a few fields).
const maxSSOSealed = 64 << 10

func validConsoleSSO(id [32]byte, sealed []byte, expires time.Time) (int64, error) {
	switch {
	case id == [32]byte{}:
		return 0, errors.New("no id")
	case len(sealed) == 0 || len(sealed) > maxSSOSealed:
		return 0, fmt.Errorf("sealed state of %d bytes, want 1 to %d", len(sealed), maxSSOSealed)
	}
	return nanos(expires)
}

// PutConsoleSSO stores a single sign-on in progress (sealed by the console) until
// expires, unless max are stored (false). An id already taken is ErrExists.
func (s *SQLite) PutConsoleSSO(ctx context.Context, id [32]byte, sealed []byte, expires time.Time, max int) (bool, error) {
	exp, err := validConsoleSSO(id, sealed, expires)
	if err != nil {
		return false, fmt.Errorf("put console sign-on: %w", err)
	}
	ok, err := s.boundedInsert(ctx, "console_sso", id, `INSERT INTO console_sso (id, sealed, expires_at)
		SELECT ?, ?, ? WHERE (SELECT count(*) FROM console_sso) < ? ON CONFLICT (id) DO NOTHING`, id[:], sealed, exp, max)
	if err != nil {
		return false, fmt.Errorf("put console sign-on: %w", err)
	}
	return ok, nil
}

// TakeConsoleSSO deletes the sign-on in progress under id and returns it, unless it
// expired by now (ErrNotFound, as for none): of concurrent takes, from any process, one
// gets it.
func (s *SQLite) TakeConsoleSSO(ctx context.Context, id [32]byte, now time.Time) ([]byte, error) {
	n, err := nanos(now)
	if err != nil {
		return nil, fmt.Errorf("take console sign-on: %w", err)
	}
	var sealed []byte
	var exp int64
	err = s.w.QueryRowContext(ctx, `DELETE FROM console_sso WHERE id = ? RETURNING sealed, expires_at`, id[:]).Scan(&sealed, &exp)
	switch {
	case errors.Is(err, sql.ErrNoRows) || err == nil && exp <= n:
		return nil, fmt.Errorf("take console sign-on: %w", ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("take console sign-on: %w", err)
	}
	return sealed, nil
}

// PutConsoleSSO is SQLite's PutConsoleSSO on PostgreSQL.
func (p *Postgres) PutConsoleSSO(ctx context.Context, id [32]byte, sealed []byte, expires time.Time, max int) (bool, error) {
	exp, err := validConsoleSSO(id, sealed, expires)
	if err != nil {
		return false, fmt.Errorf("put console sign-on: %w", err)
	}
	ok, err := p.boundedInsert(ctx, "console_sso", id, `INSERT INTO console_sso (id, sealed, expires_at)
		SELECT $1, $2, $3 WHERE (SELECT count(*) FROM console_sso) < $4 ON CONFLICT (id) DO NOTHING`, id[:], sealed, exp, max)
	if err != nil {
		return false, p.errorf("put console sign-on: %w", err)
	}
	return ok, nil
}

// TakeConsoleSSO is SQLite's TakeConsoleSSO on PostgreSQL.
func (p *Postgres) TakeConsoleSSO(ctx context.Context, id [32]byte, now time.Time) ([]byte, error) {
	n, err := nanos(now)
	if err != nil {
		return nil, fmt.Errorf("take console sign-on: %w", err)
	}
	var sealed []byte
	var exp int64
	err = p.pool.QueryRow(ctx, `DELETE FROM console_sso WHERE id = $1 RETURNING sealed, expires_at`, id[:]).Scan(&sealed, &exp)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || err == nil && exp <= n:
		return nil, fmt.Errorf("take console sign-on: %w", ErrNotFound)
	case err != nil:
		return nil, p.errorf("take console sign-on: %w", err)
	}
	return sealed, nil
}
