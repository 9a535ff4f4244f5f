-- 0005: removing nodes (SQLite's 0007): node_revocations, the node certificate's expiry,
-- and node_contacts, which does not bump the version.

CREATE TABLE node_revocations (
	node   text PRIMARY KEY,
	before bigint NOT NULL
);

ALTER TABLE nodes ADD COLUMN cert_not_after bigint;

CREATE TABLE node_contacts (
	node      text PRIMARY KEY,
	at        bigint NOT NULL,
	source_ip text NOT NULL
);

CREATE TRIGGER node_revocations_ins AFTER INSERT ON node_revocations REFERENCING NEW TABLE AS changed
	FOR EACH STATEMENT EXECUTE FUNCTION phantom_store_changed();
CREATE TRIGGER node_revocations_upd AFTER UPDATE ON node_revocations REFERENCING NEW TABLE AS changed
	FOR EACH STATEMENT EXECUTE FUNCTION phantom_store_changed();
CREATE TRIGGER node_revocations_del AFTER DELETE ON node_revocations REFERENCING OLD TABLE AS changed
	FOR EACH STATEMENT EXECUTE FUNCTION phantom_store_changed();
