package audit

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// eventsOf reads back a chain's events.
func eventsOf(t *testing.T, dir, chain string) []*Event {
	t.Helper()
	var evs []*Event
	err := ReadChain(dir, chain, 0, func(e Entry) error {
		ev, err := e.Decode()
		evs = append(evs, ev)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// waitHealthy waits for the log to resume on its own.
func waitHealthy(t *testing.T, l *Log) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the log did not resume: %v", l.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWriteFailureRecovers (issue 15, attack 6): a writer whose segment cannot be
// written refuses records (the caller fails closed) and says so (Err, for readiness);
// once the file can be written again it resumes by itself, without a restart and without
// a Record to prompt it, records the gap, and the chain verifies.
func TestWriteFailureRecovers(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", func(c *Config) { c.DigestInterval = 20 * time.Millisecond })
	writeN(t, l, 0, 3)

	// The segment's descriptor stops accepting writes (and truncation), and the file
	// cannot be opened again either: as when its file system goes read-only.
	seg := filepath.Join(dir, "gateway", segmentName(1))
	l.mu.Lock()
	l.f.Close()
	ro, err := os.Open(seg)
	if err != nil {
		t.Fatal(err)
	}
	l.f = ro
	l.mu.Unlock()
	if err := os.Rename(seg, seg+".away"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := l.Record(context.Background(), gatewayEvent(10+i)); err == nil {
			t.Fatal("a record was accepted while the segment cannot be written")
		}
	}
	if l.Err() == nil {
		t.Fatal("Err is nil while writes fail")
	}
	time.Sleep(100 * time.Millisecond) // retries in the background keep failing
	if l.Err() == nil {
		t.Fatal("the log claims to have resumed while the segment is still gone")
	}

	if err := os.Rename(seg+".away", seg); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, l)
	writeN(t, l, 20, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, VerifyOptions{PublicKeys: []ed25519.PublicKey{testSigner(t).Public().(ed25519.PublicKey)}})
	if !rep.OK() || len(rep.Warnings) != 0 {
		t.Fatalf("problems:\n%swarnings: %v", problems(rep), rep.Warnings)
	}
	evs := eventsOf(t, dir, "gateway")
	if len(evs) != 6 || evs[3].EventName != "AuditLogGap" || evs[4].RequestID != "req-00000020" {
		names := []string{}
		for _, ev := range evs {
			names = append(names, ev.EventName+" "+ev.RequestID)
		}
		t.Fatalf("events %v", names)
	}
	if gap := evs[3].AdditionalEventData; gap["refusedRecords"] != float64(2) || gap["firstFailure"] == "" || gap["error"] == "" {
		t.Errorf("gap %v", gap)
	}
}

// TestRotationFailureRecovers: a segment that cannot be started (its digest file cannot
// be created) leaves the log failing, not broken for good: once the obstacle is gone the
// start is redone and the chain goes on verifiably.
func TestRotationFailureRecovers(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", func(c *Config) { c.SegmentBytes = minSegmentBytes; c.DigestInterval = 20 * time.Millisecond })
	// The next segment's digest file is in the way.
	obstacle := filepath.Join(dir, "gateway", digestName(2))
	if err := os.Mkdir(obstacle, 0o700); err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i := 0; i < 40; i++ {
		if err := l.Record(context.Background(), gatewayEvent(i)); err != nil {
			refused++
		}
	}
	if refused == 0 || l.Err() == nil {
		t.Fatalf("%d refused, Err %v: the rotation did not fail", refused, l.Err())
	}
	if err := os.Remove(obstacle); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, l)
	writeN(t, l, 100, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, VerifyOptions{PublicKeys: []ed25519.PublicKey{testSigner(t).Public().(ed25519.PublicKey)}})
	if !rep.OK() || len(rep.Warnings) != 0 {
		t.Fatalf("problems:\n%swarnings: %v", problems(rep), rep.Warnings)
	}
	gaps := 0
	for _, ev := range eventsOf(t, dir, "gateway") {
		if ev.EventName == "AuditLogGap" {
			gaps++
			if ev.AdditionalEventData["refusedRecords"] != float64(refused) {
				t.Errorf("gap %v, want %d refused", ev.AdditionalEventData, refused)
			}
		}
	}
	if gaps != 1 {
		t.Errorf("%d gap records, want 1", gaps)
	}
}
