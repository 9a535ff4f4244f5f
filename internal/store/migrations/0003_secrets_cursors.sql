-- 0003: named secrets (the CA, when several replicas share the store) and the audit
-- cursors that make the detector's consumption exactly-once. Neither bumps store_version:
-- no in-memory snapshot is built from them, and a cursor moves on every detector batch.

-- sealed is the value sealed under the master key, bound to the secret's name.
CREATE TABLE secrets (
	name       TEXT PRIMARY KEY,
	sealed     BLOB NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_cursors (
	consumer   TEXT NOT NULL,
	chain      TEXT NOT NULL,
	seq        INTEGER NOT NULL CHECK (seq >= 0),
	hash       TEXT NOT NULL,
	events     INTEGER NOT NULL CHECK (events >= 0),
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (consumer, chain)
) STRICT;
