-- 0007: per-purpose storage keys and signed session tokens (issue 26).
-- key_checks holds, per storage purpose (keys.Store*), a known value sealed under that
-- purpose's key: a component key file of another perimeter is refused at open.
CREATE TABLE key_checks (
	purpose TEXT PRIMARY KEY,
	sealed  BLOB NOT NULL
) STRICT;

-- A sealing key's Ed25519 pair: sign_sealed (the seed, sealed under the token-signing
-- storage key) signs session tokens; public_key checks them. NULL for keys made before.
ALTER TABLE sealing_keys ADD COLUMN public_key BLOB CHECK (public_key IS NULL OR length(public_key) = 32);
ALTER TABLE sealing_keys ADD COLUMN sign_sealed BLOB;
