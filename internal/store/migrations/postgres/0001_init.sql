-- 0001: the PostgreSQL schema, equivalent to SQLite's migrations 0001 to 0003. PostgreSQL
-- keeps its own numbering: the two backends' schemas are migrated independently.
-- Times are Unix nanoseconds (UTC) in bigint, as in SQLite; NULL means "not set". Secrets
-- are sealed blobs (AES-256-GCM under a key derived from the master key, bound to the
-- row's id), byte for byte what SQLite stores.
-- Everything is created in the current schema (the first of search_path), so one
-- database can hold several perimeters (and tests) side by side.

CREATE TABLE store_version (
	id      integer PRIMARY KEY CHECK (id = 1),
	version bigint NOT NULL
);
INSERT INTO store_version (id, version) VALUES (1, 0);

-- A known value sealed under the master key: opening with another key fails at once.
CREATE TABLE master_key_check (
	id     integer PRIMARY KEY CHECK (id = 1),
	sealed bytea NOT NULL
);

CREATE TABLE access_keys (
	id            text PRIMARY KEY,
	user_name     text NOT NULL,
	secret_sealed bytea NOT NULL,
	status        text NOT NULL CHECK (status IN ('Active', 'Inactive')),
	created_at    bigint NOT NULL,
	last_used_at  bigint
);
CREATE INDEX access_keys_by_user ON access_keys (user_name, created_at, id);

-- seq orders keys created in the same nanosecond, as SQLite's rowid does.
CREATE TABLE sealing_keys (
	id           text PRIMARY KEY,
	seq          bigint GENERATED ALWAYS AS IDENTITY,
	key_sealed   bytea NOT NULL,
	created_at   bigint NOT NULL,
	retire_after bigint
);

CREATE TABLE revocations (
	role   text PRIMARY KEY,
	before bigint NOT NULL
);

CREATE TABLE join_tokens (
	id         text PRIMARY KEY,
	hash       bytea NOT NULL CHECK (length(hash) = 32),
	node       text NOT NULL,
	created_at bigint NOT NULL,
	expires_at bigint NOT NULL
);

CREATE TABLE nodes (
	name        text PRIMARY KEY,
	role        text NOT NULL,
	cert_serial text NOT NULL,
	enrolled_at bigint NOT NULL
);

-- A finding's GuardDuty-shaped JSON document is kept byte for byte (bytea, not jsonb,
-- which would reformat it); the columns beside it are what listing filters and sorts on.
CREATE TABLE findings (
	id         text PRIMARY KEY,
	type       text NOT NULL,
	severity   double precision NOT NULL,
	principal  text NOT NULL,
	archived   boolean NOT NULL,
	created_at bigint NOT NULL,
	updated_at bigint NOT NULL,
	document   bytea NOT NULL
);
CREATE INDEX findings_by_updated ON findings (archived, updated_at DESC, id);
CREATE INDEX findings_by_type ON findings (type, updated_at DESC);
CREATE INDEX findings_by_principal ON findings (principal);

CREATE TABLE finding_responses (
	finding_id text NOT NULL REFERENCES findings (id) ON DELETE CASCADE,
	action     text NOT NULL,
	applied_at bigint NOT NULL,
	PRIMARY KEY (finding_id, action)
);

CREATE TABLE risk_levels (
	principal  text PRIMARY KEY,
	level      text NOT NULL,
	finding_id text NOT NULL,
	set_at     bigint NOT NULL
);

-- Named secrets and audit cursors do not bump the version (see SQLite's 0003).
CREATE TABLE secrets (
	name       text PRIMARY KEY,
	sealed     bytea NOT NULL,
	created_at bigint NOT NULL
);

CREATE TABLE audit_cursors (
	consumer   text NOT NULL,
	chain      text NOT NULL,
	seq        bigint NOT NULL CHECK (seq >= 0),
	hash       text NOT NULL,
	events     bigint NOT NULL CHECK (events >= 0),
	updated_at bigint NOT NULL,
	PRIMARY KEY (consumer, chain)
);

-- The channel a schema's changes are announced on. Derived from the schema's name so
-- perimeters (and tests) sharing a database do not wake each other; hashed because
-- channel names are identifiers, limited to 63 bytes, and schema names can use them all.
CREATE FUNCTION phantom_store_channel(schema_name text) RETURNS text
	LANGUAGE sql IMMUTABLE STRICT
	AS $$ SELECT 'phantom_store_' || md5(schema_name) $$;

-- Bumps the change counter and announces it, once per statement that changed at least
-- one row. Statement-level (not per row) so a bulk statement bumps once; the transition
-- table "changed" tells a statement that changed rows from one that matched none (an
-- UPDATE of a missing row must not look like a change). The notification is delivered at
-- commit, and only if the transaction commits. search_path is pinned to this schema so
-- the trigger finds store_version whatever the writing session's search_path is.
CREATE FUNCTION phantom_store_changed() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path FROM CURRENT
	AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM changed) THEN
		UPDATE store_version SET version = version + 1 WHERE id = 1;
		PERFORM pg_notify(phantom_store_channel(TG_TABLE_SCHEMA), '');
	END IF;
	RETURN NULL;
END
$$;

-- A trigger with a transition table handles one event, hence three per table.
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['access_keys', 'sealing_keys', 'revocations', 'join_tokens', 'nodes',
		'findings', 'finding_responses', 'risk_levels']
	LOOP
		EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS changed
			FOR EACH STATEMENT EXECUTE FUNCTION phantom_store_changed()', t || '_ins', t);
		EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS changed
			FOR EACH STATEMENT EXECUTE FUNCTION phantom_store_changed()', t || '_upd', t);
		EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS changed
			FOR EACH STATEMENT EXECUTE FUNCTION phantom_store_changed()', t || '_del', t);
	END LOOP;
END
$$;
