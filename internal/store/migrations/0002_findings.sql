-- 0002: detection findings, the responses applied to them, and principals' risk levels.
-- A finding is kept as its GuardDuty-shaped JSON document; the columns beside it are what
-- listing filters and sorts on. archived is authoritative (the document's copy is not).

CREATE TABLE findings (
	id         TEXT PRIMARY KEY,
	type       TEXT NOT NULL,
	severity   REAL NOT NULL,
	principal  TEXT NOT NULL,
	archived   INTEGER NOT NULL CHECK (archived IN (0, 1)),
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	document   BLOB NOT NULL
) STRICT;
CREATE INDEX findings_by_updated ON findings (archived, updated_at DESC, id);
CREATE INDEX findings_by_type ON findings (type, updated_at DESC);
CREATE INDEX findings_by_principal ON findings (principal);

-- One row per (finding, action) a response applied, so a repeat of the finding (a count
-- bump) never applies the same action twice, across restarts and processes.
CREATE TABLE finding_responses (
	finding_id TEXT NOT NULL REFERENCES findings (id) ON DELETE CASCADE,
	action     TEXT NOT NULL,
	applied_at INTEGER NOT NULL,
	PRIMARY KEY (finding_id, action)
) STRICT;

-- phantom:RiskLevel per principal ARN, with the finding that set it.
CREATE TABLE risk_levels (
	principal  TEXT PRIMARY KEY,
	level      TEXT NOT NULL,
	finding_id TEXT NOT NULL,
	set_at     INTEGER NOT NULL
) STRICT;

CREATE TRIGGER findings_ins AFTER INSERT ON findings BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER findings_upd AFTER UPDATE ON findings BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER findings_del AFTER DELETE ON findings BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER finding_responses_ins AFTER INSERT ON finding_responses BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER finding_responses_del AFTER DELETE ON finding_responses BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER risk_levels_ins AFTER INSERT ON risk_levels BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER risk_levels_upd AFTER UPDATE ON risk_levels BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER risk_levels_del AFTER DELETE ON risk_levels BEGIN UPDATE store_version SET version = version + 1; END;
