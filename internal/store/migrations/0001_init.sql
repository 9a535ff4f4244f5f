-- 0001: access keys, sealing keys, revocations, join tokens, nodes, and the change counter.
-- Times are Unix nanoseconds (UTC); NULL means "not set". Secrets are sealed blobs
-- (AES-256-GCM under a key derived from the master key, bound to the row's id).

CREATE TABLE store_version (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	version INTEGER NOT NULL
) STRICT;
INSERT INTO store_version (id, version) VALUES (1, 0);

-- A known value sealed under the master key: opening with another key fails at once.
CREATE TABLE master_key_check (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	sealed BLOB NOT NULL
) STRICT;

CREATE TABLE access_keys (
	id            TEXT PRIMARY KEY,
	user_name     TEXT NOT NULL,
	secret_sealed BLOB NOT NULL,
	status        TEXT NOT NULL CHECK (status IN ('Active', 'Inactive')),
	created_at    INTEGER NOT NULL,
	last_used_at  INTEGER
) STRICT;
CREATE INDEX access_keys_by_user ON access_keys (user_name, created_at, id);

CREATE TABLE sealing_keys (
	id           TEXT PRIMARY KEY,
	key_sealed   BLOB NOT NULL,
	created_at   INTEGER NOT NULL,
	retire_after INTEGER
) STRICT;

CREATE TABLE revocations (
	role   TEXT PRIMARY KEY,
	before INTEGER NOT NULL
) STRICT;

CREATE TABLE join_tokens (
	id         TEXT PRIMARY KEY,
	hash       BLOB NOT NULL CHECK (length(hash) = 32),
	node       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE nodes (
	name        TEXT PRIMARY KEY,
	role        TEXT NOT NULL,
	cert_serial TEXT NOT NULL,
	enrolled_at INTEGER NOT NULL
) STRICT;

-- Every change to a table above bumps the counter, so no write path can forget to.
CREATE TRIGGER access_keys_ins AFTER INSERT ON access_keys BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER access_keys_upd AFTER UPDATE ON access_keys BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER access_keys_del AFTER DELETE ON access_keys BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER sealing_keys_ins AFTER INSERT ON sealing_keys BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER sealing_keys_upd AFTER UPDATE ON sealing_keys BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER sealing_keys_del AFTER DELETE ON sealing_keys BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER revocations_ins AFTER INSERT ON revocations BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER revocations_upd AFTER UPDATE ON revocations BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER revocations_del AFTER DELETE ON revocations BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER join_tokens_ins AFTER INSERT ON join_tokens BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER join_tokens_upd AFTER UPDATE ON join_tokens BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER join_tokens_del AFTER DELETE ON join_tokens BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER nodes_ins AFTER INSERT ON nodes BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER nodes_upd AFTER UPDATE ON nodes BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER nodes_del AFTER DELETE ON nodes BEGIN UPDATE store_version SET version = version + 1; END;
