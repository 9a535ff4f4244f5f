-- 0005: virtual MFA devices. seed_sealed is the TOTP seed sealed under the master key,
-- bound to the serial number. user_name is '' while the device is not enabled for a user.
-- last_step is the highest TOTP time step accepted (0: none), so a code is taken at most
-- once across replicas; failures counts attempts since the last accepted code.
-- No trigger bumps store_version: no in-memory snapshot is built from these rows (STS
-- reads a device when a call names it), and a counter bump on every code would make every
-- replica reload its credentials for nothing.
CREATE TABLE mfa_devices (
	serial      TEXT PRIMARY KEY,
	user_name   TEXT NOT NULL,
	seed_sealed BLOB NOT NULL,
	created_at  INTEGER NOT NULL,
	enabled_at  INTEGER,
	last_step   INTEGER NOT NULL CHECK (last_step >= 0),
	failures    INTEGER NOT NULL CHECK (failures >= 0)
) STRICT;
CREATE INDEX mfa_devices_by_user ON mfa_devices (user_name, serial);
