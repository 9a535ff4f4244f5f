package consume_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/audit"
	"github.com/phantom-perimeter/phantom/internal/audit/audittest"
	"github.com/phantom-perimeter/phantom/internal/config"
	"github.com/phantom-perimeter/phantom/internal/detect"
	"github.com/phantom-perimeter/phantom/internal/detect/consume"
	"github.com/phantom-perimeter/phantom/internal/detect/respond"
	"github.com/phantom-perimeter/phantom/internal/keys"
	"github.com/phantom-perimeter/phantom/internal/store"
	"github.com/phantom-perimeter/phantom/internal/store/storetest"
	"github.com/phantom-perimeter/phantom/internal/testenv"
)

// tamperDetector counts the numbered test events (counter) and hands Phantom's own audit
// events to the real detector, whose rules turn damage into findings.
type tamperDetector struct {
	*counter
	real *detect.Detector
}

func newTamperDetector(t testing.TB) *tamperDetector {
	real, err := detect.New(detect.Config{Account: "123456789012", Region: "eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	return &tamperDetector{counter: newCounter(), real: real}
}

func (d *tamperDetector) Observe(ev *audit.Event) []detect.Finding {
	if ev.EventSource == audit.EventSourceAudit {
		return d.real.Observe(ev)
	}
	return d.counter.Observe(ev)
}

func (d *tamperDetector) Restore(fs []detect.Finding) {
	d.counter.Restore(fs)
	d.real.Restore(fs)
}

// tamperFindings returns the stored High audit-tampering findings about chain.
func tamperFindings(t *testing.T, st store.Store, chain string) []detect.Finding {
	t.Helper()
	recs, err := st.ListFindings(t.Context(), store.FindingFilter{Type: detect.TypeAuditTampered})
	if err != nil {
		t.Fatal(err)
	}
	var out []detect.Finding
	for _, r := range recs {
		var f detect.Finding
		if err := json.Unmarshal(r.Document, &f); err != nil {
			t.Fatal(err)
		}
		if f.Service.AdditionalInfo["chain"] == chain && f.Severity >= 7 {
			out = append(out, f)
		}
	}
	return out
}

// Damage is to be a finding within findingTarget (the 5 s); tests wait up to
// findingLimit, a bound for a loaded CI machine, and report the figure against the
// target (testenv.Latency).
const (
	findingTarget = 5 * time.Second
	findingLimit  = 15 * time.Second
)

// awaitTamperFinding waits for a High audit-tampering finding about chain.
func awaitTamperFinding(t *testing.T, st store.Store, chain string, within time.Duration) detect.Finding {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if fs := tamperFindings(t, st, chain); len(fs) > 0 {
			return fs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no High %s finding about chain %s within %s", detect.TypeAuditTampered, chain, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// anchoredWriter is a writer that anchors in as (the store, or a writer's own login).
func anchoredWriter(t testing.TB, dir, chain string, as ...audit.AnchorStore) *writer {
	t.Helper()
	signer, err := keys.DeriveEd25519(bytes.Repeat([]byte{7}, 32), keys.AuditLegacy)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: dir, Chain: chain, Signer: signer, SegmentBytes: 8 << 10, DigestInterval: 50 * time.Millisecond, Anchors: as})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &writer{l: l, chain: chain}
}

// tamperings are audittest's, the shorter chain written with the data directory's key.
var tamperings = audittest.Tamperings(func(t testing.TB, chain string) string {
	other := t.TempDir()
	w := newWriter(t, other, chain)
	w.write(t, 3)
	w.l.Close()
	return other
})

// TestTamperingFound is the tampering table against the streaming detector: every case,
// on a stopped perimeter (tampered while down, then restarted) and on a running one,
// becomes a High finding naming the chain within 5 seconds, while the other chain's
// events keep being read and keep raising their findings; the damaged chain is read on
// from where its writer continued it.
func TestTamperingFound(t *testing.T) {
	tamperingFound(t, openSQLiteB, nil)
}

func TestTamperingFoundPostgres(t *testing.T) {
	tamperingFound(t, openPostgres, nil)
}

// TestTamperingFoundPostgresWriterRole: the writers anchor with a login that may only
// insert anchors, and the attacker holds it: removing or changing the anchors first is
// refused, and the tampering is found all the same.
func TestTamperingFoundPostgresWriterRole(t *testing.T) {
	var writerDSN string
	open := func(t testing.TB) store.Store {
		dsn, _ := storetest.PostgresSchema(t, "phantom_consume")
		st, err := store.OpenPostgres(context.Background(), store.PostgresConfig{DSN: dsn, MasterKey: bytes.Repeat([]byte{9}, 32)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		writerDSN = storetest.AuditWriterRole(t, st, dsn)
		return st
	}
	tamperingFound(t, open, func(t *testing.T) []audit.AnchorStore {
		c, err := store.OpenAnchorClient(t.Context(), writerDSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		// The attacker, with these credentials, tries the anchors first.
		conn := storetest.Conn(t, writerDSN)
		for _, stmt := range []string{`DELETE FROM audit_anchors`, `TRUNCATE audit_anchors`, `UPDATE audit_anchors SET seq = 0`, `DELETE FROM audit_chains`} {
			if _, err := conn.Exec(t.Context(), stmt); err == nil {
				t.Fatalf("with the writer's credentials, %s succeeded", stmt)
			}
		}
		return []audit.AnchorStore{c}
	})
}

func tamperingFound(t *testing.T, open func(testing.TB) store.Store, writerAnchors func(t *testing.T) []audit.AnchorStore) {
	for _, tc := range tamperings {
		for _, running := range []bool{false, true} {
			mode := map[bool]string{false: "stopped", true: "running"}[running]
			t.Run(tc.Name+"/"+mode, func(t *testing.T) {
				st := open(t)
				anchors := []audit.AnchorStore{st}
				if writerAnchors != nil {
					anchors = writerAnchors(t)
				}
				dir := t.TempDir()
				sts := anchoredWriter(t, dir, "sts", anchors...)
				gw := anchoredWriter(t, dir, "gateway", anchors...)
				det := newTamperDetector(t)
				cfg := testConfig(dir, det, &sink{Sink: newResponder(t, st), c: det.counter})
				cfg.Anchors = st
				if testing.Verbose() {
					cfg.Logger = slog.New(slog.NewTextHandler(tlog{t}, nil))
				}
				sts.write(t, 140)
				gw.write(t, 150)
				time.Sleep(120 * time.Millisecond) // a digest covers 140, the next one 150
				sts.write(t, 10)

				var c *consume.Consumer
				var tampered time.Time
				if running {
					c, _ = start(t, cfg)
					waitEvents(t, c, "sts", 150, 10*time.Second)
					time.Sleep(150 * time.Millisecond) // digested and anchored
					tampered = time.Now()
					tc.Do(t, dir, "sts")
					sts.write(t, 5) // the writer finds the damage at its next digest
				} else {
					c0, stop := start(t, cfg)
					waitEvents(t, c0, "sts", 150, 10*time.Second)
					stop()
					sts.l.Close() // the perimeter stops
					gw.l.Close()
					tc.Do(t, dir, "sts")
					tampered = time.Now()
					sts = anchoredWriter(t, dir, "sts", anchors...) // and starts again
					gw = anchoredWriter(t, dir, "gateway", anchors...)
					gw.n = 150
					det = newTamperDetector(t)
					cfg.Detector, cfg.Sink = det, &sink{Sink: newResponder(t, st), c: det.counter}
					c, _ = start(t, cfg)
					sts.write(t, 5)
				}
				f := awaitTamperFinding(t, st, "sts", findingLimit)
				testenv.Latency(t, fmt.Sprintf("%s: %s finding (%.1f) after the tampering", mode, f.Type, f.Severity), time.Since(tampered), findingTarget, findingLimit)
				t.Logf("%s", f.Description)
				// The other chain's events go on raising findings (every 100th).
				before := gatewayCount(t, st)
				gw.write(t, 100)
				deadline := time.Now().Add(10 * time.Second)
				for gatewayCount(t, st) <= before {
					if time.Now().After(deadline) {
						t.Fatalf("no new finding from the gateway chain after the damage (count %d)", before)
					}
					time.Sleep(10 * time.Millisecond)
				}
				// The damaged chain is read on from where its writer continued it.
				sts.write(t, 20)
				deadline = time.Now().Add(10 * time.Second)
				for len(c.Unread()) > 0 || !readPast(c, dir, "sts") {
					if time.Now().After(deadline) {
						t.Fatalf("the damaged chain is not read on: unread %+v cursors %+v", c.Unread(), c.Cursors())
					}
					time.Sleep(10 * time.Millisecond)
				}
				if d := c.Damage(); len(d) == 0 || d[0].Chain != "sts" {
					t.Errorf("Damage() = %+v", d)
				}
			})
		}
	}
}

// tlog writes a logger's lines to the test log.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// gatewayCount is the count of the gateway chain's finding (raised every 100 events).
func gatewayCount(t *testing.T, st store.Store) int {
	rec, err := st.GetFinding(t.Context(), findingID("gateway"))
	if err != nil {
		return 0
	}
	var f struct{ Service struct{ Count int } }
	json.Unmarshal(rec.Document, &f)
	return f.Service.Count
}

// readPast reports whether the consumer has committed the last record of chain in dir.
func readPast(c *consume.Consumer, dir, chain string) bool {
	r, err := audit.NewReader(dir, chain, 0)
	if err != nil {
		return false
	}
	defer r.Close()
	head := uint64(0)
	for {
		e, err := r.Next()
		if d, ok := err.(*audit.Damage); ok && d.Next != nil {
			r.Accept(d)
			continue
		}
		if err != nil {
			break
		}
		head = e.Seq
	}
	for _, cur := range c.Cursors() {
		if cur.Chain == chain {
			return cur.Seq >= head && head > 0
		}
	}
	return false
}

const killDirEnv = "PHANTOM_CONSUME_KILL_DIR"

// blockingAnchors records anchors until stop, then blocks every write forever,
// announcing it: the writer has signed a digest the store will never learn of.
type blockingAnchors struct {
	audit.AnchorStore
	stop int
	n    int
}

func (b *blockingAnchors) PutAuditAnchor(ctx context.Context, a audit.Anchor) error {
	if b.n++; b.n < b.stop {
		return b.AnchorStore.PutAuditAnchor(ctx, a)
	}
	fmt.Printf("blocked before anchoring seq %d\n", a.Seq)
	select {}
}

// TestKillHelper is the writer TestKill9BetweenDigestAndAnchor kills.
func TestKillHelper(t *testing.T) {
	dir := os.Getenv(killDirEnv)
	if dir == "" {
		t.Skip("helper process for TestKill9BetweenDigestAndAnchor")
	}
	st := openStoreIn(t, filepath.Join(dir, "data"))
	w := anchoredWriter(t, filepath.Join(dir, "audit"), "sts", &blockingAnchors{AnchorStore: st, stop: 5})
	for i := 0; ; i++ {
		w.write(t, 1)
		time.Sleep(20 * time.Millisecond)
	}
}

func openStoreIn(t testing.TB, dir string) store.Store {
	t.Helper()
	mk := bytes.Repeat([]byte{5}, 32)
	st, err := store.Open(context.Background(), store.OpenConfig{DataDir: dir, MasterKey: mk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestKill9BetweenDigestAndAnchor: a writer killed after signing a digest and before
// its anchor reached the store leaves the store behind the chain: that is not
// tampering. The chain verifies against the anchors, the writer resumes it without
// recording damage, and the detector raises nothing.
func TestKill9BetweenDigestAndAnchor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), killDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	blocked := false
	for !blocked && sc.Scan() {
		blocked = strings.HasPrefix(sc.Text(), "blocked before anchoring")
	}
	if !blocked {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the helper never reached the anchor it blocks on")
	}
	t.Log(sc.Text())
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	st := openStoreIn(t, filepath.Join(dir, "data"))
	auditDir := filepath.Join(dir, "audit")
	set, err := st.AuditAnchorSet(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := st.LatestAuditAnchor(t.Context(), "sts")
	rep, err := audit.Verify(auditDir, audit.VerifyOptions{Anchors: &set})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Chains[0].CoveredSeq <= head.Seq {
		t.Fatalf("verify after the kill: %v; chain signed through %d, anchored through %d (want the chain ahead)", rep.Problems, rep.Chains[0].CoveredSeq, head.Seq)
	}
	t.Logf("chain signed through seq %d, anchored through %d: not tampering", rep.Chains[0].CoveredSeq, head.Seq)
	w := anchoredWriter(t, auditDir, "sts", st)
	w.n = 1000
	w.write(t, 3)
	det := newTamperDetector(t)
	c, stop := start(t, testConfig(auditDir, det, &sink{Sink: newResponder(t, st), c: det.counter}))
	waitEvents(t, c, "sts", int64(rep.Records+3), 10*time.Second)
	stop()
	if fs := tamperFindings(t, st, "sts"); len(fs) > 0 || len(c.Damage()) > 0 {
		t.Fatalf("the kill was taken for tampering: %+v %+v", fs, c.Damage())
	}
	var damaged bool
	audit.ReadChain(auditDir, "sts", 0, func(e audit.Entry) error {
		ev, _ := e.Decode()
		damaged = damaged || ev.EventName == audit.EventChainDamaged
		return nil
	})
	if damaged {
		t.Fatal("the writer recorded damage after the kill")
	}
}

// TestPrunedIsNotDamage: a consumer that finds the first records of a chain pruned (a
// checkpoint in the store accounts for them) reads on from the first remaining record
// and raises nothing.
func TestPrunedIsNotDamage(t *testing.T) {
	st := openSQLite(t)
	dir := t.TempDir()
	w := anchoredWriter(t, dir, "sts", st)
	w.write(t, 150)
	w.l.Close()
	plan, ok, err := audit.PlanPrune(dir, "sts", time.Now().Add(time.Hour))
	if err != nil || !ok {
		t.Fatalf("PlanPrune: %v %v", ok, err)
	}
	if err := audit.Prune(dir, plan, "", time.Now(), func(cp audit.Checkpoint) error { return st.PutAuditCheckpoint(t.Context(), cp) }); err != nil {
		t.Fatal(err)
	}
	det := newTamperDetector(t)
	cfg := testConfig(dir, det, &sink{Sink: newResponder(t, st), c: det.counter})
	cfg.Anchors = st
	c, stop := start(t, cfg)
	left := int64(150 - plan.Checkpoint.Seq)
	waitEvents(t, c, "sts", left, 10*time.Second)
	stop()
	if fs := tamperFindings(t, st, "sts"); len(fs) > 0 || len(c.Damage()) > 0 || len(c.Unread()) > 0 {
		t.Fatalf("pruning was taken for damage: %+v %+v %+v", fs, c.Damage(), c.Unread())
	}
	for _, cur := range c.Cursors() {
		if cur.Chain == "sts" && (cur.Seq != 150 || cur.Events != left) {
			t.Fatalf("cursor %+v, want seq 150 after %d events", cur, left)
		}
	}
}

// TestDamageResponses: the spec's responses apply to a damage finding like to any
// other: a notify response posts it to the webhook.
func TestDamageResponses(t *testing.T) {
	got := make(chan []byte, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer hook.Close()
	st := openSQLite(t)
	spec := &config.Spec{Account: "123456789012", Region: "eu-west-1", Detection: config.Detection{Responses: []config.Response{
		{FindingType: detect.TypeAuditTampered, MinSeverity: 7, Actions: []config.Action{config.ActionNotify}, Webhook: hook.URL},
	}}}
	resp, err := respond.New(respond.Config{Spec: func() *config.Spec { return spec }, Store: st, Auditor: nopAuditor{}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w := anchoredWriter(t, dir, "sts", st)
	w.write(t, 10)
	w.l.Close()
	os.RemoveAll(filepath.Join(dir, "sts"))
	newWriter(t, dir, "gateway").write(t, 1)
	det := newTamperDetector(t)
	cfg := testConfig(dir, det, &sink{Sink: resp, c: det.counter})
	cfg.Anchors = st
	start(t, cfg)
	select {
	case b := <-got:
		if !bytes.Contains(b, []byte(detect.TypeAuditTampered)) || !bytes.Contains(b, []byte(`"chain":"sts"`)) {
			t.Fatalf("the webhook got %s", b)
		}
	case <-time.After(findingLimit):
		t.Fatalf("the notify response was not applied to the damage finding within %s", findingLimit)
	}
}
