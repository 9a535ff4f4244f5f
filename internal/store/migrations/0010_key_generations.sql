-- 0010: generations of the storage keys (issue 26). A row per generation of a storage
-- purpose (keys.Generation) the operator made: a staged one is carried by key files
-- exported from then on but seals nothing yet, the current one seals, a retiring one
-- still opens what it sealed, a retired one opens nothing. A purpose
-- with no row is at generation 1, current. Changes bump the version, so every process
-- seals under the new generation within a poll.
CREATE TABLE key_generations (
	purpose    TEXT NOT NULL,
	generation INTEGER NOT NULL CHECK (generation >= 1),
	state      TEXT NOT NULL CHECK (state IN ('staged', 'current', 'retiring', 'retired')),
	changed_at INTEGER NOT NULL,
	PRIMARY KEY (purpose, generation)
) STRICT;

CREATE TRIGGER key_generations_ins AFTER INSERT ON key_generations BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER key_generations_upd AFTER UPDATE ON key_generations BEGIN UPDATE store_version SET version = version + 1; END;
CREATE TRIGGER key_generations_del AFTER DELETE ON key_generations BEGIN UPDATE store_version SET version = version + 1; END;
