-- 0005: audit anchors (package audit). At every digest each audit chain's writer records
-- the chain's head, the signed digest line itself, so that a chain cut back, emptied,
-- replaced or deleted is found by comparing the chain with its anchors; the store also
-- keeps the set of chains, the writers' certificates, and the checkpoints `phantom audit
-- prune` leaves. All four tables are append-only: the triggers refuse UPDATE and DELETE
-- (SQLite has no TRUNCATE; DELETE without WHERE fires the trigger too). Whoever can
-- write phantom.db itself can still rewrite them: on one host, the anchors protect
-- against everything but the owner of the data directory (docs/audit.md). None of them
-- bumps store_version.

CREATE TABLE audit_chains (
	chain      TEXT PRIMARY KEY,
	created_at INTEGER NOT NULL
) STRICT;

-- digest_sha is the hex SHA-256 of digest: a retried insert of the same anchor is one
-- row, and nobody can take an anchor's place without its exact signed line.
CREATE TABLE audit_anchors (
	id          INTEGER PRIMARY KEY,
	chain       TEXT NOT NULL,
	segment     INTEGER NOT NULL CHECK (segment > 0),
	seq         INTEGER NOT NULL CHECK (seq >= 0),
	hash        TEXT NOT NULL,
	bytes       INTEGER NOT NULL CHECK (bytes >= 0),
	key_id      TEXT NOT NULL,
	signed_at   INTEGER NOT NULL,
	digest      TEXT NOT NULL,
	digest_sha  TEXT NOT NULL UNIQUE,
	recorded_at INTEGER NOT NULL
) STRICT;
CREATE INDEX audit_anchors_head ON audit_anchors (chain, seq DESC, segment DESC);
CREATE INDEX audit_anchors_segment ON audit_anchors (chain, segment, seq DESC);

CREATE TABLE audit_signers (
	key_id     TEXT PRIMARY KEY,
	chain      TEXT NOT NULL,
	cert       BLOB NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_checkpoints (
	id         INTEGER PRIMARY KEY,
	chain      TEXT NOT NULL,
	segment    INTEGER NOT NULL CHECK (segment > 0),
	seq        INTEGER NOT NULL CHECK (seq > 0),
	hash       TEXT NOT NULL,
	before     INTEGER NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TRIGGER audit_chains_append_only_upd BEFORE UPDATE ON audit_chains
	BEGIN SELECT RAISE(ABORT, 'audit_chains is append-only'); END;
CREATE TRIGGER audit_chains_append_only_del BEFORE DELETE ON audit_chains
	BEGIN SELECT RAISE(ABORT, 'audit_chains is append-only'); END;
CREATE TRIGGER audit_anchors_append_only_upd BEFORE UPDATE ON audit_anchors
	BEGIN SELECT RAISE(ABORT, 'audit_anchors is append-only'); END;
CREATE TRIGGER audit_anchors_append_only_del BEFORE DELETE ON audit_anchors
	BEGIN SELECT RAISE(ABORT, 'audit_anchors is append-only'); END;
CREATE TRIGGER audit_signers_append_only_upd BEFORE UPDATE ON audit_signers
	BEGIN SELECT RAISE(ABORT, 'audit_signers is append-only'); END;
CREATE TRIGGER audit_signers_append_only_del BEFORE DELETE ON audit_signers
	BEGIN SELECT RAISE(ABORT, 'audit_signers is append-only'); END;
CREATE TRIGGER audit_checkpoints_append_only_upd BEFORE UPDATE ON audit_checkpoints
	BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_append_only_del BEFORE DELETE ON audit_checkpoints
	BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;

-- The spec each process enforces, for finding replicas that disagree (cmd/phantom):
-- one row per process, refreshed every poll; rows not seen for an hour are removed.
CREATE TABLE spec_replicas (
	id        TEXT PRIMARY KEY,
	process   TEXT NOT NULL,
	host      TEXT NOT NULL,
	digest    TEXT NOT NULL,
	file      TEXT NOT NULL,
	loaded_at INTEGER NOT NULL,
	seen_at   INTEGER NOT NULL
) STRICT;
