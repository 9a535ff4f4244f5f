package store_test

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// TestPostgresComponentRoles: each component's store role (phantom store roles), logged
// in with its own credentials and its key file, does its job, and the inside attacks of
// docs/threat-model.md (E5, D1, S1) are refused by the server: a revocation removed or
// weakened, a disabled key re-enabled, a CA certificate or a certificate revocation
// changed, a finding cleared, a secret read or planted. On the old code every process
// logged in as the owner and every statement below succeeded.
func TestPostgresComponentRoles(t *testing.T) {
	dsn, _ := newSchema(t)
	mk := newMasterKey(t)
	owner := mustOpenPostgres(t, dsn, mk)
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The state an attacker would undo.
	pub, seed, _ := ed25519.GenerateKey(nil)
	must(owner.PutAccessKey(ctx, store.AccessKey{ID: "AKIAAAAAAAAAAAAAAAAB", User: "alice", Secret: "0123456789012345678901234567890123456789", Status: store.StatusActive}))
	must(owner.UpdateAccessKeyStatus(ctx, "AKIAAAAAAAAAAAAAAAAB", store.StatusInactive))
	must(owner.PutSealingKey(ctx, store.SealingKey{ID: "k1", Key: bytes.Repeat([]byte{9}, 32), SigningSeed: seed.Seed(), PublicKey: pub, CreatedAt: time.Unix(1, 0)}))
	must(owner.PutRevocation(ctx, store.Revocation{Role: "arn:aws:iam::123456789012:role/app", Before: time.Unix(1000, 0)}))
	must(owner.PutRevocation(ctx, store.Revocation{Node: "node-1", Before: time.Unix(1000, 0)}))
	must(owner.PutFinding(ctx, store.Finding{ID: "f1", Type: "Recon:IAMUser/Test", Severity: 5, Document: []byte(`{}`), CreatedAt: time.Unix(1, 0), UpdatedAt: time.Unix(1, 0)}))
	ca, err := pki.OpenAuthority(ctx, pki.AuthorityConfig{Config: pki.Config{Account: "123456789012"}, Issue: true, Root: true}, owner)
	must(err)
	must(ca.Revoke(ctx, pki.Revocation{Identity: pki.Identity{Account: "123456789012", Kind: pki.KindEndpoint, Name: "vpce-0123456789abcdef0"}, IssuedBefore: time.Now(), RevokedAt: time.Now(), Reason: "test"}))

	// Refused for every component.
	everyone := []string{
		`DELETE FROM revocations`,
		`DELETE FROM node_revocations`,
		`UPDATE node_revocations SET before = 0`,
		`DELETE FROM certificate_revocations`,
		`UPDATE certificate_revocations SET issued_before = 0`,
		`DELETE FROM ca_certificates`,
		`UPDATE ca_certificates SET distrusted_at = NULL`,
		`INSERT INTO ca_certificates (serial, der, role, not_before, not_after) VALUES ('ff', '\x00', 'root', 0, 1)`,
		`DELETE FROM findings`,
		`DELETE FROM access_keys`,
		`INSERT INTO access_keys (id, user_name, secret_sealed, status, created_at) VALUES ('AKIAAAAAAAAAAAAAAAAC', 'mallory', '\x00', 'Active', 0)`,
		`DELETE FROM sealing_keys`,
		`DELETE FROM risk_levels`,
		`DELETE FROM nodes`,
		`INSERT INTO secrets (name, sealed, created_at) VALUES ('pki/issuing/ff', '\x00', 0)`,
		`INSERT INTO join_tokens (id, hash, node, created_at, expires_at) VALUES ('x', '\x0000000000000000000000000000000000000000000000000000000000000000', 'n', 0, 1)`,
		`INSERT INTO mfa_devices (serial, user_name, seed_sealed, created_at, last_step, failures) VALUES ('s', 'u', '\x00', 0, 0, 0)`,
		// Storage key generations are the operator's: no component rotates, retires or
		// revives one, nor records a key check.
		`INSERT INTO key_generations (purpose, generation, state, changed_at) VALUES ('store-access-keys', 9, 'current', 0)`,
		`UPDATE key_generations SET state = 'current'`,
		`DELETE FROM key_generations`,
		`INSERT INTO key_checks (purpose, sealed) VALUES ('store-access-keys#9', '\x00')`,
		`DROP TABLE revocations`,
		`ALTER TABLE revocations DISABLE TRIGGER USER`,
		`CREATE TABLE mine (x int)`,
	}
	for _, tc := range []struct {
		c        keys.Component
		refused  []string
		can      func(t *testing.T, s *store.Postgres)
		canWrite []string // statements the role's job needs, run raw
	}{
		{c: keys.Endpoint, refused: []string{
			`UPDATE access_keys SET status = 'Active'`, `SELECT secret_sealed FROM access_keys`, `SELECT key_sealed FROM sealing_keys`,
			`SELECT sealed FROM secrets`, `UPDATE revocations SET before = 0`, `INSERT INTO revocations (role, before) VALUES ('r', 1)`,
			`INSERT INTO findings (id, type, severity, principal, archived, created_at, updated_at, document) VALUES ('f2', 't', 1, '', false, 0, 0, '\x00')`,
		}},
		{c: keys.Egress, refused: []string{
			`UPDATE access_keys SET status = 'Active'`, `SELECT secret_sealed FROM access_keys`, `SELECT key_sealed FROM sealing_keys`,
			`SELECT sealed FROM secrets`, `UPDATE revocations SET before = 0`, `UPDATE nodes SET role = 'admin'`,
		}},
		{c: keys.Gateway, refused: []string{
			`UPDATE access_keys SET status = 'Active'`, `SELECT sealed FROM secrets`, `UPDATE revocations SET before = 0`,
			`INSERT INTO sealing_keys (id, key_sealed, created_at) VALUES ('k2', '\x00', 0)`, `UPDATE sealing_keys SET retire_after = NULL`,
			`SELECT seed_sealed FROM mfa_devices`, `UPDATE nodes SET role = 'admin'`,
		}, can: func(t *testing.T, s *store.Postgres) {
			if ks, err := s.ListAccessKeys(ctx, ""); err != nil || len(ks) != 1 {
				t.Errorf("the gateway reads users' keys: %d %v", len(ks), err)
			}
			if _, err := s.ClaimSignature(ctx, strings.Repeat("ab", 32), time.Now().Add(time.Minute)); err != nil {
				t.Errorf("the gateway's replay guard: %v", err)
			}
		}},
		{c: keys.Detector, refused: []string{
			// It disables keys and revokes sessions; it cannot undo either.
			`UPDATE access_keys SET status = 'Active'`, `UPDATE revocations SET before = 0`,
			`SELECT secret_sealed FROM access_keys`, `SELECT sealed FROM secrets`, `SELECT key_sealed FROM sealing_keys`,
		}, can: func(t *testing.T, s *store.Postgres) {
			if err := s.PutFinding(ctx, store.Finding{ID: "f3", Type: "Recon:IAMUser/Test", Severity: 5, Document: []byte(`{}`), CreatedAt: time.Unix(2, 0), UpdatedAt: time.Unix(2, 0)}); err != nil {
				t.Errorf("the detector writes findings: %v", err)
			}
			if err := s.PutRiskLevel(ctx, store.RiskLevel{Principal: "arn:aws:iam::123456789012:role/app", Level: "high", FindingID: "f3", SetAt: time.Unix(2, 0)}); err != nil {
				t.Errorf("the detector sets risk levels: %v", err)
			}
			if err := s.PutRevocation(ctx, store.Revocation{Role: "arn:aws:iam::123456789012:role/other", Before: time.Unix(2000, 0)}); err != nil {
				t.Errorf("the detector revokes sessions: %v", err)
			}
		}},
		{c: keys.STS, refused: []string{
			`UPDATE access_keys SET status = 'Active'`, `UPDATE revocations SET before = 0`, `DELETE FROM secrets`,
			`UPDATE secrets SET sealed = '\x00'`,
		}, can: func(t *testing.T, s *store.Postgres) {
			if _, err := s.GetSecret(ctx, "pki/issuing/"+issuingSerial(t, ca)); err != nil {
				t.Errorf("STS reads the issuing CA's key: %v", err)
			}
		}},
		{c: keys.Console, refused: []string{
			`UPDATE access_keys SET status = 'Active'`, `SELECT sealed FROM secrets`, `UPDATE revocations SET before = 0`,
			// A session row is written once: its principal, key or expiry never change.
			`UPDATE console_sessions SET principal = 'arn:aws:iam::123456789012:user/admin'`,
			`UPDATE console_sessions SET expires_at = 9000000000000000000`,
			`UPDATE console_sso SET expires_at = 9000000000000000000`,
		}, can: func(t *testing.T, s *store.Postgres) {
			now := time.Now()
			cs := store.ConsoleSession{ID: [32]byte{1}, AccessKeyID: "AKIAAAAAAAAAAAAAAAAB", SecretHash: [32]byte{2},
				Principal: "arn:aws:iam::123456789012:user/alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now}
			if ok, err := s.PutConsoleSession(ctx, cs, 10); err != nil || !ok {
				t.Errorf("the console starts a session: %v %v", ok, err)
			}
			if _, err := s.GetConsoleSession(ctx, cs.ID); err != nil {
				t.Errorf("the console reads a session: %v", err)
			}
			if err := s.TouchConsoleSession(ctx, cs.ID, now.Add(time.Minute)); err != nil {
				t.Errorf("the console touches a session: %v", err)
			}
			if err := s.DeleteConsoleSession(ctx, cs.ID); err != nil {
				t.Errorf("the console ends a session: %v", err)
			}
			if _, err := s.DeleteEndedConsoleSessions(ctx, now, now.Add(-time.Hour)); err != nil {
				t.Errorf("the console deletes ended sessions: %v", err)
			}
			if err := s.UpdateLimitBuckets(ctx, []string{"global"}, func(bs []store.LimitBucket) error {
				bs[0].At, bs[0].Pace, bs[0].IdleAt = now, now, now
				return nil
			}); err != nil {
				t.Errorf("the console counts sign-in failures: %v", err)
			}
			if _, err := s.DeleteIdleLimitBuckets(ctx, now); err != nil {
				t.Errorf("the console deletes idle limiter buckets: %v", err)
			}
			if _, err := s.PutConsoleSSO(ctx, [32]byte{3}, []byte("sealed"), now.Add(time.Minute), 10); err != nil {
				t.Errorf("the console stores a sign-on in progress: %v", err)
			}
			if _, err := s.TakeConsoleSSO(ctx, [32]byte{3}, now); err != nil {
				t.Errorf("the console takes a sign-on in progress: %v", err)
			}
		}},
	} {
		t.Run(string(tc.c), func(t *testing.T) {
			roleDSN := storetest.ComponentRole(t, owner, dsn, tc.c)
			ring, err := keys.ForComponent(mk, tc.c)
			must(err)
			// The component opens the store with its role and its key file, and reads the
			// trust every component reads.
			s, err := store.OpenPostgres(ctx, store.PostgresConfig{DSN: roleDSN, Keys: ring, MaxConns: 2})
			if err != nil {
				t.Fatalf("open with the %s role: %v", tc.c, err)
			}
			defer s.Close()
			if _, err := s.ListRevocations(ctx); err != nil {
				t.Errorf("list revocations: %v", err)
			}
			if certs, err := s.ListCACertificates(ctx); err != nil || len(certs) == 0 {
				t.Errorf("list CA certificates: %d %v", len(certs), err)
			}
			if _, err := s.ListCertificateRevocations(ctx); err != nil {
				t.Errorf("list certificate revocations: %v", err)
			}
			if _, err := pki.OpenAuthority(ctx, pki.AuthorityConfig{Config: pki.Config{Account: "123456789012"}}, s); err != nil {
				t.Errorf("verify against the CA: %v", err)
			}
			if tc.can != nil {
				tc.can(t, s)
			}
			attacker := rawConn(t, roleDSN)
			refused := append(append([]string{}, everyone...), tc.refused...)
			if tc.c != keys.Console {
				// Only the console reads or writes its sessions and sign-in limiter.
				refused = append(refused, `SELECT principal FROM console_sessions`, `DELETE FROM console_sessions`,
					`INSERT INTO console_sessions (id, access_key_id, session_token, secret_hash, principal, created_at, expires_at, last_seen)
						VALUES ('\x0000000000000000000000000000000000000000000000000000000000000001', 'AKIAAAAAAAAAAAAAAAAB', '', '\x0000000000000000000000000000000000000000000000000000000000000001', 'p', 0, 1, 0)`,
					`UPDATE console_sessions SET last_seen = 0`, `SELECT tokens FROM signin_limits`, `UPDATE signin_limits SET tokens = 100`,
					`DELETE FROM signin_limits`, `SELECT sealed FROM console_sso`, `DELETE FROM console_sso`)
			}
			for _, stmt := range refused {
				if _, err := attacker.Exec(ctx, stmt); err == nil {
					t.Errorf("with the %s role, %q succeeded", tc.c, stmt)
				} else if !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "must be owner") {
					t.Errorf("with the %s role, %q failed, but not for want of privilege: %v", tc.c, stmt, err)
				}
			}
		})
	}
	// What the attacks would have undone is intact.
	if k, err := owner.GetAccessKey(ctx, "AKIAAAAAAAAAAAAAAAAB"); err != nil || k.Status != store.StatusInactive {
		t.Fatalf("the disabled key: %+v %v", k, err)
	}
	if revs, err := owner.ListCertificateRevocations(ctx); err != nil || len(revs) != 1 {
		t.Fatalf("certificate revocations: %d %v", len(revs), err)
	}
	// The operator's login still enables a key again.
	if err := owner.UpdateAccessKeyStatus(ctx, "AKIAAAAAAAAAAAAAAAAB", store.StatusActive); err != nil {
		t.Fatalf("the owner enables a key: %v", err)
	}
}

func issuingSerial(t *testing.T, a *pki.Authority) string {
	t.Helper()
	ca, err := a.CA()
	if err != nil {
		t.Fatal(err)
	}
	return ca.Certificate().SerialNumber.Text(16)
}

// TestPostgresRolesFromBeforeKeyGenerations: a component role made before the storage
// key generations (phantom store roles on an older schema) reads them after the
// migration that adds them, so its process follows a rotation without the operator
// granting anything again.
func TestPostgresRolesFromBeforeKeyGenerations(t *testing.T) {
	dsn, _ := newSchema(t)
	mk := newMasterKey(t)
	owner := mustOpenPostgres(t, dsn, mk)
	gwDSN := storetest.ComponentRole(t, owner, dsn, keys.Gateway)
	owner.Close()
	// Back to the schema before the migration: no table, no record of it, nor of the
	// migrations after it.
	conn := rawConn(t, dsn)
	for _, q := range []string{
		`DROP TABLE leases`,
		`DELETE FROM schema_migrations WHERE name = '0010_leases.sql'`,
		`DROP TABLE key_generations`,
		`DELETE FROM key_checks WHERE purpose LIKE '%#%'`,
		`DELETE FROM schema_migrations WHERE name = '0009_key_generations.sql'`,
	} {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	owner = mustOpenPostgres(t, dsn, mk) // migrates again
	defer owner.Close()
	ring, err := keys.ForComponent(mk, keys.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := store.OpenPostgres(t.Context(), store.PostgresConfig{DSN: gwDSN, Keys: ring})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if _, err := gw.Version(t.Context()); err != nil {
		t.Fatalf("a role from before the migration polls: %v", err)
	}
}
