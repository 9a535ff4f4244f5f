-- 0002: the signatures the gateway's replay guard (gateway.replayProtection) has seen,
-- as SQLite's 0004: by the SHA-256 of the signature, kept until no verifier accepts it.
CREATE TABLE used_signatures (
	id         text PRIMARY KEY,
	expires_at bigint NOT NULL
);
CREATE INDEX used_signatures_by_expiry ON used_signatures (expires_at);
