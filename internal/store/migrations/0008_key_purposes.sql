-- 0008: per-purpose storage keys and signed session tokens (issue 26).
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

-- The perimeter's CA certificates (roots and issuing CAs, public: every process builds its
-- trust from them), and certificate revocations. Both bump the version, so every process
-- takes a rotation or a revocation within a poll. Keys are named secrets (pki/root/…,
-- pki/issuing/…), each kind sealed under a storage key of its own.
CREATE TABLE ca_certificates (
	serial        TEXT PRIMARY KEY,
	der           BLOB NOT NULL,
	role          TEXT NOT NULL CHECK (role IN ('root', 'issuing')),
	not_before    INTEGER NOT NULL,
	not_after     INTEGER NOT NULL,
	distrusted_at INTEGER
) STRICT;

CREATE TABLE certificate_revocations (
	id            TEXT PRIMARY KEY,
	serial        TEXT,
	identity      TEXT,
	issued_before INTEGER,
	revoked_at    INTEGER NOT NULL,
	reason        TEXT NOT NULL
) STRICT;

CREATE TRIGGER ca_certificates_ins AFTER INSERT ON ca_certificates BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER ca_certificates_upd AFTER UPDATE ON ca_certificates BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER ca_certificates_del AFTER DELETE ON ca_certificates BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER certificate_revocations_ins AFTER INSERT ON certificate_revocations BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER certificate_revocations_upd AFTER UPDATE ON certificate_revocations BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER certificate_revocations_del AFTER DELETE ON certificate_revocations BEGIN UPDATE store_version SET version = version + 1; END;

-- A component's join token (pki.Grant as JSON: identity, names, audit chains); NULL for
-- a node's.
ALTER TABLE join_tokens ADD COLUMN grant_json TEXT;
