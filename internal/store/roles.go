package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// Per-component PostgreSQL roles (`phantom store roles`): each kind of process logs in
// with a role granted only the tables and operations its job needs, so a host's store
// login cannot do more than its key file (docs/threat-model.md, zone "store"). Only the
// owner (the operator's login) deletes security state: revocations, keys, certificates,
// CA rows, findings. Short-lived bookkeeping is deleted by components: used_signatures
// (a replay guard's expired entries), spec_replicas (replicas not seen for a while),
// console_sessions, console_sso and signin_limits (the console's: signed out, ended,
// used or idle); join_tokens are deleted by STS as it spends them (single use).

// componentGrants lists, per component, the table privileges on top of commonGrants.
// Columns in parentheses limit a privilege to them (PostgreSQL column privileges).
var componentGrants = map[keys.Component][]string{
	// STS verifies SigV4 and sessions, issues sessions (sealing keys: it may make the
	// first), spends join tokens, enrolls and contacts nodes, issues from the issuing CA's
	// key (secrets), checks MFA codes.
	keys.STS: {
		`SELECT ON access_keys, sealing_keys, join_tokens, nodes, node_contacts, mfa_devices, secrets`,
		`INSERT, UPDATE (retire_after) ON sealing_keys`,
		`DELETE ON join_tokens`,
		`INSERT, UPDATE ON nodes, node_contacts`,
		`UPDATE (last_step, failures, enabled_at) ON mfa_devices`,
		`SELECT, INSERT, UPDATE, DELETE ON used_signatures`,
	},
	// The gateway verifies SigV4 (users' keys) and opens sessions: reads only, and its
	// replay guard.
	keys.Gateway: {
		`SELECT ON access_keys, sealing_keys`,
		`SELECT, INSERT, UPDATE, DELETE ON used_signatures`,
	},
	// The endpoint and the egress proxy read the trust and revocations only.
	keys.Endpoint: {},
	keys.Egress:   {},
	// The detector writes findings, their responses and risk levels, advances its
	// cursors, revokes sessions and disables keys (its responses): it reads no secret
	// column of access_keys, and deletes nothing.
	keys.Detector: {
		`SELECT, INSERT, UPDATE ON findings, finding_responses, audit_cursors`,
		`SELECT, INSERT, UPDATE, DELETE ON leases`,
		`INSERT, UPDATE ON risk_levels, revocations`,
		`SELECT (id, user_name, status, created_at, last_used_at), UPDATE (status) ON access_keys`,
	},
	// The console signs people in (access keys, sessions), shows and archives findings,
	// and keeps its own sessions and sign-in limiter, shared by its replicas: a session
	// row is written once and only its last use moves after.
	keys.Console: {
		`SELECT ON access_keys, sealing_keys, findings, finding_responses, node_contacts`,
		`UPDATE (archived, updated_at) ON findings`,
		`SELECT, INSERT, UPDATE, DELETE ON used_signatures`,
		`SELECT, INSERT, DELETE, UPDATE (last_seen) ON console_sessions`,
		`SELECT, INSERT, DELETE ON console_sso`,
		`SELECT, INSERT, UPDATE, DELETE ON signin_limits`,
	},
}

// commonGrants are every component's: the schema's bookkeeping, the trust (CA
// certificates, revocations of certificates, sessions and nodes, risk levels), the audit
// anchors a writer appends (AuditWriterGrants) and the spec agreement.
var commonGrants = []string{
	`USAGE ON SCHEMA ` + currentSchema,
	`SELECT ON schema_migrations, store_version, master_key_check, key_checks, key_generations, ca_certificates, certificate_revocations,
		revocations, node_revocations, nodes, risk_levels, audit_checkpoints`,
	// A write to a watched table bumps the change counter (phantom_store_changed runs as
	// the writer).
	`UPDATE (version) ON store_version`,
	`SELECT, INSERT ON audit_chains, audit_anchors, audit_signers`,
	`SELECT, INSERT, UPDATE, DELETE ON spec_replicas`,
}

// ComponentGrants are the statements that grant role component c's privileges in the
// current schema (the schema's name is filled in when they run).
func ComponentGrants(c keys.Component, role string) ([]string, error) {
	extra, ok := componentGrants[c]
	if !ok {
		return nil, fmt.Errorf("no store role for component %q (one of %v)", c, RoleComponents())
	}
	r := pgx.Identifier{role}.Sanitize()
	var out []string
	for _, g := range append(slices.Clone(commonGrants), extra...) {
		out = append(out, `GRANT `+g+` TO `+r)
	}
	return out, nil
}

// RoleComponents are the components that get a store role (the operator's login owns the
// tables).
func RoleComponents() []keys.Component {
	var out []keys.Component
	for c := range componentGrants {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// GrantComponent makes role component c's store role in the store's schema: everything
// granted to it before in the schema is revoked, then ComponentGrants are granted. With
// create, a missing role is created (LOGIN, no password: the operator sets one, or
// authenticates it by certificate), which needs CREATEROLE. The store's login must own
// the tables.
func (p *Postgres) GrantComponent(ctx context.Context, c keys.Component, role string, create bool) error {
	if err := validName(role); err != nil {
		return fmt.Errorf("grant %s role: %w", c, err)
	}
	stmts, err := ComponentGrants(c, role)
	if err != nil {
		return err
	}
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return p.errorf("grant %s role %s: %w", c, role, err)
	}
	defer tx.Rollback(context.Background())
	r := pgx.Identifier{role}.Sanitize()
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return p.errorf("grant %s role %s: %w", c, role, err)
	}
	switch {
	case !exists && !create:
		return fmt.Errorf("grant %s role: role %q does not exist (pass --create, or CREATE ROLE %s LOGIN PASSWORD '…' first)", c, role, r)
	case !exists:
		if _, err := tx.Exec(ctx, `CREATE ROLE `+r+` LOGIN`); err != nil {
			return p.errorf("create role %s (the store's login needs CREATEROLE): %w", role, err)
		}
	}
	var schema string
	if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return p.errorf("grant %s role %s: %w", c, role, err)
	}
	s := pgx.Identifier{schema}.Sanitize()
	// What the role held before goes: a role moved from one component to another keeps
	// nothing of the first.
	for _, stmt := range []string{`REVOKE ALL ON ALL TABLES IN SCHEMA ` + s + ` FROM ` + r, `REVOKE ALL ON ALL SEQUENCES IN SCHEMA ` + s + ` FROM ` + r} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return p.errorf("grant %s role %s: %w", c, role, err)
		}
	}
	for _, stmt := range stmts {
		if _, err := tx.Exec(ctx, replaceSchema(stmt, s)); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42704" {
				return fmt.Errorf("grant %s role: role %q does not exist", c, role)
			}
			return p.errorf("grant %s role %s: %s: %w", c, role, strings.Join(strings.Fields(stmt), " "), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return p.errorf("grant %s role %s: %w", c, role, err)
	}
	return nil
}
