-- 0004: the signatures the gateway's replay guard (gateway.replayProtection) has seen,
-- by the SHA-256 of the signature, each kept until no verifier accepts it any more.
-- Replicas sharing the store share the guard. Not counted in store_version: no snapshot
-- is built from it, and it changes on every guarded call.
CREATE TABLE used_signatures (
	id         TEXT PRIMARY KEY,
	expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX used_signatures_by_expiry ON used_signatures (expires_at);
