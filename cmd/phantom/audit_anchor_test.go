package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/audit/audittest"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/perimeter"
	"github.com/phantom-perimeter/phantom/internal/pki"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

const testAccount = "123456789012"

// anchoredData is a data directory whose chains sts and gateway were written as a
// perimeter writes them: certified writer keys, every digest anchored in the store
// (and in sinks).
type anchoredData struct {
	dataDir, auditDir string
	p                 *perimeter.Perimeter
}

func newAnchoredData(t *testing.T, storeURL string, sinks ...audit.AnchorStore) *anchoredData {
	t.Helper()
	d := &anchoredData{dataDir: t.TempDir()}
	d.auditDir = filepath.Join(d.dataDir, "audit")
	d.p = testPerimeter(t, d.dataDir, storeURL)
	d.write(t, []string{"sts", "gateway"}, sinks, 20)
	return d
}

// testPerimeter is what perimeter.OpenChains needs of a perimeter: the store of dataDir (or
// storeURL) and a CA whose bundle is dataDir/ca.pem.
func testPerimeter(t *testing.T, dataDir, storeURL string) *perimeter.Perimeter {
	t.Helper()
	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), store.OpenConfig{URL: storeURL, DataDir: dataDir, MasterKey: mk})
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
	ring, err := keys.FromMaster(mk)
	if err != nil {
		t.Fatal(err)
	}
	return &perimeter.Perimeter{Store: st, CA: ca, Issuer: ca, Keys: ring}
}

// write writes n records to each chain in two rounds a digest apart.
func (d *anchoredData) write(t *testing.T, chains []string, sinks []audit.AnchorStore, n int) {
	t.Helper()
	logs, err := perimeter.OpenChains(d.auditDir, chains, d.p, testAccount, sinks, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		for _, c := range chains {
			for i := range n / 2 {
				ev := &audit.Event{EventSource: "sts.amazonaws.com", EventName: "GetCallerIdentity", RequestID: c + "-" + string(rune('a'+round)) + string(rune('a'+i))}
				if err := logs.Get(c).Record(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(1100 * time.Millisecond) // a digest (DigestInterval 1s) covers the round
	}
	logs.CloseAll(slog.New(slog.DiscardHandler))
}

// replacement writes a shorter valid chain elsewhere, certified as an attacker holding
// the data directory (its CA key) can.
func (d *anchoredData) replacement(t testing.TB, chain string) string {
	other := t.TempDir()
	key, cert, err := perimeter.WriterKey(d.p.CA, testAccount, chain)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: other, Chain: chain, Signer: key, Certificate: cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(context.Background(), &audit.Event{EventName: "Forged"})
	l.Close()
	return other
}

var missingRange = regexp.MustCompile(`records [0-9]+ to [0-9]+`)

// TestAuditVerifyAgainstAnchors is the tampering table against `phantom audit verify`
// on a stopped perimeter's data directory (SQLite): a chain cut back to an earlier
// digest, deleted, emptied, or replaced by a shorter valid chain fails (exit 1), naming
// the chain and the records missing — each of which a copy of the directory alone
// verifies, and says plainly it could not have seen.
func TestAuditVerifyAgainstAnchors(t *testing.T) {
	verifyAgainstAnchors(t, func(t *testing.T) (string, []audit.AnchorStore, []string) { return "", nil, nil })
}

func TestAuditVerifyAgainstAnchorsPostgres(t *testing.T) {
	storetest.PostgresSchema(t, "phantom_verify") // skips without a server
	verifyAgainstAnchors(t, func(t *testing.T) (string, []audit.AnchorStore, []string) {
		dsn, _ := storetest.PostgresSchema(t, "phantom_verify")
		return dsn, nil, []string{"--store", dsn}
	})
}

// TestAuditVerifyAgainstAnchorSink: the writers also anchor in a PostgreSQL schema with
// a login that may only insert anchors (the attacker holds it, and cannot remove them):
// verification against that sink finds the tampering even when the store itself is
// the attacker's.
func TestAuditVerifyAgainstAnchorSink(t *testing.T) {
	storetest.PostgresSchema(t, "phantom_sink") // skips without a server
	verifyAgainstAnchors(t, func(t *testing.T) (string, []audit.AnchorStore, []string) {
		dsn, _ := storetest.PostgresSchema(t, "phantom_sink")
		owner, err := store.OpenPostgres(t.Context(), store.PostgresConfig{DSN: dsn, MasterKey: bytes.Repeat([]byte{4}, 32)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { owner.Close() })
		writer := storetest.AuditWriterRole(t, owner, dsn)
		sink, err := store.OpenAnchorClient(t.Context(), writer)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sink.Close)
		if _, err := storetest.Conn(t, writer).Exec(t.Context(), `DELETE FROM audit_anchors`); err == nil {
			t.Fatal("the writer's login deleted anchors")
		}
		return "", []audit.AnchorStore{sink}, []string{"--store", writer}
	})
}

// verifyAgainstAnchors runs the table; setup returns each case's store URL ("" for the
// data directory's SQLite), extra anchor sinks, and the arguments verify needs to find
// the anchors.
func verifyAgainstAnchors(t *testing.T, setup func(t *testing.T) (string, []audit.AnchorStore, []string)) {
	var cur *anchoredData
	for _, tc := range audittest.Tamperings(func(t testing.TB, chain string) string { return cur.replacement(t, chain) }) {
		t.Run(tc.Name, func(t *testing.T) {
			storeURL, sinks, extra := setup(t)
			d := newAnchoredData(t, storeURL, sinks...)
			cur = d
			args := append([]string{"verify", d.auditDir}, extra...)
			if code, out, errOut := runAudit(args...); code != 0 || !strings.Contains(out, "keys certified by the perimeter CA; anchors") {
				t.Fatalf("before: exit %d\n%s%s", code, out, errOut)
			}
			copyDir := filepath.Join(t.TempDir(), "audit")
			tc.Do(t, d.auditDir, "sts")
			if err := os.CopyFS(copyDir, os.DirFS(d.auditDir)); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runAudit(args...)
			if code != 1 || !strings.Contains(out, "TAMPERED: sts") || !missingRange.MatchString(out) || !strings.Contains(out, "FAILED: ") {
				t.Fatalf("exit %d, want 1 naming chain sts and the records missing\n%s%s", code, out, errOut)
			}
			t.Logf("%s", out)
			if tc.Blind {
				// The directory alone cannot show it, and says so.
				code, out, _ := runAudit("verify", copyDir)
				if code != 0 || !strings.Contains(out, "not checked: no anchors: a chain cut back") {
					t.Fatalf("a copy without anchors: exit %d\n%s", code, out)
				}
			}
		})
	}
}

// TestAuditVerifyNoise: a verified data directory of seven chains prints one line; an
// edited record prints one TAMPERED line for its chain and kind, and a count of the
// rest.
func TestAuditVerifyNoise(t *testing.T) {
	d := newAnchoredData(t, "")
	d.write(t, []string{"egress", "detector", "findings", "console", "endpoint-vpce-0123456789abcdef0"}, nil, 4)
	code, out, _ := runAudit("verify", d.auditDir)
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("exit %d, want one line:\n%s", code, out)
	}
	seg := filepath.Join(d.auditDir, "gateway", "00000001.jsonl")
	data, _ := os.ReadFile(seg)
	os.WriteFile(seg, bytes.Replace(data, []byte("gateway-aa"), []byte("gateway-zz"), 1), 0o600)
	code, out, _ = runAudit("verify", d.auditDir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || len(lines) > 4 || !strings.HasPrefix(lines[0], "TAMPERED: gateway/00000001.jsonl line ") {
		t.Fatalf("exit %d, want at most four lines naming the record:\n%s", code, out)
	}
	t.Logf("\n%s", out)
}

// TestAuditPrune: prune removes sealed segments before a date and leaves a checkpoint
// in the store; verification of the rest passes, the gap reported as pruned; a chain
// that does not verify is not pruned.
func TestAuditPrune(t *testing.T) {
	d := newAnchoredData(t, "")
	// Small segments, so there is something sealed to prune.
	key, cert, err := perimeter.WriterKey(d.p.CA, testAccount, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: d.auditDir, Chain: "gateway", Signer: key, Certificate: cert.Raw, SegmentBytes: 4 << 10, Anchors: []audit.AnchorStore{d.p.Store}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		l.Record(context.Background(), &audit.Event{EventName: "Invoke", RequestID: strings.Repeat("x", 200) + string(rune('a'+i%26))})
	}
	l.Close()
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	// A chain that does not verify is left alone (in a copy of the data directory).
	tampered := filepath.Join(t.TempDir(), "data")
	if err := os.CopyFS(tampered, os.DirFS(d.dataDir)); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(tampered, store.MasterKeyFile), 0o600) // CopyFS does not keep modes
	audittest.EmptyNewest(t, filepath.Join(tampered, "audit", "gateway"))
	if code, out, errOut := runAudit("prune", filepath.Join(tampered, "audit"), "--before", future, "--chain", "gateway"); code != 1 || !strings.Contains(out, "not pruned: the chain does not verify") {
		t.Fatalf("prune of a tampered chain: exit %d\n%s%s", code, out, errOut)
	}
	archive := t.TempDir()
	code, out, errOut := runAudit("prune", d.auditDir, "--before", future, "--archive", archive)
	if code != 0 || !strings.Contains(out, "gateway: pruned segments 1 to ") || !strings.Contains(out, "checkpoint anchored") {
		t.Fatalf("prune: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(archive, "gateway", "00000001.jsonl")); err != nil {
		t.Fatalf("not archived: %v", err)
	}
	code, out, _ = runAudit("verify", d.auditDir)
	if code != 0 || !strings.Contains(out, "pruned: gateway") {
		t.Fatalf("verify after prune: exit %d\n%s", code, out)
	}
	if code, _, _ := runAudit("prune", d.auditDir, "--before", "yesterday"); code != 2 {
		t.Fatalf("a bad date: exit %d", code)
	}
}

// TestAuditAnchorsExport: the exported anchors verify a copy of the directory offline.
func TestAuditAnchorsExport(t *testing.T) {
	d := newAnchoredData(t, "")
	file := filepath.Join(t.TempDir(), "anchors.json")
	if code, out, errOut := runAudit("anchors", "export", "--data-dir", d.dataDir, "--output", file, "--store", ""); code != 0 || !strings.Contains(out, "2 chains") {
		t.Fatalf("export: exit %d\n%s%s", code, out, errOut)
	}
	copyDir := filepath.Join(t.TempDir(), "audit")
	os.CopyFS(copyDir, os.DirFS(d.auditDir))
	ca := filepath.Join(d.dataDir, "ca.pem")
	if code, out, _ := runAudit("verify", copyDir, "--anchors", file, "--ca", ca); code != 0 || !strings.Contains(out, "anchors "+file) {
		t.Fatalf("offline verify: exit %d\n%s", code, out)
	}
	os.RemoveAll(filepath.Join(copyDir, "sts"))
	if code, out, _ := runAudit("verify", copyDir, "--anchors", file, "--ca", ca); code != 1 || !strings.Contains(out, "TAMPERED: sts seq 1: removed: the chain is missing") {
		t.Fatalf("offline verify of a deleted chain: exit %d\n%s", code, out)
	}
}

// dataDirCA is the CA of a data directory (kept in its store), as an admin command
// opens it: for tests that play a component the perimeter's CA certified.
func dataDirCA(t *testing.T, dataDir, account string) *pki.Authority {
	t.Helper()
	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), store.OpenConfig{DataDir: dataDir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := pki.OpenAuthority(t.Context(), pki.AuthorityConfig{Config: pki.Config{Account: account}, Issue: true, Root: true}, st)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
