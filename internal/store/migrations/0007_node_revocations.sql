-- 0007: removing nodes. node_revocations denies every session issued to a node before
-- `before` (`phantom node revoke`), and a node whose revocation is not older than its
-- enrollment is refused altogether; nodes keep their certificate's expiry, and
-- node_contacts when each node last reached STS. Contacts do not bump store_version: no
-- snapshot is built from them and a node touches its row on every node API call.

CREATE TABLE node_revocations (
	node   TEXT PRIMARY KEY,
	before INTEGER NOT NULL
) STRICT;

ALTER TABLE nodes ADD COLUMN cert_not_after INTEGER;

CREATE TABLE node_contacts (
	node       TEXT PRIMARY KEY,
	at         INTEGER NOT NULL,
	source_ip  TEXT NOT NULL
) STRICT;

CREATE TRIGGER node_revocations_ins AFTER INSERT ON node_revocations BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER node_revocations_upd AFTER UPDATE ON node_revocations BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER node_revocations_del AFTER DELETE ON node_revocations BEGIN UPDATE store_version SET version = version + 1; END;
