package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phantom-perimeter/phantom/internal/identity"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// TestZoneHostsCannotForge is docs/threat-model.md's test per zone (E1–E6, D1): a host
// given only what its component needs — its data directory, a key file from `phantom keys
// export`, its store role from `phantom store roles` — opens the perimeter as its process
// does (perimeter.Open), and every forgery the issue names fails: a certificate for another
// component, a session token, an egress password, a secret read, a revocation removed, a
// disabled key re-enabled. The gateway opens sessions but cannot mint them. On main,
// every process opened the perimeter with the master key and the store's owner login,
// and each of these succeeded.
func TestZoneHostsCannotForge(t *testing.T) {
	dsn, _ := storetest.PostgresSchema(t, "phantom_zones") // skips without a server
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	// The operator's host: the master key, the owner's login; it makes the CA, a token
	// key, a user's key it disables and a revocation.
	opDir := t.TempDir()
	op, err := perimeter.Open(ctx, perimeter.Options{DataDir: opDir, StoreURL: dsn, Account: testAccount}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { op.Store.Close() })
	mk, err := store.LoadOrCreateMasterKey(opDir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := op.IDs.CreateAccessKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := op.IDs.UpdateAccessKeyStatus(ctx, key.ID, identity.StatusInactive); err != nil {
		t.Fatal(err)
	}
	if _, err := op.IDs.RevokeSessions(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	claims := identity.Claims{Principal: "arn:aws:sts::" + testAccount + ":assumed-role/app/s", Role: "arn:aws:iam::" + testAccount + ":role/app", SessionName: "s"}
	_, token, err := op.IDs.NewSession(claims, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issuing, err := op.CA.CA()
	if err != nil {
		t.Fatal(err)
	}
	owner := op.Store.(*store.Postgres)

	for _, c := range []keys.Component{keys.Endpoint, keys.Egress, keys.Gateway} {
		t.Run(string(c), func(t *testing.T) {
			host := t.TempDir()
			ring, err := keys.ForComponent(mk, c)
			if err != nil {
				t.Fatal(err)
			}
			keyFile := filepath.Join(host, "component.keys")
			if err := keys.WriteFile(keyFile, ring); err != nil {
				t.Fatal(err)
			}
			roleDSN := storetest.ComponentRole(t, owner, dsn, c)
			p, err := perimeter.Open(ctx, perimeter.Options{DataDir: host, StoreURL: roleDSN, Account: testAccount, Component: c, KeysFile: keyFile}, log)
			if err != nil {
				t.Fatalf("the %s opens the perimeter with its own material: %v", c, err)
			}
			defer p.Store.Close()
			if _, err := os.Stat(filepath.Join(host, store.MasterKeyFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the %s host has a master key: %v", c, err)
			}

			// E1/D1: a certificate for another component.
			if p.Issuer != nil {
				t.Error("the host issues its own certificates")
			}
			if _, err := p.CA.CA(); !errors.Is(err, pki.ErrCannotIssue) {
				t.Errorf("the host's CA issues: %v", err)
			}
			if _, err := p.Store.GetSecret(ctx, "pki/issuing/"+issuing.Certificate().SerialNumber.Text(16)); err == nil {
				t.Error("the host read the issuing CA's key")
			}
			if a, err := pki.OpenAuthority(ctx, pki.AuthorityConfig{Config: pki.Config{Account: testAccount}, Issue: true, Root: true}, p.Store); err == nil {
				if _, err := a.Issue(pki.Request{Identity: pki.Identity{Account: testAccount, Kind: pki.KindGateway, Name: "gateway"}, DNSNames: []string{"localhost"}, Server: true}); err == nil {
					t.Error("the host issued a gateway certificate")
				}
			}
			if _, err := p.CA.Rotate(ctx, true); err == nil {
				t.Error("the host made a root")
			}

			// E2/D1: a session token.
			if p.IDs.Sealer().CanSeal() {
				t.Error("the host's sealer can seal")
			}
			if _, _, err := p.IDs.NewSession(claims, time.Hour); err == nil {
				t.Error("the host minted a session")
			}
			if _, err := p.IDs.RotateSealingKey(ctx); err == nil {
				t.Error("the host made a token key")
			}
			_, openErr := p.IDs.Sealer().Open(token)
			if c == keys.Gateway && openErr != nil {
				t.Errorf("the gateway cannot open STS's sessions: %v", openErr)
			}
			if c != keys.Gateway && openErr == nil {
				t.Errorf("the %s opened a session token", c)
			}

			// E3: long-term secrets and MFA seeds.
			if _, err := p.Store.ListMFADevices(ctx, ""); err == nil {
				t.Error("the host read MFA seeds")
			}
			if _, err := p.Store.ListAccessKeys(ctx, ""); (err == nil) != (c == keys.Gateway) {
				t.Errorf("users' secret keys read: %v (only a gateway verifies SigV4)", err)
			}

			// E6: egress passwords are signed by STS; no host here holds the signing key.
			if _, err := ring.Key(keys.EgressPasswords); !errors.Is(err, keys.ErrNotHeld) {
				t.Errorf("the host holds the egress password key: %v", err)
			}

			// E5: a revocation removed, a disabled key re-enabled, a finding cleared.
			if err := p.Store.UpdateAccessKeyStatus(ctx, key.ID, store.StatusActive); err == nil {
				t.Error("the host re-enabled a disabled key")
			}
			if err := p.IDs.UpdateAccessKeyStatus(ctx, key.ID, identity.StatusActive); err == nil {
				t.Error("the host re-enabled a disabled key through the identity service")
			}
			conn := storetest.Conn(t, roleDSN)
			for _, stmt := range []string{`DELETE FROM revocations`, `UPDATE revocations SET before = 0`, `DELETE FROM certificate_revocations`,
				`DELETE FROM findings`, `UPDATE ca_certificates SET distrusted_at = NULL`} {
				if _, err := conn.Exec(ctx, stmt); err == nil {
					t.Errorf("the host ran %q", stmt)
				}
			}
		})
	}
	if k, err := owner.GetAccessKey(ctx, key.ID); err != nil || k.Status != store.StatusInactive {
		t.Fatalf("the disabled key after the attempts: %+v %v", k, err)
	}
	if revs, err := owner.ListRevocations(ctx); err != nil || len(revs) != 1 {
		t.Fatalf("revocations after the attempts: %d %v", len(revs), err)
	}
}

// TestStoreRolesCommand: `phantom store roles --create` makes every component's role,
// which logs in and is refused what is not its job; it refuses a SQLite store and an
// unknown component.
func TestStoreRolesCommand(t *testing.T) {
	dsn, _ := storetest.PostgresSchema(t, "phantom_roles") // skips without a server
	dir := t.TempDir()
	// The operator's host made the store (and its master key).
	op, err := perimeter.Open(t.Context(), perimeter.Options{DataDir: dir, StoreURL: dsn, Account: testAccount}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	op.Store.Close()
	prefix := "phantom_t" + strings.ToLower(rand.Text()[:10]) + "_"
	owner := storetest.Conn(t, dsn)
	t.Cleanup(func() {
		for _, c := range store.RoleComponents() {
			r := pgx.Identifier{prefix + string(c)}.Sanitize()
			owner.Exec(context.Background(), `DO $$ BEGIN EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM `+r+`', current_schema());
				EXECUTE format('REVOKE ALL ON SCHEMA %I FROM `+r+`', current_schema()); END $$`)
			owner.Exec(context.Background(), `DROP ROLE IF EXISTS `+r)
		}
	})
	r := admOK(t, storeRun(dir, "store", "roles", "--store", dsn, "--prefix", prefix, "--create"))
	for _, c := range store.RoleComponents() {
		if !strings.Contains(r.stdout, "ROLE\t"+string(c)+"\t"+prefix+string(c)) {
			t.Errorf("no %s role in %q", c, r.stdout)
		}
	}
	// The endpoint's role logs in and reads the trust, and cannot remove a revocation.
	if _, err := owner.Exec(t.Context(), `ALTER ROLE `+pgx.Identifier{prefix + "endpoint"}.Sanitize()+` PASSWORD 'endpoint-test'`); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dsn)
	u.User = url.UserPassword(prefix+"endpoint", "endpoint-test")
	ep := storetest.Conn(t, u.String())
	if _, err := ep.Exec(t.Context(), `SELECT count(*) FROM certificate_revocations`); err != nil {
		t.Fatalf("the endpoint's role reads revocations: %v", err)
	}
	if _, err := ep.Exec(t.Context(), `DELETE FROM revocations`); err == nil {
		t.Fatal("the endpoint's role deleted revocations")
	}
	// Only the console's role keeps console sessions and the sign-in limiter, and it
	// writes a session once: its last use is all that moves after.
	if _, err := ep.Exec(t.Context(), `SELECT count(*) FROM console_sessions`); err == nil {
		t.Fatal("the endpoint's role reads console sessions")
	}
	if _, err := owner.Exec(t.Context(), `ALTER ROLE `+pgx.Identifier{prefix + "console"}.Sanitize()+` PASSWORD 'console-test'`); err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(prefix+"console", "console-test")
	con := storetest.Conn(t, u.String())
	for _, stmt := range []string{
		`INSERT INTO console_sessions (id, access_key_id, session_token, secret_hash, principal, created_at, expires_at, last_seen)
			VALUES (sha256('c'), 'AKIAAAAAAAAAAAAAAAAB', '', sha256('s'), 'arn:aws:iam::123456789012:user/alice', 0, 1, 0)`,
		`UPDATE console_sessions SET last_seen = 1`,
		`INSERT INTO signin_limits (name, tokens, at, pace, idle_at) VALUES ('global', 1, 1, 1, 1)`,
		`UPDATE signin_limits SET tokens = 0`,
		`DELETE FROM signin_limits`,
		`DELETE FROM console_sessions`,
	} {
		if _, err := con.Exec(t.Context(), stmt); err != nil {
			t.Fatalf("the console's role: %s: %v", stmt, err)
		}
	}
	if _, err := con.Exec(t.Context(), `UPDATE console_sessions SET principal = 'arn:aws:iam::123456789012:user/admin'`); err == nil {
		t.Fatal("the console's role rewrote a session's principal")
	}
	// Run again: the same grants, nothing more (idempotent).
	admOK(t, storeRun(dir, "store", "roles", "--store", dsn, "--prefix", prefix, "--component", "endpoint"))
	if res := storeRun(dir, "store", "roles"); res.code != exitUsage {
		t.Fatalf("a SQLite store: exit %d %s", res.code, res.stderr)
	}
	if res := storeRun(dir, "store", "roles", "--store", dsn, "--component", "operator"); res.code != exitUsage {
		t.Fatalf("the operator's role: exit %d %s", res.code, res.stderr)
	}
	if res := storeRun(dir, "store", "roles", "--store", dsn, "--prefix", prefix+"missing_", "--component", "gateway"); res.code == 0 || !strings.Contains(res.stderr, "does not exist") {
		t.Fatalf("a missing role without --create: exit %d %s", res.code, res.stderr)
	}
}

// storeRun runs phantom in-process with the data directory (store commands take no spec).
func storeRun(dataDir string, args ...string) admResult {
	var out, errb bytes.Buffer
	code := run(append(args, "--data-dir", dataDir), strings.NewReader(""), &out, &errb)
	return admResult{code, out.String(), errb.String()}
}
