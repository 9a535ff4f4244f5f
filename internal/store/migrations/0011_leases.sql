-- 0011: leases. Detector replicas share the audit stream's partitions: each partition
-- is held by one replica (holder) until expires_at (Unix nanoseconds), renewed while it
-- runs; a replica that dies lets its leases expire and another takes them. Leases do not
-- bump store_version: no snapshot is built from them.

CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;
