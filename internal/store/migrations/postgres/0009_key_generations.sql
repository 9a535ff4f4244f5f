-- 0009: generations of the storage keys, as SQLite's 0010.
CREATE TABLE key_generations (
	purpose    text NOT NULL,
	generation integer NOT NULL CHECK (generation >= 1),
	state      text NOT NULL CHECK (state IN ('staged', 'current', 'retiring', 'retired')),
	changed_at bigint NOT NULL,
	PRIMARY KEY (purpose, generation)
);

CREATE TRIGGER key_generations_ins AFTER INSERT ON key_generations REFERENCING NEW TABLE AS changed
	FOR EACH STATEMENT EXECUTE FUNCTION phantom_store_changed();
CREATE TRIGGER key_generations_upd AFTER UPDATE ON key_generations REFERENCING NEW TABLE AS changed
	FOR EACH STATEMENT EXECUTE FUNCTION phantom_store_changed();
CREATE TRIGGER key_generations_del AFTER DELETE ON key_generations REFERENCING OLD TABLE AS changed
	FOR EACH STATEMENT EXECUTE FUNCTION phantom_store_changed();

-- Component roles made before this migration (phantom store roles) read the key checks:
-- they read the generations too, or their processes could not follow a rotation.
DO $$
DECLARE
	r text;
BEGIN
	FOR r IN SELECT DISTINCT grantee FROM information_schema.role_table_grants
		WHERE table_schema = current_schema() AND table_name = 'key_checks' AND privilege_type = 'SELECT'
			AND grantee <> current_user
	LOOP
		EXECUTE format('GRANT SELECT ON key_generations TO %I', r);
	END LOOP;
END
$$;
