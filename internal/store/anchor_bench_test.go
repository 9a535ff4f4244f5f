package store_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// captured keeps the anchors a writer produces, to replay them into a store.
type captured struct {
	mu      sync.Mutex
	anchors []audit.Anchor
}

func (c *captured) RegisterAuditChain(context.Context, string, time.Time) error { return nil }
func (c *captured) PutAuditSigner(context.Context, audit.Signer) error          { return nil }
func (c *captured) LatestAuditAnchor(context.Context, string) (audit.Anchor, bool, error) {
	return audit.Anchor{}, false, nil
}
func (c *captured) PutAuditAnchor(_ context.Context, a audit.Anchor) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.anchors = append(c.anchors, a)
	return nil
}

// realAnchors returns n distinct anchors of one chain, as a writer signs them.
func realAnchors(b *testing.B, n int) []audit.Anchor {
	b.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	c := &captured{}
	l, err := audit.Open(audit.Config{Dir: b.TempDir(), Chain: "gateway", Signer: key, DigestInterval: 50 * time.Microsecond, Anchors: []audit.AnchorStore{c}})
	if err != nil {
		b.Fatal(err)
	}
	for {
		c.mu.Lock()
		got := len(c.anchors)
		c.mu.Unlock()
		if got >= n {
			break
		}
		l.Record(context.Background(), &audit.Event{EventSource: "execute-api.amazonaws.com", EventName: "Invoke"})
		time.Sleep(100 * time.Microsecond)
	}
	l.Close()
	return c.anchors[:n]
}

// BenchmarkAuditAnchorSQLite is what anchoring adds to each digest a writer signs: one
// PutAuditAnchor into the SQLite store. BenchmarkAuditDigestBaseline is the digest
// itself — its line written and fsynced — which every digest costs anyway: the ratio is
// the anchor's price.
func BenchmarkAuditAnchorSQLite(b *testing.B) {
	dir := b.TempDir()
	s, err := store.OpenSQLite(b.Context(), store.Config{DataDir: dir, MasterKey: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchAnchors(b, s)
}

// BenchmarkAuditAnchorPostgres is the same into PostgreSQL (PHANTOM_TEST_POSTGRES_DSN).
func BenchmarkAuditAnchorPostgres(b *testing.B) {
	dsn, _ := storetest.PostgresSchema(b, "phantom_bench")
	s, err := store.OpenPostgres(b.Context(), store.PostgresConfig{DSN: dsn, MasterKey: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchAnchors(b, s)
}

func benchAnchors(b *testing.B, s audit.AnchorStore) {
	as := realAnchors(b, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := s.PutAuditAnchor(context.Background(), as[i]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuditDigestBaseline(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "00000001.digest"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	line := append(bytes.Repeat([]byte("d"), 520), '\n')
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Write(line); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
