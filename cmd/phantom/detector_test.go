package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
)

// detectorProc is a running `phantom detector`.
type detectorProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    strings.Builder
	exited chan error
}

func (d *detectorProc) logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

// startDetector runs `phantom detector` and waits for its ready line.
func startDetector(t *testing.T, bin string, args ...string) *detectorProc {
	t.Helper()
	d := &detectorProc{cmd: exec.Command(bin, append([]string{"detector"}, args...)...), exited: make(chan error, 1)}
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.out.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if strings.HasPrefix(sc.Text(), "phantom detector: following audit chains in ") {
				close(ready)
			}
		}
	}()
	go func() { err := d.cmd.Wait(); pw.Close(); d.exited <- err }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.exited
	})
	select {
	case <-ready:
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("phantom detector exited before it was ready: %v\n%s", err, d.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("phantom detector not ready within 30s:\n%s", d.logs())
	}
	return d
}

// TestDetectorCommandKill9 runs `phantom detector` on a data directory whose audit
// directory two "gateway replicas" (audit writers here) fill while it runs, kills it
// with SIGKILL mid-stream, restarts it, and checks in the store that each chain's
// cursor counts exactly the chain's records: nothing counted twice across the kill,
// nothing lost, and the detector's own chain never consumed. SIGTERM then stops it
// cleanly.
func TestDetectorCommandKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildPhantom(t)
	t.Run("sqlite", func(t *testing.T) { detectorKill9(t, bin, "") })
	t.Run("postgres", func(t *testing.T) { detectorKill9(t, bin, detectorTestSchema(t)) })
}

// detectorTestSchema returns a URL of a fresh schema (dropped at cleanup) on the server
// PHANTOM_TEST_POSTGRES_DSN names, or skips.
func detectorTestSchema(t *testing.T) string {
	t.Helper()
	dsn, _ := storetest.PostgresSchema(t, "phantom_detector")
	return dsn
}

func detectorKill9(t *testing.T, bin, storeURL string) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "perimeter.yaml")
	if err := os.WriteFile(spec, []byte(stsTestSpec), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	auditDir := filepath.Join(dataDir, "audit")
	args := []string{"--config", spec, "--data-dir", dataDir, "--exclude-chain", "ignored", "--store", storeURL}

	const perChain = 20000
	chains := []string{"gateway-1", "gateway-2", "ignored"}
	signer, err := keys.DeriveEd25519(bytes.Repeat([]byte{1}, 32), keys.AuditLegacy)
	if err != nil {
		t.Fatal(err)
	}
	logs := make([]*audit.Log, len(chains))
	for i, c := range chains {
		if logs[i], err = audit.Open(audit.Config{Dir: auditDir, Chain: c, Signer: signer, SegmentBytes: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		defer logs[i].Close()
	}
	write := func(l *audit.Log, chain string, from, to int) {
		for i := from; i < to; i++ {
			ev := &audit.Event{EventVersion: audit.EventVersion, EventID: fmt.Sprintf("%s-%d", chain, i), EventTime: time.Now().UTC(),
				EventSource: "execute-api.amazonaws.com", EventName: "Invoke", AWSRegion: "us-east-1", SourceIPAddress: "192.0.2.10",
				UserIdentity: audit.UserIdentity{Type: "IAMUser", ARN: "arn:aws:iam::123456789012:user/alice", AccountID: "123456789012", AccessKeyID: "AKIAEXAMPLEEXAMPLE01"}}
			if err := l.Record(context.Background(), ev); err != nil {
				t.Error(err)
				return
			}
		}
	}
	for i, c := range chains {
		write(logs[i], c, 0, perChain/4)
	}

	d := startDetector(t, bin, args...)
	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), store.OpenConfig{URL: storeURL, DataDir: dataDir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	events := func() map[string]store.AuditCursor {
		cs, err := st.ListAuditCursors(t.Context(), "detector")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]store.AuditCursor{}
		for _, c := range cs {
			m[c.Chain] = c
		}
		return m
	}

	// The replicas keep writing while the detector reads; kill it once it is mid-way.
	var wg sync.WaitGroup
	for i, c := range chains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := perChain / 4; n < perChain; n += 500 {
				write(logs[i], c, n, n+500)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if cs := events(); cs["gateway-1"].Events > 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress within 30s: %+v\n%s", events(), d.logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	d.exited <- nil
	atKill := events()
	t.Logf("killed with cursors at gateway-1 %d, gateway-2 %d", atKill["gateway-1"].Events, atKill["gateway-2"].Events)
	if atKill["gateway-1"].Events >= perChain {
		t.Fatalf("the detector read everything before the kill: not a mid-stream kill")
	}

	restarted := time.Now()
	d = startDetector(t, bin, args...)
	for _, c := range []string{"gateway-1", "gateway-2"} {
		if want := fmt.Sprintf("chain=%s after_seq=%d", c, atKill[c].Seq); atKill[c].Seq > 0 && !strings.Contains(d.logs(), want) {
			t.Errorf("restart log does not say %q:\n%s", want, d.logs())
		}
	}
	wg.Wait()
	var last map[string]store.AuditCursor
	for deadline := time.Now().Add(60 * time.Second); ; {
		last = events()
		if last["gateway-1"].Events >= perChain && last["gateway-2"].Events >= perChain {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not caught up within 60s: %+v\n%s", last, d.logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	caughtUp := time.Since(restarted)
	n := 2*perChain - atKill["gateway-1"].Events - atKill["gateway-2"].Events
	t.Logf("restarted detector consumed %d events in %s (%.0f events/s, writers included)", n, caughtUp.Round(time.Millisecond), float64(n)/caughtUp.Seconds())
	time.Sleep(300 * time.Millisecond) // anything more would be a double count
	last = events()
	for _, c := range []string{"gateway-1", "gateway-2"} {
		if cur := last[c]; cur.Events != perChain || cur.Seq != perChain {
			t.Errorf("chain %s: cursor at seq %d with %d events, want %d records consumed exactly once", c, cur.Seq, cur.Events, perChain)
		}
	}
	for _, c := range []string{"ignored", "detector"} {
		if cur, ok := last[c]; ok {
			t.Errorf("chain %s consumed: %+v", c, cur)
		}
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		d.exited <- err
		if err != nil {
			t.Fatalf("phantom detector after SIGTERM: %v\n%s", err, d.logs())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("phantom detector did not stop on SIGTERM:\n%s", d.logs())
	}
}

// TestDetectorSigmaRules: the spec's detection.sigmaRules reach the streaming detector:
// a matching audit event becomes a finding in the store carrying the rule; a rule that
// cannot be loaded is logged with the reason while the others run; SIGHUP reads the
// directory again.
func TestDetectorSigmaRules(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildPhantom(t)
	dir := t.TempDir()
	rules := filepath.Join(dir, "sigma")
	os.Mkdir(rules, 0o700)
	rule := func(id, eventName string) string {
		return "title: Invoke By " + id + "\nid: " + id + "\nauthor: Phantom tests\nlevel: medium\ntags: [attack.execution]\n" +
			"logsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  sel:\n    eventName: " + eventName + "\n    userIdentity.type: IAMUser\n  condition: sel\n"
	}
	os.WriteFile(filepath.Join(rules, "invoke.yml"), []byte(rule("11111111-2222-4333-8444-555555555555", "Invoke")), 0o600)
	os.WriteFile(filepath.Join(rules, "keywords.yml"), []byte("title: Keywords\nlogsource:\n  product: aws\n  service: cloudtrail\ndetection:\n  k:\n    - evil\n  condition: k\n"), 0o600)
	spec := filepath.Join(dir, "perimeter.yaml")
	if err := os.WriteFile(spec, []byte(stsTestSpec+"detection:\n  sigmaRules: sigma\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	signer, err := keys.DeriveEd25519(bytes.Repeat([]byte{1}, 32), keys.AuditLegacy)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: filepath.Join(dataDir, "audit"), Chain: "gateway-1", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := startDetector(t, bin, "--config", spec, "--data-dir", dataDir)
	if logs := d.logs(); !strings.Contains(logs, "Sigma rules loaded") || !strings.Contains(logs, "rules=1") ||
		!strings.Contains(logs, "keyword searches") {
		t.Fatalf("load not logged:\n%s", logs)
	}
	record := func(name string) {
		ev := &audit.Event{EventVersion: audit.EventVersion, EventID: "ev-" + name, EventTime: time.Now().UTC(),
			EventSource: "execute-api.amazonaws.com", EventName: name, AWSRegion: "us-east-1", SourceIPAddress: "192.0.2.10",
			UserIdentity: audit.UserIdentity{Type: "IAMUser", ARN: "arn:aws:iam::123456789012:user/alice", AccountID: "123456789012", AccessKeyID: "AKIAEXAMPLEEXAMPLE01"}}
		if err := l.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	mk, err := store.LoadOrCreateMasterKey(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), store.OpenConfig{DataDir: dataDir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	await := func(typ string) store.Finding {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			fs, err := st.ListFindings(t.Context(), store.FindingFilter{Type: typ})
			if err != nil {
				t.Fatal(err)
			}
			if len(fs) > 0 {
				return fs[0]
			}
		}
		t.Fatalf("no %s finding within 30s:\n%s", typ, d.logs())
		return store.Finding{}
	}
	record("Invoke")
	f := await("Execution:IAMUser/Sigma!11111111-2222-4333-8444-555555555555")
	if !strings.Contains(string(f.Document), `"author":"Phantom tests"`) || f.Principal != "arn:aws:iam::123456789012:user/alice" {
		t.Errorf("finding %s", f.Document)
	}

	// The rule is replaced in place; SIGHUP reads it again.
	os.WriteFile(filepath.Join(rules, "invoke.yml"), []byte(rule("66666666-2222-4333-8444-555555555555", "Describe")), 0o600)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); strings.Count(d.logs(), "Sigma rules loaded") < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not reload the rules:\n%s", d.logs())
		}
	}
	record("Describe")
	await("Execution:IAMUser/Sigma!66666666-2222-4333-8444-555555555555")
}
