package audit

import (
	"bytes"
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current writer")

// writeGolden writes the golden chain: fixed key, clock and event IDs, so the bytes are
// the same on every run.
func writeGolden(t *testing.T, dir string) {
	t.Helper()
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	l := openTest(t, dir, "gateway", func(c *Config) {
		c.SegmentBytes = minSegmentBytes
		c.Now = func() time.Time { return now }
	})
	for i := range 4 {
		ev := gatewayEvent(i)
		ev.EventID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		if i == 2 {
			ev.ErrorCode, ev.ErrorMessage = "AccessDenied", "User is not authorized to access this resource with an explicit deny"
			ev.ResponseElements = nil
		}
		if err := l.Record(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "gateway", lockFile))
}

// TestGolden pins the on-disk format: today's writer produces exactly the committed
// chain, and it verifies against the committed public key. A change here is a format
// change: old logs must still verify.
func TestGolden(t *testing.T) {
	golden := filepath.Join("testdata", "golden")
	if *update {
		os.RemoveAll(golden)
		writeGolden(t, golden)
		p, _ := MarshalPublicKey(testSigner(t).Public().(ed25519.PublicKey))
		os.WriteFile(filepath.Join("testdata", "golden.pub"), p, 0o600)
	}
	dir := t.TempDir()
	writeGolden(t, dir)
	ents, err := os.ReadDir(filepath.Join(golden, "gateway"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadDir(filepath.Join(dir, "gateway"))
	if len(got) != len(ents) {
		t.Fatalf("writer made %d files, golden has %d", len(got), len(ents))
	}
	for _, e := range ents {
		want, _ := os.ReadFile(filepath.Join(golden, "gateway", e.Name()))
		have, err := os.ReadFile(filepath.Join(dir, "gateway", e.Name()))
		if err != nil || !bytes.Equal(have, want) {
			t.Errorf("%s differs from testdata/golden (go test -run TestGolden -update if the format change is intended): %v", e.Name(), err)
		}
	}
	pub, err := os.ReadFile(filepath.Join("testdata", "golden.pub"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParsePublicKeys(pub)
	if err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, golden, VerifyOptions{PublicKeys: keys})
	if !rep.OK() || len(rep.Warnings) != 0 || rep.Records != 4 || rep.Chains[0].Segments != 2 {
		t.Fatalf("golden chain: %s %v %+v", problems(rep), rep.Warnings, rep.Chains)
	}
}
