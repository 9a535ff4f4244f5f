package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// AnchorClient writes and reads audit anchors in a PostgreSQL schema the perimeter's
// store created, logged in with a role that may do nothing else: an audit writer's
// (AuditWriterGrants: INSERT and SELECT on the anchor tables), or a reader's. It runs
// no migration and needs no master key, so the login's rights are all it has. It is the
// off-host anchor sink of a writer (--audit-anchors) and the anchor source of `phantom
// audit verify --store`.
type AnchorClient struct {
	pgAnchors
	pool     *pgxpool.Pool
	password string
}

var _ audit.AnchorStore = (*AnchorClient)(nil)

// OpenAnchorClient connects to the PostgreSQL schema dsn names and checks it holds the
// anchor tables (a perimeter's store created them).
func OpenAnchorClient(ctx context.Context, dsn string) (*AnchorClient, error) {
	where := RedactURL(dsn)
	if !IsPostgresURL(dsn) {
		return nil, fmt.Errorf("open audit anchors %s: want a postgres:// URL", where)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open audit anchors %s: cannot parse the PostgreSQL connection string (details withheld: they may quote its password)", where)
	}
	if pc.ConnConfig.ConnectTimeout <= 0 {
		pc.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = "phantom-audit"
	}
	pc.MaxConns = 2
	c := &AnchorClient{password: pc.ConnConfig.Password}
	c.pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, c.errorf("open audit anchors %s: %w", where, err)
	}
	c.pgAnchors = pgAnchors{q: c.pool, now: time.Now, where: where, errorf: c.errorf}
	if _, err := c.pool.Exec(ctx, `SELECT 1 FROM audit_anchors LIMIT 0`); err != nil {
		c.pool.Close()
		return nil, c.errorf("open audit anchors %s: the schema has no anchor table a perimeter store made, or the login may not read it: %w", where, err)
	}
	return c, nil
}

func (c *AnchorClient) errorf(format string, args ...any) error {
	return redactError(fmt.Errorf(format, args...), c.password)
}

// String names the store without its password.
func (c *AnchorClient) String() string { return c.where }

// Close releases the connections.
func (c *AnchorClient) Close() { c.pool.Close() }

// ReadAuditAnchors reads the anchor set of the SQLite store in dataDir, read-only and
// without the master key (anchors hold no secret). No store, or one made before anchors
// (no anchor tables), is an error wrapping fs.ErrNotExist.
func ReadAuditAnchors(ctx context.Context, dataDir string) (audit.AnchorSet, error) {
	path := filepath.Join(dataDir, DBFile)
	if _, err := os.Stat(path); err != nil {
		return audit.AnchorSet{}, fmt.Errorf("read audit anchors: %w", err)
	}
	db, err := openDB(path, DefaultBusyTimeout, true)
	if err != nil {
		return audit.AnchorSet{}, fmt.Errorf("read audit anchors %s: %w", path, err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_anchors'`).Scan(&n); err != nil {
		return audit.AnchorSet{}, fmt.Errorf("read audit anchors %s: %w", path, err)
	}
	if n == 0 {
		return audit.AnchorSet{}, fmt.Errorf("read audit anchors: %s holds none (a store made before them): %w", path, fs.ErrNotExist)
	}
	set, err := readAnchorSet(sqliteQuery(ctx, db))
	if err != nil {
		return audit.AnchorSet{}, fmt.Errorf("%s: %w", path, err)
	}
	set.Source = path
	return set, nil
}

// AuditWriterGrants are the statements that let role write audit anchors in the current
// schema and nothing else there: it may read the anchor tables (a writer continues a
// damaged chain after its anchored head) and the migration record (to see the tables
// exist), and insert chains, certificates and anchors — never update, delete or
// truncate them (the triggers refuse that to every role anyway), nor insert prune
// checkpoints (an administrator's). Issue 26's per-component roles extend these.
func AuditWriterGrants(role string) []string {
	r := pgx.Identifier{role}.Sanitize()
	return []string{
		`GRANT USAGE ON SCHEMA ` + currentSchema + ` TO ` + r,
		`GRANT SELECT ON schema_migrations, audit_checkpoints TO ` + r,
		`GRANT SELECT, INSERT ON audit_chains, audit_anchors, audit_signers TO ` + r,
	}
}

// currentSchema is replaced by the schema's quoted name when the grants run.
const currentSchema = "@schema@"

// GrantAuditWriter runs AuditWriterGrants for role (which must exist) in the store's
// schema. The store's login must own the tables (or hold them WITH GRANT OPTION).
func (p *Postgres) GrantAuditWriter(ctx context.Context, role string) error {
	if err := validName(role); err != nil {
		return fmt.Errorf("grant audit writer: role: %w", err)
	}
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return p.errorf("grant audit writer %s: %w", role, err)
	}
	defer tx.Rollback(context.Background())
	var schema string
	if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return p.errorf("grant audit writer %s: %w", role, err)
	}
	for _, stmt := range AuditWriterGrants(role) {
		stmt = replaceSchema(stmt, pgx.Identifier{schema}.Sanitize())
		if _, err := tx.Exec(ctx, stmt); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42704" { // undefined_object: no such role
				return fmt.Errorf("grant audit writer: role %q does not exist (CREATE ROLE %s LOGIN PASSWORD '…' first)", role, pgx.Identifier{role}.Sanitize())
			}
			return p.errorf("grant audit writer %s: %w", role, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return p.errorf("grant audit writer %s: %w", role, err)
	}
	return nil
}

func replaceSchema(stmt, schema string) string {
	return strings.Replace(stmt, currentSchema, schema, 1)
}
