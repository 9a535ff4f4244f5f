-- 0008: the web console's sessions and sign-in limiter (SQLite's 0009), so that several
-- console replicas on one store serve any request. Neither bumps store_version. id is
-- the SHA-256 of the session cookie's secret, never the cookie itself.
CREATE TABLE console_sessions (
	id            bytea PRIMARY KEY CHECK (length(id) = 32),
	access_key_id text NOT NULL,
	session_token text NOT NULL,
	secret_hash   bytea NOT NULL CHECK (length(secret_hash) = 32),
	principal     text NOT NULL,
	created_at    bigint NOT NULL,
	expires_at    bigint NOT NULL,
	last_seen     bigint NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_by_last_seen ON console_sessions (last_seen);

CREATE TABLE signin_limits (
	name    text PRIMARY KEY,
	tokens  double precision NOT NULL,
	at      bigint NOT NULL,
	pace    bigint NOT NULL,
	idle_at bigint NOT NULL
);
CREATE INDEX signin_limits_by_idle ON signin_limits (idle_at);

CREATE TABLE console_sso (
	id         bytea PRIMARY KEY CHECK (length(id) = 32),
	sealed     bytea NOT NULL,
	expires_at bigint NOT NULL
);
CREATE INDEX console_sso_by_expiry ON console_sso (expires_at);
