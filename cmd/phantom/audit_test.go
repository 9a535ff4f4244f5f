package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
)

// auditDir writes a closed chain "gateway" of n events under a fresh directory and
// returns it with the signer's public key file.
func auditDir(t *testing.T, n int) (dir, pubFile string) {
	t.Helper()
	dir = t.TempDir()
	key, err := keys.DeriveEd25519(bytes.Repeat([]byte{1}, 32), keys.AuditLegacy)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: dir, Chain: "gateway", Signer: key, DigestInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		ev := &audit.Event{EventSource: "execute-api.amazonaws.com", EventName: "Invoke", AWSRegion: "us-east-1",
			SourceIPAddress: "10.0.0.1", RequestID: "req-" + string(rune('a'+i))}
		if i == 1 {
			ev.ErrorCode, ev.ErrorMessage = "AccessDenied", "explicit deny in the endpoint policy"
		}
		if err := l.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := audit.MarshalPublicKey(key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	pubFile = filepath.Join(t.TempDir(), "audit.pem")
	if err := os.WriteFile(pubFile, p, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, pubFile
}

func runAudit(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"audit"}, args...), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestAuditVerifyOK(t *testing.T) {
	dir, pub := auditDir(t, 3)
	// A copy of a chain without a data directory: no CA, no anchors, and it says so.
	code, out, errOut := runAudit("verify", dir)
	if code != 0 || !strings.Contains(out, "OK: 3 records in 1 chain verified (keys unpinned; no anchors)") ||
		!strings.Contains(out, "not checked: keys unpinned") || !strings.Contains(out, "not checked: no anchors: a chain cut back") || strings.Contains(out, "warning") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, _ = runAudit("verify", dir, "--verbose")
	if code != 0 || !strings.Contains(out, "chain gateway: 3 records (seq 1 to 3)") || !strings.Contains(out, "warning: gateway/signer.pub: unpinned") {
		t.Fatalf("verbose: exit %d\n%s", code, out)
	}
	code, out, _ = runAudit("verify", dir, "--public-key", pub)
	if code != 0 || !strings.Contains(out, "OK: 3 records in 1 chain verified (keys pinned; no anchors)") || strings.Contains(out, "warning") || strings.Contains(out, "unpinned") {
		t.Fatalf("pinned: exit %d\n%s", code, out)
	}
}

func TestAuditVerifyTampered(t *testing.T) {
	dir, pub := auditDir(t, 3)
	seg := filepath.Join(dir, "gateway", "00000001.jsonl")
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Replace(data, []byte(`"errorCode":"AccessDenied"`), []byte(`"errorCode":"AccessGranted"`), 1)
	os.WriteFile(seg, data, 0o600)

	code, out, _ := runAudit("verify", dir, "--public-key", pub)
	if code != 1 || !strings.Contains(out, "TAMPERED: gateway/00000001.jsonl line 2 seq 2: modified:") || !strings.Contains(out, "FAILED:") {
		t.Fatalf("exit %d\n%s", code, out)
	}

	code, out, _ = runAudit("verify", dir, "--output", "json")
	var rep struct {
		OK       bool
		Problems []audit.Problem
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if code != 1 || rep.OK || len(rep.Problems) == 0 || rep.Problems[0].Seq != 2 || rep.Problems[0].Line != 2 ||
		rep.Problems[0].File != "00000001.jsonl" || rep.Problems[0].Kind != audit.Modified {
		t.Fatalf("exit %d %+v", code, rep)
	}
}

func TestAuditVerifyUsage(t *testing.T) {
	dir, _ := auditDir(t, 1)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no directory", []string{"verify"}},
		{"two directories", []string{"verify", dir, dir}},
		{"not an audit directory", []string{"verify", t.TempDir()}},
		{"missing directory", []string{"verify", filepath.Join(dir, "nope")}},
		{"unknown output", []string{"verify", dir, "--output", "yaml"}},
		{"missing key file", []string{"verify", dir, "--public-key", filepath.Join(dir, "nope.pem")}},
		{"unknown flag", []string{"verify", dir, "--frobnicate"}},
		{"unknown chain", []string{"verify", dir, "--chain", "sts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, out, errOut := runAudit(tc.args...); code != 2 || errOut == "" {
				t.Fatalf("exit %d, want 2\nstdout %s\nstderr %s", code, out, errOut)
			}
		})
	}
}

func TestAuditShow(t *testing.T) {
	dir, _ := auditDir(t, 3)
	code, out, errOut := runAudit("show", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct{ Records []audit.Event }
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(doc.Records) != 3 || doc.Records[1].ErrorCode != "AccessDenied" || doc.Records[0].EventID == "" || doc.Records[2].EventVersion != audit.EventVersion {
		t.Fatalf("%+v", doc.Records)
	}
	code, out, _ = runAudit("show", dir, "--chain", "gateway", "--after", "2")
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil || len(doc.Records) != 1 {
		t.Fatalf("--after 2: exit %d %v\n%s", code, err, out)
	}
}

// The key public-key prints from the master key pins verification of what a Phantom
// process with that master key wrote; a fresh data directory gets no key made up.
func TestAuditPublicKey(t *testing.T) {
	t.Setenv(store.MasterKeyEnv, "")
	os.Unsetenv(store.MasterKeyEnv)
	dataDir := t.TempDir()
	if code, _, errOut := runAudit("public-key", "--data-dir", dataDir); code != 2 || !strings.Contains(errOut, "no master key") {
		t.Fatalf("exit %d, %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dataDir, store.MasterKeyFile)); err == nil {
		t.Fatal("public-key created a master key")
	}
	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := keys.DeriveEd25519(mk, keys.AuditLegacy)
	dir := t.TempDir()
	l, err := audit.Open(audit.Config{Dir: dir, Chain: "sts", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	l.Record(context.Background(), &audit.Event{EventName: "AssumeRole"})
	l.Close()

	code, pem, errOut := runAudit("public-key", "--data-dir", dataDir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pub := filepath.Join(t.TempDir(), "pub.pem")
	os.WriteFile(pub, []byte(pem), 0o600)
	if code, out, _ := runAudit("verify", dir, "--public-key", pub); code != 0 || !strings.Contains(out, "keys pinned") {
		t.Fatalf("verify with the printed key: exit %d\n%s", code, out)
	}
	// Another master key's public key does not verify it.
	otherDir := t.TempDir()
	omk, _ := store.LoadOrCreateMasterKey(otherDir)
	osigner, _ := keys.DeriveEd25519(omk, keys.AuditLegacy)
	op, _ := audit.MarshalPublicKey(osigner.Public().(ed25519.PublicKey))
	os.WriteFile(pub, op, 0o600)
	if code, out, _ := runAudit("verify", dir, "--public-key", pub); code != 1 || !strings.Contains(out, "bad-signature") {
		t.Fatalf("verify with another key: exit %d\n%s", code, out)
	}
}
