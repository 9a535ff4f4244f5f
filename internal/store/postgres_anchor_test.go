package store_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// TestPostgresAuditWriterRole: an audit writer logged in with its own role, granted
// AuditWriterGrants, anchors a chain; with those same credentials it can neither change
// nor remove an anchor, a chain or a certificate, nor add a prune checkpoint, nor drop
// the triggers — and even a role granted UPDATE, DELETE and TRUNCATE by mistake is
// refused by the triggers.
func TestPostgresAuditWriterRole(t *testing.T) {
	dsn, _ := newSchema(t)
	owner := mustOpenPostgres(t, dsn, newMasterKey(t))
	writerDSN := storetest.AuditWriterRole(t, owner, dsn)

	anchors, err := store.OpenAnchorClient(t.Context(), writerDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer anchors.Close()
	if strings.Contains(anchors.String(), strings.Split(strings.Split(writerDSN, "@")[0], ":")[2]) {
		t.Fatal("the anchor client names its password")
	}
	ca, err := pki.New(pki.Config{Dir: filepath.Join(t.TempDir(), "ca"), Account: "123456789012"})
	if err != nil {
		t.Fatal(err)
	}
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	cert, err := ca.Sign(pub, pki.Request{Identity: pki.Identity{Account: "123456789012", Kind: pki.KindAudit, Name: "gateway"}, AuditSigning: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := audit.Open(audit.Config{Dir: dir, Chain: "gateway", Signer: key, Certificate: cert.Raw, Anchors: []audit.AnchorStore{anchors}, DigestInterval: time.Millisecond})
	if err != nil {
		t.Fatalf("a writer with only the writer's grants: %v", err)
	}
	for i := range 5 {
		if err := l.Record(t.Context(), &audit.Event{EventName: "Invoke", RequestID: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	head, ok, err := owner.LatestAuditAnchor(t.Context(), "gateway")
	if err != nil || !ok || head.Seq != 5 {
		t.Fatalf("the store's anchor of the writer's chain: %+v %v %v", head, ok, err)
	}

	attacker := rawConn(t, writerDSN)
	refused := func(stmts ...string) {
		t.Helper()
		for _, stmt := range stmts {
			if _, err := attacker.Exec(t.Context(), stmt); err == nil {
				t.Errorf("with the writer's credentials, %q succeeded", stmt)
			} else {
				t.Logf("refused: %s: %v", stmt, err)
			}
		}
	}
	var stmts []string
	for _, tab := range []string{"audit_chains", "audit_anchors", "audit_signers", "audit_checkpoints"} {
		stmts = append(stmts, `UPDATE `+tab+` SET chain = 'sts'`, `DELETE FROM `+tab, `TRUNCATE `+tab, `DROP TABLE `+tab+` CASCADE`,
			`ALTER TABLE `+tab+` DISABLE TRIGGER USER`)
	}
	stmts = append(stmts, `DROP TRIGGER audit_anchors_append_only ON audit_anchors`,
		`INSERT INTO audit_checkpoints (chain, segment, seq, hash, before, created_at) VALUES ('gateway', 1, 5, 'x', 0, 0)`)
	refused(stmts...)

	// Grants given by mistake do not help: the triggers refuse every role.
	ownerConn := rawConn(t, dsn)
	role := strings.Split(strings.TrimPrefix(writerDSN, "postgres://"), ":")[0]
	if _, err := ownerConn.Exec(t.Context(), `GRANT UPDATE, DELETE, TRUNCATE ON audit_chains, audit_anchors, audit_signers TO `+role); err != nil {
		t.Fatal(err)
	}
	refused(`UPDATE audit_anchors SET seq = 1`, `DELETE FROM audit_anchors`, `TRUNCATE audit_anchors`, `DELETE FROM audit_chains`)
	if head2, _, _ := owner.LatestAuditAnchor(context.Background(), "gateway"); head2 != head {
		t.Fatalf("the anchor changed: %+v", head2)
	}
}
