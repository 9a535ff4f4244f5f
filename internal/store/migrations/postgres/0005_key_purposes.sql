-- 0005: per-purpose storage keys and signed session tokens, as SQLite's 0007.
CREATE TABLE key_checks (
	purpose text PRIMARY KEY,
	sealed  bytea NOT NULL
);

ALTER TABLE sealing_keys ADD COLUMN public_key bytea CHECK (public_key IS NULL OR length(public_key) = 32);
ALTER TABLE sealing_keys ADD COLUMN sign_sealed bytea;
