package identity

import (
	"crypto/rand"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/store"
)

// The store's SQLite backend satisfies every interface identity consumes.
var (
	_ AccessKeyStore  = (*store.SQLite)(nil)
	_ SealingKeyStore = (*store.SQLite)(nil)
	_ RevocationStore = (*store.SQLite)(nil)
	_ ChangeFeed      = (*store.SQLite)(nil)
)

func openSQLite(t *testing.T, dir string, master []byte, c *clock) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(t.Context(), store.Config{DataDir: dir, MasterKey: master, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestWithSQLite runs the credential lifecycle against the real embedded store, with two
// services (replicas) sharing one database: issue, rotate, revoke, disable, restart.
func TestWithSQLite(t *testing.T) {
	ctx := t.Context()
	c := newClock(t0)
	dir := t.TempDir()
	master := make([]byte, store.MasterKeySize)
	rand.Read(master)
	db := openSQLite(t, dir, master, c)
	deps := Deps{AccessKeys: db, SealingKeys: db, Revocations: db, Changes: db}
	newService := func() *Service {
		s, err := New(Config{Account: testAccount, Now: c.Now, Logger: slog.New(slog.DiscardHandler)}, deps)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := newService()
	if _, err := a.RotateSealingKey(ctx); err != nil { // first start: the first key
		t.Fatal(err)
	}
	b := newService()

	user, err := a.CreateAccessKey(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	sess, tok := sessionFor(t, a, "app-writer")
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, cred := range []struct{ id, tok string }{{user.ID, ""}, {sess.AccessKeyID, tok}} {
		if _, err := b.LookupCredential(ctx, cred.id, cred.tok); err != nil {
			t.Fatalf("replica resolving %s: %v", cred.id, err)
		}
	}

	c.Advance(time.Minute)
	if _, err := b.RotateSealingKey(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Sealer().CurrentKeyID() != b.Sealer().CurrentKeyID() {
		t.Fatalf("replicas seal with %s and %s", a.Sealer().CurrentKeyID(), b.Sealer().CurrentKeyID())
	}
	if _, err := a.LookupCredential(ctx, sess.AccessKeyID, tok); err != nil {
		t.Fatalf("token under the rotated-out key: %v", err)
	}

	c.Advance(time.Millisecond)
	if _, err := b.RevokeSessions(ctx, "app-writer"); err != nil {
		t.Fatal(err)
	}
	if err := b.UpdateAccessKeyStatus(ctx, user.ID, StatusInactive); err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.LookupCredential(ctx, sess.AccessKeyID, tok); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("revoked session on the other replica: %v", err)
	}
	if _, err := a.LookupCredential(ctx, user.ID, ""); !errors.Is(err, ErrAccessKeyInactive) {
		t.Fatalf("disabled key on the other replica: %v", err)
	}
	if err := a.DeleteAccessKey(ctx, "AKIAIOSFODNN7EXAMPLE"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting a missing key: %v, want store.ErrNotFound through the wrapping", err)
	}

	// A restart (new store handle, new service) resolves a fresh session sealed before it.
	fresh, freshTok := sessionFor(t, a, "app-reader")
	db.Close()
	db2 := openSQLite(t, dir, master, c)
	deps = Deps{AccessKeys: db2, SealingKeys: db2, Revocations: db2, Changes: db2}
	restarted := newService()
	if _, err := restarted.LookupCredential(ctx, fresh.AccessKeyID, freshTok); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if _, err := restarted.LookupCredential(ctx, sess.AccessKeyID, tok); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("revocation after restart: %v", err)
	}
}
