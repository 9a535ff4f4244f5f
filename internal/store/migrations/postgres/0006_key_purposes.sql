-- 0006: per-purpose storage keys and signed session tokens, as SQLite's 0008.
CREATE TABLE key_checks (
	purpose text PRIMARY KEY,
	sealed  bytea NOT NULL
);

ALTER TABLE sealing_keys ADD COLUMN public_key bytea CHECK (public_key IS NULL OR length(public_key) = 32);
ALTER TABLE sealing_keys ADD COLUMN sign_sealed bytea;

-- The CA's certificates and certificate revocations, as SQLite's 0008.
CREATE TABLE ca_certificates (
	serial        text PRIMARY KEY,
	der           bytea NOT NULL,
	role          text NOT NULL CHECK (role IN ('root', 'issuing')),
	not_before    bigint NOT NULL,
	not_after     bigint NOT NULL,
	distrusted_at bigint
);

CREATE TABLE certificate_revocations (
	id            text PRIMARY KEY,
	serial        text,
	identity      text,
	issued_before bigint,
	revoked_at    bigint NOT NULL,
	reason        text NOT NULL
);

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['ca_certificates', 'certificate_revocations']
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

ALTER TABLE join_tokens ADD COLUMN grant_json text;
