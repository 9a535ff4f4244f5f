-- Leases: detector replicas share the audit stream's partitions (see the SQLite
-- migration 0011). expires_at is Unix nanoseconds of the server's clock: every replica's
-- expiry is judged by one clock, whatever the hosts' clocks say.

CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at BIGINT NOT NULL
);
