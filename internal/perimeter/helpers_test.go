package perimeter

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/datadir"
	"github.com/phantom-perimeter/phantom/internal/pki"
)

const testAccount = "123456789012"

// testSpec is a small valid spec: the tests here load, edit and reload it.
const testSpec = `version: 1
account: "123456789012"
region: us-east-1
users:
  - name: alice
`

// testPerimeter is what OpenChains needs of a perimeter: the store of dataDir (or
// storeURL), opened with its master key, and a CA whose bundle is dataDir/ca.pem.
func testPerimeter(t *testing.T, dataDir, storeURL string) *Perimeter {
	t.Helper()
	st, ring, err := datadir.OpenStore(t.Context(), datadir.StoreOptions{DataDir: dataDir, StoreURL: storeURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := pki.OpenAuthority(t.Context(), pki.AuthorityConfig{Config: pki.Config{Account: testAccount}, Issue: true, Root: true}, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteBundle(filepath.Join(dataDir, "ca.pem")); err != nil {
		t.Fatal(err)
	}
	return &Perimeter{Store: st, CA: ca, Issuer: ca, Keys: ring}
}

// anchoredData is a data directory whose chains sts and gateway were written as a
// perimeter writes them: certified writer keys, every digest anchored in the store.
type anchoredData struct {
	dataDir, auditDir string
	p                 *Perimeter
}

func newAnchoredData(t *testing.T, storeURL string) *anchoredData {
	t.Helper()
	d := &anchoredData{dataDir: t.TempDir()}
	d.auditDir = filepath.Join(d.dataDir, "audit")
	d.p = testPerimeter(t, d.dataDir, storeURL)
	chains := []string{"sts", "gateway"}
	logs, err := OpenChains(d.auditDir, chains, d.p, testAccount, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// Two rounds of ten records per chain, a digest apart (DigestInterval 1s).
	for round := range 2 {
		for _, c := range chains {
			for i := range 10 {
				ev := &audit.Event{EventSource: "sts.amazonaws.com", EventName: "GetCallerIdentity", RequestID: c + "-" + string(rune('a'+round)) + string(rune('a'+i))}
				if err := logs.Get(c).Record(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(1100 * time.Millisecond)
	}
	logs.CloseAll(slog.New(slog.DiscardHandler))
	return d
}
