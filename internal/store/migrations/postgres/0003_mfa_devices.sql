-- 0003: virtual MFA devices, as SQLite's 0005. seed_sealed is the TOTP seed sealed under
-- the master key, bound to the serial number; user_name is '' while the device is not
-- enabled; last_step is the highest TOTP step accepted, so a code is taken at most once
-- across replicas; failures counts attempts since the last accepted code. Nothing bumps
-- store_version: no snapshot is built from these rows.
CREATE TABLE mfa_devices (
	serial      text PRIMARY KEY,
	user_name   text NOT NULL,
	seed_sealed bytea NOT NULL,
	created_at  bigint NOT NULL,
	enabled_at  bigint,
	last_step   bigint NOT NULL CHECK (last_step >= 0),
	failures    integer NOT NULL CHECK (failures >= 0)
);
CREATE INDEX mfa_devices_by_user ON mfa_devices (user_name, serial);
