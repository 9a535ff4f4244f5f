-- 0009: the web console's sessions, sign-in limiter and single sign-ons in progress
-- (issue 20), so that several
-- console replicas on one store serve any request. Neither bumps store_version: no
-- snapshot is built from them, and a session is touched on every console request.
--
-- console_sessions: by the SHA-256 of the cookie's secret (id); the cookie itself is
-- never stored, so a reader of the store cannot present a session. secret_hash is the
-- SHA-256 of the secret access key signed in with (the credential is resolved again on
-- every request and must still match it).
CREATE TABLE console_sessions (
	id            BLOB PRIMARY KEY CHECK (length(id) = 32),
	access_key_id TEXT NOT NULL,
	session_token TEXT NOT NULL,
	secret_hash   BLOB NOT NULL CHECK (length(secret_hash) = 32),
	principal     TEXT NOT NULL,
	created_at    INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL,
	last_seen     INTEGER NOT NULL
) STRICT;
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_by_last_seen ON console_sessions (last_seen);

-- signin_limits: the sign-in limiter's token buckets (per source address, per access key,
-- and one for everyone); idle_at is when a bucket is full again with no pacing slot
-- ahead, after which it means nothing and is deleted.
CREATE TABLE signin_limits (
	name    TEXT PRIMARY KEY,
	tokens  REAL NOT NULL,
	at      INTEGER NOT NULL,
	pace    INTEGER NOT NULL,
	idle_at INTEGER NOT NULL
) STRICT;
CREATE INDEX signin_limits_by_idle ON signin_limits (idle_at);

-- console_sso: single sign-ons in progress (the provider's redirect back, a role still to
-- choose), by the SHA-256 of the state or choice token the browser holds; sealed is
-- AES-256-GCM under a key derived from that token, so the store never holds the PKCE
-- verifier or an ID token readably. Each row is taken (deleted) once.
CREATE TABLE console_sso (
	id         BLOB PRIMARY KEY CHECK (length(id) = 32),
	sealed     BLOB NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX console_sso_by_expiry ON console_sso (expires_at);
