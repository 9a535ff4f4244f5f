package store

import (
	"bytes"
	"context"
	"testing"
)

// Reads go through connections that cannot write: a bug that sent a write to the reader
// pool fails loudly instead of racing the single writer.
func TestReaderPoolIsReadOnly(t *testing.T) {
	s, err := OpenSQLite(t.Context(), Config{DataDir: t.TempDir(), MasterKey: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.r.ExecContext(t.Context(), `INSERT INTO revocations (role, before) VALUES ('x', 1)`); err == nil {
		t.Error("the reader pool accepted a write")
	}
	var fk int
	if err := s.r.QueryRowContext(t.Context(), `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("reader foreign_keys = %d (err %v), want 1", fk, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.PutRevocation(ctx, Revocation{Role: "r", Before: s.now()}); err == nil {
		t.Error("a write with a cancelled context succeeded")
	}
	revs, err := s.ListRevocations(t.Context())
	if err != nil || len(revs) != 0 {
		t.Errorf("after a cancelled write: %d revocations (err %v), want none", len(revs), err)
	}
}
