-- 0003: audit anchors (see SQLite's 0005): the set of chains, the writers' certificates,
-- every digest's head, and prune checkpoints. Append-only twice over: the roles audit
-- writers log in with get INSERT and SELECT only (AuditWriterGrants, `phantom audit
-- anchors grant`), and these triggers refuse UPDATE, DELETE and TRUNCATE for every role,
-- the owner's included (only the owner or a superuser can drop a trigger: keep the
-- writers' logins apart from the owner's). None of them bumps store_version.

CREATE TABLE audit_chains (
	chain      text PRIMARY KEY,
	created_at bigint NOT NULL
);

CREATE TABLE audit_anchors (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	chain       text NOT NULL,
	segment     bigint NOT NULL CHECK (segment > 0),
	seq         bigint NOT NULL CHECK (seq >= 0),
	hash        text NOT NULL,
	bytes       bigint NOT NULL CHECK (bytes >= 0),
	key_id      text NOT NULL,
	signed_at   bigint NOT NULL,
	digest      text NOT NULL,
	digest_sha  text NOT NULL UNIQUE,
	-- The server's clock, not the writer's: when the anchor reached the store.
	recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_anchors_head ON audit_anchors (chain, seq DESC, segment DESC);
CREATE INDEX audit_anchors_segment ON audit_anchors (chain, segment, seq DESC);

CREATE TABLE audit_signers (
	key_id     text PRIMARY KEY,
	chain      text NOT NULL,
	cert       bytea NOT NULL,
	created_at bigint NOT NULL
);

CREATE TABLE audit_checkpoints (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	chain      text NOT NULL,
	segment    bigint NOT NULL CHECK (segment > 0),
	seq        bigint NOT NULL CHECK (seq > 0),
	hash       text NOT NULL,
	before     bigint NOT NULL,
	created_at bigint NOT NULL
);

CREATE FUNCTION phantom_audit_append_only() RETURNS trigger
	LANGUAGE plpgsql
	AS $$
BEGIN
	RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
		USING ERRCODE = 'insufficient_privilege';
END
$$;

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['audit_chains', 'audit_anchors', 'audit_signers', 'audit_checkpoints']
	LOOP
		EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I
			FOR EACH ROW EXECUTE FUNCTION phantom_audit_append_only()', t || '_append_only', t);
		EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I
			FOR EACH STATEMENT EXECUTE FUNCTION phantom_audit_append_only()', t || '_no_truncate', t);
	END LOOP;
END
$$;

-- The spec each process enforces (see SQLite's 0005).
CREATE TABLE spec_replicas (
	id        text PRIMARY KEY,
	process   text NOT NULL,
	host      text NOT NULL,
	digest    text NOT NULL,
	file      text NOT NULL,
	loaded_at bigint NOT NULL,
	seen_at   bigint NOT NULL
);
