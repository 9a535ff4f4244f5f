package hsm_test

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/hsm/hsmtest"
)

// TestAuditChainInToken: a chain whose writer key is in the token verifies pinned to
// that key, as a chain signed in memory does (the same digests: pure Ed25519 over the
// same bytes); pinned to another key it does not; a digest changed is found.
func TestAuditChainInToken(t *testing.T) {
	tok := open(t, hsmtest.SoftHSM(t))
	key, err := tok.NewAuditKey(t.Context(), "gateway")
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	dir := t.TempDir()
	l, err := audit.Open(audit.Config{Dir: dir, Chain: "gateway", Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := l.Record(t.Context(), &audit.Event{EventSource: "execute-api.amazonaws.com", EventName: "Invoke", EventType: "AwsApiCall"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	verify := func(keys ...ed25519.PublicKey) *audit.Report {
		r, err := audit.Verify(dir, audit.VerifyOptions{PublicKeys: keys})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := verify(pub); len(r.Problems) != 0 || r.Records != 3 {
		t.Fatalf("pinned to the token's key: %d records, problems %+v", r.Records, r.Problems)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	if r := verify(other); len(r.Problems) == 0 {
		t.Fatal("verified pinned to a key that did not sign")
	}
	dig := filepath.Join(dir, "gateway", "00000001.digest")
	b, err := os.ReadFile(dig)
	if err != nil {
		t.Fatal(err)
	}
	b[len(`{"digest":{"v`)] ^= 1 // inside the signed body
	if err := os.WriteFile(dig, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := verify(pub); len(r.Problems) == 0 {
		t.Fatal("a changed digest verified")
	}
}
