package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phantom-perimeter/phantom/internal/keys"
)

// testSigner is the key the golden chain was signed with: the one every process derived
// from the master key before writers had keys of their own (keys.AuditLegacy).
func testSigner(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	k, err := keys.DeriveEd25519(bytes.Repeat([]byte{7}, 32), keys.AuditLegacy)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// gatewayEvent is a typical gateway decision: an assumed-role caller through an endpoint.
func gatewayEvent(i int) *Event {
	return &Event{
		UserIdentity: UserIdentity{
			Type:        "AssumedRole",
			PrincipalID: "AROAEXAMPLEROLEID:app-session",
			ARN:         "arn:aws:sts::123456789012:assumed-role/orders-reader/app-session",
			AccountID:   "123456789012",
			AccessKeyID: "ASIAEXAMPLEKEYID0001",
			SessionContext: &SessionContext{
				SessionIssuer: &SessionIssuer{Type: "Role", PrincipalID: "AROAEXAMPLEROLEID", ARN: "arn:aws:iam::123456789012:role/orders-reader", AccountID: "123456789012", UserName: "orders-reader"},
				Attributes:    map[string]string{"creationDate": "2026-11-29T02:00:00Z", "mfaAuthenticated": "false"},
			},
		},
		EventTime:       time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		EventSource:     "execute-api.amazonaws.com",
		EventName:       "Invoke",
		AWSRegion:       "us-east-1",
		SourceIPAddress: "10.0.3.17",
		UserAgent:       "aws-cli/2.17.0 Python/3.12 Linux/6.8 botocore/1.35.0",
		RequestParameters: map[string]any{
			"apiId": "a1b2c3d4e5", "stage": "prod", "httpMethod": "GET", "path": fmt.Sprintf("/orders/%d", i),
		},
		ResponseElements:   map[string]any{"statusCode": 200},
		RequestID:          fmt.Sprintf("req-%08d", i),
		EventType:          "AwsApiCall",
		ReadOnly:           true,
		RecipientAccountID: "123456789012",
		EventCategory:      "Data",
		VPCEndpointID:      "vpce-0123456789abcdef0",
		TLSDetails:         &TLSDetails{TLSVersion: "TLSv1.3", CipherSuite: "TLS_AES_128_GCM_SHA256", ClientProvidedHostHeader: "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"},
	}
}

func openTest(t testing.TB, dir, chain string, mod func(*Config)) *Log {
	t.Helper()
	cfg := Config{Dir: dir, Chain: chain, Signer: testSigner(t), DigestInterval: time.Hour}
	if mod != nil {
		mod(&cfg)
	}
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func writeN(t testing.TB, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := l.Record(context.Background(), gatewayEvent(i)); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
}

func mustVerify(t *testing.T, dir string, opts VerifyOptions) *Report {
	t.Helper()
	rep, err := Verify(dir, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func problems(r *Report) string {
	var b strings.Builder
	for _, p := range r.Problems {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

func TestRecordVerifyResume(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	ev := gatewayEvent(0)
	if err := l.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(ev.EventID) {
		t.Errorf("EventID %q is not a UUID v4", ev.EventID)
	}
	if ev.EventVersion != EventVersion {
		t.Errorf("EventVersion %q", ev.EventVersion)
	}
	writeN(t, l, 1, 9)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(context.Background(), gatewayEvent(99)); err != ErrClosed {
		t.Errorf("Record after Close = %v, want ErrClosed", err)
	}

	// Resume: the chain continues.
	l = openTest(t, dir, "gateway", nil)
	writeN(t, l, 10, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, VerifyOptions{PublicKeys: []ed25519.PublicKey{testSigner(t).Public().(ed25519.PublicKey)}})
	if !rep.OK() || len(rep.Warnings) != 0 {
		t.Fatalf("problems:\n%swarnings: %v", problems(rep), rep.Warnings)
	}
	if rep.Records != 15 || len(rep.Chains) != 1 || rep.Chains[0].LastSeq != 15 || rep.Chains[0].CoveredSeq != 15 {
		t.Fatalf("report %+v", rep)
	}

	// The records read back as the events written, in order.
	var got []string
	err := ReadChain(dir, "gateway", 0, func(e Entry) error {
		ev, err := e.Decode()
		if err != nil {
			return err
		}
		got = append(got, ev.RequestID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 15 || got[0] != "req-00000000" || got[14] != "req-00000014" {
		t.Fatalf("read %v", got)
	}
}

func TestPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l := openTest(t, dir, "gateway", nil)
	writeN(t, l, 0, 1)
	l.Close()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOneWriterPerChain(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	defer l.Close()
	_, err := Open(Config{Dir: dir, Chain: "gateway", Signer: testSigner(t)})
	if err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Open = %v, want refused", err)
	}
	// Another chain in the same directory is fine.
	l2 := openTest(t, dir, "sts", nil)
	l2.Close()
}

func TestConfigValidation(t *testing.T) {
	k := testSigner(t)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no dir", Config{Chain: "gateway", Signer: k}},
		{"upper-case chain", Config{Dir: t.TempDir(), Chain: "Gateway", Signer: k}},
		{"path in chain", Config{Dir: t.TempDir(), Chain: "../x", Signer: k}},
		{"no signer", Config{Dir: t.TempDir(), Chain: "gateway"}},
		{"tiny segments", Config{Dir: t.TempDir(), Chain: "gateway", Signer: k, SegmentBytes: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if l, err := Open(tc.cfg); err == nil {
				l.Close()
				t.Fatal("Open accepted it")
			}
		})
	}
}

func TestConcurrentRecord(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", func(c *Config) {
		c.SegmentBytes = 64 << 10 // rotate under load
		c.DigestInterval = 5 * time.Millisecond
	})
	var writes atomic.Int64
	l.mu.Lock()
	l.writeAt = func(f *os.File, p []byte, off int64) (int, error) {
		writes.Add(1)
		return f.WriteAt(p, off)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	const goroutines, each = 64, 50
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := l.Record(context.Background(), gatewayEvent(g*each+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, VerifyOptions{})
	if !rep.OK() {
		t.Fatalf("problems:\n%s", problems(rep))
	}
	if rep.Records != goroutines*each {
		t.Fatalf("verified %d records, want %d", rep.Records, goroutines*each)
	}
	if rep.Chains[0].Segments < 3 {
		t.Fatalf("%d segments: rotation did not happen", rep.Chains[0].Segments)
	}
	// Records that wait while a write is in progress are written together (group
	// commit): one write(2) per record is what they would cost one by one.
	if w := writes.Load(); w >= goroutines*each {
		t.Errorf("%d writes for %d records: records are not written in groups", w, goroutines*each)
	} else {
		t.Logf("%d writes for %d records", w, goroutines*each)
	}
	seen := map[string]bool{}
	err := ReadChain(dir, "gateway", 0, func(e Entry) error {
		ev, err := e.Decode()
		if err != nil {
			return err
		}
		if seen[ev.RequestID] {
			return fmt.Errorf("%s twice", ev.RequestID)
		}
		seen[ev.RequestID] = true
		return nil
	})
	if err != nil || len(seen) != goroutines*each {
		t.Fatalf("read %d records: %v", len(seen), err)
	}
}

func TestDigestInterval(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", func(c *Config) { c.DigestInterval = 10 * time.Millisecond })
	defer l.Close()
	writeN(t, l, 0, 3)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rep := mustVerify(t, dir, VerifyOptions{})
		if rep.Chains[0].CoveredSeq == 3 {
			for _, w := range rep.Warnings {
				if w.Kind == NotCovered {
					t.Fatalf("warning after the digest: %v", w)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no digest covers the records after 5s: %+v", rep.Chains[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUncoveredIsAWarning(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	defer l.Close()
	writeN(t, l, 0, 4) // DigestInterval is an hour: nothing signs these yet
	rep := mustVerify(t, dir, VerifyOptions{})
	if !rep.OK() {
		t.Fatalf("problems:\n%s", problems(rep))
	}
	var found bool
	for _, w := range rep.Warnings {
		if w.Kind == NotCovered && w.Seq == 1 && strings.Contains(w.Message, "4 records") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no not-covered warning: %v", rep.Warnings)
	}
}

func TestEventJSONIsCloudTrail(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", nil)
	writeN(t, l, 0, 1)
	l.Close()
	err := ReadChain(dir, "gateway", 0, func(e Entry) error {
		var m map[string]any
		if err := json.Unmarshal(e.Record.Event, &m); err != nil {
			return err
		}
		for _, k := range []string{"eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent", "userIdentity", "requestParameters", "requestID", "eventID", "vpcEndpointId", "tlsDetails"} {
			if _, ok := m[k]; !ok {
				t.Errorf("event has no %s", k)
			}
		}
		if _, ok := m["userIdentity"].(map[string]any)["sessionContext"]; !ok {
			t.Error("no userIdentity.sessionContext")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Verify on a chain being written never reports tampering: it reads digests before the
// segments they cover, and a half-written last line is a torn tail.
func TestVerifyLiveChain(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, "gateway", func(c *Config) { c.SegmentBytes = 16 << 10; c.DigestInterval = time.Millisecond })
	writeN(t, l, 0, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i < 1500; i++ {
			if err := l.Record(context.Background(), gatewayEvent(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	runs := 0
	for running := true; running; runs++ {
		select {
		case <-done:
			running = false
		default:
		}
		rep, err := Verify(dir, VerifyOptions{})
		if err != nil || !rep.OK() {
			<-done
			l.Close()
			t.Fatalf("run %d on a live chain: %v\n%s", runs, err, problems(rep))
		}
	}
	l.Close()
	t.Logf("%d verifications while writing", runs)
}
