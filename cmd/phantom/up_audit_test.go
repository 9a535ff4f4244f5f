package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// ops GETs path on the ops listener.
func (u *upServer) ops(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := u.goClient(t, nil).Get(strings.TrimSuffix(u.env["PHANTOM_METRICS_URL"], "/metrics") + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUpAuditChainDeleted: the sts chain of a stopped perimeter is deleted; the
// restarted perimeter does not block on it, raises a High audit-tampering finding
// naming the chain and the records gone within 5 seconds, says so in /readyz and its
// metrics, goes on detecting from new traffic, and audit verify fails naming the chain.
func TestUpAuditChainDeleted(t *testing.T) {
	testenv.LookPath(t, "curl")
	if testing.Short() {
		t.Skip("runs phantom up")
	}
	bin := buildPhantom(t)
	u := startUp(t, bin)
	user := u.user()
	for range 3 {
		if r := u.curl(t, &user, u.env["PHANTOM_API_URL"]); r.Status != http.StatusOK {
			t.Fatalf("call: %s", r)
		}
	}
	if _, _, err := u.aws(t, user, "sts", "get-caller-identity", "--endpoint-url", u.env["PHANTOM_STS_URL"]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // digested and anchored
	u.stop(t)

	if err := os.RemoveAll(filepath.Join(u.dataDir, "audit", "sts")); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	u = startUpIn(t, bin, u.dataDir)

	var found detect.Finding
	const target, limit = 5 * time.Second, 15 * time.Second
	deadline := restarted.Add(limit)
	for found.ID == "" {
		for _, f := range u.findings(t) {
			if f.Type == detect.TypeAuditTampered && f.Severity >= 7 && f.Service.AdditionalInfo["chain"] == "sts" {
				found = f
			}
		}
		if found.ID == "" && time.Now().After(deadline) {
			t.Fatalf("no High audit-tampering finding about chain sts within %s of the restart; findings:%s", limit, summarize(u.findings(t)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	testenv.Latency(t, "the audit-tampering finding after the restart", found.CreatedAt.Sub(restarted), target, limit)
	t.Logf("%s %.1f: %s", found.Type, found.Severity, found.Description)
	if !regexp.MustCompile(`records 1 to [0-9]+`).MatchString(found.Description) {
		t.Errorf("the finding does not name the records gone: %s", found.Description)
	}

	code, body := u.ops(t, "/readyz")
	t.Logf("/readyz: %d\n%s", code, body)
	if code != 200 || !regexp.MustCompile(`audit chain sts damaged \(found [^)]*\): the chain holds no segment, .* \(records 1 to [0-9]+\)`).MatchString(body) {
		t.Fatalf("/readyz does not name the damaged chain: %d %q", code, body)
	}
	if _, metrics := u.ops(t, "/metrics"); !regexp.MustCompile(`phantom_detector_chain_damage_total\{chain="sts"\} [1-9]`).MatchString(metrics) ||
		!strings.Contains(metrics, `phantom_detector_chain_unread{chain="sts"} 0`) && strings.Contains(metrics, `phantom_detector_chain_unread{chain="sts"}`) {
		t.Fatalf("metrics do not show the damage:\n%s", grepLines(metrics, "chain_"))
	}

	// New traffic still raises findings: a burst of bad signatures.
	burst := time.Now()
	bad := user
	bad.SecretAccessKey = strings.Repeat("y", 40)
	for i := range 15 {
		if r := u.curl(t, &bad, u.env["PHANTOM_API_URL"]); r.Status != http.StatusForbidden {
			t.Fatalf("bad signature %d: %s", i, r)
		}
	}
	f, _ := u.awaitFinding(t, detect.TypeBruteForce, user.AccessKeyID, limit, burst)
	t.Logf("later finding from new traffic: %s count %d", f.Type, f.Service.Count)
	// STS calls after the restart are in the chain that continues.
	if _, _, err := u.aws(t, user, "sts", "get-caller-identity", "--endpoint-url", u.env["PHANTOM_STS_URL"]); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(u.bin, "audit", "verify", filepath.Join(u.dataDir, "audit")).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "TAMPERED: sts") {
		t.Fatalf("audit verify after the deletion: %v, want exit 1 naming sts\n%s", err, out)
	}
	t.Logf("audit verify:\n%s", out)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
