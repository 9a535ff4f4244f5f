package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phantom-perimeter/phantom/internal/audit"
)

// Audit anchors (package audit): the set of chains, the writers' certificates, each
// digest's head and the prune checkpoints, all append-only (see the migrations). The
// store checks what it stores is well formed; whether an anchor's signature is the
// writer's is verification's question (audit.Verify), since an anchor inserted by
// someone else must be reported, not silently refused.

// maxDigestLine bounds a stored digest line (a real one is about 500 bytes).
const maxDigestLine = 4 << 10

func validAnchor(a audit.Anchor) error {
	if !audit.ValidChain(a.Chain) {
		return fmt.Errorf("chain %q is not a chain name", a.Chain)
	}
	if a.Segment == 0 || a.Segment > math.MaxInt64 || a.Seq > math.MaxInt64 || a.Bytes < 0 {
		return fmt.Errorf("chain %s: segment %d seq %d bytes %d out of range", a.Chain, a.Segment, a.Seq, a.Bytes)
	}
	if len(a.Digest) > maxDigestLine {
		return fmt.Errorf("chain %s: digest line longer than %d bytes", a.Chain, maxDigestLine)
	}
	if err := audit.ParseAnchor(a); err != nil {
		return err
	}
	return nil
}

func digestSHA(a audit.Anchor) string {
	sum := sha256.Sum256([]byte(a.Digest))
	return hex.EncodeToString(sum[:])
}

func validSigner(s audit.Signer) error {
	if !audit.ValidChain(s.Chain) {
		return fmt.Errorf("chain %q is not a chain name", s.Chain)
	}
	if err := validName(s.KeyID); err != nil {
		return fmt.Errorf("key id: %w", err)
	}
	if len(s.Cert) == 0 || len(s.Cert) > 16<<10 {
		return fmt.Errorf("certificate of %d bytes", len(s.Cert))
	}
	return nil
}

func validCheckpoint(c audit.Checkpoint) error {
	if !audit.ValidChain(c.Chain) {
		return fmt.Errorf("chain %q is not a chain name", c.Chain)
	}
	if c.Segment == 0 || c.Seq == 0 || c.Segment > math.MaxInt64 || c.Seq > math.MaxInt64 {
		return fmt.Errorf("chain %s: segment %d seq %d out of range", c.Chain, c.Segment, c.Seq)
	}
	return validName(c.Hash)
}

// SpecReplica is one process's report of the perimeter spec it enforces: replicas that
// disagree for longer than a reload interval are reported (internal/perimeter).
type SpecReplica struct {
	ID       string // unique per process: host, pid and start
	Process  string // what the process runs: "up", "gateway", …
	Host     string
	Digest   string // "sha256:<hex>" of the spec file
	File     string
	LoadedAt time.Time // when this digest was loaded
	SeenAt   time.Time // the report's time
}

// specReplicaTTL is how long a replica that stopped reporting keeps its row.
const specReplicaTTL = time.Hour

func validSpecReplica(r SpecReplica) error {
	for name, v := range map[string]string{"id": r.ID, "process": r.Process, "host": r.Host, "digest": r.Digest} {
		if err := validName(v); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if len(r.File) > 4096 {
		return errors.New("file name longer than 4096 bytes")
	}
	return nil
}

// RegisterAuditChain adds chain to the set of chains, keeping an existing entry.
func (s *SQLite) RegisterAuditChain(ctx context.Context, chain string, at time.Time) error {
	if !audit.ValidChain(chain) {
		return fmt.Errorf("register audit chain: %q is not a chain name", chain)
	}
	n, err := requiredTime(at, s.now)
	if err != nil {
		return fmt.Errorf("register audit chain %s: %w", chain, err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO audit_chains (chain, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING`, chain, n); err != nil {
		return fmt.Errorf("register audit chain %s: %w", chain, err)
	}
	return nil
}

// PutAuditSigner records a writer's certificate, keeping an existing one.
func (s *SQLite) PutAuditSigner(ctx context.Context, sg audit.Signer) error {
	if err := validSigner(sg); err != nil {
		return fmt.Errorf("put audit signer: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO audit_signers (key_id, chain, cert, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		sg.KeyID, sg.Chain, sg.Cert, s.now().UnixNano()); err != nil {
		return fmt.Errorf("put audit signer %s: %w", sg.KeyID, err)
	}
	return nil
}

// PutAuditAnchor records an anchor; the same anchor again is one row.
func (s *SQLite) PutAuditAnchor(ctx context.Context, a audit.Anchor) error {
	if err := validAnchor(a); err != nil {
		return fmt.Errorf("put audit anchor: %w", err)
	}
	signed, err := nanos(a.Time)
	if err != nil {
		return fmt.Errorf("put audit anchor %s: %w", a.Chain, err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO audit_anchors (chain, segment, seq, hash, bytes, key_id, signed_at, digest, digest_sha, recorded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		a.Chain, int64(a.Segment), int64(a.Seq), a.Hash, a.Bytes, a.KeyID, signed, a.Digest, digestSHA(a), s.now().UnixNano()); err != nil {
		return fmt.Errorf("put audit anchor %s seq %d: %w", a.Chain, a.Seq, err)
	}
	return nil
}

const anchorColumns = `chain, segment, seq, hash, bytes, key_id, signed_at, digest`

// scanAnchor reads the anchorColumns of a row.
func scanAnchor(scan func(...any) error) (audit.Anchor, error) {
	var a audit.Anchor
	var seg, seq, signed int64
	if err := scan(&a.Chain, &seg, &seq, &a.Hash, &a.Bytes, &a.KeyID, &signed, &a.Digest); err != nil {
		return a, err
	}
	a.Segment, a.Seq, a.Time = uint64(seg), uint64(seq), fromNanos(signed) // CHECKs: not negative
	return a, nil
}

// LatestAuditAnchor returns chain's anchor with the highest seq (then segment).
func (s *SQLite) LatestAuditAnchor(ctx context.Context, chain string) (audit.Anchor, bool, error) {
	row := s.r.QueryRowContext(ctx, `SELECT `+anchorColumns+` FROM audit_anchors WHERE chain = ? ORDER BY seq DESC, segment DESC, id DESC LIMIT 1`, chain)
	a, err := scanAnchor(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return audit.Anchor{}, false, nil
	}
	if err != nil {
		return audit.Anchor{}, false, fmt.Errorf("latest audit anchor %s: %w", chain, err)
	}
	return a, true, nil
}

// PutAuditCheckpoint records a prune checkpoint.
func (s *SQLite) PutAuditCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	if err := validCheckpoint(c); err != nil {
		return fmt.Errorf("put audit checkpoint: %w", err)
	}
	before, err := nanos(c.Before)
	if err != nil {
		return fmt.Errorf("put audit checkpoint %s: %w", c.Chain, err)
	}
	at, err := requiredTime(c.Time, s.now)
	if err != nil {
		return fmt.Errorf("put audit checkpoint %s: %w", c.Chain, err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO audit_checkpoints (chain, segment, seq, hash, before, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		c.Chain, int64(c.Segment), int64(c.Seq), c.Hash, before, at); err != nil {
		return fmt.Errorf("put audit checkpoint %s: %w", c.Chain, err)
	}
	return nil
}

// The queries of AuditAnchorSet, shared by both backends (with ? placeholders; pgSQL
// numbers them for PostgreSQL). The newest anchor of each segment is found by walking
// the (chain, segment) index a segment at a time rather than reading every anchor: a
// busy chain leaves one anchor a second, but a segment holds 64 MiB of records.
const (
	setChainsSQL      = `SELECT chain, created_at FROM audit_chains ORDER BY chain`
	setNextSegmentSQL = `SELECT chain, segment FROM audit_anchors WHERE chain > ? OR (chain = ? AND segment > ?) ORDER BY chain, segment LIMIT 1`
	setSegmentHeadSQL = `SELECT ` + anchorColumns + ` FROM audit_anchors WHERE chain = ? AND segment = ? ORDER BY seq DESC, id DESC LIMIT 1`
	setSignersSQL     = `SELECT key_id, chain, cert FROM audit_signers ORDER BY chain, key_id`
	setCheckpointsSQL = `SELECT chain, segment, seq, hash, before, created_at FROM audit_checkpoints ORDER BY chain, seq`
	listChainsSQL     = setChainsSQL
	anchorsAfterSQL   = `SELECT ` + anchorColumns + ` FROM audit_anchors WHERE chain = ? AND seq > ? ORDER BY seq, segment, id LIMIT ?`
)

// maxAnchorsAfter bounds one AuditAnchorsAfter read.
const maxAnchorsAfter = 10000

// readAnchorsAfter reads up to limit anchors of chain above seq after, by seq.
func readAnchorsAfter(query queryFunc, chain string, after uint64, limit int) ([]audit.Anchor, error) {
	if !audit.ValidChain(chain) {
		return nil, fmt.Errorf("audit anchors of %q: not a chain name", chain)
	}
	if after > math.MaxInt64 || limit <= 0 || limit > maxAnchorsAfter {
		return nil, fmt.Errorf("audit anchors of %s: after %d limit %d out of range", chain, after, limit)
	}
	var out []audit.Anchor
	err := query.each(anchorsAfterSQL, func(scan func(...any) error) error {
		a, err := scanAnchor(scan)
		out = append(out, a)
		return err
	}, chain, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("audit anchors of %s after seq %d: %w", chain, after, err)
	}
	return out, nil
}

// pgSQL turns the ? placeholders of q into PostgreSQL's $1, $2, ….
func pgSQL(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// rowsOf is what database/sql's and pgx's rows share.
type rowsOf interface {
	Next() bool
	Scan(...any) error
	Err() error
}

// queryFunc runs q (with ? placeholders) and returns its rows and how to release them.
type queryFunc func(q string, args ...any) (rowsOf, func(), error)

// each calls fn for every row of q.
func (query queryFunc) each(q string, fn func(scan func(...any) error) error, args ...any) error {
	rows, done, err := query(q, args...)
	if err != nil {
		return err
	}
	defer done()
	for rows.Next() {
		if err := fn(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// readChains lists the set of chains.
func readChains(query queryFunc) ([]audit.ChainEntry, error) {
	var out []audit.ChainEntry
	err := query.each(listChainsSQL, func(scan func(...any) error) error {
		var c audit.ChainEntry
		var at int64
		err := scan(&c.Name, &at)
		c.Created = fromNanos(at)
		out = append(out, c)
		return err
	})
	return out, err
}

// readAnchorSet reads the whole set.
func readAnchorSet(query queryFunc) (audit.AnchorSet, error) {
	var set audit.AnchorSet
	var err error
	set.Chains, err = readChains(query)
	chain, seg := "", int64(0)
	for err == nil {
		found := false
		err = query.each(setNextSegmentSQL, func(scan func(...any) error) error {
			found = true
			return scan(&chain, &seg)
		}, chain, chain, seg)
		if err != nil || !found {
			break
		}
		err = query.each(setSegmentHeadSQL, func(scan func(...any) error) error {
			a, err := scanAnchor(scan)
			set.Anchors = append(set.Anchors, a)
			return err
		}, chain, seg)
	}
	if err == nil {
		err = query.each(setSignersSQL, func(scan func(...any) error) error {
			var sg audit.Signer
			err := scan(&sg.KeyID, &sg.Chain, &sg.Cert)
			set.Signers = append(set.Signers, sg)
			return err
		})
	}
	if err == nil {
		err = query.each(setCheckpointsSQL, func(scan func(...any) error) error {
			var c audit.Checkpoint
			var seg, seq, before, at int64
			err := scan(&c.Chain, &seg, &seq, &c.Hash, &before, &at)
			c.Segment, c.Seq, c.Before, c.Time = uint64(seg), uint64(seq), fromNanos(before), fromNanos(at)
			set.Checkpoints = append(set.Checkpoints, c)
			return err
		})
	}
	if err != nil {
		return audit.AnchorSet{}, fmt.Errorf("read audit anchors: %w", err)
	}
	return set, nil
}

// sqliteQuery is a queryFunc on a database/sql handle.
func sqliteQuery(ctx context.Context, db *sql.DB) queryFunc {
	return func(q string, args ...any) (rowsOf, func(), error) {
		rows, err := db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, nil, err
		}
		return rows, func() { rows.Close() }, nil
	}
}

// pgQuery is a queryFunc on a pgx pool or connection.
func pgQuery(ctx context.Context, q pgQuerier) queryFunc {
	return func(sql string, args ...any) (rowsOf, func(), error) {
		rows, err := q.Query(ctx, pgSQL(sql), args...)
		if err != nil {
			return nil, nil, err
		}
		return rows, rows.Close, nil
	}
}

// ListAuditChains returns the set of chains, by name.
func (s *SQLite) ListAuditChains(ctx context.Context) ([]audit.ChainEntry, error) {
	cs, err := readChains(sqliteQuery(ctx, s.r))
	if err != nil {
		return nil, fmt.Errorf("list audit chains: %w", err)
	}
	return cs, nil
}

// AuditAnchorSet returns what verification takes from the store: the chains, per chain
// and segment the anchor with the highest seq, the writers' certificates and the prune
// checkpoints.
func (s *SQLite) AuditAnchorSet(ctx context.Context) (audit.AnchorSet, error) {
	set, err := readAnchorSet(sqliteQuery(ctx, s.r))
	set.Source = s.path
	return set, err
}

// AuditAnchorsAfter returns up to limit anchors of chain with a seq above after, by seq.
func (s *SQLite) AuditAnchorsAfter(ctx context.Context, chain string, after uint64, limit int) ([]audit.Anchor, error) {
	return readAnchorsAfter(sqliteQuery(ctx, s.r), chain, after, limit)
}

// PutSpecReplica records a process's spec report, replacing its previous one, and
// removes reports not refreshed for an hour.
func (s *SQLite) PutSpecReplica(ctx context.Context, r SpecReplica) error {
	if err := validSpecReplica(r); err != nil {
		return fmt.Errorf("put spec replica: %w", err)
	}
	loaded, err := requiredTime(r.LoadedAt, s.now)
	if err != nil {
		return fmt.Errorf("put spec replica %s: %w", r.ID, err)
	}
	seen, err := requiredTime(r.SeenAt, s.now)
	if err != nil {
		return fmt.Errorf("put spec replica %s: %w", r.ID, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("put spec replica %s: %w", r.ID, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO spec_replicas (id, process, host, digest, file, loaded_at, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET digest = excluded.digest, file = excluded.file, loaded_at = excluded.loaded_at, seen_at = excluded.seen_at`,
		r.ID, r.Process, r.Host, r.Digest, r.File, loaded, seen); err != nil {
		return fmt.Errorf("put spec replica %s: %w", r.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM spec_replicas WHERE seen_at < ?`, seen-int64(specReplicaTTL)); err != nil {
		return fmt.Errorf("put spec replica %s: expire: %w", r.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("put spec replica %s: %w", r.ID, err)
	}
	return nil
}

// ListSpecReplicas returns the reports seen at or after since, ordered by id.
func (s *SQLite) ListSpecReplicas(ctx context.Context, since time.Time) ([]SpecReplica, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, process, host, digest, file, loaded_at, seen_at FROM spec_replicas WHERE seen_at >= ? ORDER BY id`, since.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("list spec replicas: %w", err)
	}
	defer rows.Close()
	return scanSpecReplicas(rows)
}

func scanSpecReplicas(rows rowsOf) ([]SpecReplica, error) {
	var out []SpecReplica
	for rows.Next() {
		var r SpecReplica
		var loaded, seen int64
		if err := rows.Scan(&r.ID, &r.Process, &r.Host, &r.Digest, &r.File, &loaded, &seen); err != nil {
			return nil, fmt.Errorf("list spec replicas: %w", err)
		}
		r.LoadedAt, r.SeenAt = fromNanos(loaded), fromNanos(seen)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list spec replicas: %w", err)
	}
	return out, nil
}

// PutAuditCheckpoint records a prune checkpoint.
func (p *Postgres) PutAuditCheckpoint(ctx context.Context, c audit.Checkpoint) error {
	if err := validCheckpoint(c); err != nil {
		return fmt.Errorf("put audit checkpoint: %w", err)
	}
	before, err := nanos(c.Before)
	if err != nil {
		return fmt.Errorf("put audit checkpoint %s: %w", c.Chain, err)
	}
	at, err := requiredTime(c.Time, p.now)
	if err != nil {
		return fmt.Errorf("put audit checkpoint %s: %w", c.Chain, err)
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO audit_checkpoints (chain, segment, seq, hash, before, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		c.Chain, int64(c.Segment), int64(c.Seq), c.Hash, before, at); err != nil {
		return p.errorf("put audit checkpoint %s: %w", c.Chain, err)
	}
	return nil
}

// PutSpecReplica records a process's spec report (see SQLite's).
func (p *Postgres) PutSpecReplica(ctx context.Context, r SpecReplica) error {
	if err := validSpecReplica(r); err != nil {
		return fmt.Errorf("put spec replica: %w", err)
	}
	loaded, err := requiredTime(r.LoadedAt, p.now)
	if err != nil {
		return fmt.Errorf("put spec replica %s: %w", r.ID, err)
	}
	seen, err := requiredTime(r.SeenAt, p.now)
	if err != nil {
		return fmt.Errorf("put spec replica %s: %w", r.ID, err)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO spec_replicas (id, process, host, digest, file, loaded_at, seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO UPDATE SET digest = excluded.digest, file = excluded.file, loaded_at = excluded.loaded_at, seen_at = excluded.seen_at`,
		r.ID, r.Process, r.Host, r.Digest, r.File, loaded, seen)
	b.Queue(`DELETE FROM spec_replicas WHERE seen_at < $1`, seen-int64(specReplicaTTL))
	if err := p.pool.SendBatch(ctx, b).Close(); err != nil {
		return p.errorf("put spec replica %s: %w", r.ID, err)
	}
	return nil
}

// ListSpecReplicas returns the reports seen at or after since, ordered by id.
func (p *Postgres) ListSpecReplicas(ctx context.Context, since time.Time) ([]SpecReplica, error) {
	rows, err := p.pool.Query(ctx, `SELECT id, process, host, digest, file, loaded_at, seen_at FROM spec_replicas WHERE seen_at >= $1 ORDER BY id`, since.UnixNano())
	if err != nil {
		return nil, p.errorf("list spec replicas: %w", err)
	}
	defer rows.Close()
	out, err := scanSpecReplicas(rows)
	if err != nil {
		return nil, p.errorf("%w", err)
	}
	return out, nil
}

// pgQuerier is what the anchor statements need of a PostgreSQL connection pool.
type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgAnchors are the anchor methods on PostgreSQL, shared by the store (Postgres) and an
// audit writer's own login (AnchorClient).
type pgAnchors struct {
	q      pgQuerier
	now    func() time.Time
	where  string // the DSN without its password, the anchor set's Source
	errorf func(string, ...any) error
}

// RegisterAuditChain adds chain to the set of chains, keeping an existing entry.
func (p pgAnchors) RegisterAuditChain(ctx context.Context, chain string, at time.Time) error {
	if !audit.ValidChain(chain) {
		return fmt.Errorf("register audit chain: %q is not a chain name", chain)
	}
	n, err := requiredTime(at, p.now)
	if err != nil {
		return fmt.Errorf("register audit chain %s: %w", chain, err)
	}
	if _, err := p.q.Exec(ctx, `INSERT INTO audit_chains (chain, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, chain, n); err != nil {
		return p.errorf("register audit chain %s: %w", chain, err)
	}
	return nil
}

// PutAuditSigner records a writer's certificate, keeping an existing one.
func (p pgAnchors) PutAuditSigner(ctx context.Context, sg audit.Signer) error {
	if err := validSigner(sg); err != nil {
		return fmt.Errorf("put audit signer: %w", err)
	}
	if _, err := p.q.Exec(ctx, `INSERT INTO audit_signers (key_id, chain, cert, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
		sg.KeyID, sg.Chain, sg.Cert, p.now().UnixNano()); err != nil {
		return p.errorf("put audit signer %s: %w", sg.KeyID, err)
	}
	return nil
}

// PutAuditAnchor records an anchor; the same anchor again is one row.
func (p pgAnchors) PutAuditAnchor(ctx context.Context, a audit.Anchor) error {
	if err := validAnchor(a); err != nil {
		return fmt.Errorf("put audit anchor: %w", err)
	}
	signed, err := nanos(a.Time)
	if err != nil {
		return fmt.Errorf("put audit anchor %s: %w", a.Chain, err)
	}
	if _, err := p.q.Exec(ctx, `INSERT INTO audit_anchors (chain, segment, seq, hash, bytes, key_id, signed_at, digest, digest_sha)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		a.Chain, int64(a.Segment), int64(a.Seq), a.Hash, a.Bytes, a.KeyID, signed, a.Digest, digestSHA(a)); err != nil {
		return p.errorf("put audit anchor %s seq %d: %w", a.Chain, a.Seq, err)
	}
	return nil
}

// LatestAuditAnchor returns chain's anchor with the highest seq (then segment).
func (p pgAnchors) LatestAuditAnchor(ctx context.Context, chain string) (audit.Anchor, bool, error) {
	row := p.q.QueryRow(ctx, `SELECT `+anchorColumns+` FROM audit_anchors WHERE chain = $1 ORDER BY seq DESC, segment DESC, id DESC LIMIT 1`, chain)
	a, err := scanAnchor(row.Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return audit.Anchor{}, false, nil
	}
	if err != nil {
		return audit.Anchor{}, false, p.errorf("latest audit anchor %s: %w", chain, err)
	}
	return a, true, nil
}

// AuditAnchorSet returns what verification takes from the anchors (see SQLite's).
func (p pgAnchors) AuditAnchorSet(ctx context.Context) (audit.AnchorSet, error) {
	set, err := readAnchorSet(pgQuery(ctx, p.q))
	if err != nil {
		return set, p.errorf("%w", err)
	}
	set.Source = p.where
	return set, nil
}

// AuditAnchorsAfter returns up to limit anchors of chain with a seq above after, by seq.
func (p pgAnchors) AuditAnchorsAfter(ctx context.Context, chain string, after uint64, limit int) ([]audit.Anchor, error) {
	as, err := readAnchorsAfter(pgQuery(ctx, p.q), chain, after, limit)
	if err != nil {
		return nil, p.errorf("%w", err)
	}
	return as, nil
}

// ListAuditChains returns the set of chains, by name.
func (p pgAnchors) ListAuditChains(ctx context.Context) ([]audit.ChainEntry, error) {
	cs, err := readChains(pgQuery(ctx, p.q))
	if err != nil {
		return nil, p.errorf("list audit chains: %w", err)
	}
	return cs, nil
}
